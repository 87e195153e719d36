#!/usr/bin/env bash
# Runs the whole Ferrosip test suite on a fresh machine: installs the real peers the tests
# talk to (SIPp; Kamailio's package for its stock kamailio.cfg, which the config tests
# load), then builds and runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
command -v sipp >/dev/null 2>&1 || need_pkgs+=(sip-tester)
[ -f /etc/kamailio/kamailio.cfg ] || need_pkgs+=(kamailio)
if [ ${#need_pkgs[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    # The kamailio package must not start a service that would take port 5060.
    DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 $SUDO apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}"
    pkill -x kamailio 2>/dev/null || true
fi

export FERROSIP_REQUIRE_STOCK_CFG=1
# The `ci` profile (Cargo.toml) builds without LTO or debug info: the whole build and run
# take ~9 minutes on 2 cores instead of ~27 with `release`. Integration tests run the
# binary of the same build (CARGO_BIN_EXE_ferrosip), so nothing is built twice.
cargo test --workspace --profile ci --no-fail-fast -- --test-threads=2
