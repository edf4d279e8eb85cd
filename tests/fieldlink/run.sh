#!/usr/bin/env bash
# The field-link benchmark: napsync against PouchDB on the same simulated
# lines, in one run, written into the "Field links" section of
# docs/benchmarks.md (between its markers; the rest of the file is left
# as it is). Needs root (network namespaces).
#
#   tests/fieldlink/run.sh [--runs N] [--limit S] [--out FILE] [--build DIR]
#                          [--workdir DIR] [--keep]
#
#   --runs N      runs of each figure (default 3: min, median and max)
#   --limit S     how long a run on the line with cuts may take before it
#                 counts as not completed (default 300)
#   --out FILE    the document whose "Field links" section is written
#                 (default docs/benchmarks.md)
#   --build DIR   the configured build tree in which napsyncd, napsync and
#                 napsync-linkproxy are built (default build/ of the checkout)
#   --workdir DIR PostgreSQL, certificates, databases, stores and logs
#                 (default: a new temporary directory, removed at exit
#                 unless --keep)
#
# The line (tests/fieldlink/link.sh): two network namespaces joined by a
# veth pair, tc tbf for the bandwidth and an iptables statistic match for
# the loss on both ends, napsync-linkproxy in the server namespace for the
# delay and the cuts; it counts the bytes each way. Server side: napsyncd
# (its PostgreSQL on this machine, reached through its Unix socket) and
# pouchdb-server (npm, LevelDB) behind stunnel (TLS, as napsyncd has it).
# Client side: the napsync CLI with a store of its own, and a pouchdb-node
# client with a LevelDB database of its own (peer/pouch.js). The same 301
# records on both (peer/plan.js): a plan, 60 indicators of about 400 bytes
# of JSON and 240 indicator reports of about 300.
#
# Figures, on the poor and the fair line: (a) the first pull of the whole
# plan into an empty store; (b) 20 new reports saved offline, then pushed
# and the plan pulled again (napsync sync; PouchDB replicate to, then
# from). On the poor line cut every 10 s: (c1) the first pull and (c2) the
# push of 20 and pull, each with the system's own retrying mode (napsync
# sync --watch until it has caught up; PouchDB live replication with retry
# until it has caught up), from a device prepared on an unshaped line.
# npm packages: tests/fieldlink/peer/package.json and its lock, installed
# with `npm ci` into var/cache/fieldlink-peer/ (or NS_PEER_CACHE).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE=$ROOT/tests/fieldlink
PG_SH=$ROOT/tests/lib/pg.sh
CA_SH=$ROOT/deploy/ca.sh
LINK_SH=$HERE/link.sh

runs=3
limit=300
out=$ROOT/docs/benchmarks.md
build=$ROOT/build
work=''
keep=0

die() {
    echo "fieldlink: $*" >&2
    exit 1
}

note() {
    echo "fieldlink: $*" >&2
}

usage() {
    sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "${BASH_SOURCE[0]}"
}

while [ $# -gt 0 ]; do
    case $1 in
    --runs)
        { [ $# -ge 2 ] && [[ $2 =~ ^[1-9]$ ]]; } || die "--runs needs 1 to 9"
        runs=$2
        shift
        ;;
    --limit)
        { [ $# -ge 2 ] && [[ $2 =~ ^[1-9][0-9]{0,3}$ ]]; } || die "--limit needs whole seconds"
        limit=$2
        shift
        ;;
    --out)
        [ $# -ge 2 ] || die "--out needs a file"
        out=$2
        shift
        ;;
    --build)
        [ $# -ge 2 ] || die "--build needs a directory"
        build=$2
        shift
        ;;
    --workdir)
        [ $# -ge 2 ] || die "--workdir needs a directory"
        work=$2
        shift
        ;;
    --keep) keep=1 ;;
    -h | --help)
        usage
        exit 0
        ;;
    *) die "unknown option '$1' (see --help)" ;;
    esac
    shift
done

[ "$(id -u)" = 0 ] || die "needs root (network namespaces, tc, iptables)"
build=$(cd "$build" 2>/dev/null && pwd) || die "no build directory $build (cmake --build first)"
# The figures are the checkout's as it is: what they run is built from it.
cmake --build "$build" -j 2 --target napsyncd napsync_cli napsync_linkproxy >&2 ||
    die "cannot build napsyncd, napsync and napsync-linkproxy in $build"
NAPSYNCD=$build/napsyncd
NAPSYNC=$build/napsync
LINKPROXY=$build/napsync-linkproxy
for b in "$NAPSYNCD" "$NAPSYNC" "$LINKPROXY"; do
    [ -x "$b" ] || die "$b is missing: build the tree first (cmake --build $build)"
done

# ---- packages ------------------------------------------------------------------------------
"$ROOT/tests/lib/deps.sh" --test >&2
command -v stunnel4 >/dev/null || "$ROOT/tests/lib/deps.sh" stunnel4 >&2
# NodeSource's nodejs brings its own npm; Debian's comes as two packages.
command -v node >/dev/null || "$ROOT/tests/lib/deps.sh" nodejs npm >&2
command -v npm >/dev/null || "$ROOT/tests/lib/deps.sh" npm >&2
for t in ip tc iptables psql node npm stunnel4 awk; do
    command -v "$t" >/dev/null || die "$t is missing"
done
"$LINK_SH" check >&2

# The peer's node_modules, outside the source tree (whose C and shell files
# the linters walk), installed again only when the lock file changed.
PEER=${NS_PEER_CACHE:-$ROOT/var/cache/fieldlink-peer}
mkdir -p "$PEER"
if ! cmp -s "$HERE/peer/package-lock.json" "$PEER/package-lock.json" ||
    ! cmp -s "$HERE/peer/package.json" "$PEER/package.json" || [ ! -d "$PEER/node_modules" ]; then
    note "npm ci in $PEER"
    cp "$HERE/peer/package.json" "$HERE/peer/package-lock.json" "$PEER/"
    # No install scripts: LevelDB's native module comes prebuilt in the package.
    (cd "$PEER" && npm ci --ignore-scripts --no-audit --no-fund >&2) || die "npm ci failed"
fi
POUCHDB_SERVER=$PEER/node_modules/.bin/pouchdb-server
[ -x "$POUCHDB_SERVER" ] || die "no pouchdb-server in $PEER"
export NODE_PATH=$PEER/node_modules

