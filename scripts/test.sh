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
# Kamailio's newer stock configs come from Debian suites apt does not know here (trixie:
# 6.0, sid: 6.1), so their debs are fetched over plain HTTP: the file name and SHA256 are
# read from the suite's index, so a point release does not break the download and a
# corrupted or substituted file is refused. Each is unpacked beside target/packaged
# (packaged-6.0, packaged-6.1), where tests/src/packaged.rs looks for them.
unpack_suite_pkgs() {
    local suite=$1 dir=$2
    shift 2
    [ -f "$dir/.unpacked" ] && return 0
    local mirror=http://deb.debian.org/debian tmp
    tmp=$(mktemp -d)
    curl -fsS -o "$tmp/Packages.xz" "$mirror/dists/$suite/main/binary-amd64/Packages.xz"
    xz -d "$tmp/Packages.xz"
    rm -rf "$dir"
    mkdir -p "$dir"
    local pkg file sha
    for pkg in "$@"; do
        read -r file sha < <(awk -v want="$pkg" '
            /^Package: / { p = $2 }
            p == want && /^Filename: / { f = $2 }
            p == want && /^SHA256: / { s = $2 }
            /^$/ { if (f != "" && s != "") { print f, s; exit } p = ""; f = ""; s = "" }
        ' "$tmp/Packages")
        [ -n "${file:-}" ] || { echo "no $pkg in $suite" >&2; exit 1; }
        curl -fsS -o "$tmp/$pkg.deb" "$mirror/$file"
        echo "$sha  $tmp/$pkg.deb" | sha256sum -c --quiet -
        dpkg-deb -x "$tmp/$pkg.deb" "$dir"
    done
    rm -rf "$tmp"
    touch "$dir/.unpacked"
}
unpack_suite_pkgs trixie target/packaged-6.0 kamailio kamailio-mysql-modules kamailio-postgres-modules
unpack_suite_pkgs sid target/packaged-6.1 kamailio kamailio-mysql-modules kamailio-postgres-modules

# Kamailio 5.8 and the development branch are in no Debian suite. Where a Kamailio git
# repository is on the machine (KAMAILIO_GIT_DIR, by default where the tool library's
# `fetch github:kamailio/kamailio` puts it), their stock config and SQL scripts are laid
# out as the packages would install them (packaged-5.8, packaged-dev) and the config
# tests run them too; without one, those tests say they are skipped.
kamailio_git=${KAMAILIO_GIT_DIR:-/work/.mirror/kamailio+kamailio/repo}
layout_from_git() {
    local ref=$1 dir=$2 commit
    commit=$(git --git-dir="$kamailio_git" rev-parse "$ref^{commit}") || return 0
    [ "$(cat "$dir/.commit" 2>/dev/null)" = "$commit" ] && return 0
    rm -rf "$dir"
    mkdir -p "$dir/etc/kamailio" "$dir/usr/share/kamailio"
    git --git-dir="$kamailio_git" show "$commit:etc/kamailio.cfg" >"$dir/etc/kamailio/kamailio.cfg"
    local db
    for db in mysql postgres; do
        mkdir -p "$dir/usr/share/kamailio/$db"
        git --git-dir="$kamailio_git" archive "$commit" "utils/kamctl/$db" |
            tar -x --strip-components=3 -C "$dir/usr/share/kamailio/$db"
    done
    echo "$commit" >"$dir/.commit"
}
if [ -d "$kamailio_git" ]; then
    layout_from_git 5.8 target/packaged-5.8
    layout_from_git HEAD target/packaged-dev
fi

export FERROSIP_REQUIRE_STOCK_CFG=1
# The `ci` profile (Cargo.toml) builds without LTO or debug info. The integration tests
# (tests/tests/) run the ferrosip binary, built here with the same profile and named in
# FERROSIP_TEST_BINARY (without it, the testkit, tests/src/bin.rs, builds it itself).
# It is built with every target of the workspace, so with the same features as the
# tests: building it alone would build sqlx and its dependencies a second time.
# cargo-nextest, when the machine has it, runs tests of every file at once in the groups
# of .config/nextest.toml (most tests wait on the network); doc tests run after it, as
# nextest does not run them. Without nextest, cargo test runs file after file.
cargo build --profile ci --workspace --all-targets
export FERROSIP_TEST_BINARY="$PWD/target/ci/ferrosip"
if cargo nextest --version >/dev/null 2>&1; then
    status=0
    cargo nextest run --workspace --cargo-profile ci || status=$?
    cargo test --workspace --profile ci --doc || status=$?
    exit $status
fi
cargo test --workspace --profile ci --no-fail-fast -- --test-threads=2
