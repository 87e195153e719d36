#!/usr/bin/env bash
# Runs the whole Ferrosip test suite on a fresh machine: gets the real peers the tests
# talk to (SIPp; Kamailio's stock kamailio.cfg, SQL scripts, kamcmd and kamctl;
# Prometheus's promtool), then builds and runs every test of the workspace. It starts no
# system service and ends only the processes it started.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

# Peers without a system service are installed: SIPp, and the readline library that
# Kamailio's kamcmd links.
need_pkgs=()
command -v sipp >/dev/null 2>&1 || need_pkgs+=(sip-tester)
ldconfig -p | grep -q 'libreadline\.so\.8 ' || need_pkgs+=(libreadline8)
# tests/tls.rs makes its certificates and checks SNI with the openssl CLI.
command -v openssl >/dev/null 2>&1 || need_pkgs+=(openssl)
if [ ${#need_pkgs[@]} -gt 0 ]; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}"
fi

# Packages that come with a system service are unpacked into target/packaged, never
# installed, so the suite creates, starts and enables no service: Kamailio's (its stock
# kamailio.cfg and SQL scripts, which the config tests load and run, and kamcmd/kamctl,
# which talk to our control socket) and Prometheus's (promtool checks /metrics). The tests
# find them through FERROSIP_PACKAGED_ROOT (tests/src/packaged.rs).
packaged=target/packaged
unpack_pkgs=(kamailio kamailio-mysql-modules kamailio-postgres-modules prometheus)
if [ ! -f "$packaged/.unpacked" ]; then
    debs=$(mktemp -d)
    if ! (cd "$debs" && apt-get download -qq "${unpack_pkgs[@]}" 2>/dev/null); then
        $SUDO apt-get update -qq
        (cd "$debs" && apt-get download -qq "${unpack_pkgs[@]}")
    fi
    rm -rf "$packaged"
    mkdir -p "$packaged"
    for deb in "$debs"/*.deb; do dpkg-deb -x "$deb" "$packaged"; done
    rm -rf "$debs"
    touch "$packaged/.unpacked"
fi
export FERROSIP_PACKAGED_ROOT="$PWD/$packaged"

export FERROSIP_REQUIRE_STOCK_CFG=1
# The `ci` profile (Cargo.toml) builds without LTO or debug info: the whole build and run
# take ~9 minutes on 2 cores instead of ~27 with `release`. The integration tests
# (tests/tests/) run the ferrosip binary, which their testkit (tests/src/bin.rs) builds
# with the same profile and target directory before the first use, so it is never stale.
cargo test --workspace --profile ci --no-fail-fast -- --test-threads=2
