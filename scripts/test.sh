#!/usr/bin/env bash
# Runs the whole Ferrosip test suite on a fresh machine: installs the real peers the tests
# talk to (SIPp; Kamailio's packages for its stock kamailio.cfg and its SQL scripts, which
# the config tests load and run, and its kamcmd/kamctl; Prometheus's promtool, which checks
# /metrics), then builds and runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
command -v sipp >/dev/null 2>&1 || need_pkgs+=(sip-tester)
# promtool validates /metrics (tests/tests/metrics.rs); its package's service is kept
# from starting by the same policy-rc.d guard and disabled afterwards.
command -v promtool >/dev/null 2>&1 || need_pkgs+=(prometheus)
[ -f /etc/kamailio/kamailio.cfg ] || need_pkgs+=(kamailio)
# Kamailio's own table creation scripts, which the stock-config tests load.
[ -f /usr/share/kamailio/mysql/standard-create.sql ] || need_pkgs+=(kamailio-mysql-modules)
[ -f /usr/share/kamailio/postgres/standard-create.sql ] || need_pkgs+=(kamailio-postgres-modules)
if [ ${#need_pkgs[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    # The kamailio package must not start (or leave enabled) a service that would take
    # port 5060: while it installs, a policy-rc.d that refuses every start is in place
    # (unless the machine already has one, which then decides), and the service is
    # disabled afterwards.
    guard=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        guard=/usr/sbin/policy-rc.d
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$guard" >/dev/null
        $SUDO chmod 755 "$guard"
    fi
    status=0
    DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 $SUDO apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" || status=$?
    [ -z "$guard" ] || $SUDO rm -f "$guard"
    [ "$status" -eq 0 ] || exit "$status"
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        $SUDO systemctl disable --now kamailio >/dev/null 2>&1 || true
        $SUDO systemctl disable --now prometheus >/dev/null 2>&1 || true
    else
        $SUDO update-rc.d kamailio disable >/dev/null 2>&1 || true
        $SUDO update-rc.d prometheus disable >/dev/null 2>&1 || true
    fi
fi

export FERROSIP_REQUIRE_STOCK_CFG=1
# The `ci` profile (Cargo.toml) builds without LTO or debug info: the whole build and run
# take ~9 minutes on 2 cores instead of ~27 with `release`. The integration tests
# (tests/tests/) run the ferrosip binary, which their testkit (tests/src/bin.rs) builds
# with the same profile and target directory before the first use, so it is never stale.
cargo test --workspace --profile ci --no-fail-fast -- --test-threads=2