# ---- working directory, cleanup -------------------------------------------------------------
made_work=0
if [ -z "$work" ]; then
    work=$(mktemp -d "${TMPDIR:-/tmp}/napsync-fieldlink.XXXXXX")
    made_work=1
fi
mkdir -p "$work"
work=$(cd "$work" && pwd)
PG_DIR=$work/pg
CA_DIR=$work/ca
LOGS=$work/logs
DATA=$work/data
STORES=$work/stores
rm -rf "$STORES" "$work/pouch" "$work/stats" "$work/sql"
mkdir -p "$LOGS" "$DATA" "$STORES" "$work/pouch/server" "$work/pouch/local" "$work/stats"
# The migrations as they are now: every database of the run is made from
# one template, and napsyncd refuses a migration changed after it ran.
cp -r "$ROOT/sql" "$work/sql"

FL_ID=''
daemon_pid=''
proxy_pid=''
cleanup() {
    local rc=$?
    [ -z "$proxy_pid" ] || kill -TERM "$proxy_pid" 2>/dev/null || true
    [ -z "$daemon_pid" ] || kill -TERM "$daemon_pid" 2>/dev/null || true
    # The namespaces go with every process still in them (pouchdb-server,
    # stunnel, a napsync left by an interrupted run).
    [ -z "$FL_ID" ] || "$LINK_SH" down "$FL_ID" || true
    wait 2>/dev/null || true
    "$PG_SH" stop "$PG_DIR" fast >/dev/null 2>&1 || true
    if [ "$made_work" = 1 ] && [ "$keep" = 0 ]; then
        rm -rf "$work"
    elif [ "$rc" != 0 ]; then
        note "logs kept in $LOGS"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

now_ms() { echo $(($(date +%s%N) / 1000000)); }

# ---- PostgreSQL, certificates, the seeded template ------------------------------------------
# shellcheck source=tests/lib/pgclient.sh
. "$ROOT/tests/lib/pgclient.sh"

DAEMON_ROLE=napsyncd
TEMPLATE=flb_template
ORG=fieldlink
conninfo() { printf "host=%s port=%s dbname=%s user=%s" "$PGH" "$PGP" "$1" "$DAEMON_ROLE"; }

SERVER_IP=169.254.77.1
make_certs() {
    "$CA_SH" init "$CA_DIR" "napsync field-link CA" >/dev/null
    "$CA_SH" server "$CA_DIR" napsyncd "IP:$SERVER_IP" IP:127.0.0.1 DNS:localhost >/dev/null
    FP_SEED=$("$CA_SH" device "$CA_DIR" fl-seed | tail -n 1)
    FP_FIELD=$("$CA_SH" device "$CA_DIR" fl-field | tail -n 1)
    [[ $FP_SEED =~ ^[0-9a-f]{64}$ && $FP_FIELD =~ ^[0-9a-f]{64}$ ]] || die "unexpected fingerprints"
}

# napsync as a device: napsync_as DEVICE SERVER STORE ARGS...
napsync_as() {
    local dev=$1 server=$2 store=$3
    shift 3
    "$NAPSYNC" --server "$server" --ca "$CA_DIR/ca.crt" --cert "$CA_DIR/$dev.crt" \
        --key "$CA_DIR/$dev.key" --store "$store" "$@"
}

# The daemon for a database, on ADDRESS:PORT, in namespace NS ("" for this one).
start_daemon() {
    local db=$1 listen=$2 ns=$3 tag=$4 log i
    log=$LOGS/napsyncd-$tag.log
    local pre=()
    [ -z "$ns" ] || pre=(ip netns exec "$ns")
    "${pre[@]}" "$NAPSYNCD" --listen "$listen" --tls-cert "$CA_DIR/napsyncd.crt" \
        --tls-key "$CA_DIR/napsyncd.key" --tls-ca "$CA_DIR/ca.crt" \
        --database "$(conninfo "$db")" --sql-dir "$work/sql" --log-level info \
        --http-listen off >>"$log" 2>&1 &
    daemon_pid=$!
    for ((i = 0; i < 300; i++)); do
        grep -qs "listening on $listen" "$log" && return 0
        kill -0 "$daemon_pid" 2>/dev/null || break
        sleep 0.1
    done
    tail -n 20 "$log" >&2
    die "napsyncd did not start (log: $log)"
}

stop_daemon() {
    [ -n "$daemon_pid" ] || return 0
    kill -TERM "$daemon_pid"
    local rc=0
    wait "$daemon_pid" || rc=$?
    daemon_pid=''
    [ "$rc" = 0 ] || die "napsyncd exited with status $rc on SIGTERM"
}

make_template() {
    sql postgres -v role="$DAEMON_ROLE" -v db="$TEMPLATE" >/dev/null <<'SQL'
SELECT format('CREATE ROLE %I LOGIN NOSUPERUSER NOBYPASSRLS', :'role')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'role') \gexec
SELECT format('DROP DATABASE IF EXISTS %I', :'db') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'role') \gexec
SQL
    "$NAPSYNCD" --database "$(conninfo "$TEMPLATE")" --sql-dir "$work/sql" \
        --tls-cert "$CA_DIR/napsyncd.crt" --tls-key "$CA_DIR/napsyncd.key" \
        --tls-ca "$CA_DIR/ca.crt" --migrate >"$LOGS/migrate.log" 2>&1 ||
        die "migrations failed: see $LOGS/migrate.log"
    sql "$TEMPLATE" -v org="$ORG" -v fs="$FP_SEED" -v ff="$FP_FIELD" >/dev/null <<'SQL'
INSERT INTO organisations (code, name, kind, country, default_role)
VALUES (:'org', 'Ministry of the field-link benchmark', 'ministry', 'ZZ', 'coordinator');
SELECT napsync_register_device(:'org', 'Field Coordinator', 'coordinator', 'fl-seed', :'fs');
SELECT napsync_register_device(:'org', 'Field Coordinator', 'coordinator', 'fl-field', :'ff');
SQL
    # The plan goes in through napsyncd, as a coordinator imports it.
    local port
    port=$(shuf -i 20000-60000 -n 1)
    start_daemon "$TEMPLATE" "127.0.0.1:$port" "" seed
    napsync_as fl-seed "127.0.0.1:$port" "$STORES/seed.db" import plan "$DATA/plan.json" \
        --json >"$LOGS/import.log" || die "napsync import failed: see $LOGS/import.log"
    stop_daemon
    sql "$TEMPLATE" <<<"ANALYZE" >/dev/null
}

