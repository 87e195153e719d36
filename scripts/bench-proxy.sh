#!/usr/bin/env bash
# Ferrosip against Kamailio in one command, as in docs/performance.md: builds the
# deployable binary (dist profile) and runs the shared sip-load harness on its own configs
# for MODE (stateless, stateful or stateful-lua), at 500 and 5,000 calls/s, 3 runs each,
# taken in turns with Kamailio (`--compare`; for stateful-lua Kamailio runs app_lua on the
# same files). Each rate's last line is the RATIO of the medians.
#
# With --floor, each rate is then run once more with the least possible proxy for the
# mode's traffic in place of Ferrosip: the harness's floor relay for stateless traffic
# (shared/bench/floor/relay.rs), scripts/bench/floor_stateful.rs for the stateful and
# stateful-lua traffic (it also answers 100 Trying). Its RATIO shows how much of
# Kamailio's CPU no proxy can save on this machine in this session (stateful-lua: the
# same relay against Kamailio's app_lua, the traffic being the same).
# Usage: scripts/bench-proxy.sh MODE [--floor] [RATE ...]
set -euo pipefail
mode=${1:?usage: $0 stateless|stateful|stateful-lua [--floor] [RATE ...]}
shift
floor=0
if [ "${1:-}" = --floor ]; then
    floor=1
    shift
fi
rates=("$@")
[ ${#rates[@]} -gt 0 ] || rates=(500 5000)
root=$(cd "$(dirname "$0")/.." && pwd)
bench=${SIP_LOAD:-$root/../shared/bench}
cargo build --profile dist --bin ferrosip --manifest-path "$root/Cargo.toml"
bin=$(mktemp -d)/ferrosip
# A copy: a rebuild during the run must not change the binary being measured.
cp "${CARGO_TARGET_DIR:-$root/target}/dist/ferrosip" "$bin"
# The per-message code is laid out by crates/ferrosip/hot-symbols.txt; when most of its
# names are gone from the binary (their hashes drift with dependencies and the compiler),
# the layout no longer applies and the memory figures are not this code's best.
order="$root/crates/ferrosip/hot-symbols.txt"
listed=$(wc -l <"$order")
defined=$(nm --defined-only "$bin" | awk '{ print $3 }' | sort -u | comm -12 - <(sort -u "$order") | wc -l)
echo "hot-symbols.txt: $defined of $listed names defined in the binary" >&2
if [ $((defined * 100)) -lt $((listed * 80)) ]; then
    echo "warning: hot-symbols.txt is stale; run scripts/hot-symbols/generate.sh" >&2
fi
case $mode in
stateless) target="$bin run -f $bench/kamailio/stateless.cfg" ;;
stateful) target="$bin run -f $bench/kamailio/stateful.cfg" ;;
stateful-lua)
    target="$bin run -f $bench/kamailio/stateful-lua.cfg -A BENCH_LUA='\"$bench/kamailio/stateful.lua\"'"
    ;;
*)
    echo "unknown mode $mode (stateless, stateful or stateful-lua)" >&2
    exit 2
    ;;
esac
for rate in "${rates[@]}"; do
    "$bench/sip-load" --mode "$mode" --rate "$rate" --calls $((rate * 8)) --repeat 3 --compare \
        --target "$target"
done
[ "$floor" = 1 ] || exit 0
case $mode in
stateless) relay_source=$bench/floor/relay.rs floor_mode=stateless ;;
*) relay_source=$root/scripts/bench/floor_stateful.rs floor_mode=$mode ;;
esac
relay=$(dirname "$bin")/floor-relay
rustc -O -o "$relay" "$relay_source"
for rate in "${rates[@]}"; do
    echo "floor ($relay_source), $floor_mode traffic, $rate calls/s:" >&2
    "$bench/sip-load" --mode "$floor_mode" --rate "$rate" --calls $((rate * 8)) --repeat 3 --compare \
        --target "$relay"
done
