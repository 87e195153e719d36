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
# which talk to our control socket), Prometheus's (promtool checks /metrics) and
# rtpengine's (tests/rtp.rs runs the daemon in the foreground as the media relay). The
# tests find them through FERROSIP_PACKAGED_ROOT (tests/src/packaged.rs).
packaged=target/packaged
unpack_pkgs=(kamailio kamailio-mysql-modules kamailio-postgres-modules prometheus rtpengine-daemon)
if [ ! -f "$packaged/.unpacked" ] || [ ! -x "$packaged/usr/bin/rtpengine" ]; then
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

# The unpacked rtpengine needs its shared libraries, which are installed (libraries create
# no service); only when the loader misses some.
if ldd "$packaged/usr/bin/rtpengine" | grep -q "not found"; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        libpcre3 libevent-2.1-7 libevent-pthreads-2.1-7 libxmlrpc-core-c3 libhiredis0.14 \
        libjson-glib-1.0-0 libwebsockets17 libip4tc2 libip6tc2 libavcodec59 libavformat59 \
        libavutil57 libswresample4 libspandsp2 libbcg729-0 libmosquitto1 libmariadb3 \
        libpcap0.8 libglib2.0-0 libssl3
fi

export FERROSIP_REQUIRE_STOCK_CFG=1
# The `ci` profile (Cargo.toml) builds without LTO or debug info: the whole build and run
# take ~9 minutes on 2 cores instead of ~27 with `release`. The integration tests
# (tests/tests/) run the ferrosip binary, which their testkit (tests/src/bin.rs) builds
# with the same profile and target directory before the first use, so it is never stale.
cargo test --workspace --profile ci --no-fail-fast -- --test-threads=2
