#!/usr/bin/env bash
# TLS on both legs, Ferrosip against Kamailio 5.6 with its tls module (issue 17, a
# benchmark, not in CI): the same config (scripts/bench/tls-stateful.cfg), the same
# certificates and the same traffic, taken in turns; prints calls/s, failed calls, the
# proxy's CPU per call and its memory (PSS summed over its processes), and the ratios.
#
#   SIPp UAC --TCP--> socat --TLS--> proxy tls:127.0.0.1:5061 --TLS--> socat --TCP--> SIPp UAS
#             :5060                                           :5081              :5071
# Debian's SIPp has no TLS, so socat (OpenSSL) carries each leg's TLS; its CPU is not the
# proxy's and is not counted. The scenarios say TLS in their Via, as a TLS phone would.
#
# Usage: scripts/bench-tls.sh [--rate 300] [--calls 6000] [--repeat 3] [--profile dist]
# (SIP_LOAD names the shared/bench folder when it is not beside the checkout.)
# Needs sipp, socat, openssl, and Kamailio's packages unpacked by scripts/test.sh
# (target/packaged; the tls module is fetched beside them here). Ends only what it started.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
rate=300
calls=6000
repeat=3
profile=dist
while [[ $# -gt 0 ]]; do
    case $1 in
        --rate) rate=$2; shift 2 ;;
        --calls) calls=$2; shift 2 ;;
        --repeat) repeat=$2; shift 2 ;;
        --profile) profile=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

bin=$root/target/$profile/ferrosip
[[ -x $bin ]] || { echo "build $bin first (cargo build --profile $profile --bin ferrosip)" >&2; exit 2; }
# sip-load's call scenarios (shared/bench), the same calls as the UDP comparisons.
bench=${SIP_LOAD:-$root/../shared/bench}
packaged=${FERROSIP_PACKAGED_ROOT:-$root/target/packaged}
kamailio=$packaged/usr/sbin/kamailio
modules=$packaged/usr/lib/x86_64-linux-gnu/kamailio/modules
[[ -x $kamailio ]] || { echo "no $kamailio: run scripts/test.sh once (it unpacks Kamailio)" >&2; exit 2; }
if [[ ! -f $modules/tls.so ]]; then
    debs=$(mktemp -d)
    (cd "$debs" && apt-get download -qq kamailio-tls-modules)
    dpkg-deb -x "$debs"/kamailio-tls-modules_*.deb "$packaged"
    rm -rf "$debs"
fi
for port in 5060 5061 5071 5081; do
    if ss -ltn | grep -q "127.0.0.1:$port "; then echo "port $port is taken" >&2; exit 2; fi
done

work=$(mktemp -d /tmp/ferrosip-bench-tls.XXXXXX)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

# One P-256 certificate for 127.0.0.1, used by both proxies and by the UAS-side socat.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=127.0.0.1" -addext "subjectAltName=IP:127.0.0.1" \
    -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
cat > "$work/tls.cfg" <<EOF
[server:default]
method = TLSv1.2+
certificate = $work/cert.pem
private_key = $work/key.pem
verify_certificate = no
require_certificate = no

[client:default]
method = TLSv1.2+
verify_certificate = no
require_certificate = no
EOF
sed "s|TLS_CFG|\"$work/tls.cfg\"|" "$root/scripts/bench/tls-stateful.cfg" > "$work/proxy.cfg"
for s in uac uas; do
    sed 's|SIP/2.0/\[transport\]|SIP/2.0/TLS|' "$bench/scenarios/$s.xml" > "$work/$s.xml"
done