fresh_db() {
    sql postgres -v db="$1" -v t="$TEMPLATE" -v role="$DAEMON_ROLE" >/dev/null <<'SQL'
SELECT format('DROP DATABASE IF EXISTS %I WITH (FORCE)', :'db') \gexec
SELECT format('CREATE DATABASE %I TEMPLATE %I OWNER %I', :'db', :'t', :'role') \gexec
SQL
}

drop_db() {
    sql postgres -v db="$1" >/dev/null <<<"SELECT format('DROP DATABASE IF EXISTS %I WITH (FORCE)', :'db') \gexec"
}

# ---- the line ------------------------------------------------------------------------------
SNS='' CNS=''
NS_PORT=7444      # napsyncd, on the server namespace's loopback
POUCH_PORT=5984   # pouchdb-server, there
STUNNEL_PORT=5985 # stunnel in front of it, there
LINE_NS=7443      # the proxy's ports on the line
LINE_POUCH=5443

line_up() {
    local v
    v=$("$LINK_SH" up bench --owner $$)
    FL_ID=$(sed -n 's/^FL_ID=//p' <<<"$v")
    SNS=$(sed -n 's/^FL_SERVER_NS=//p' <<<"$v")
    CNS=$(sed -n 's/^FL_CLIENT_NS=//p' <<<"$v")
    [ "$(sed -n 's/^FL_SERVER_IP=//p' <<<"$v")" = "$SERVER_IP" ] || die "unexpected server address: $v"
}

# The profile's delay and cuts (the proxy's) into DELAY_MS, CUT_MS, CUT_FIRST_MS.
DELAY_MS=0 CUT_MS=0 CUT_FIRST_MS=0
set_line() {
    local v
    "$LINK_SH" shape "$FL_ID" "$1"
    v=$("$LINK_SH" profile "$1")
    DELAY_MS=$(sed -n 's/^FL_DELAY_MS=//p' <<<"$v")
    CUT_MS=$(sed -n 's/^FL_CUT_MS=//p' <<<"$v")
    CUT_FIRST_MS=$(sed -n 's/^FL_CUT_FIRST_MS=//p' <<<"$v")
}

# The proxy for one measured step: proxy_start TAG LINE_PORT TARGET_PORT
# DELAY CUT [FIRST_CUT].
PROXY_STATS=''
proxy_start() {
    local tag=$1 lport=$2 tport=$3 delay=$4 cut=$5 first=${6:-0} log i
    local cuts=(--cut-every "$cut")
    [ "$first" = 0 ] || cuts+=(--cut-first "$first")
    log=$LOGS/linkproxy-$tag.log
    PROXY_STATS=$work/stats/$tag
    rm -f "$PROXY_STATS"
    ip netns exec "$SNS" "$LINKPROXY" --listen "$SERVER_IP:$lport" --target "127.0.0.1:$tport" \
        --delay "$delay" "${cuts[@]}" --stats "$PROXY_STATS" 2>"$log" &
    proxy_pid=$!
    for ((i = 0; i < 100; i++)); do
        grep -qs "listening on" "$log" && return 0
        kill -0 "$proxy_pid" 2>/dev/null || break
        sleep 0.05
    done
    die "napsync-linkproxy did not start (log: $log)"
}

proxy_stop() {
    kill -TERM "$proxy_pid"
    wait "$proxy_pid" || die "napsync-linkproxy failed"
    proxy_pid=''
}

stat_of() { awk -v k="$1" '$1 == k {print $2}' "$PROXY_STATS"; }

WIRE_UP0=0 WIRE_DOWN0=0
wire_mark() {
    local v
    v=$("$LINK_SH" wire "$FL_ID")
    WIRE_UP0=$(sed -E 's/.*FL_WIRE_UP=([0-9]+).*/\1/' <<<"$v")
    WIRE_DOWN0=$(sed -E 's/.*FL_WIRE_DOWN=([0-9]+).*/\1/' <<<"$v")
}

# Results: R[SYS|SCEN|PROFILE|RUN|FIELD]; fields ms, up, down, wup, wdown,
# conns, cut, ok (1 completed, 0 not), note.
declare -A R
measured() {
    local key=$1 ms=$2 ok=$3 v
    R[$key|ms]=$ms
    R[$key|ok]=$ok
    R[$key|up]=$(stat_of up_bytes)
    R[$key|down]=$(stat_of down_bytes)
    R[$key|conns]=$(stat_of connections)
    R[$key|cut]=$(stat_of cut_connections)
    v=$("$LINK_SH" wire "$FL_ID")
    R[$key|wup]=$(($(sed -E 's/.*FL_WIRE_UP=([0-9]+).*/\1/' <<<"$v") - WIRE_UP0))
    R[$key|wdown]=$(($(sed -E 's/.*FL_WIRE_DOWN=([0-9]+).*/\1/' <<<"$v") - WIRE_DOWN0))
    note "$key: $([ "$ok" = 1 ] && echo "$ms ms" || echo "NOT COMPLETED after $ms ms"), up ${R[$key|up]} B, down ${R[$key|down]} B, ${R[$key|conns]} connections, ${R[$key|cut]} cut"
}

# A run that completed with a wrong result (records missing, changes left
# unsent): it counts as not completed, and the table says why.
wrong() {
    R[$1|ok]=0
    R[$1|note]="wrong: $2"
    note "$1: WRONG: $2"
}

# ---- napsync ----------------------------------------------------------------------------------
PLAN_ID=''
LINE_TIMEOUT=120000 # ms: --timeout of the napsync commands on the line
ns_line() { echo "$SERVER_IP:$LINE_NS"; }

# A napsync command of the field device in the client namespace, through the line.
ns_field() {
    local store=$1
    shift
    ip netns exec "$CNS" "$NAPSYNC" --server "$(ns_line)" --ca "$CA_DIR/ca.crt" \
        --cert "$CA_DIR/fl-field.crt" --key "$CA_DIR/fl-field.key" --store "$store" "$@"
}

