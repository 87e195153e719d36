#!/usr/bin/env bash
# Open INVITE transactions benchmark: how many ringing INVITE transactions the stateful
# proxy holds at once, and what each costs in memory.
#
#   SIPp UAC 127.0.0.1:5061 --> proxy 127.0.0.1:5060 --> SIPp UAS 127.0.0.1:5070
#
# The proxy runs the shared bench config (shared/bench/kamailio/stateful.cfg: tm,
# record_route, t_relay to 127.0.0.1:5070). The UAS (scripts/bench/uas_slow_answer.xml)
# rings at once and answers only after --answer-after ms, so the UAC's calls
# (--calls at --rate, all allowed open at once) pile up as open INVITE transactions.
# Between the last INVITE and the first answer the number of open transactions is flat
# (the plateau); the script samples the proxy's memory (RSS, and PSS from
# /proc/PID/smaps_rollup, summed over every process of its session) before the
# traffic and on the plateau, and reports
#     (RSS_plateau - RSS_base) / open transactions
# as the bytes per open transaction. Meanwhile a probe sends an OPTIONS with
# Max-Forwards: 0 every 2 s, which the config answers at once with 483 (sl): the proxy
# must keep answering under the load. After the answers every call must complete
# (ACK, BYE, 200), and the UAS must see no failed call.
#
# Usage: scripts/bench-open-transactions.sh [options]
#   --calls N           calls, all open at once at the plateau (100000)
#   --rate R            calls/s while building up (3500)
#   --answer-after MS   ringing time before the UAS answers (45000); must outlast
#                       calls/rate by a few seconds so that there is a plateau
#   --profile P         cargo profile of the ferrosip binary to build and run:
#                       release (default) or dist
#   --kamailio          run Kamailio (tlsf, 4 GiB shm) on the same config instead
#   --target CMD        run CMD as the proxy instead (must listen on UDP 5060)
#   --out DIR           keep the logs, samples and SIPp statistics in DIR
#
# Needs sipp, python3 (the probe), ss (iproute2), and free ports 5060, 5061, 5070.
# Open file limit: raised to 200000 if the hard limit allows (SIPp keeps one socket
# in u1 mode; the limit matters when the target opens more).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bench=${SIP_LOAD:-$root/../shared/bench}
scen=$root/scripts/bench
calls=100000
rate=3500
answer_ms=45000
profile=release
target=""
kamailio=0
out=""

while [[ $# -gt 0 ]]; do
    case $1 in
        --calls) calls=$2; shift 2 ;;
        --rate) rate=$2; shift 2 ;;
        --answer-after) answer_ms=$2; shift 2 ;;
        --profile) profile=$2; shift 2 ;;
        --kamailio) kamailio=1; shift ;;
        --target) target=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

cfg=$bench/kamailio/stateful.cfg
[[ -f $cfg ]] || { echo "no $cfg (set SIP_LOAD to the shared bench folder)" >&2; exit 2; }
for tool in sipp python3 ss; do
    command -v "$tool" >/dev/null || { echo "$tool is needed" >&2; exit 2; }
done

if [[ -n $out ]]; then
    mkdir -p "$out"
    dir=$(cd "$out" && pwd)
else
    dir=$(mktemp -d /tmp/bench-open-txn.XXXXXX)
fi

if [[ -z $target ]]; then
    if [[ $kamailio == 1 ]]; then
        target="kamailio -DD -E -m 4096 -M 16 -b 4194304 -x tlsf -X tlsf -f $cfg"
    else
        cargo build --profile "$profile" --bin ferrosip --manifest-path "$root/Cargo.toml" >&2
        # A copy: a rebuild during the run must not change the binary being measured.
        cp "${CARGO_TARGET_DIR:-$root/target}/$profile/ferrosip" "$dir/ferrosip"
        target="$dir/ferrosip run -f $cfg"
    fi
fi

ulimit -n 200000 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true

for port in 5060 5061 5070; do
    if [[ -n $(ss -Hlun "sport = :$port") ]]; then
        echo "UDP port $port is busy:" >&2
        ss -Hlunp "sport = :$port" >&2
        exit 2
    fi
done