# The proxy's processes: every process of its session, as "pid utime stime" lines.
session_procs() {
    local sid=$1 stat rest pid
    for stat in /proc/[0-9]*/stat; do
        { read -r -a f < "$stat"; } 2>/dev/null || continue
        # Fields after the command name (which may hold spaces) count from its ")".
        rest=${f[*]}
        rest=${rest##*) }
        read -r -a g <<< "$rest"
        [[ ${g[3]} == "$sid" ]] || continue
        pid=${stat#/proc/}
        echo "${pid%/stat} ${g[11]} ${g[12]}"
    done
}
session_ticks() {
    session_procs "$1" | awk '{ t += $2 + $3 } END { print t + 0 }'
}
session_pss_kb() {
    local total=0 pid _
    while read -r pid _; do
        total=$(( total + $(awk '/^Pss:/ {print $2}' "/proc/$pid/smaps_rollup" 2>/dev/null || echo 0) ))
    done < <(session_procs "$1")
    echo "$total"
}
hz=$(getconf CLK_TCK)

run_one() {
    local label=$1 i=$2
    shift 2
    local dir=$work/$label-$i
    mkdir -p "$dir"
    setsid "$@" > "$dir/proxy.log" 2>&1 &
    local proxy=$!
    pids+=("$proxy")
    for _ in $(seq 100); do
        ss -ltn | grep -q "127.0.0.1:5061 " && break
        sleep 0.1
    done
    setsid socat OPENSSL-LISTEN:5081,bind=127.0.0.1,reuseaddr,fork,cert="$work/cert.pem",key="$work/key.pem",verify=0 \
        TCP:127.0.0.1:5071 2> "$dir/socat-uas.log" &
    local socat_uas=$!
    pids+=("$socat_uas")
    setsid socat TCP-LISTEN:5060,bind=127.0.0.1,reuseaddr,fork OPENSSL:127.0.0.1:5061,verify=0 \
        2> "$dir/socat-uac.log" &
    local socat_uac=$!
    pids+=("$socat_uac")
    setsid sipp -sf "$work/uas.xml" -t t1 -i 127.0.0.1 -p 5071 -nostdin -bg > /dev/null 2>&1 || true
    local uas
    uas=$(pgrep -n -f "sipp -sf $work/uas.xml" || true)
    [[ -n $uas ]] && pids+=("$uas")
    sleep 0.5
    # Warm-up: connections opened, code paths taken, before the CPU is read.
    sipp -sf "$work/uac.xml" -t t1 -i 127.0.0.1 127.0.0.1:5060 -m 200 -r 100 -nostdin \
        -timeout 30 -timeout_error > /dev/null 2>&1 || true
    local t0 c0 t1 c1
    c0=$(session_ticks "$proxy")
    t0=$(date +%s.%N)
    sipp -sf "$work/uac.xml" -t t1 -i 127.0.0.1 127.0.0.1:5060 -m "$calls" -r "$rate" -l 100000 \
        -nostdin -timeout 120 -timeout_error -trace_stat -stf "$dir/uac.csv" -fd 1000 \
        > /dev/null 2>&1 || true
    t1=$(date +%s.%N)
    sleep 1
    c1=$(session_ticks "$proxy")
    local pss
    pss=$(session_pss_kb "$proxy")
    local ok failed
    ok=$(awk -F';' 'NR==1 {for (i=1;i<=NF;i++) h[$i]=i} END {print $h["SuccessfulCall(C)"]}' "$dir/uac.csv")
    failed=$(awk -F';' 'NR==1 {for (i=1;i<=NF;i++) h[$i]=i} END {print $h["FailedCall(C)"]}' "$dir/uac.csv")
    for pid in "$uas" "$socat_uac" "$socat_uas" "$proxy"; do
        [[ -n $pid ]] && { kill -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true; }
    done
    wait "$proxy" 2>/dev/null || true
    wait "$socat_uac" "$socat_uas" 2>/dev/null || true
    pids=()
    sleep 1
    awk -v l="$label" -v i="$i" -v ok="$ok" -v f="$failed" -v s="$(echo "$t1 - $t0" | bc)" \
        -v cpu=$(( c1 - c0 )) -v hz="$hz" -v pss="$pss" 'BEGIN {
            printf "%s run %d: %d ok, %d failed, %.0f calls/s, %.1f us CPU per call, PSS %.1f MiB\n",
                l, i, ok, f, ok / s, cpu * 1e6 / hz / ok, pss / 1024
            printf "%s %d %d %.1f %.2f %.1f\n", l, ok, f, ok / s, cpu * 1e6 / hz / ok, pss / 1024 > "/dev/stderr"
        }' 2>> "$work/results"
}

for i in $(seq "$repeat"); do
    run_one ferrosip "$i" "$bin" run -f "$work/proxy.cfg"
    run_one kamailio "$i" "$kamailio" -f "$work/proxy.cfg" -L "$modules" -DD -E \
        -m 2048 -M 16 -Y "$work" -P "$work/kamailio.pid"
done

# Medians of each figure, then target / Kamailio.
python3 - "$work/results" "$rate" "$calls" <<'EOF'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
med = {}
for name in ("ferrosip", "kamailio"):
    r = [x for x in rows if x[0] == name]
    med[name] = [statistics.median(float(x[i]) for x in r) for i in (3, 4, 5)]
    fails = sum(int(x[2]) for x in r)
    print(f"MEDIAN {name}: {med[name][0]:.0f} calls/s, {med[name][1]:.1f} us CPU per call, "
          f"PSS {med[name][2]:.1f} MiB, {fails} failed calls in all "
          f"({len(r)} runs of {sys.argv[3]} calls at {sys.argv[2]}/s)")
f, k = med["ferrosip"], med["kamailio"]
print(f"RATIO ferrosip/kamailio: calls/s {f[0]/k[0]:.2f}, CPU per call {f[1]/k[1]:.2f}, PSS {f[2]/k[2]:.2f}")
EOF