json_num() { sed -nE "s/.*\"$1\":([0-9]+).*/\1/p" <<<"$2" | head -n 1; }

# The replica's count of a type (offline).
ns_count() { "$NAPSYNC" --store "$1" list "$2" --json | wc -l; }

# Saves the 20 new reports in the store, offline.
ns_put_new() {
    local store=$1 line
    local -a f
    while IFS= read -r line; do
        IFS=$'\t' read -r -a f <<<"$line"
        "$NAPSYNC" --store "$store" put indicator_report "${f[@]}" --json >/dev/null ||
            die "napsync put failed"
    done <"$DATA/new.tsv"
}

# One timed one-shot sync through the running proxy, which it stops:
# ns_sync KEY STORE [default]; "default" leaves napsync's own request
# timeout. Sets SYNC_OUT.
SYNC_OUT=''
ns_sync() {
    local key=$1 store=$2 t0 t1 rc=0
    local timeout=(--timeout "$LINE_TIMEOUT")
    [ "${3:-}" != default ] || timeout=()
    wire_mark
    t0=$(now_ms)
    SYNC_OUT=$(ns_field "$store" "${timeout[@]}" sync --plan "$PLAN_ID" --json 2>"$LOGS/$(tr '|' - <<<"$key").err") || rc=$?
    t1=$(now_ms)
    proxy_stop
    measured "$key" $((t1 - t0)) "$([ "$rc" = 0 ] && echo 1 || echo 0)"
    [ "$rc" = 0 ] || R[$key|note]="exit $rc: $(head -c 300 "$LOGS/$(tr '|' - <<<"$key").err")"
    return 0
}

# sync --watch until the first caught_up event (or the limit), through the
# running proxy, which it stops: ns_watch KEY STORE.
ns_watch() {
    local key=$1 store=$2 outf t0 t1 pid ok=0 rc=0
    outf=$LOGS/$(tr '|' - <<<"$key").watch
    wire_mark
    t0=$(now_ms)
    # Not through ns_field: $! must be napsync itself (ip netns exec execs it).
    ip netns exec "$CNS" "$NAPSYNC" --server "$(ns_line)" --ca "$CA_DIR/ca.crt" \
        --cert "$CA_DIR/fl-field.crt" --key "$CA_DIR/fl-field.key" --store "$store" \
        --timeout "$LINE_TIMEOUT" sync --watch --plan "$PLAN_ID" --json >"$outf" 2>"$outf.err" &
    pid=$!
    while :; do
        if grep -qs '"event":"caught_up"' "$outf"; then
            ok=1
            break
        fi
        kill -0 "$pid" 2>/dev/null || break
        [ $(($(now_ms) - t0)) -lt $((limit * 1000)) ] || break
        sleep 0.1
    done
    t1=$(now_ms)
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" || rc=$?
    proxy_stop
    measured "$key" $((t1 - t0)) "$ok"
    R[$key|retries]=$(grep -c '"event":"disconnected"' "$outf" || true)
    [ "$ok" = 1 ] || R[$key|note]="no caught_up in ${limit} s (then exit $rc on SIGTERM)"
    return 0
}