# ---- processes -----------------------------------------------------------------------
proxy_sid="" uas_pid="" uac_pid="" probe_pid=""
cleanup() {
    for p in $probe_pid $uac_pid $uas_pid; do
        kill "$p" 2>/dev/null || true
    done
    if [[ -n $proxy_sid ]]; then
        kill -TERM -- "-$proxy_sid" 2>/dev/null || true
    fi
}
trap cleanup EXIT

# The proxy's processes: its whole session (Kamailio forks workers).
proxy_pids() { ps -o pid= -s "$proxy_sid" 2>/dev/null | tr -d ' '; }

# "rss_kb pss_kb cpu_ticks" summed over the proxy's processes.
proxy_sample() {
    local rss=0 pss=0 cpu=0 p v stat
    for p in $(proxy_pids); do
        v=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null) && rss=$((rss + ${v:-0}))
        v=$(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null) && pss=$((pss + ${v:-0}))
        if stat=$(cat "/proc/$p/stat" 2>/dev/null); then
            stat=${stat##*) }
            set -- $stat
            cpu=$((cpu + ${12} + ${13}))
        fi
    done
    echo "$rss $pss $cpu"
}

# Datagrams the kernel dropped on the proxy's socket (receive buffer full).
proxy_drops() {
    awk 'NR > 1 && $2 ~ /:13C4$/ {d += $NF} END {print d + 0}' /proc/net/udp
}

# A column of the last line of a SIPp statistics file (-trace_stat), by name.
stat_col() {
    [[ -s $1 ]] || { echo 0; return; }
    awk -F';' -v col="$2" 'NR == 1 {for (i = 1; i <= NF; i++) if ($i == col) c = i; next}
        {last = $c} END {print (last == "" ? 0 : last)}' "$1"
}

wait_udp_bound() {
    local port=$1 what=$2 i
    for ((i = 0; i < 100; i++)); do
        [[ -n $(ss -Hlun "sport = :$port") ]] && return 0
        sleep 0.1
    done
    echo "$what did not bind UDP $port" >&2
    exit 2
}

hz=$(getconf CLK_TCK)

cat >"$dir/probe.py" <<'EOF'
# One OPTIONS with Max-Forwards: 0 to the proxy; prints the reply's status and the
# round trip in ms, or "timeout" after 2 s.
import socket, sys, time, uuid
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
s.settimeout(2.0)
port = s.getsockname()[1]
cid = uuid.uuid4().hex
msg = (f"OPTIONS sip:probe@127.0.0.1:5060 SIP/2.0\r\n"
       f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{cid[:16]}\r\n"
       f"Max-Forwards: 0\r\nFrom: <sip:probe@127.0.0.1>;tag={cid[:8]}\r\n"
       f"To: <sip:probe@127.0.0.1>\r\nCall-ID: {cid}\r\nCSeq: 1 OPTIONS\r\n"
       f"Content-Length: 0\r\n\r\n")
t = time.monotonic()
s.sendto(msg.encode(), ("127.0.0.1", 5060))
try:
    while True:
        data = s.recv(65536).decode(errors="replace")
        if cid in data:
            print(data.split()[1], f"{(time.monotonic() - t) * 1000:.1f}")
            break
except socket.timeout:
    print("timeout")
EOF

# ---- run -----------------------------------------------------------------------------
echo "logs: $dir" >&2
echo "proxy: $target" >&2
setsid bash -c "exec $target" </dev/null >"$dir/proxy.log" 2>&1 &
proxy_sid=$!
wait_udp_bound 5060 proxy
sleep 2
read -r rss_base pss_base _ < <(proxy_sample)
probe_base=$(python3 "$dir/probe.py")
[[ $probe_base == 483* ]] || { echo "the proxy does not answer the probe: $probe_base" >&2; exit 2; }

sipp -sf "$scen/uas_slow_answer.xml" -i 127.0.0.1 -p 5070 -t u1 -m "$calls" -d "$answer_ms" \
    -buff_size 4194304 -nostdin -trace_stat -stf "$dir/uas_stat.csv" -fd 1 \
    -trace_err -error_file "$dir/uas_errors.log" </dev/null >"$dir/uas.out" 2>&1 &
uas_pid=$!
wait_udp_bound 5070 "SIPp UAS"

