#!/usr/bin/env bash
# Soak (issue 18): the stateful registrar proxy (examples/registrar.cfg, usrloc in memory)
# for MINUTES under calls at RATE/s to registered users while PHONES phones re-register
# every 60 s. Samples the proxy's RSS every 10 s and reports: calls and registrations
# that failed, RSS after warm-up and at the end (growth must stay < 5 %), panics.
#
#   SIPp phones <--REGISTER (PHONES per 60 s)--> proxy <--INVITE (RATE/s)-- SIPp caller
#               <--INVITE to a registered user--
# The phones' SIPp answers the calls with its out-of-call scenario (-oocsf, a UAS), so each
# call reaches the address its phone registered from, as lookup() with received_avp routes.
#
# Usage: scripts/soak.sh [--minutes 30] [--rate 500] [--phones 10000] [--hold-ms 2000]
#                        [--warmup-minutes 5] [--profile ci] [--out DIR]
# Needs sipp and python3; every port is picked free; it ends only what it started, by PID.
# Exit status 0 when 0 calls and 0 registrations failed, growth < 5 % and panics = 0.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
minutes=30
rate=500
phones=10000
hold_ms=2000
warmup_minutes=5
profile=ci
out=""
while [[ $# -gt 0 ]]; do
    case $1 in
        --minutes) minutes=$2; shift 2 ;;
        --rate) rate=$2; shift 2 ;;
        --phones) phones=$2; shift 2 ;;
        --hold-ms) hold_ms=$2; shift 2 ;;
        --warmup-minutes) warmup_minutes=$2; shift 2 ;;
        --profile) profile=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

bin=$root/target/$profile/ferrosip
[[ -x $bin ]] || { echo "build $bin first (cargo build --profile $profile --bin ferrosip)" >&2; exit 2; }
work=${out:-$(mktemp -d /tmp/ferrosip-soak.XXXXXX)}
mkdir -p "$work"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
proxy_port=$(free_port); phones_port=$(free_port); caller_port=$(free_port)

python3 - "$work" "$phones" <<'EOF'
import sys
work, phones = sys.argv[1], int(sys.argv[2])
with open(f"{work}/phones.csv", "w") as f:
    f.write("SEQUENTIAL\n")
    for i in range(phones):
        f.write(f"soak{i:06d}\n")
with open(f"{work}/callees.csv", "w") as f:
    f.write("RANDOM\n")
    for i in range(phones):
        f.write(f"soak{i:06d}\n")
EOF

"$bin" run -f "$root/examples/registrar.cfg" \
    -A "PROXY_PORT=$proxy_port" -A DBMODE=0 -A "DBURL=\"sqlite://$work/unused.db\"" \
    -A TIMER_INTERVAL=5 -A MIN_EXPIRES=60 > "$work/proxy.log" 2>&1 &
proxy_pid=$!
pids+=("$proxy_pid")
for _ in $(seq 100); do
    ss -lun | grep -q "127.0.0.1:$proxy_port " && break
    sleep 0.1
done

sipp_common=(-i 127.0.0.1 -nostdin -trace_stat -fd 10 -trace_err)
total_s=$(( minutes * 60 ))

# Phones: PHONES registrations per 60 s, looping over the file for the whole soak.
sipp -sf "$root/scripts/soak/register.xml" -inf "$work/phones.csv" 127.0.0.1:"$proxy_port" \
    -oocsf "$root/tests/tests/scenarios/call_uas.xml" \
    -p "$phones_port" -r "$phones" -rp 60000 -m $(( phones * (minutes + 1) )) \
    "${sipp_common[@]}" -stf "$work/phones.csv.stat" -error_file "$work/phones-errors.log" \
    > /dev/null 2>&1 &
phones_sipp=$!; pids+=("$phones_sipp")

sleep 60   # every phone registered once before the first call
sipp -sf "$root/scripts/soak/call_uac.xml" -inf "$work/callees.csv" 127.0.0.1:"$proxy_port" \
    -p "$caller_port" -r "$rate" -m $(( rate * (total_s - 60) )) -d "$hold_ms" -l 100000 \
    "${sipp_common[@]}" -stf "$work/calls.csv.stat" -error_file "$work/calls-errors.log" \
    > /dev/null 2>&1 &
caller_pid=$!; pids+=("$caller_pid")

echo "elapsed_s,rss_kb" > "$work/rss.csv"
start=$(date +%s)
# A call whose final reply or BYE answer never comes would keep SIPp (and the soak) waiting
# for ever: past the planned time plus 5 minutes the caller is stopped and such calls are
# counted as unfinished (a failure).
deadline=$(( start + total_s + 300 ))
while kill -0 "$caller_pid" 2>/dev/null; do
    if [ "$(date +%s)" -gt "$deadline" ]; then kill -TERM "$caller_pid" 2>/dev/null || true; fi
    rss=$(awk '/^VmRSS/ {print $2}' "/proc/$proxy_pid/status" 2>/dev/null || echo 0)
    echo "$(( $(date +%s) - start + 60 )),$rss" >> "$work/rss.csv"
    sleep 10
done
wait "$caller_pid" && calls_rc=0 || calls_rc=$?
kill "$phones_sipp" 2>/dev/null || true
wait "$phones_sipp" 2>/dev/null || true
kill -TERM "$proxy_pid" 2>/dev/null || true
wait "$proxy_pid" 2>/dev/null || true
pids=()

python3 - "$work" "$warmup_minutes" "$calls_rc" <<'EOF'
import csv, re, sys
work, warmup, calls_rc = sys.argv[1], int(sys.argv[2]) * 60, int(sys.argv[3])
def last_stat(path):
    rows = list(csv.reader(open(path), delimiter=";"))
    head, last = rows[0], rows[-1]
    return {k: last[i] for i, k in enumerate(head) if i < len(last)}
calls = last_stat(f"{work}/calls.csv.stat")
regs = last_stat(f"{work}/phones.csv.stat")
rss = [(int(t), int(k)) for t, k in (l.strip().split(",") for l in list(open(f"{work}/rss.csv"))[1:]) if k != "0"]
after = [k for t, k in rss if t >= warmup]
base, end, peak = after[0], after[-1], max(after)
growth = 100.0 * (end - base) / base
log = open(f"{work}/proxy.log", errors="replace").read()
m = re.search(r"panics=(\d+)", log)
panics = int(m.group(1)) if m else -1
unfinished = (int(calls["TotalCallCreated"]) - int(calls["SuccessfulCall(C)"])
              - int(calls["FailedCall(C)"]))
ok = (int(calls["FailedCall(C)"]) == 0 and unfinished == 0 and int(regs["FailedCall(C)"]) == 0 and growth < 5.0
      and panics == 0 and calls_rc == 0)
print(f"calls: {calls['TotalCallCreated']} made, {calls['SuccessfulCall(C)']} ok, "
      f"{calls['FailedCall(C)']} failed, {unfinished} unfinished "
      f"(sipp exit {calls_rc}); registrations: {regs['SuccessfulCall(C)']} ok, "
      f"{regs['FailedCall(C)']} failed")
print(f"RSS after warm-up ({warmup} s): {base/1024:.1f} MiB, end {end/1024:.1f} MiB, "
      f"peak {peak/1024:.1f} MiB, growth {growth:+.2f} %")
print(f"panics: {panics}   samples: {work}/rss.csv   verdict: {'PASS' if ok else 'FAIL'}")
sys.exit(0 if ok else 1)
EOF