# (a) and (b) on the current line, run n.
ns_ab() {
    local prof=$1 n=$2 db store
    db=flb_${prof//-/_}_$n
    store=$STORES/ns-$prof-$n.db
    fresh_db "$db"
    start_daemon "$db" "127.0.0.1:$NS_PORT" "$SNS" "$prof-$n"
    proxy_start "ns-a-$prof-$n" "$LINE_NS" "$NS_PORT" "$DELAY_MS" "$CUT_MS" "$CUT_FIRST_MS"
    ns_sync "ns|a|$prof|$n" "$store"
    if [ "${R[ns|a|$prof|$n|ok]}" = 1 ]; then
        [ "$(json_num received "$SYNC_OUT")" = 301 ] ||
            wrong "ns|a|$prof|$n" "received $(json_num received "$SYNC_OUT") records, not 301"
        [ "$(ns_count "$store" indicator_report)" = 240 ] ||
            wrong "ns|a|$prof|$n" "the replica has $(ns_count "$store" indicator_report) of the 240 reports"
    fi
    if [ "${R[ns|a|$prof|$n|ok]}" = 1 ]; then
        ns_put_new "$store"
        proxy_start "ns-b-$prof-$n" "$LINE_NS" "$NS_PORT" "$DELAY_MS" "$CUT_MS" "$CUT_FIRST_MS"
        ns_sync "ns|b|$prof|$n" "$store"
        if [ "${R[ns|b|$prof|$n|ok]}" = 1 ]; then
            if [ "$(json_num pushed "$SYNC_OUT")" != 20 ] || [ "$(json_num rejected "$SYNC_OUT")" != 0 ]; then
                wrong "ns|b|$prof|$n" "not 20 pushed and none refused: $SYNC_OUT"
            fi
            [ "$(sql "$db" <<<"SELECT count(*) FROM indicator_reports WHERE NOT deleted")" = 260 ] ||
                wrong "ns|b|$prof|$n" "the server does not have the 20 new reports"
        fi
    else
        R[ns|b|$prof|$n|ok]=0
        R[ns|b|$prof|$n|note]="not run: (a) did not complete"
    fi
    stop_daemon
    drop_db "$db"
}

# (c1) and (c2) on the poor line with cuts, run n. The device of (c2) is
# prepared (synced) on the unshaped line first.
ns_c() {
    local n=$1 db store
    db=flb_cuts_$n
    fresh_db "$db"
    start_daemon "$db" "127.0.0.1:$NS_PORT" "$SNS" "cuts-$n"
    set_line poor-cuts
    store=$STORES/ns-c1-$n.db
    proxy_start "ns-c1-$n" "$LINE_NS" "$NS_PORT" "$DELAY_MS" "$CUT_MS" "$CUT_FIRST_MS"
    ns_watch "ns|c1|poor-cuts|$n" "$store"
    if [ "${R[ns|c1|poor-cuts|$n|ok]}" = 1 ]; then
        [ "$(ns_count "$store" indicator_report)" = 240 ] ||
            wrong "ns|c1|poor-cuts|$n" "the replica has $(ns_count "$store" indicator_report) of the 240 reports"
    fi

    store=$STORES/ns-c2-$n.db
    "$LINK_SH" shape "$FL_ID" clear
    proxy_start "ns-c2prep-$n" "$LINE_NS" "$NS_PORT" 0 0
    ns_field "$store" --timeout "$LINE_TIMEOUT" sync --plan "$PLAN_ID" --json >/dev/null ||
        die "napsync: preparing (c2) on the unshaped line failed"
    proxy_stop
    ns_put_new "$store"
    set_line poor-cuts
    proxy_start "ns-c2-$n" "$LINE_NS" "$NS_PORT" "$DELAY_MS" "$CUT_MS" "$CUT_FIRST_MS"
    ns_watch "ns|c2|poor-cuts|$n" "$store"
    if [ "${R[ns|c2|poor-cuts|$n|ok]}" = 1 ]; then
        [ "$(json_num pending "$("$NAPSYNC" --store "$store" status --json)")" = 0 ] ||
            wrong "ns|c2|poor-cuts|$n" "caught up with changes still pending"
        [ "$(sql "$db" <<<"SELECT count(*) FROM indicator_reports WHERE NOT deleted")" = 260 ] ||
            wrong "ns|c2|poor-cuts|$n" "the server does not have the 20 new reports"
    fi
    stop_daemon
    drop_db "$db"
}

# ---- PouchDB -----------------------------------------------------------------------------------
POUCH_JS=$HERE/peer/pouch.js
pouch_server_up() {
    local i
    # pouchdb-server writes its config.json and log.txt where it runs.
    (cd "$work/pouch/server" && exec ip netns exec "$SNS" "$POUCHDB_SERVER" --host 127.0.0.1 \
        --port "$POUCH_PORT" --dir "$work/pouch/server/db" -c "$work/pouch/server/config.json" \
        >"$LOGS/pouchdb-server.log" 2>&1) &
    cat >"$work/pouch/stunnel.conf" <<EOF
foreground = yes
pid =
debug = notice
[pouchdb]
accept = 127.0.0.1:$STUNNEL_PORT
connect = 127.0.0.1:$POUCH_PORT
cert = $CA_DIR/napsyncd.crt
key = $CA_DIR/napsyncd.key
EOF
    ip netns exec "$SNS" stunnel4 "$work/pouch/stunnel.conf" >"$LOGS/stunnel.log" 2>&1 &
    for ((i = 0; i < 200; i++)); do
        if ip netns exec "$SNS" bash -c "exec 3<>/dev/tcp/127.0.0.1/$POUCH_PORT && exec 4<>/dev/tcp/127.0.0.1/$STUNNEL_PORT" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    die "pouchdb-server or stunnel did not start (logs: $LOGS/pouchdb-server.log, stunnel.log)"
}

# node pouch.js in the client namespace, trusting the deployment's CA.
pouch_client() {
    ip netns exec "$CNS" env NODE_PATH="$NODE_PATH" NODE_EXTRA_CA_CERTS="$CA_DIR/ca.crt" \
        node "$POUCH_JS" "$@"
}
# ... and on the server's side, over its loopback (seeding, counting).
pouch_local() { ip netns exec "$SNS" env NODE_PATH="$NODE_PATH" node "$POUCH_JS" "$@"; }
pouch_url() { echo "https://$SERVER_IP:$LINE_POUCH/$1"; }

# One timed pouch.js run through the running proxy, which it stops:
# pouch_step KEY ARGS...; the JSON line in POUCH_OUT.
POUCH_OUT=''
pouch_step() {
    local key=$1 rc=0 ms
    shift
    wire_mark
    POUCH_OUT=$(pouch_client "$@" 2>"$LOGS/$(tr '|' - <<<"$key").err") || rc=$?
    proxy_stop
    ms=$(json_num ms "$POUCH_OUT")
    [ -n "$ms" ] || ms=0
    measured "$key" "$ms" "$([ "$rc" = 0 ] && echo 1 || echo 0)"
    R[$key|retries]=$(json_num errors "$POUCH_OUT")
    if [ "$rc" = 1 ] && [[ $POUCH_OUT == *'"completed":false'* ]]; then
        R[$key|note]="not caught up in ${limit} s"
    elif [ "$rc" != 0 ]; then
        R[$key|note]="exit $rc: $(tail -n 1 "$LOGS/$(tr '|' - <<<"$key").err" | head -c 300)"
    fi
    return 0
}

pouch_seed() {
    pouch_local seed "http://127.0.0.1:$POUCH_PORT/$1" "$DATA/docs.json" >/dev/null ||
        die "seeding PouchDB database $1 failed"
}

pouch_remote_count() { json_num doc_count "$(pouch_local count "http://127.0.0.1:$POUCH_PORT/$1")"; }

pouch_ab() {
    local prof=$1 n=$2 db dir
    db=plan-$prof-$n
    dir=$work/pouch/local/$db
    pouch_seed "$db"
    proxy_start "pouch-a-$prof-$n" "$LINE_POUCH" "$STUNNEL_PORT" "$DELAY_MS" "$CUT_MS" "$CUT_FIRST_MS"
    pouch_step "pouch|a|$prof|$n" pull "$(pouch_url "$db")" "$dir" 301
    if [ "${R[pouch|a|$prof|$n|ok]}" = 1 ]; then
        proxy_start "pouch-b-$prof-$n" "$LINE_POUCH" "$STUNNEL_PORT" "$DELAY_MS" "$CUT_MS" "$CUT_FIRST_MS"
        pouch_step "pouch|b|$prof|$n" push-pull "$(pouch_url "$db")" "$dir" "$DATA/new.json"
        if [ "${R[pouch|b|$prof|$n|ok]}" = 1 ]; then
            [ "$(pouch_remote_count "$db")" = 321 ] ||
                wrong "pouch|b|$prof|$n" "the server does not have the 20 new reports"
        fi
    else
        R[pouch|b|$prof|$n|ok]=0
        R[pouch|b|$prof|$n|note]="not run: (a) did not complete"
    fi
}

pouch_c() {
    local n=$1 db dir
    db=plan-cuts-$n
    pouch_seed "$db"
    set_line poor-cuts
    dir=$work/pouch/local/$db-c1
    proxy_start "pouch-c1-$n" "$LINE_POUCH" "$STUNNEL_PORT" "$DELAY_MS" "$CUT_MS" "$CUT_FIRST_MS"
    pouch_step "pouch|c1|poor-cuts|$n" pull "$(pouch_url "$db")" "$dir" 301 --retry "$limit"

    dir=$work/pouch/local/$db-c2
    "$LINK_SH" shape "$FL_ID" clear
    proxy_start "pouch-c2prep-$n" "$LINE_POUCH" "$STUNNEL_PORT" 0 0
    pouch_client pull "$(pouch_url "$db")" "$dir" 301 >/dev/null 2>>"$LOGS/pouch-c2prep.err" ||
        die "PouchDB: preparing (c2) on the unshaped line failed"
    proxy_stop
    set_line poor-cuts
    proxy_start "pouch-c2-$n" "$LINE_POUCH" "$STUNNEL_PORT" "$DELAY_MS" "$CUT_MS" "$CUT_FIRST_MS"
    pouch_step "pouch|c2|poor-cuts|$n" push-pull "$(pouch_url "$db")" "$dir" "$DATA/new.json" --retry "$limit"
    if [ "${R[pouch|c2|poor-cuts|$n|ok]}" = 1 ]; then
        [ "$(pouch_remote_count "$db")" = 321 ] ||
            wrong "pouch|c2|poor-cuts|$n" "the server does not have the 20 new reports"
    fi
}

# ---- the report ---------------------------------------------------------------------------------
SYSTEMS=(ns pouch)
# One figure per line: scenario, profile.
FIGURES=("a poor" "a fair" "b poor" "b fair" "c1 poor-cuts" "c2 poor-cuts")

# Values of FIELD over the completed runs of SYS SCEN PROF, one per line.
values() {
    local sys=$1 scen=$2 prof=$3 field=$4 n
    for ((n = 1; n <= runs; n++)); do
        [ "${R[$sys|$scen|$prof|$n|ok]:-0}" = 1 ] && echo "${R[$sys|$scen|$prof|$n|$field]}"
    done
    return 0
}
completed() { values "$1" "$2" "$3" ms | wc -l; }
median() { sort -n | awk '{v[NR]=$1} END{ if (NR == 0) print "-"; else if (NR % 2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2 }'; }
minmax() { sort -n | awk 'NR==1{a=$1} {b=$1} END{ if (NR == 0) print "- -"; else print a, b }'; }
secs() { awk -v v="$1" 'BEGIN{ if (v == "-") print "-"; else printf "%.1f", v/1000 }'; }
kb() { awk -v v="$1" 'BEGIN{ if (v == "-") print "-"; else printf "%.1f", v/1024 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (a == "-" || b == "-" || b+0 == 0) print "-"; else printf "%.2f", a/b }'; }

# "min / median / max" seconds of a figure, with the completed runs when not all.
time_cell() {
    local sys=$1 scen=$2 prof=$3 mm med c
    c=$(completed "$sys" "$scen" "$prof")
    [ "$c" -gt 0 ] || {
        echo "not completed (0 of $runs)"
        return
    }
    local a b
    read -r a b <<<"$(values "$sys" "$scen" "$prof" ms | minmax)"
    med=$(values "$sys" "$scen" "$prof" ms | median)
    mm="$(secs "$a") / **$(secs "$med")** / $(secs "$b")"
    [ "$c" = "$runs" ] || mm="$mm ($c of $runs completed)"
    echo "$mm"
}
med_of() { values "$1" "$2" "$3" "$4" | median; }
total_bytes_med() {
    local sys=$1 scen=$2 prof=$3 n
    for ((n = 1; n <= runs; n++)); do
        [ "${R[$sys|$scen|$prof|$n|ok]:-0}" = 1 ] && echo $((R[$sys|$scen|$prof|$n|up] + R[$sys|$scen|$prof|$n|down]))
    done | median
}

sys_name() { if [ "$1" = ns ]; then echo napsync; else echo PouchDB; fi; }
verdict() { if [ "$1" = 1 ]; then echo "met"; else echo "**missed**"; fi; }

FL_BEGIN='<!-- field-links: written by tests/fieldlink/run.sh (kept by tests/bench/run.sh) -->'
FL_END='<!-- /field-links -->'
AN_BEGIN='<!-- field-links analysis: kept by tests/fieldlink/run.sh across runs -->'
AN_END='<!-- /field-links analysis -->'

section() {
    local analysis=$1 describe prof scen sys n key
    describe=$(git -C "$ROOT" describe --always --dirty --tags 2>/dev/null || echo unknown)
    echo "$FL_BEGIN"
    echo "## Field links"
    echo
    echo "Written by \`tests/fieldlink/run.sh\` on $(date -u +%Y-%m-%d) at napsync \`$describe\` (this"
    echo "run took $((SECONDS / 60)) min $((SECONDS % 60)) s), napsync and PouchDB measured in the same run on the same"
    echo "simulated lines, one after the other, $runs runs of each figure: min / **median** / max."
    echo "The machine is shared with other work: the times are indicative, the bytes are not."
    echo
    echo "**The line** (tests/fieldlink/link.sh): two network namespaces joined by a veth pair"
    echo "(169.254.77.1 server, .2 client), bandwidth by \`tc tbf\` (queue of 1 s) on both ends,"
    echo "loss by \`iptables -m statistic --mode random\` dropping that share of the packets each"
    echo "end receives, the one-way delay and the cuts by \`napsync-linkproxy\`"
    echo "(tests/fieldlink/linkproxy.c) in the server namespace: every chunk waits the delay in"
    echo "each direction, a new connection's first bytes one round trip more (the TCP handshake"
    echo "that the kernel completes at once there), and a cut resets every connection. The"
    echo "kernel has no netem, so the delay is not in TCP's own round trip: loss is recovered on"
    echo "the short veth leg, faster than a real 800 ms line would (both systems alike)."
    echo
    echo "| profile | bandwidth | one-way delay | loss (each way) | cuts |"
    echo "|---|---|---:|---:|---|"
    echo "| poor | 64 kbit/s | 400 ms | 5 % | none |"
    echo "| fair | 256 kbit/s | 150 ms | 1 % | none |"
    echo "| poor + cuts | 64 kbit/s | 400 ms | 5 % | every connection reset every 10 s, the first time 5 s after the start |"
    echo
    echo "**The systems.** Server side: napsyncd (default settings, TLS 1.3, mutual TLS with"
    echo "ECDSA P-256 certificates; its PostgreSQL on this machine through its Unix socket) and"
    echo "pouchdb-server $(node -p "require('pouchdb-server/package.json').version") (npm, LevelDB) behind stunnel $(stunnel4 -version 2>&1 | awk '/^stunnel/{print $2; exit}') (TLS 1.3 with the"
    echo "same certificate; no authentication). Client side: the napsync CLI (\`napsync sync --plan"
    echo "PLAN --timeout $LINE_TIMEOUT\`, a new SQLite store) and pouchdb-node"
    echo "$(node -p "require('pouchdb-node/package.json').version") (\`PouchDB.replicate\`, batches of 100, a keep-alive agent, a new LevelDB database;"
    echo "tests/fieldlink/peer/pouch.js) on Node.js $(node --version)."
    echo "The same 301 records on both (tests/fieldlink/peer/plan.js): a plan, 60 indicators"
    echo "($(json_num indicator_bytes "$GEN") bytes of JSON each on average) and 240 indicator reports ($(json_num report_bytes "$GEN") bytes), made valid for"
    echo "the domain model; PouchDB's documents carry the same fields, plus \`_id\`, \`type\` and"
    echo "\`plan_id\`. The records' JSON is $(kb "$RAW_BYTES") KiB ($(kb "$RAW_GZ") KiB as one \`gzip -9\` stream); their ids"
    echo "are random UUIDs and their text random words of the reports' language, so that they"
    echo "compress as real records would, not as repeated phrases."
    echo
    echo "**Figures.** (a) first pull of the whole plan into an empty store; (b) 20 new reports"
    echo "saved offline ($(json_num new_report_bytes "$GEN") bytes each), then one sync: pushed, then the plan pulled again (napsync: one"
    echo "\`napsync sync\`; PouchDB: replicate to the server, then from it); on the poor line with"
    echo "cuts, (c1) the first pull and (c2) the push of 20 and pull, each in the system's"
    echo "retrying mode (napsync: \`napsync sync --watch\` until its first \`caught_up\` event;"
    echo "PouchDB: live replication with \`retry: true\` until it pauses caught up), by a device"
    echo "prepared on an unshaped line for (c2), each given ${limit} s. Times: napsync, the CLI"
    echo "process from start to exit (or to the event); PouchDB, from its first request to the"
    echo "end of the replications, inside the Node.js process (its start and the loading of"
    echo "PouchDB, about half a second, are left out). Bytes: TCP payload through the proxy"
    echo "(TLS records), up = client to server; IP bytes on the veth in the per-run table."
    echo
    echo "| figure | line | napsync s | PouchDB s | PouchDB / napsync (median) | napsync KiB up / down | PouchDB KiB up / down | napsync / PouchDB bytes |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|"
    local f label
    for f in "${FIGURES[@]}"; do
        read -r scen prof <<<"$f"
        case $scen in
        a) label="(a) first pull" ;;
        b) label="(b) push 20, pull" ;;
        c1) label="(c1) first pull" ;;
        c2) label="(c2) push 20, pull" ;;
        esac
        echo "| $label | ${prof/poor-cuts/poor + cuts} | $(time_cell ns "$scen" "$prof") | $(time_cell pouch "$scen" "$prof") | $(ratio "$(med_of pouch "$scen" "$prof" ms)" "$(med_of ns "$scen" "$prof" ms)") | $(kb "$(med_of ns "$scen" "$prof" up)") / $(kb "$(med_of ns "$scen" "$prof" down)") | $(kb "$(med_of pouch "$scen" "$prof" up)") / $(kb "$(med_of pouch "$scen" "$prof" down)") | $(ratio "$(total_bytes_med ns "$scen" "$prof")" "$(total_bytes_med pouch "$scen" "$prof")") |"
    done
    echo
    # Targets (issue 8).
    local ra rb ok_a ok_b ok_c ok_bytes worst=0 r
    ra=$(ratio "$(med_of pouch a poor ms)" "$(med_of ns a poor ms)")
    rb=$(ratio "$(med_of pouch b poor ms)" "$(med_of ns b poor ms)")
    ok_a=$(awk -v r="$ra" 'BEGIN{print (r != "-" && r+0 >= 5) ? 1 : 0}')
    ok_b=$(awk -v r="$rb" 'BEGIN{print (r != "-" && r+0 >= 5) ? 1 : 0}')
    ok_c=1
    for scen in c1 c2; do
        [ "$(completed ns "$scen" poor-cuts)" = "$runs" ] || ok_c=0
    done
    ok_bytes=1
    for f in "${FIGURES[@]}"; do
        read -r scen prof <<<"$f"
        r=$(ratio "$(total_bytes_med ns "$scen" "$prof")" "$(total_bytes_med pouch "$scen" "$prof")")
        if [ "$r" = "-" ] || awk -v r="$r" 'BEGIN{exit !(r+0 > 0.2)}'; then ok_bytes=0; fi
        [ "$r" = "-" ] || worst=$(awk -v a="$worst" -v b="$r" 'BEGIN{print (b+0 > a+0) ? b : a}')
    done
    echo "| target (issue 8) | this run | |"
    echo "|---|---|---|"
    echo "| napsync ≥ 5× faster than PouchDB on (a), poor line | ${ra}× | $(verdict "$ok_a") |"
    echo "| napsync ≥ 5× faster than PouchDB on (b), poor line | ${rb}× | $(verdict "$ok_b") |"
    echo "| napsync completes (c1) and (c2) without being restarted, every run | (c1) $(completed ns c1 poor-cuts) of $runs, (c2) $(completed ns c2 poor-cuts) of $runs within ${limit} s | $(verdict "$ok_c") |"
    echo "| napsync moves ≤ 1/5 of PouchDB's bytes (up + down), every figure | at most $worst of PouchDB's | $(verdict "$ok_bytes") |"
    echo
    local probe_ms=${R[ns|a|probe|1|ms]:-0}
    if [ "${R[ns|a|probe|1|ok]:-0}" = 1 ]; then
        echo "With napsync's default request timeout (10 s, no \`--timeout\`) instead of $((LINE_TIMEOUT / 1000)) s, the first pull on the"
        echo "poor line completed (one run, $(secs "$probe_ms") s)."
    else
        echo "With napsync's default request timeout (10 s, no \`--timeout\`) instead of $((LINE_TIMEOUT / 1000)) s, the first pull on the"
        echo "poor line **failed** (one run, after $(secs "$probe_ms") s: ${R[ns|a|probe|1|note]:-?})."
    fi
    echo
    echo "Every run (s: seconds; KiB: TCP payload up / down through the proxy; IP KiB: bytes the"
    echo "veth ends sent, up / down, headers and retransmissions included; conn.: TCP connections"
    echo "opened, of which cut; retries: napsync's \`disconnected\` events, PouchDB's paused-with-error"
    echo "events):"
    echo
    echo "| figure | line | system | run | s | KiB up / down | IP KiB up / down | conn. (cut) | retries | |"
    echo "|---|---|---|---:|---:|---:|---:|---:|---:|---|"
    for f in "${FIGURES[@]}"; do
        read -r scen prof <<<"$f"
        for sys in "${SYSTEMS[@]}"; do
            for ((n = 1; n <= runs; n++)); do
                key="$sys|$scen|$prof|$n"
                [ -n "${R[$key|ok]:-}" ] || continue
                if [ -z "${R[$key|ms]:-}" ]; then
                    echo "| $scen | ${prof/poor-cuts/poor + cuts} | $(sys_name "$sys") | $n | - | - | - | - | - | ${R[$key|note]:-} |"
                    continue
                fi
                echo "| $scen | ${prof/poor-cuts/poor + cuts} | $(sys_name "$sys") | $n | $(secs "${R[$key|ms]}") | $(kb "${R[$key|up]}") / $(kb "${R[$key|down]}") | $(kb "${R[$key|wup]}") / $(kb "${R[$key|wdown]}") | ${R[$key|conns]} (${R[$key|cut]}) | ${R[$key|retries]:--} | $([ "${R[$key|ok]}" = 1 ] || echo "**not completed**: ")${R[$key|note]:-} |"
            done
        done
    done
    echo
    echo "### Analysis"
    echo
    echo "$AN_BEGIN"
    echo "$analysis"
    echo "$AN_END"
    echo
    echo "### Reproduce"
    echo
    echo '```'
    # The options that change the figures (not where files go).
    printf 'sudo tests/fieldlink/run.sh'
    [ "$runs" = 3 ] || printf ' --runs %s' "$runs"
    [ "$limit" = 300 ] || printf ' --limit %s' "$limit"
    echo "   # root (network namespaces); after cmake --build build"
    echo '```'
    echo
    echo "It installs what is missing (iproute2, iptables, stunnel4; Node.js and npm if absent),"
    echo "the npm packages of tests/fieldlink/peer/package-lock.json with \`npm ci\` into"
    echo "var/cache/fieldlink-peer/, starts a private PostgreSQL, and writes this section. The CI-sized"
    echo "check of the same line is \`test_fieldlink\` (ctest, label integration; fair line, napsync only,"
    echo "correctness only)."
    echo "$FL_END"
}