(
    while true; do
        echo "$(date +%s.%N) $(python3 "$dir/probe.py")"
        sleep 2
    done
) >"$dir/probes.log" 2>&1 &
probe_pid=$!

limit=$((calls + calls / 5))
timeout_s=$((calls / rate + answer_ms / 1000 + 120))
t0=$(date +%s.%N)
read -r _ _ cpu0 < <(proxy_sample)
drops0=$(proxy_drops)
sipp -sf "$scen/uac_call.xml" -i 127.0.0.1 -p 5061 -t u1 -m "$calls" -l "$limit" \
    -r "$rate" -rp 1000 -buff_size 4194304 -nostdin -timeout "${timeout_s}s" \
    -trace_stat -stf "$dir/uac_stat.csv" -fd 1 -trace_err -error_file "$dir/uac_errors.log" \
    127.0.0.1:5060 </dev/null >"$dir/uac.out" 2>&1 &
uac_pid=$!

# Samples every 0.5 s while the UAC runs:
# t(s since start) rss_kb pss_kb cpu_ticks uac_created uac_open uas_open drops
echo "t rss_kb pss_kb cpu_ticks uac_created uac_open uas_open proxy_drops" >"$dir/samples.txt"
while kill -0 "$uac_pid" 2>/dev/null; do
    now=$(date +%s.%N)
    read -r rss pss cpu < <(proxy_sample)
    echo "$(awk -v a="$now" -v b="$t0" 'BEGIN {printf "%.1f", a - b}') $rss $pss $cpu" \
        "$(stat_col "$dir/uac_stat.csv" 'OutgoingCall(C)')" \
        "$(stat_col "$dir/uac_stat.csv" CurrentCall)" \
        "$(stat_col "$dir/uas_stat.csv" CurrentCall)" \
        "$(($(proxy_drops) - drops0))" >>"$dir/samples.txt"
    sleep 0.5
done
uac_rc=0
wait "$uac_pid" || uac_rc=$?
uac_pid=""
t_end=$(date +%s.%N)
# The UAS ends by itself once its last call's 4 s after the BYE are over.
uas_rc=0
for ((i = 0; i < 300; i++)); do
    kill -0 "$uas_pid" 2>/dev/null || break
    sleep 0.1
done
uas_stuck=0
if kill -0 "$uas_pid" 2>/dev/null; then
    uas_stuck=$(stat_col "$dir/uas_stat.csv" CurrentCall)
    kill "$uas_pid" 2>/dev/null || true
fi
wait "$uas_pid" || uas_rc=$?
uas_pid=""
kill "$probe_pid" 2>/dev/null || true
wait "$probe_pid" 2>/dev/null || true
probe_pid=""

# After the calls: the ended transactions linger (wt_timer, 5 s), then memory should
# go back (or at least stop growing).
sleep 8
read -r rss_after pss_after _ < <(proxy_sample)
kill -TERM -- "-$proxy_sid" 2>/dev/null || true
for ((i = 0; i < 50; i++)); do
    kill -0 "$proxy_sid" 2>/dev/null || break
    sleep 0.1
done
proxy_sid=""

# ---- figures ---------------------------------------------------------------------------
uac_ok=$(stat_col "$dir/uac_stat.csv" 'SuccessfulCall(C)')
uac_failed=$(stat_col "$dir/uac_stat.csv" 'FailedCall(C)')
uac_retrans=$(stat_col "$dir/uac_stat.csv" 'Retransmissions(C)')
uas_failed=$(stat_col "$dir/uas_stat.csv" 'FailedCall(C)')
uas_retrans=$(stat_col "$dir/uas_stat.csv" 'Retransmissions(C)')
stop_line=$(grep -o 'open_transactions=[0-9]*' "$dir/proxy.log" | tail -1 || true)

awk -v hz="$hz" -v calls="$calls" -v rate="$rate" -v answer="$answer_ms" \
    -v rss_base="$rss_base" -v pss_base="$pss_base" -v cpu0="$cpu0" \
    -v rss_after="$rss_after" -v pss_after="$pss_after" \
    -v uac_ok="$uac_ok" -v uac_failed="$uac_failed" -v uas_failed="$uas_failed" \
    -v uac_retrans="$uac_retrans" -v uas_retrans="$uas_retrans" \
    -v uac_rc="$uac_rc" -v uas_rc="$uas_rc" -v uas_stuck="$uas_stuck" -v probes="$dir/probes.log" \
    -v stop_line="$stop_line" '
