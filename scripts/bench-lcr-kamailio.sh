#!/usr/bin/env bash
# LCR at carrier scale, side by side with Kamailio's own lcr module (issue 22): the same
# rules in the same PostgreSQL database, loaded by each engine.
#
# 1. `lcr_scale RULES postgres://.../DB` (modules/lcr/examples/lcr_scale.rs) imports RULES
#    prefixes with two targets each into Kamailio's lcr tables (Ferrosip's import, COPY)
#    and prints Ferrosip's load, reload, memory and match figures.
# 2. Kamailio 5.6 (the Debian package, unpacked into target/packaged by scripts/test.sh)
#    starts with lcr on the same database and a control socket; the script reports its
#    start-up time (process start until the control socket answers: the rules load in
#    lcr's mod_init, before that), the shared memory in use after the load, the time of
#    `kamcmd lcr.reload` and the shared memory at its peak.
#
# Usage: scripts/bench-lcr-kamailio.sh [RULES]   (default 1000000)
# Needs PostgreSQL on 127.0.0.1:5432 (trust auth). It creates the database
# ferrosip_lcr_bench, drops it at the end, and ends only the Kamailio it started.
set -euo pipefail
cd "$(dirname "$0")/.."
rules=${1:-1000000}
db=ferrosip_lcr_bench
packaged=${FERROSIP_PACKAGED_ROOT:-$PWD/target/packaged}
kamailio=$packaged/usr/sbin/kamailio
kamcmd=$packaged/usr/sbin/kamcmd
modules=$packaged/usr/lib/x86_64-linux-gnu/kamailio/modules
[ -x "$kamailio" ] || { echo "no $kamailio: run scripts/test.sh once (it unpacks Kamailio)" >&2; exit 1; }

work=$(mktemp -d)
kam_pid=""
cleanup() {
    [ -n "$kam_pid" ] && kill "$kam_pid" 2>/dev/null && wait "$kam_pid" 2>/dev/null
    psql -qh 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

psql -qh 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null
cargo build -q --release -p ferrosip-mod-lcr --example lcr_scale
echo "== Ferrosip (lcr_scale $rules, PostgreSQL)"
./target/release/examples/lcr_scale "$rules" "postgres://postgres@127.0.0.1/$db"

ctl=$work/kamailio_ctl
cat >"$work/kamailio.cfg" <<EOF
#!KAMAILIO
debug=2
log_stderror=yes
children=1
listen=udp:127.0.0.1:15099
mpath="$modules/"
loadmodule "db_postgres.so"
loadmodule "tm.so"
loadmodule "pv.so"
loadmodule "kex.so"
loadmodule "ctl.so"
loadmodule "lcr.so"
modparam("ctl", "binrpc", "unix:$ctl")
modparam("lcr", "db_url", "postgres://postgres@127.0.0.1/$db")
modparam("lcr", "gw_uri_avp", "\$avp(i:709)")
modparam("lcr", "ruri_user_avp", "\$avp(i:500)")
# One hash bucket per rule, as an operator would size it for a deck this large.
modparam("lcr", "lcr_rule_hash_size", $rules)
request_route { drop; }
EOF
shm_used() {
    "$kamcmd" -s "unix:$ctl" core.shmmem | awk '$1 == "real_used:" { print $2 }'
}
shm_peak() {
    "$kamcmd" -s "unix:$ctl" core.shmmem | awk '$1 == "max_used:" { print $2 }'
}
echo "== Kamailio $("$kamailio" -v | head -1 | awk '{print $3}') lcr ($rules rules, PostgreSQL)"
start=$(date +%s.%N)
LD_LIBRARY_PATH=$packaged/usr/lib/x86_64-linux-gnu/kamailio "$kamailio" -f "$work/kamailio.cfg" -DD -E -m 4096 -M 1024 -Y "$work" >"$work/kamailio.log" 2>&1 &
kam_pid=$!
until "$kamcmd" -s "unix:$ctl" core.uptime >/dev/null 2>&1; do
    kill -0 "$kam_pid" 2>/dev/null || { cat "$work/kamailio.log"; exit 1; }
    sleep 0.05
done
ready=$(date +%s.%N)
used=$(shm_used)
printf 'start-up (rules loaded in mod_init): %.2f s; shared memory used %d MiB\n' \
    "$(echo "$ready - $start" | bc)" $((used / 1048576))
start=$(date +%s.%N)
"$kamcmd" -s "unix:$ctl" lcr.reload >/dev/null
done_at=$(date +%s.%N)
printf 'lcr.reload: %.2f s; shared memory used after it %d MiB, peak %d MiB\n' \
    "$(echo "$done_at - $start" | bc)" $(($(shm_used) / 1048576)) $(($(shm_peak) / 1048576))