write_report() {
    local f=$1 analysis='' tmp
    if [ -f "$f" ]; then
        analysis=$(awk -v b="$AN_BEGIN" -v e="$AN_END" '$0==b{on=1; next} $0==e{on=0} on' "$f")
    fi
    [ -n "$analysis" ] || analysis='(No analysis yet: profile the figures that miss their target and describe the causes here.)'
    section "$analysis" >"$work/section.md"
    tmp=$(mktemp "$f.XXXXXX")
    if [ -f "$f" ] && grep -qxF "$FL_BEGIN" "$f"; then
        # Replace the section in place; everything else stays as it is.
        awk -v b="$FL_BEGIN" -v e="$FL_END" -v s="$work/section.md" '
            $0 == b { while ((getline l < s) > 0) print l; skip = 1; next }
            skip && $0 == e { skip = 0; next }
            !skip { print }' "$f" >"$tmp"
    else
        { [ ! -f "$f" ] || { cat "$f"; echo; }; cat "$work/section.md"; } >"$tmp"
    fi
    chmod 644 "$tmp"
    mv "$tmp" "$f"
}

# ---- main ------------------------------------------------------------------------------------
SECONDS=0
GEN=$(node "$HERE/peer/plan.js" "$DATA") || die "peer/plan.js failed"
PLAN_ID=$(sed -nE 's/.*"plan_id":"([^"]+)".*/\1/p' <<<"$GEN")
# The records' JSON, one per line: its size, and gzip's of it as one stream.
node -e '
const f = require(process.argv[1]);
for (const r of [f.plan].concat(f.indicators, f.indicator_reports)) console.log(JSON.stringify(r));
' "$DATA/plan.json" >"$DATA/records.jsonl"
RAW_BYTES=$(wc -c <"$DATA/records.jsonl")
RAW_GZ=$(gzip -9c "$DATA/records.jsonl" | wc -c)
note "PostgreSQL in $PG_DIR"
pg_env "$("$PG_SH" start "$PG_DIR")"
make_certs
make_template
line_up
note "line $FL_ID: server namespace $SNS, client namespace $CNS"
pouch_server_up

for prof in poor fair; do
    for ((n = 1; n <= runs; n++)); do
        set_line "$prof"
        ns_ab "$prof" "$n"
        set_line "$prof"
        pouch_ab "$prof" "$n"
    done
done
# napsync's default request timeout, once, on the poor line.
set_line poor
fresh_db flb_probe
start_daemon flb_probe "127.0.0.1:$NS_PORT" "$SNS" probe
proxy_start ns-probe "$LINE_NS" "$NS_PORT" "$DELAY_MS" "$CUT_MS" "$CUT_FIRST_MS"
ns_sync "ns|a|probe|1" "$STORES/ns-probe.db" default
stop_daemon
drop_db flb_probe

for ((n = 1; n <= runs; n++)); do
    ns_c "$n"
    pouch_c "$n"
done

write_report "$out"
note "\"Field links\" written to $out ($SECONDS s)"
