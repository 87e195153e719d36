#!/usr/bin/env bash
# Regenerates crates/ferrosip/hot-symbols.txt, the functions a running server executes per
# message, which the link of an optimized build places together (crates/ferrosip/build.rs):
# with them spread over the ~20 MiB of code, the kernel's 64 KiB fault-around kept ~3.5 MiB
# of code resident for the ~155 KiB the stateless path runs. Runs the dist binary under
# callgrind with the bench harness's stateless, stateful and stateful-lua configs, counts
# from after start-up (callgrind_control -z), and sends 600 calls through each with SIPp.
# Ends only the processes it started. Run it again after large changes to the message path.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bench=${SIP_LOAD:-$root/../shared/bench}
cargo build --profile dist --bin ferrosip --manifest-path "$root/Cargo.toml"
work=$(mktemp -d)
cp "${CARGO_TARGET_DIR:-$root/target}/dist/ferrosip" "$work/ferrosip"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

profile() {
    local tag=$1
    shift
    valgrind --tool=callgrind --demangle=no --callgrind-out-file="$work/$tag.%p" \
        "$work/ferrosip" run -A BENCH_CHILDREN=2 "$@" >"$work/$tag.log" 2>&1 &
    local server=$!
    pids+=("$server")
    local i
    for ((i = 0; i < 240; i++)); do
        ss -uln | grep -q '127.0.0.1:5060 ' && break
        sleep 0.5
    done
    sleep 2
    callgrind_control -z "$server" >/dev/null
    sipp -sf "$bench/scenarios/uas.xml" -nostdin -i 127.0.0.1 -p 5070 >/dev/null 2>&1 &
    local uas=$!
    pids+=("$uas")
    timeout 120 sipp -sf "$bench/scenarios/uac.xml" -nostdin -i 127.0.0.1 -p 5061 \
        -rsa 127.0.0.1:5060 127.0.0.1:5070 -r 40 -m 600 -recv_timeout 5000 >/dev/null 2>&1
    # Let transactions end (wt_timer) so their timers and cleanup are counted too.
    sleep 6
    callgrind_control -d "$server" >/dev/null
    kill "$uas" "$server"
    wait "$server" || true
    wait "$uas" || true
}

profile stateless -f "$bench/kamailio/stateless.cfg"
profile stateful -f "$bench/kamailio/stateful.cfg"
profile lua -f "$bench/kamailio/stateful-lua.cfg" -A "BENCH_LUA=\"$bench/kamailio/stateful.lua\""
# The dump after zeroing is the profile's file with the ".1" suffix.
python3 "$root/scripts/hot-symbols/hot_symbols.py" "$work"/stateless.*.1 "$work"/stateful.*.1 \
    "$work"/lua.*.1 >"$root/crates/ferrosip/hot-symbols.txt"
wc -l "$root/crates/ferrosip/hot-symbols.txt"
rm -rf "$work"
