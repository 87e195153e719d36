#!/usr/bin/env bash
# Registration benchmark: SIPp registers unique users with digest authentication
# (REGISTER -> 401 -> REGISTER with credentials -> 200) through the proxy, which checks
# them against the subscriber table of SQLite or PostgreSQL and saves the binding in
# memory. Ferrosip and Kamailio run the same config (scripts/bench/registrar.cfg) on the
# same database, in turns; the figures to quote are the ratios of one run.
#
#   SIPp UAC 127.0.0.1:5061 --> proxy 127.0.0.1:5060 (auth_db: DB, usrloc: memory)
#
# Usage: scripts/bench-register.sh [options]
#   --db sqlite|postgres   where the subscriber table lives (sqlite)
#   --users N              distinct users, each registering once per run (20000)
#   --rate R               registrations/s offered (1000)
#   --repeat K             runs per engine, alternating (3)
#   --profile P            cargo profile of the ferrosip binary (release)
#   --only ENGINE          run only ferrosip or only kamailio
#   --out DIR              keep logs and SIPp statistics in DIR
#
# Needs sipp, kamailio with kamailio-sqlite-modules / kamailio-postgres-modules, psql for
# --db postgres, python3, and free ports 5060 and 5061.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
db=sqlite
users=20000
rate=1000
repeat=3
profile=release
out=""
engines="ferrosip kamailio"
while [[ $# -gt 0 ]]; do
    case $1 in
        --db) db=$2; shift 2 ;;
        --users) users=$2; shift 2 ;;
        --rate) rate=$2; shift 2 ;;
        --repeat) repeat=$2; shift 2 ;;
        --profile) profile=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --only) engines=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

work=${out:-$(mktemp -d /tmp/ferrosip-bench-register.XXXXXX)}
mkdir -p "$work"
bin=$root/target/$profile/ferrosip
[[ -x $bin ]] || { echo "build $bin first (cargo build --profile $profile --bin ferrosip)" >&2; exit 2; }
cfg=$root/scripts/bench/registrar.cfg
realm=127.0.0.1
pgdb=ferrosip_bench_register_$$

cleanup() {
    [[ -n ${proxy_pid:-} ]] && kill -- -"$proxy_pid" 2>/dev/null || true
    if [[ $db == postgres ]]; then
        psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $pgdb" >/dev/null 2>&1 || true
    fi
    [[ -z $out ]] && rm -rf "$work"
}
trap cleanup EXIT

case $db in
    sqlite)
        url="sqlite://$work/subscriber.db"
        define=WITH_SQLITE
        ;;
    postgres)
        psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE $pgdb" >/dev/null
        url="postgres://postgres@127.0.0.1/$pgdb"
        define=WITH_POSTGRES
        ;;
    *) echo "--db sqlite|postgres" >&2; exit 2 ;;
esac

echo "schema and $users users in $url" >&2
"$bin" db init --db-url "$url" --modules auth_db,usrloc >/dev/null
python3 - "$users" "$realm" "$work" <<'PY'
import hashlib, sys
n, realm, work = int(sys.argv[1]), sys.argv[2], sys.argv[3]
with open(f"{work}/users.csv", "w") as csv, open(f"{work}/users.sql", "w") as sql:
    csv.write("SEQUENTIAL\n")
    sql.write("BEGIN;\n")
    for i in range(n):
        user, password = f"u{i:07d}", f"pw{i * 7919 % 1000003}"
        csv.write(f"{user};[authentication username={user} password={password}]\n")
        ha1 = hashlib.md5(f"{user}:{realm}:{password}".encode()).hexdigest()
        ha1b = hashlib.md5(f"{user}@{realm}:{realm}:{password}".encode()).hexdigest()
        sql.write("INSERT INTO subscriber (username, domain, password, ha1, ha1b) "
                  f"VALUES ('{user}', '{realm}', '', '{ha1}', '{ha1b}');\n")
    sql.write("COMMIT;\n")
