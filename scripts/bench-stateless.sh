#!/usr/bin/env bash
# Stateless proxy benchmark against Kamailio, as in docs/performance.md:
# builds the deployable binary (dist profile) and runs the shared sip-load harness with
# its own kamailio/stateless.cfg, at 500 and 5,000 calls/s, 3 runs each, in turns.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bench=${SIP_LOAD:-$root/../shared/bench}
cargo build --profile dist --bin ferrosip --manifest-path "$root/Cargo.toml"
bin=$(mktemp -d)/ferrosip
# A copy: a rebuild during the run must not change the binary being measured.
cp "${CARGO_TARGET_DIR:-$root/target}/dist/ferrosip" "$bin"
for rate in 500 5000; do
    "$bench/sip-load" --mode stateless --rate "$rate" --calls $((rate * 8)) --repeat 3 --compare \
        --target "$bin run -f $bench/kamailio/stateless.cfg"
done