NR == 1 { next }
{
    t = $1; rss = $2; pss = $3; cpu = $4; created = $5; uac_open = $6; uas_open = $7; drops = $8
    # buildup: until the UAC has created every call
    if (!built && created >= calls) { built = 1; t_built = t; cpu_built = cpu }
    # plateau: before the first answers (answer ms after the start, minus a margin)
    if (t < answer / 1000 - 1) {
        if (uas_open > open_max || (uas_open == open_max && rss > rss_plat)) {
            open_max = uas_open; uac_open_at = uac_open; rss_plat = rss; pss_plat = pss; t_plat = t
        }
        if (rss > rss_peak_before) rss_peak_before = rss
        if (pss > pss_peak_before) pss_peak_before = pss
    }
    if (rss > rss_peak) rss_peak = rss
    if (pss > pss_peak) pss_peak = pss
    last_cpu = cpu; last_t = t; last_drops = drops
}
END {
    while ((getline line < probes) > 0) {
        n = split(line, f, " ")
        nprobe++
        if (f[2] == "timeout") lost++
        else if (f[3] + 0 > pmax) pmax = f[3] + 0
    }
    if (!built) { t_built = last_t; cpu_built = last_cpu }
    mib = 1024
    printf "calls %d at %d cps, answered after %.0f s\n", calls, rate, answer / 1000
    printf "buildup: %d calls created in %.1f s (%.0f cps achieved)\n", calls, t_built, (t_built > 0 ? calls / t_built : 0)
    printf "proxy CPU during buildup: %.1f s = %.0f%% of one core, %.1f us per call (INVITE, 100, 180)\n", \
        (cpu_built - cpu0) / hz, 100 * (cpu_built - cpu0) / hz / t_built, 1e6 * (cpu_built - cpu0) / hz / calls
    printf "open INVITE transactions at the plateau (t=%.1f s): %d (UAS ringing calls; UAC open calls %d)\n", t_plat, open_max, uac_open_at
    printf "RSS base %.1f MiB, plateau %.1f MiB (peak before answers %.1f, overall %.1f), after the calls ended %.1f MiB\n", \
        rss_base / mib, rss_plat / mib, rss_peak_before / mib, rss_peak / mib, rss_after / mib
    printf "PSS base %.1f MiB, plateau %.1f MiB (peak before answers %.1f, overall %.1f), after the calls ended %.1f MiB\n", \
        pss_base / mib, pss_plat / mib, pss_peak_before / mib, pss_peak / mib, pss_after / mib
    if (open_max > 0) {
        printf "per open transaction: RSS %.0f bytes, PSS %.0f bytes\n", \
            (rss_plat - rss_base) * 1024 / open_max, (pss_plat - pss_base) * 1024 / open_max
    }
    printf "probe (OPTIONS, Max-Forwards 0 -> 483 every 2 s): %d sent, %d unanswered, slowest %.1f ms\n", nprobe, lost, pmax
    printf "calls: UAC %d successful, %d failed (exit %d); UAS %d failed (exit %d); retransmissions UAC %d, UAS %d; proxy socket drops %d\n", \
        uac_ok, uac_failed, uac_rc, uas_failed, uas_rc, uac_retrans, uas_retrans, last_drops
    if (uas_stuck > 0) printf "the UAS still had %d calls open 30 s after the UAC ended (killed)\n", uas_stuck
    if (stop_line != "") printf "proxy at stop: %s\n", stop_line
    ok = (uac_ok == calls && uac_failed == 0 && uas_failed == 0 && uas_stuck == 0 && lost == 0)
    printf "RESULT %s\n", ok ? "pass" : "FAIL"
    exit (ok ? 0 : 1)
}' "$dir/samples.txt" >"$dir/summary.txt" && rc=0 || rc=$?
cat "$dir/summary.txt"
if [[ -z $out && $rc == 0 ]]; then
    rm -rf "$dir"
else
    echo "logs kept in $dir" >&2
fi
exit "$rc"
