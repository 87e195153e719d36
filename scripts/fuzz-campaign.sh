#!/usr/bin/env bash
# Fuzz campaign on stable (issue 18 point 4): the seeded mutation loop of
# crates/fuzz-check for MINUTES per target, every target or the ones named.
# Failing inputs land in target/fuzz-failures/<target>/; the exit status is 1 if any.
# Add each one, once fixed, to tests/corpus/fuzz/<target>/ as a regression input.
#
#   scripts/fuzz-campaign.sh [MINUTES] [SEED] [TARGET...]   (defaults: 10 minutes, seed 1)
#
# With a nightly toolchain and cargo-fuzz, the same checks run coverage-guided:
#   cd fuzz && cargo +nightly fuzz run message ../tests/corpus/fuzz/message
set -euo pipefail
cd "$(dirname "$0")/.."
minutes="${1:-10}"
seed="${2:-1}"
shift $(( $# > 2 ? 2 : $# )) || true
cargo build --profile ci -p ferrosip-fuzz-check --example campaign
exec target/ci/examples/campaign "$(( minutes * 60 ))" "$seed" "$@"