PY
if [[ $db == sqlite ]]; then
    sqlite3 "$work/subscriber.db" < "$work/users.sql"
else
    psql -h 127.0.0.1 -U postgres -q -d "$pgdb" -f "$work/users.sql" >/dev/null
fi

# utime+stime in clock ticks, summed over every process of a session.
session_ticks() {
    local sid=$1 total=0 pid f
    for pid in $(ps -o pid= -s "$sid" 2>/dev/null); do
        f=$(cut -d' ' -f14,15 "/proc/$pid/stat" 2>/dev/null) || continue
        total=$((total + ${f% *} + ${f#* }))
    done
    echo "$total"
}

wait_port() {
    for _ in $(seq 100); do
        ss -lun | grep -q '127.0.0.1:5060 ' && return 0
        sleep 0.1
    done
    echo "proxy did not bind 5060 (log: $work/$1.log)" >&2
    exit 1
}

hz=$(getconf CLK_TCK)
run_one() {
    local engine=$1 n=$2
    local log=$work/$engine-$n.log
    if [[ $engine == ferrosip ]]; then
        setsid "$bin" run -f "$cfg" -A "$define" -A "DBURL=\"$url\"" >"$log" 2>&1 &
    else
        setsid kamailio -DD -E -m 256 -M 16 -f "$cfg" -A "$define" -A "DBURL=\"$url\"" >"$log" 2>&1 &
    fi
    proxy_pid=$!
    wait_port "$engine-$n"
    sleep 0.5
    local before start end after
    before=$(session_ticks "$proxy_pid")
    start=$(date +%s.%N)
    sipp 127.0.0.1:5060 -sf "$root/scripts/bench/uac_register_auth.xml" -inf "$work/users.csv" \
        -i 127.0.0.1 -p 5061 -r "$rate" -m "$users" -l 2000 -timeout $((users / rate + 30)) \
        -bg -trace_stat -stf "$work/$engine-$n.csv" -nostdin >/dev/null 2>&1 || true
    # -bg returns at once: wait for the UAC to finish.
    while pgrep -f "sipp 127.0.0.1:5060 -sf .*uac_register_auth" >/dev/null; do sleep 0.2; done
    end=$(date +%s.%N)
    after=$(session_ticks "$proxy_pid")
    local ok failed
    ok=$(tail -1 "$work/$engine-$n.csv" | awk -F';' '{print $16}')
    failed=$(tail -1 "$work/$engine-$n.csv" | awk -F';' '{print $18}')
    kill -- -"$proxy_pid" 2>/dev/null || true
    wait "$proxy_pid" 2>/dev/null || true
    proxy_pid=""
    awk -v e="$engine" -v ok="$ok" -v f="$failed" -v t=$((after - before)) -v hz="$hz" \
        -v s="$start" -v en="$end" 'BEGIN {
            us = ok > 0 ? t * 1e6 / hz / ok : 0;
            printf "RESULT engine=%s registered=%d failed=%d reg_per_s=%.0f cpu_us_per_reg=%.1f\n",
                e, ok, f, ok / (en - s), us }'
}

results=$work/results
: >"$results"
for n in $(seq "$repeat"); do
    for engine in $engines; do
        run_one "$engine" "$n" | tee -a "$results"
    done
done
for engine in $engines; do
    grep "engine=$engine " "$results" | sed 's/.*cpu_us_per_reg=//' | sort -n |
        awk -v e="$engine" '{v[NR]=$1} END {printf "MEDIAN engine=%s cpu_us_per_reg=%s\n", e, v[int((NR+1)/2)]}'
done | tee -a "$results"
awk '/^MEDIAN engine=ferrosip/ {split($3,a,"="); f=a[2]} /^MEDIAN engine=kamailio/ {split($3,a,"="); k=a[2]}
     END { if (k > 0 && f > 0) printf "RATIO cpu_per_reg=%.3f (ferrosip/kamailio, db=%s)\n", f / k, db }' db="$db" "$results"
