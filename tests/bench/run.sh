#!/usr/bin/env bash
# napsync's benchmark suite: every figure of docs/benchmarks.md, measured in
# one run, side by side with its PostgreSQL baseline, on this machine.
#
#   tests/bench/run.sh [--smoke] [--full] [--out FILE] [--build DIR] [--workdir DIR]
#                      [--duration S] [--warmup S] [--keep]
#
#   --smoke        tiny sizes and fixed amounts of work instead of timed runs:
#                  a few seconds, checks only that all the work was done and
#                  checked (every mutation applied, every record received);
#                  writes the report to --out (a temporary file unless given)
#   --full         also the catch-up of a 1,000,000-change backlog (adds
#                  several minutes; the default suite stays under 20 minutes)
#   --only LIST    only these figures, comma-separated: push, catchup, fanout,
#                  conns, storm, peer (the report then has only their sections, and
#                  goes to a temporary file unless --out is given)
#   --out FILE     where the report goes (default: docs/benchmarks.md)
#   --build DIR    the build tree with napsyncd and napsync-loadgen
#                  (default: build/ of the checkout)
#   --workdir DIR  PostgreSQL cluster (DIR/pg), certificates (DIR/ca, kept
#                  and reused: issuing 256 device certificates takes a while),
#                  logs; default: a new temporary directory, removed at exit
#                  unless --keep
#   --duration S   measured seconds per push figure (default 10)
#   --warmup S     unmeasured seconds before each (default 2)
#
# What runs: a private PostgreSQL (tests/lib/pg.sh, fsync on) with napsyncd
# connecting as an ordinary role that owns its database (as deploy/dev.sh
# does); (1) push throughput of napsyncd (napsync-loadgen push) against
# pgbench -M prepared doing the same SQL per mutation, at 1, 16 and 256
# clients, batches of 1 and 100; (2) the catch-up of a fresh device on a
# backlog of 10k and 100k changes (and 1M with --full), streamed and synced
# into a store, against keyset paging in SQL (pgbench) and one COPY; (3)
# fan-out: 1,000 devices watching one plan while one writer adds to it, from
# the writer's ack to each device's delivery (the load generator's subscriber
# processes: NS_BENCH_FAN_PROCS, default one per online CPU); (4) 10,000 idle authenticated
# TLS sessions: napsyncd's RSS per session, sessions/s with full and with
# resumed handshakes; (5) a reconnect storm: 2,000 device stores with
# changes in their outboxes sync at once after napsyncd restarts, until every
# outbox is drained, with one well-behaved client pinging meanwhile; (6)
# PouchDB: pouchdb-server (LevelDB, behind stunnel) and pouchdb-node clients
# against napsync, the same records: push and pull of 10k and 100k, and
# live-replication latency (Node.js and the npm packages of
# tests/fieldlink/peer are installed when missing; the smoke run does
# without PouchDB when its packages cannot be had). The
# device stores of (3) and (5) live on a tmpfs (/dev/shm) when there is one.
# Each figure gets a fresh database made from one template. Exits non-zero
# when any check fails; it never fails on speed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PG_SH=$ROOT/tests/lib/pg.sh
CA_SH=$ROOT/deploy/ca.sh

smoke=0
full=0
keep=0
only=''
FIGURES=push,catchup,fanout,conns,storm,peer
out=''
build=$ROOT/build
work=''
duration=10
warmup=2

die() {
    echo "bench: $*" >&2
    exit 1
}

note() {
    echo "bench: $*" >&2
}

usage() {
    sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "${BASH_SOURCE[0]}"
}

while [ $# -gt 0 ]; do
    case $1 in
    --smoke) smoke=1 ;;
    --full) full=1 ;;
    --keep) keep=1 ;;
    --only)
        [ $# -ge 2 ] || die "--only needs a list of figures ($FIGURES)"
        for f in ${2//,/ }; do
            [[ ,$FIGURES, == *,"$f",* ]] || die "--only: unknown figure '$f' ($FIGURES)"
        done
        only=$2
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
    --duration)
        { [ $# -ge 2 ] && [[ $2 =~ ^[1-9][0-9]{0,3}$ ]]; } || die "--duration needs whole seconds"
        duration=$2
        shift
        ;;
    --warmup)
        { [ $# -ge 2 ] && [[ $2 =~ ^[0-9]{1,3}$ ]]; } || die "--warmup needs whole seconds"
        warmup=$2
        shift
        ;;
    -h | --help)
        usage
        exit 0
        ;;
    *) die "unknown option '$1' (see --help)" ;;
    esac
    shift
done

build=$(cd "$build" 2>/dev/null && pwd) || die "no build directory $build (cmake --build first)"
NAPSYNCD=$build/napsyncd
LOADGEN=$build/napsync-loadgen
for b in "$NAPSYNCD" "$LOADGEN"; do
    [ -x "$b" ] || die "$b is missing: build the tree first (cmake --build $build)"
done
for t in pgbench psql openssl awk; do
    command -v "$t" >/dev/null || die "$t is missing (tests/lib/deps.sh installs it)"
done

if [ "$smoke" = 1 ]; then
    PUSH_CLIENTS=(1 4)
    PUSH_BATCHES=(1 10)
    PUSH_PUSHES=3 # per client: fixed work instead of a timed window
    CATCHUP_SIZES=(300)
    FAN_SUBS=5 FAN_WRITES=3
    CONN_SESSIONS=24 CONN_HOLD=1
    STORM_CLIENTS=6 STORM_CHANGES=3
    PEER_SIZES=(200) PEER_WRITES=5 PEER_GAP_MS=20
    NDEV=6
else
    PUSH_CLIENTS=(1 16 256)
    PUSH_BATCHES=(1 100)
    PUSH_PUSHES=0
    CATCHUP_SIZES=(10000 100000)
    [ "$full" = 1 ] && CATCHUP_SIZES+=(1000000)
    FAN_SUBS=1000 FAN_WRITES=10
    CONN_SESSIONS=10000 CONN_HOLD=3
    STORM_CLIENTS=2000 STORM_CHANGES=10
    PEER_SIZES=(10000 100000) PEER_WRITES=200 PEER_GAP_MS=50
    # Device certificates (bench-0000 ...): fan-out gives each subscriber its
    # own; the 10,000 sessions and the 2,000 stores of the storm take turns
    # on them (10 and 2 per certificate).
    NDEV=1000
fi
MAX_CLIENTS=${PUSH_CLIENTS[-1]}
[ "$NDEV" -lt "$MAX_CLIENTS" ] && NDEV=$MAX_CLIENTS
# Connects (and first syncs) in flight at once while sessions are set up.
CONN_WINDOW=64
# Every session is a socket in napsyncd and in the load generator.
want_fds=$((CONN_SESSIONS + 512))
if [ "$(ulimit -S -n)" != unlimited ] && [ "$(ulimit -S -n)" -lt "$want_fds" ]; then
    ulimit -S -n "$(ulimit -H -n)" 2>/dev/null || true
    [ "$(ulimit -S -n)" = unlimited ] || [ "$(ulimit -S -n)" -ge "$want_fds" ] ||
        die "$CONN_SESSIONS sessions need $want_fds file descriptors; the hard limit is $(ulimit -H -n) (raise it: ulimit -H -n, limits.conf)"
fi
# The page size napsync clients pull with (the server's default) and the
# baseline's keyset pages.
PAGE=500

# want FIGURE: whether this run measures it.
want() { [ -z "$only" ] || [[ ,$only, == *,"$1",* ]]; }

if [ -z "$out" ]; then
    if [ "$smoke" = 1 ] || [ -n "$only" ]; then out=$(mktemp "${TMPDIR:-/tmp}/napsync-bench-report.XXXXXX.md"); else out=$ROOT/docs/benchmarks.md; fi
fi

made_work=0
if [ -z "$work" ]; then
    work=$(mktemp -d "${TMPDIR:-/tmp}/napsync-bench.XXXXXX")
    made_work=1
fi
mkdir -p "$work"
work=$(cd "$work" && pwd)
PG_DIR=$work/pg
CA_DIR=$work/ca
LOGS=$work/logs
mkdir -p "$LOGS"
: >"$LOGS/results.log"
: >"$LOGS/pgbench.log"

# Device stores of the fan-out and the storm: on a tmpfs when there is one,
# so that a thousand devices' fsyncs do not queue on this machine's one
# disk inside the load generator's one thread (each real device has its own).
if [ -d /dev/shm ] && [ -w /dev/shm ] && [ "$(stat -f -c %T /dev/shm)" = tmpfs ]; then
    STORES=$(mktemp -d /dev/shm/napsync-bench-stores.XXXXXX)
    STORES_FS='a tmpfs (/dev/shm)'
else
    STORES=$work/stores
    mkdir -p "$STORES"
    STORES_FS="the work directory's file system (no tmpfs at /dev/shm)"
fi

daemon_pid=''
cleanup() {
    local rc=$?
    if [ -n "$daemon_pid" ]; then
        kill -TERM "$daemon_pid" 2>/dev/null || true
        wait "$daemon_pid" 2>/dev/null || true
    fi
    rm -rf "$STORES"
    [ -z "${pouch_pid:-}${stunnel_pid:-}" ] || pouch_stop

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

# Every command whose figure goes into the report, as run.
COMMANDS=()
remember() {
    local s
    printf -v s '%q ' "$@"
    COMMANDS+=("${s% }")
}

now_ns() { date +%s%N; }

# ---- PostgreSQL ------------------------------------------------------------------

# shellcheck source=tests/lib/pgclient.sh
. "$ROOT/tests/lib/pgclient.sh"

DAEMON_ROLE=napsyncd
TEMPLATE=nsbench_template

start_pg() {
    note "PostgreSQL in $PG_DIR (fsync on)"
    pg_env "$(NS_PG_FSYNC=on "$PG_SH" start "$PG_DIR")"
    # pgbench opens one connection per client: room for them, napsyncd's
    # pool and psql.
    local want=$((MAX_CLIENTS + 40)) have
    [ "$want" -lt 100 ] && want=100
    have=$(sql postgres <<<"SHOW max_connections")
    if [ "$have" -lt "$want" ]; then
        sql postgres -v n="$want" <<<"SELECT format('ALTER SYSTEM SET max_connections = %s', :'n') \gexec" >/dev/null
        pg_env "$("$PG_SH" restart "$PG_DIR")"
    fi
}

conninfo() {
    printf "host=%s port=%s dbname=%s user=%s" "$PGH" "$PGP" "$1" "$DAEMON_ROLE"
}

# ---- certificates ------------------------------------------------------------------

device_names() {
    local i
    for ((i = 0; i < NDEV; i++)); do printf 'bench-%04d\n' "$i"; done
    echo bench-writer
    echo bench-pinger
    echo bench-seed
    for i in "${!CATCHUP_SIZES[@]}"; do
        echo "bench-pull-$i"
        echo "bench-sync-$i"
    done
    for i in "${!PEER_SIZES[@]}"; do
        echo "bench-peer-push-$i"
        echo "bench-peer-pull-$i"
    done
    echo bench-peer-writer
    echo bench-peer-live
}

# The SHA-256 of a certificate's DER, as ca.sh prints it, from its PEM.
pem_fingerprint() {
    sed -n '/^-----BEGIN CERTIFICATE-----$/,/^-----END CERTIFICATE-----$/{//!p}' "$1" | base64 -d | sha256sum | cut -d ' ' -f 1
}

make_certs() {
    "$CA_SH" init "$CA_DIR" "napsync benchmark CA" >/dev/null
    "$CA_SH" server "$CA_DIR" napsyncd IP:127.0.0.1 DNS:localhost >/dev/null
    local name fp n=0 reuse=0
    : >"$work/fingerprints"
    note "device certificates in $CA_DIR (kept for the next run)"
    # Certificates an earlier run issued are used as they are while they
    # have more than 30 days to live (checking a thousand of them with
    # ca.sh takes minutes); ca.sh issues the missing ones.
    [ -s "$CA_DIR/bench-0000.crt" ] && openssl x509 -in "$CA_DIR/bench-0000.crt" -noout -checkend 2592000 >/dev/null 2>&1 && reuse=1
    while IFS= read -r name; do
        if [ "$reuse" = 1 ] && [ -s "$CA_DIR/$name.crt" ] && [ -s "$CA_DIR/$name.key" ]; then
            fp=$(pem_fingerprint "$CA_DIR/$name.crt")
        else
            fp=$("$CA_SH" device "$CA_DIR" "$name" | tail -n 1)
        fi
        printf '%s %s\n' "$name" "$fp" >>"$work/fingerprints"
        n=$((n + 1))
    done < <(device_names)
    note "$n device certificates ready"
}

# ---- the template database ---------------------------------------------------------------

# Migrated by napsyncd itself, as its own role; one organisation per client
# device (its coordinator), and one for the catch-up plan with its seeding
# device and the fresh devices that pull it.
make_template() {
    sql postgres -v role="$DAEMON_ROLE" -v db="$TEMPLATE" >/dev/null <<'SQL'
SELECT format('CREATE ROLE %I LOGIN NOSUPERUSER NOBYPASSRLS', :'role')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'role') \gexec
SELECT format('DROP DATABASE IF EXISTS %I', :'db') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'role') \gexec
SQL
    "$NAPSYNCD" --database "$(conninfo "$TEMPLATE")" --sql-dir "$ROOT/sql" --tls-cert "$CA_DIR/napsyncd.crt" \
        --tls-key "$CA_DIR/napsyncd.key" --tls-ca "$CA_DIR/ca.crt" --migrate >"$LOGS/migrate.log" 2>&1 ||
        die "migrations failed: see $LOGS/migrate.log"
    local name fp org principal
    {
        echo "BEGIN;"
        while read -r name fp; do
            case $name in
            bench-seed) org=bench-seed principal="Catch-up seeder" ;;
            bench-pull-* | bench-sync-*) org=bench-seed principal="Fresh device $name" ;;
            bench-peer-*) org=bench-peer principal="Peer benchmark device $name" ;;
            *) org=$name principal="Coordinator of $name" ;;
            esac
            printf "INSERT INTO organisations (code, name, kind, country, default_role) VALUES ('%s', 'Benchmark organisation %s', 'ministry', 'ZZ', 'coordinator') ON CONFLICT (code) DO NOTHING;\n" "$org" "$org"
            printf "SELECT napsync_register_device('%s', '%s', 'coordinator', '%s', '%s');\n" "$org" "$principal" "$name" "$fp"
        done <"$work/fingerprints"
        echo "COMMIT;"
    } >"$work/template.sql"
    # The names and fingerprints above are ours ([a-z0-9-] and hex), so
    # they are safe as literals in this generated file.
    grep -Eqv "^(BEGIN;|COMMIT;|INSERT INTO organisations \(code, name, kind, country, default_role\) VALUES \('[a-z0-9-]+', 'Benchmark organisation [a-z0-9-]+', 'ministry', 'ZZ', 'coordinator'\) ON CONFLICT \(code\) DO NOTHING;|SELECT napsync_register_device\('[a-z0-9-]+', '[A-Za-z0-9 -]+', 'coordinator', '[a-z0-9-]+', '[0-9a-f]{64}'\);)$" "$work/template.sql" &&
        die "unexpected line in $work/template.sql"
    sql "$TEMPLATE" -f "$work/template.sql" >/dev/null
}

fresh_db() {
    sql postgres -v db="$1" -v t="$TEMPLATE" -v role="$DAEMON_ROLE" >/dev/null <<'SQL'
SELECT format('DROP DATABASE IF EXISTS %I', :'db') \gexec
SELECT format('CREATE DATABASE %I TEMPLATE %I OWNER %I', :'db', :'t', :'role') \gexec
SQL
}

drop_db() {
    sql postgres -v db="$1" >/dev/null <<<"SELECT format('DROP DATABASE IF EXISTS %I WITH (FORCE)', :'db') \gexec"
}

# ---- napsyncd -------------------------------------------------------------------------

daemon_port=''
daemon_log=''
# start_daemon DB TAG [--SETTING VALUE...]: settings beyond the defaults
# are the report's to name.
start_daemon() {
    local db=$1 tag=$2 port i
    shift 2
    daemon_log=$LOGS/napsyncd-$tag.log
    for ((i = 0; i < 5; i++)); do
        port=$(shuf -i 20000-60000 -n 1)
        "$NAPSYNCD" --listen "127.0.0.1:$port" --tls-cert "$CA_DIR/napsyncd.crt" \
            --tls-key "$CA_DIR/napsyncd.key" --tls-ca "$CA_DIR/ca.crt" \
            --database "$(conninfo "$db")" --sql-dir "$ROOT/sql" --log-level info \
            --http-listen off "$@" >>"$daemon_log" 2>&1 &
        daemon_pid=$!
        local waited=0
        while [ $waited -lt 300 ]; do
            if grep -qs "listening on 127.0.0.1:$port" "$daemon_log"; then
                daemon_port=$port
                return 0
            fi
            kill -0 "$daemon_pid" 2>/dev/null || break
            sleep 0.1
            waited=$((waited + 1))
        done
        kill -KILL "$daemon_pid" 2>/dev/null || true
        wait "$daemon_pid" 2>/dev/null || true
        daemon_pid=''
        grep -qs "cannot listen" "$daemon_log" || break
    done
    tail -n 20 "$daemon_log" >&2
    die "napsyncd did not start (log: $daemon_log)"
}

stop_daemon() {
    [ -n "$daemon_pid" ] || return 0
    kill -TERM "$daemon_pid"
    local rc=0
    wait "$daemon_pid" || rc=$?
    daemon_pid=''
    [ "$rc" = 0 ] || die "napsyncd exited with status $rc on SIGTERM (log: $daemon_log)"
}

loadgen() {
    "$LOADGEN" "$1" --server "127.0.0.1:$daemon_port" --ca "$CA_DIR/ca.crt" --certs "$CA_DIR" \
        --server-pid "$daemon_pid" "${@:2}"
}

# get KEY LINE: the value of KEY=... in a logfmt line.
get() {
    local kv
    for kv in $2; do
        [ "${kv%%=*}" = "$1" ] && {
            echo "${kv#*=}"
            return 0
        }
    done
    die "no $1 in: $2"
}

# ---- machine CPU, for pgbench (napsync-loadgen measures its own) -------------------------

cpu_snap() { awk '/^cpu /{t=0; for(i=2;i<=9;i++) t+=$i; print t-$5-$6, t; exit}' /proc/stat; }
busy_pct() { # busy0 total0 busy1 total1
    awk -v b0="$1" -v t0="$2" -v b1="$3" -v t1="$4" 'BEGIN{ if (t1>t0) printf "%.1f", 100*(b1-b0)/(t1-t0); else print "-" }'
}

# ---- figure 1: push throughput ---------------------------------------------------------------

# The per-mutation SQL of the baseline, for mutation I: what the engine does
# for one create, in the order the issue gives (the engine does it for a
# whole group at once): the mutation's answer (idempotency), the record
# locked, upserted, its revision with before and after, the feed entry
# numbered under sync_feed_head's row lock. bench_clients maps pgbench's
# client_id to its plan, principal and device.
mutation_sql() {
    local i=$1
    local rid="md5('r.' || :client_id::text || '.' || :r$i::text)::uuid"
    local mid="md5('m.' || :client_id::text || '.' || :r$i::text)::uuid"
    cat <<SQL
INSERT INTO sync_mutations (mutation_id, device_id, entity_type, record_id, outcome, version) SELECT $mid, c.device, 'indicator', $rid, 'applied', 1 FROM bench_clients c WHERE c.n = :client_id;
SELECT t.id, t.version, t.deleted, t.tenant_id, to_jsonb(t)::text, t.changed_by, t.changed_device FROM indicators t WHERE t.id = $rid ORDER BY t.id FOR UPDATE;
INSERT INTO indicators (id, version, tenant_id, deleted, changed_by, changed_device, changed_at, plan_id, title, value_type) SELECT $rid, 1, c.plan, false, c.principal, c.device, now(), c.plan, 'load indicator ' || :r$i::text, 'number' FROM bench_clients c WHERE c.n = :client_id ON CONFLICT (tenant_id, id) DO UPDATE SET version = EXCLUDED.version, deleted = EXCLUDED.deleted, changed_by = EXCLUDED.changed_by, changed_device = EXCLUDED.changed_device, changed_at = EXCLUDED.changed_at, plan_id = EXCLUDED.plan_id, title = EXCLUDED.title, value_type = EXCLUDED.value_type;
INSERT INTO sync_revisions (entity_type, record_id, version, tenant_id, op, mutation_id, principal_id, device_id, deleted, before, after) SELECT 'indicator', $rid, 1, c.plan, 'create', $mid, c.principal, c.device, false, NULL, jsonb_build_object('plan_id', c.plan, 'title', 'load indicator ' || :r$i::text, 'value_type', 'number') FROM bench_clients c WHERE c.n = :client_id;
SQL
}

feed_sql() {
    local i=$1
    cat <<SQL
WITH h AS (UPDATE sync_feed_head SET seq = seq + 1 RETURNING seq) INSERT INTO sync_feed (seq, entity_type, record_id, version, tenant_id) SELECT h.seq, 'indicator', md5('r.' || :client_id::text || '.' || :r$i::text)::uuid, 1, c.plan FROM h, bench_clients c WHERE c.n = :client_id;
SQL
}

# One transaction of B mutations. The feed entries come last, as the
# engine writes them: the head's row lock is then held from the first of
# them to COMMIT only.
pgbench_script() {
    local b=$1 f=$2 i
    {
        for ((i = 1; i <= b; i++)); do echo "\\set r$i random(1, 9000000000000000000)"; done
        echo "BEGIN;"
        echo "SELECT set_config('napsync.reader', 'engine', true);"
        for ((i = 1; i <= b; i++)); do mutation_sql "$i"; done
        for ((i = 1; i <= b; i++)); do feed_sql "$i"; done
        echo "COMMIT;"
    } >"$f"
}

# The baseline's clients: a plan each, of organisation bench-NNNN, with its
# coordinator as author and its device. Written as the superuser (as an
# import would), so the plan rows need no revision of their own.
pgbench_clients() {
    local db=$1 n=$2
    sql "$db" -v n="$n" -v role="$DAEMON_ROLE" >/dev/null <<'SQL'
CREATE TABLE bench_clients (n int PRIMARY KEY, plan uuid NOT NULL, principal uuid NOT NULL,
                            device uuid NOT NULL);
INSERT INTO bench_clients
SELECT g, md5('plan.' || g)::uuid, d.principal_id, d.id
  FROM generate_series(0, :'n'::int - 1) g
  JOIN devices d ON d.name = 'bench-' || lpad(g::text, 4, '0');
INSERT INTO plans (id, version, tenant_id, changed_by, changed_device, title, kind, status,
                   period_start, period_end, owner_id)
SELECT c.plan, 1, c.plan, c.principal, c.device, 'Baseline plan ' || c.n, 'nap', 'draft',
       '2024-01-01', '2028-12-31', p.organisation_id
  FROM bench_clients c JOIN principals p ON p.id = c.principal;
SELECT format('GRANT SELECT ON bench_clients TO %I', :'role') \gexec
SQL
}

# pgbench_run DB CLIENTS BATCH SECONDS [LOG_PREFIX]: sets PGB_TX (transactions
# done), PGB_TPS and PGB_FAILED. With a log prefix the command is one of the
# report's, and pgbench logs each transaction's latency there.
PGB_TX=0 PGB_TPS=0 PGB_FAILED=0
pgbench_run() {
    local db=$1 c=$2 b=$3 secs=$4 prefix=${5:-} j=2 limit logs=() out
    [ "$c" -lt 2 ] && j=1
    if [ "$PUSH_PUSHES" -gt 0 ]; then limit=(-t "$PUSH_PUSHES"); else limit=(-T "$secs"); fi
    [ -n "$prefix" ] && logs=(-l --log-prefix "$prefix")
    local cmd=(pgbench -n -M prepared -c "$c" -j "$j" "${limit[@]}" -f "$work/push-b$b.sql"
        "${logs[@]}" -h "$PGH" -p "$PGP" -U "$DAEMON_ROLE" "$db")
    [ -n "$prefix" ] && remember "${cmd[@]}"
    out=$("${cmd[@]}" 2>"$LOGS/pgbench-err.log") || {
        cat "$LOGS/pgbench-err.log" >&2
        die "pgbench failed"
    }
    echo "$out" >>"$LOGS/pgbench.log"
    PGB_TX=$(awk -F': *' '/^number of transactions actually processed/{split($2,a,"/"); print a[1]}' <<<"$out")
    PGB_TPS=$(awk '/^tps = /{print $3}' <<<"$out")
    PGB_FAILED=$(awk -F': *' '/^number of failed transactions/{split($2,a," "); print a[1]}' <<<"$out")
    PGB_FAILED=${PGB_FAILED:-0}
    { [[ $PGB_TX =~ ^[0-9]+$ ]] && [ -n "$PGB_TPS" ]; } || die "unexpected pgbench output: $out"
}

# Latency percentiles (ms) of pgbench's per-transaction logs: "p50 p99".
pgbench_latency() {
    cat "$1".* | awk '{print $3}' | sort -n | awk '{v[NR]=$1} END {
        if (NR == 0) { print "- -"; exit }
        i50 = int(0.50 * NR + 0.999999); i99 = int(0.99 * NR + 0.999999)
        printf "%.3f %.3f\n", v[i50] / 1000, v[i99] / 1000 }'
}

count_rows() {
    sql "$1" <<<"SELECT (SELECT count(*) FROM indicators) || ' ' || (SELECT count(*) FROM sync_feed WHERE tenant_id <> napsync_directory_tenant()) || ' ' || (SELECT count(*) FROM sync_mutations)"
}

declare -A NS_MPS NS_P50 NS_P99 NS_CPU NS_SRV NS_BUSY PG_MPS PG_P50 PG_P99 PG_BUSY

push_figure() {
    local c=$1 b=$2 db=nsbench_push line applied rows ind feed mut
    local args=(--clients "$c" --batch "$b")
    if [ "$PUSH_PUSHES" -gt 0 ]; then args+=(--pushes "$PUSH_PUSHES"); else args+=(--duration "$duration" --warmup "$warmup"); fi

    note "push: napsyncd, $c client(s) x batch $b"
    fresh_db "$db"
    start_daemon "$db" "push-c$c-b$b"
    remember "$LOADGEN" push --server "127.0.0.1:PORT" --ca "$CA_DIR/ca.crt" --certs "$CA_DIR" --server-pid PID "${args[@]}"
    line=$(loadgen push "${args[@]}") || die "napsync-loadgen push failed (log: $daemon_log)"
    echo "$line" >>"$LOGS/results.log"
    stop_daemon
    applied=$(get applied_total "$line")
    rows=$(count_rows "$db")
    read -r ind feed mut <<<"$rows"
    # Every indicator the loadgen saw applied is there, once, with its feed
    # entry and its stored answer (plus one plan per client).
    { [ "$ind" = "$applied" ] && [ "$feed" = $((applied + c)) ] && [ "$mut" = $((applied + c)) ]; } ||
        die "push c=$c b=$b: loadgen applied $applied, database has indicators/feed/answers $rows"
    NS_MPS[$c.$b]=$(get mutations_per_s "$line")
    NS_P50[$c.$b]=$(get p50_ms "$line")
    NS_P99[$c.$b]=$(get p99_ms "$line")
    NS_CPU[$c.$b]=$(get loadgen_cpu_s "$line")
    NS_SRV[$c.$b]=$(get server_cpu_s "$line")
    NS_BUSY[$c.$b]=$(get machine_busy_pct "$line")
    drop_db "$db"

    note "push: pgbench, $c client(s) x $b mutation(s) per transaction"
    fresh_db "$db"
    pgbench_clients "$db" "$c"
    local prefix=$LOGS/pgbench-c$c-b$b r0 r1 total=0 s0 s1
    rm -f "$prefix".*
    if [ "$PUSH_PUSHES" = 0 ] && [ "$warmup" -gt 0 ]; then
        pgbench_run "$db" "$c" "$b" "$warmup"
        [ "$PGB_FAILED" = 0 ] || die "pgbench warm-up: $PGB_FAILED failed transactions"
        total=$((total + PGB_TX))
    fi
    s0=$(cpu_snap)
    pgbench_run "$db" "$c" "$b" "$duration" "$prefix"
    s1=$(cpu_snap)
    [ "$PGB_FAILED" = 0 ] || die "pgbench c=$c b=$b: $PGB_FAILED failed transactions"
    total=$((total + PGB_TX))
    read -r ind feed mut <<<"$(count_rows "$db")"
    { [ "$ind" = $((total * b)) ] && [ "$feed" = $((total * b)) ] && [ "$mut" = $((total * b)) ]; } ||
        die "pgbench c=$c b=$b: $total transactions of $b, database has $ind $feed $mut"
    read -r r0 r1 <<<"$(pgbench_latency "$prefix")"
    PG_MPS[$c.$b]=$(awk -v t="$PGB_TPS" -v b="$b" 'BEGIN{printf "%.1f", t*b}')
    PG_P50[$c.$b]=$r0
    PG_P99[$c.$b]=$r1
    # shellcheck disable=SC2086 # two numbers each
    PG_BUSY[$c.$b]=$(busy_pct $s0 $s1)
    drop_db "$db"
}

# ---- figure 2: catch-up ---------------------------------------------------------------------

declare -A CU_SEED CU_PULL CU_PULL_B CU_PULL_CRSS CU_PULL_SRSS CU_SYNC CU_SYNC_CRSS CU_SYNC_SRSS
declare -A CU_PULL_S CU_PULL_CCPU CU_PULL_SCPU CU_SYNC_S CU_SYNC_CCPU CU_SYNC_SCPU
declare -A CU_KEYSET CU_COPY CU_COPY_B

# pgbench would take the colons of a time format for variables: chr(58).
catchup_keyset_script() {
    cat >"$1" <<'SQL'
SELECT p.seq AS cur, p.entity_type, p.record_id, p.version, p.deleted, p.tenant_id, p.after, p.name, p.at FROM (SELECT f.seq, r.entity_type, r.record_id, r.version, r.deleted, r.tenant_id, r.after::text AS after, pr.name, to_char(r.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24' || chr(58) || 'MI' || chr(58) || 'SS.US"Z"') AS at FROM sync_feed f JOIN sync_revisions r USING (tenant_id, entity_type, record_id, version) JOIN principals pr ON pr.id = r.principal_id WHERE f.tenant_id = :plan::uuid AND f.seq > :cur::bigint ORDER BY f.seq LIMIT :page::int) p ORDER BY p.seq DESC \aset
SQL
}

# The same rows as a page, all of them, in one statement.
copy_sql() {
    echo "COPY (SELECT f.seq, r.entity_type, r.record_id, r.version, r.deleted, r.tenant_id, r.after::text, pr.name, to_char(r.at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') FROM sync_feed f JOIN sync_revisions r USING (tenant_id, entity_type, record_id, version) JOIN principals pr ON pr.id = r.principal_id WHERE f.tenant_id = :'plan'::uuid ORDER BY f.seq) TO STDOUT"
}

catchup_figures() {
    local db=nsbench_catchup i k line plan records reader
    note "catch-up: seeding backlogs of ${CATCHUP_SIZES[*]} changes through napsyncd"
    fresh_db "$db"
    start_daemon "$db" catchup
    catchup_keyset_script "$work/keyset.sql"
    for i in "${!CATCHUP_SIZES[@]}"; do
        k=${CATCHUP_SIZES[$i]}
        remember "$LOADGEN" seed --server "127.0.0.1:PORT" --ca "$CA_DIR/ca.crt" --certs "$CA_DIR" --device bench-seed --changes "$k" --status adopted
        line=$(loadgen seed --device bench-seed --changes "$k" --status adopted) || die "seeding $k changes failed"
        echo "$line" >>"$LOGS/results.log"
        plan=$(get plan "$line")
        records=$(get records "$line")
        CU_SEED[$k]=$(get mutations_per_s "$line")
        # As autovacuum would have by now on a live server: planning the
        # feed's pages on the statistics of empty tables makes the first
        # fetch after a bulk seed several times slower (see the report).
        sql "$db" <<<"ANALYZE"

        note "catch-up of $k: streamed (ns_client_pull_plan)"
        remember "$LOADGEN" catchup --server "127.0.0.1:PORT" --ca "$CA_DIR/ca.crt" --certs "$CA_DIR" --server-pid PID --device "bench-pull-$i" --plan "$plan" --expect "$records"
        line=$(loadgen catchup --device "bench-pull-$i" --plan "$plan" --expect "$records") || die "catch-up (pull) of $k failed"
        echo "$line" >>"$LOGS/results.log"
        CU_PULL[$k]=$(get records_per_s "$line")
        CU_PULL_B[$k]=$(get bytes_per_record "$line")
        CU_PULL_CRSS[$k]=$(get client_hwm_kb "$line")
        CU_PULL_SRSS[$k]=$(get server_hwm_kb "$line")
        CU_PULL_S[$k]=$(get seconds "$line")
        CU_PULL_CCPU[$k]=$(get client_cpu_s "$line")
        CU_PULL_SCPU[$k]=$(get server_cpu_s "$line")

        note "catch-up of $k: synced into a fresh store"
        local store=$work/store-$i.db
        rm -f "$store" "$store"-*
        remember "$LOADGEN" catchup --server "127.0.0.1:PORT" --ca "$CA_DIR/ca.crt" --certs "$CA_DIR" --server-pid PID --device "bench-sync-$i" --plan "$plan" --expect "$records" --store "$store"
        line=$(loadgen catchup --device "bench-sync-$i" --plan "$plan" --expect "$records" --store "$store") || die "catch-up (sync) of $k failed"
        echo "$line" >>"$LOGS/results.log"
        CU_SYNC[$k]=$(get records_per_s "$line")
        CU_SYNC_CRSS[$k]=$(get client_hwm_kb "$line")
        CU_SYNC_SRSS[$k]=$(get server_hwm_kb "$line")
        CU_SYNC_S[$k]=$(get seconds "$line")
        CU_SYNC_CCPU[$k]=$(get client_cpu_s "$line")
        CU_SYNC_SCPU[$k]=$(get server_cpu_s "$line")
        rm -f "$store" "$store"-*

        # The baselines read as the fresh device's principal, so that the
        # same row-level security applies as to napsyncd's reads.
        reader=$(sql "$db" -v d="bench-pull-$i" <<<"SELECT principal_id FROM devices WHERE name = :'d'")
        local pages=$(((records + PAGE - 1) / PAGE)) out tps
        note "catch-up of $k: keyset paging baseline (pgbench, $pages pages of $PAGE)"
        local kcmd=(pgbench -n -M prepared -c 1 -t "$pages" -f "$work/keyset.sql" -D "plan=$plan" -D cur=0
            -D "page=$PAGE" -h "$PGH" -p "$PGP" -U "$DAEMON_ROLE" "$db")
        remember env "PGOPTIONS=-c napsync.reader=$reader" "${kcmd[@]}"
        out=$(PGOPTIONS="-c napsync.reader=$reader" "${kcmd[@]}" 2>"$LOGS/pgbench-err.log") || {
            cat "$LOGS/pgbench-err.log" >&2
            die "keyset baseline failed"
        }
        echo "$out" >>"$LOGS/pgbench.log"
        tps=$(awk '/^tps = /{print $3}' <<<"$out")
        CU_KEYSET[$k]=$(awk -v t="$tps" -v r="$records" -v p="$pages" 'BEGIN{printf "%.1f", t*r/p}')

        note "catch-up of $k: COPY baseline"
        local t0 t1 stats rows bytes
        copy_sql >"$work/copy.sql"
        local ccmd=(psql -X -q -v ON_ERROR_STOP=1 -v "plan=$plan" -f "$work/copy.sql" -h "$PGH" -p "$PGP"
            -U "$DAEMON_ROLE" "$db")
        remember env "PGOPTIONS=-c napsync.reader=$reader" "${ccmd[@]}"
        t0=$(now_ns)
        stats=$(PGOPTIONS="-c napsync.reader=$reader" "${ccmd[@]}" | wc -lc)
        t1=$(now_ns)
        read -r rows bytes <<<"$stats"
        [ "$rows" = "$records" ] || die "COPY of the $k backlog gave $rows rows, expected $records"
        CU_COPY[$k]=$(awk -v r="$rows" -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", r/((b-a)/1e9)}')
        CU_COPY_B[$k]=$(awk -v r="$rows" -v b="$bytes" 'BEGIN{printf "%.1f", b/r}')
    done
    stop_daemon
    drop_db "$db"
}

# ---- figure 3: fan-out ----------------------------------------------------------------------

declare -A FAN

# Every loadgen line's values in one array: get_all ARRAY LINE KEY...
get_all() {
    local -n into=$1
    local line=$2 k
    shift 2
    # shellcheck disable=SC2034 # into names the caller's array
    for k in "$@"; do into["$k"]=$(get "$k" "$line"); done
}

# The stores' directory in the commands of the report.
STORES_SHOWN=STORES

# The load generator's subscriber processes: NS_BENCH_FAN_PROCS, else one
# per online CPU (napsync-loadgen's default); the smoke run takes 2, so that
# the deliveries cross processes on any machine.
FAN_PROCS=${NS_BENCH_FAN_PROCS:-}
[ -z "$FAN_PROCS" ] || [[ $FAN_PROCS =~ ^[1-9][0-9]{0,2}$ ]] || die "NS_BENCH_FAN_PROCS: a number of processes"
[ "$smoke" = 1 ] && [ -z "$FAN_PROCS" ] && FAN_PROCS=2

fanout_figure() {
    local db=nsbench_fanout line ind stores=$STORES/fanout
    note "fan-out: $FAN_SUBS devices watching one plan, one writer, $FAN_WRITES writes"
    fresh_db "$db"
    start_daemon "$db" fanout
    mkdir -p "$stores"
    local args=(--clients "$FAN_SUBS" --writer bench-writer --writes "$FAN_WRITES" --gap-ms 200
        --window "$CONN_WINDOW")
    [ -z "$FAN_PROCS" ] || args+=(--procs "$FAN_PROCS")
    remember "$LOADGEN" fanout --server "127.0.0.1:PORT" --ca "$CA_DIR/ca.crt" --certs "$CA_DIR" --server-pid PID "${args[@]}" --stores "$STORES_SHOWN/fanout"
    line=$(loadgen fanout "${args[@]}" --stores "$stores") || die "napsync-loadgen fanout failed (log: $daemon_log)"
    echo "$line" >>"$LOGS/results.log"
    rm -rf "$stores"
    stop_daemon
    # The writer's indicators, the warm-up's included, each once.
    ind=$(sql "$db" <<<"SELECT count(*) FROM indicators")
    [ "$ind" = $((FAN_WRITES + 1)) ] || die "fan-out: the database has $ind indicators, expected $((FAN_WRITES + 1))"
    [ "$(get deliveries "$line")" = $((FAN_SUBS * FAN_WRITES)) ] || die "fan-out: unexpected deliveries in: $line"
    get_all FAN "$line" procs delivered_p50_ms delivered_p99_ms delivered_max_ms arrived_p50_ms \
        arrived_p99_ms arrived_max_ms last_p50_ms arrived_last_p50_ms setup_s writer_cpu_s \
        subscriber_cpu_s loadgen_cpu_s server_cpu_s seconds disconnects before_ack
    drop_db "$db"
}

# ---- figure 4: connections ------------------------------------------------------------------

declare -A CONN
CONN_EXTRA=()

conns_figure() {
    local db=nsbench_conns line
    local devices=$NDEV per
    [ "$devices" -gt "$CONN_SESSIONS" ] && devices=$CONN_SESSIONS
    per=$(((CONN_SESSIONS + devices - 1) / devices))
    CONN_EXTRA=()
    # More sessions than 8 (the default max_sessions_per_device) per certificate.
    [ "$per" -gt 8 ] && CONN_EXTRA=(--max-sessions-per-device "$per")
    note "connections: $CONN_SESSIONS idle sessions of $devices devices"
    fresh_db "$db"
    start_daemon "$db" conns "${CONN_EXTRA[@]}"
    local args=(--clients "$CONN_SESSIONS" --devices "$devices" --window "$CONN_WINDOW" --hold "$CONN_HOLD")
    remember "$LOADGEN" conns --server "127.0.0.1:PORT" --ca "$CA_DIR/ca.crt" --certs "$CA_DIR" --server-pid PID "${args[@]}"
    line=$(loadgen conns "${args[@]}") || die "napsync-loadgen conns failed (log: $daemon_log)"
    echo "$line" >>"$LOGS/results.log"
    stop_daemon
    CONN[devices]=$devices
    get_all CONN "$line" full_per_s full_p50_ms full_p99_ms resumed_per_s resumed_p50_ms resumed_p99_ms \
        ratio server_rss0_kb server_rss_kb server_rss_resumed_kb per_session_kb per_session_resumed_kb \
        loadgen_per_client_kb full_server_cpu_s full_loadgen_cpu_s resumed_server_cpu_s resumed_loadgen_cpu_s full_s resumed_s
    drop_db "$db"
}

# ---- figure 5: reconnect storm --------------------------------------------------------------

declare -A STORM

storm_figure() {
    local db=nsbench_storm line stores=$STORES/storm rows
    local devices=$NDEV
    [ "$devices" -gt "$STORM_CLIENTS" ] && devices=$STORM_CLIENTS
    note "storm: $STORM_CLIENTS device stores ($devices certificates) queue $STORM_CHANGES changes each"
    fresh_db "$db"
    start_daemon "$db" storm
    mkdir -p "$stores"
    local args=(--clients "$STORM_CLIENTS" --devices "$devices" --changes "$STORM_CHANGES")
    remember "$LOADGEN" storm-prepare --server "127.0.0.1:PORT" --ca "$CA_DIR/ca.crt" --certs "$CA_DIR" "${args[@]}" --window "$CONN_WINDOW" --stores "$STORES_SHOWN/storm"
    line=$(loadgen storm-prepare "${args[@]}" --window "$CONN_WINDOW" --stores "$stores") ||
        die "napsync-loadgen storm-prepare failed (log: $daemon_log)"
    echo "$line" >>"$LOGS/results.log"
    STORM[prepare_s]=$(get seconds "$line")
    note "storm: napsyncd restarts; every device syncs at once"
    stop_daemon
    start_daemon "$db" storm-restarted
    # The devices wait for answers as long as libnapsync does by default.
    args+=(--timeout-ms 10000 --pinger bench-pinger --ping-ms 10)
    remember "$LOADGEN" storm --server "127.0.0.1:PORT" --ca "$CA_DIR/ca.crt" --certs "$CA_DIR" --server-pid PID "${args[@]}" --stores "$STORES_SHOWN/storm"
    line=$(loadgen storm "${args[@]}" --stores "$stores") ||
        die "napsync-loadgen storm failed (log: $daemon_log)"
    echo "$line" >>"$LOGS/results.log"
    rm -rf "$stores"
    stop_daemon
    # Every queued change is in the database, once: a plan per store and
    # its indicators.
    rows=$(sql "$db" <<<"SELECT (SELECT count(*) FROM plans) || ' ' || (SELECT count(*) FROM indicators)")
    [ "$rows" = "$STORM_CLIENTS $((STORM_CLIENTS * (STORM_CHANGES - 1)))" ] ||
        die "storm: the database has plans/indicators $rows, expected $STORM_CLIENTS $((STORM_CLIENTS * (STORM_CHANGES - 1)))"
    STORM[devices]=$devices
    get_all STORM "$line" drained_s synced_s connects retries drain_p50_ms pings_before ping_before_p50_ms \
        ping_before_p99_ms pings ping_p50_ms ping_p99_ms ping_max_ms pings_skipped loadgen_cpu_s \
        server_cpu_s server_hwm_kb
    drop_db "$db"
}

# ---- figure 6: the PouchDB peer -----------------------------------------------------------

# pouchdb-server 4.2.0 (LevelDB) and pouchdb-node clients, from the field-link
# benchmark's npm install (tests/fieldlink/peer/package.json and its lock,
# `npm ci` into var/cache/fieldlink-peer/, shared with tests/fieldlink/run.sh),
# behind stunnel (TLS 1.3 with napsyncd's certificate) on loopback.
PEER_DIR=$ROOT/tests/fieldlink/peer
PEER_JS=$ROOT/tests/bench/peer.js
PEER_CACHE=${NS_PEER_CACHE:-$ROOT/var/cache/fieldlink-peer}
PEER_POUCH=0  # whether the PouchDB half runs (smoke: only when it can be installed)
PEER_WHY=''   # why not
pouch_pid='' stunnel_pid=''
declare -A PEER

# Node.js (also the data's generator), stunnel and the npm packages: sets
# PEER_POUCH. The smoke run goes on with napsync's half alone when the npm
# packages cannot be had (no registry), saying so in its report.
peer_install() {
    command -v node >/dev/null || "$ROOT/tests/lib/deps.sh" nodejs npm >&2
    command -v npm >/dev/null || "$ROOT/tests/lib/deps.sh" npm >&2
    command -v stunnel4 >/dev/null || "$ROOT/tests/lib/deps.sh" stunnel4 >&2
    command -v node >/dev/null || die "node is missing (tests/lib/deps.sh nodejs npm)"
    mkdir -p "$PEER_CACHE"
    if ! cmp -s "$PEER_DIR/package-lock.json" "$PEER_CACHE/package-lock.json" ||
        ! cmp -s "$PEER_DIR/package.json" "$PEER_CACHE/package.json" || [ ! -d "$PEER_CACHE/node_modules" ]; then
        note "peer: npm ci in $PEER_CACHE"
        cp "$PEER_DIR/package.json" "$PEER_DIR/package-lock.json" "$PEER_CACHE/"
        # No install scripts: LevelDB's native module comes prebuilt.
        if ! (cd "$PEER_CACHE" && npm ci --ignore-scripts --no-audit --no-fund >&2); then
            rm -f "$PEER_CACHE/package-lock.json"
            [ "$smoke" = 1 ] || die "npm ci failed in $PEER_CACHE"
            PEER_WHY="npm ci failed in $PEER_CACHE"
            return 0
        fi
    fi
    if ! command -v stunnel4 >/dev/null; then
        [ "$smoke" = 1 ] || die "stunnel4 is missing (tests/lib/deps.sh stunnel4)"
        PEER_WHY='no stunnel4'
        return 0
    fi
    PEER_POUCH=1
}

# CPU seconds (user + system) of a process so far.
proc_cpu() { awk -v t="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / t}' "/proc/$1/stat"; }
# ... and of PostgreSQL's processes now (napsyncd's pool connections last
# through a step; a process that exits meanwhile takes its share along).
pg_cpu() {
    local p
    for p in $(pgrep -P "$(head -n 1 "$PG_DIR/data/postmaster.pid")"); do
        cat "/proc/$p/stat" 2>/dev/null || true
    done | awk -v t="$(getconf CLK_TCK)" '{s += $14 + $15} END {printf "%.2f", s / t}'
}

pouch_port=''
pouch_start() {
    local dir=$work/peer/pouchdb-server port i
    rm -rf "$dir"
    mkdir -p "$dir"
    for ((i = 0; i < 5; i++)); do
        port=$(shuf -i 20000-60000 -n 1)
        # pouchdb-server writes its config.json and log.txt where it runs.
        (cd "$dir" && exec "$PEER_CACHE/node_modules/.bin/pouchdb-server" --host 127.0.0.1 \
            --port "$port" --dir "$dir/db" -c "$dir/config.json" >"$LOGS/pouchdb-server.log" 2>&1) &
        pouch_pid=$!
        cat >"$work/peer/stunnel.conf" <<CONF
foreground = yes
pid =
debug = notice
[pouchdb]
accept = 127.0.0.1:$((port + 1))
connect = 127.0.0.1:$port
cert = $CA_DIR/napsyncd.crt
key = $CA_DIR/napsyncd.key
CONF
        stunnel4 "$work/peer/stunnel.conf" >"$LOGS/stunnel.log" 2>&1 &
        stunnel_pid=$!
        local waited
        for ((waited = 0; waited < 100; waited++)); do
            if (exec 3<>"/dev/tcp/127.0.0.1/$port" && exec 4<>"/dev/tcp/127.0.0.1/$((port + 1))") 2>/dev/null; then
                pouch_port=$((port + 1))
                return 0
            fi
            { kill -0 "$pouch_pid" 2>/dev/null && kill -0 "$stunnel_pid" 2>/dev/null; } || break
            sleep 0.1
        done
        pouch_stop
    done
    die "pouchdb-server or stunnel did not start (logs: $LOGS/pouchdb-server.log, stunnel.log)"
}

pouch_stop() {
    local p
    for p in "$stunnel_pid" "$pouch_pid"; do
        [ -n "$p" ] || continue
        kill -TERM "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    pouch_pid='' stunnel_pid=''
}

# node SCRIPT ARGS... with the peer's packages, trusting the benchmark's CA.
pouch_node() { env NODE_PATH="$PEER_CACHE/node_modules" NODE_EXTRA_CA_CERTS="$CA_DIR/ca.crt" node "$@"; }
pouch_url() { echo "https://127.0.0.1:$pouch_port/$1"; }

# json_get KEY JSON: a number or string of a one-line JSON object.
json_get() {
    local v
    v=$(node -e 'const v = JSON.parse(process.argv[1])[process.argv[2]]; if (!["number", "string"].includes(typeof v)) process.exit(1); console.log(v)' "$2" "$1") ||
        die "no $1 in: $2"
    echo "$v"
}

# CPU seconds of this shell's children that have ended (bash's times, whose
# second line is theirs; run in this shell, not a subshell).
children_cpu() {
    times >"$work/peer/times"
    awk 'NR == 2 { s = 0; for (i = 1; i <= 2; i++) { split($i, t, /[ms]/); s += t[1] * 60 + t[2] } printf "%.2f\n", s }' "$work/peer/times"
}

# One timed PouchDB step: pouch_step TAG SCRIPT ARGS...; sets PEER[TAG.*]
# from its JSON line, the client's CPU (node) and the server's (pouchdb-server
# and stunnel).
pouch_step() {
    local tag=$1 out c0 s0 n0 n1
    shift
    c0=$(proc_cpu "$pouch_pid")
    s0=$(proc_cpu "$stunnel_pid")
    children_cpu >"$work/peer/cpu0"
    out=$(pouch_node "$@" 2>"$LOGS/pouch-$tag.err") || {
        cat "$LOGS/pouch-$tag.err" >&2
        die "PouchDB $tag failed: $out"
    }
    children_cpu >"$work/peer/cpu1"
    read -r n0 <"$work/peer/cpu0"
    read -r n1 <"$work/peer/cpu1"
    echo "pouch $tag $out" >>"$LOGS/results.log"
    PEER[$tag.out]=$out
    PEER[$tag.cli_cpu]=$(awk -v a="$n0" -v b="$n1" 'BEGIN{printf "%.2f", b - a}')
    PEER[$tag.srv_cpu]=$(awk -v a="$c0" -v b="$(proc_cpu "$pouch_pid")" -v c="$s0" -v d="$(proc_cpu "$stunnel_pid")" 'BEGIN{printf "%.2f", b - a + d - c}')
}

peer_figure() {
    local db=nsbench_peer i k line name plan records gen key c0 d=$work/peer
    rm -rf "$d"
    mkdir -p "$d"
    peer_install
    note "peer: data (tests/fieldlink/peer/plan.js's words, tests/bench/peer.js gen)"
    node "$PEER_DIR/plan.js" "$d" >/dev/null || die "plan.js failed"
    fresh_db "$db"
    start_daemon "$db" peer
    [ "$PEER_POUCH" = 1 ] && pouch_start
    for i in "${!PEER_SIZES[@]}"; do
        k=${PEER_SIZES[$i]}
        name=docs-$k
        gen=$(node "$PEER_JS" gen "$d/docs.json" "$d" "$name" "$k") || die "peer.js gen failed"
        plan=$(json_get plan_id "$gen")
        records=$(json_get docs "$gen")
        PEER[$k.records]=$records
        PEER[report_bytes]=$(json_get report_bytes "$gen")

        note "peer: napsync push of $records records"
        local prep=$STORES/peer-prepare-$i.db store=$d/ns-push-$i.db
        rm -f "$prep" "$prep"-* "$store" "$store"-*
        remember "$LOADGEN" peer-prepare --server "127.0.0.1:PORT" --ca "$CA_DIR/ca.crt" --certs "$CA_DIR" --device "bench-peer-push-$i" --data "$d/$name.tsv" --store "$STORES_SHOWN/peer-prepare-$i.db"
        line=$(loadgen peer-prepare --device "bench-peer-push-$i" --data "$d/$name.tsv" --store "$prep") || die "peer-prepare failed"
        echo "$line" >>"$LOGS/results.log"
        PEER[$k.prepare_s]=$(get seconds "$line")
        # Saved on the tmpfs (an fsync per put), then moved to the work
        # directory's disk, where PouchDB's databases are too.
        local f
        for f in "$prep" "$prep"-wal "$prep"-shm; do [ -e "$f" ] && mv "$f" "$store${f#"$prep"}"; done
        remember "$LOADGEN" peer-push --server "127.0.0.1:PORT" --ca "$CA_DIR/ca.crt" --certs "$CA_DIR" --server-pid PID --device "bench-peer-push-$i" --plan "$plan" --expect "$records" --store "$store"
        c0=$(pg_cpu)
        line=$(loadgen peer-push --device "bench-peer-push-$i" --plan "$plan" --expect "$records" --store "$store") ||
            die "peer-push failed (log: $daemon_log)"
        PEER[$k.ns_push.pg_cpu]=$(awk -v a="$c0" -v b="$(pg_cpu)" 'BEGIN{printf "%.2f", b - a}')
        echo "$line" >>"$LOGS/results.log"
        for key in seconds sync_seconds client_cpu_s server_cpu_s; do PEER[$k.ns_push.$key]=$(get "$key" "$line"); done
        [ "$(sql "$db" -v p="$plan" <<<"SELECT count(*) FROM indicator_reports WHERE plan_id = :'p'")" = "$k" ] ||
            die "peer: the database does not have the $k reports of plan $plan"
        # As the catch-up figure: autovacuum would have analysed by now.
        sql "$db" <<<"ANALYZE"

        note "peer: napsync pull of $records records into a new store"
        store=$d/ns-pull-$i.db
        remember "$LOADGEN" catchup --server "127.0.0.1:PORT" --ca "$CA_DIR/ca.crt" --certs "$CA_DIR" --server-pid PID --device "bench-peer-pull-$i" --plan "$plan" --expect "$records" --store "$store"
        c0=$(pg_cpu)
        line=$(loadgen catchup --device "bench-peer-pull-$i" --plan "$plan" --expect "$records" --store "$store") ||
            die "peer: the napsync pull failed (log: $daemon_log)"
        PEER[$k.ns_pull.pg_cpu]=$(awk -v a="$c0" -v b="$(pg_cpu)" 'BEGIN{printf "%.2f", b - a}')
        echo "$line" >>"$LOGS/results.log"
        # From the connect's call, as PouchDB's time includes its first request.
        PEER[$k.ns_pull.seconds]=$(awk -v s="$(get seconds "$line")" -v c="$(get connect_ms "$line")" 'BEGIN{printf "%.3f", s + c / 1000}')
        PEER[$k.ns_pull.client_cpu_s]=$(get client_cpu_s "$line")
        PEER[$k.ns_pull.server_cpu_s]=$(get server_cpu_s "$line")
        rm -f "$d"/ns-*-"$i".db*

        [ "$PEER_POUCH" = 1 ] || continue
        note "peer: PouchDB push of $records documents"
        remember env NODE_PATH=PEER/node_modules NODE_EXTRA_CA_CERTS="$CA_DIR/ca.crt" node "$PEER_JS" push "https://127.0.0.1:PORT/$name" "$d/pouch-push-$i" "$d/$name.json"
        pouch_step "$k.push" "$PEER_JS" push "$(pouch_url "$name")" "$d/pouch-push-$i" "$d/$name.json"
        note "peer: PouchDB pull of $records documents into a new database"
        remember env NODE_PATH=PEER/node_modules NODE_EXTRA_CA_CERTS="$CA_DIR/ca.crt" node "$PEER_DIR/pouch.js" pull "https://127.0.0.1:PORT/$name" "$d/pouch-pull-$i" "$records"
        pouch_step "$k.pull" "$PEER_DIR/pouch.js" pull "$(pouch_url "$name")" "$d/pouch-pull-$i" "$records"
        rm -rf "$d/pouch-push-$i" "$d/pouch-pull-$i"
    done

    note "peer: live replication, $PEER_WRITES writes"
    gen=$(node "$PEER_JS" gen "$d/docs.json" "$d" live $((PEER_WRITES + 1))) || die "peer.js gen failed"
    local args=(--device bench-peer-live --writer bench-peer-writer --writes "$PEER_WRITES" --gap-ms "$PEER_GAP_MS")
    remember "$LOADGEN" peer-live --server "127.0.0.1:PORT" --ca "$CA_DIR/ca.crt" --certs "$CA_DIR" "${args[@]}" --data "$d/live.tsv" --store "$d/ns-live.db"
    line=$(loadgen peer-live "${args[@]}" --data "$d/live.tsv" --store "$d/ns-live.db") || die "peer-live failed (log: $daemon_log)"
    echo "$line" >>"$LOGS/results.log"
    for key in latency_p50_ms latency_p99_ms latency_max_ms ack_p50_ms ack_p99_ms disconnects; do PEER[ns_live.$key]=$(get "$key" "$line"); done
    if [ "$PEER_POUCH" = 1 ]; then
        remember env NODE_PATH=PEER/node_modules NODE_EXTRA_CA_CERTS="$CA_DIR/ca.crt" node "$PEER_JS" live "https://127.0.0.1:PORT/live" "$d/pouch-live" "$d/live.json" "$PEER_WRITES" "$PEER_GAP_MS"
        pouch_step live "$PEER_JS" live "$(pouch_url live)" "$d/pouch-live" "$d/live.json" "$PEER_WRITES" "$PEER_GAP_MS"
        pouch_stop
    fi
    stop_daemon
    rm -rf "$d"
    drop_db "$db"
}

# ---- the report ----------------------------------------------------------------------------------

ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b > 0) printf "%.2f", a/b; else print "-" }'; }
kb_mib() { awk -v k="$1" 'BEGIN{ if (k >= 0) printf "%.1f", k/1024; else print "-" }'; }
fmt() { awk -v v="$1" 'BEGIN{ printf "%.0f", v }'; }
target_for() { if [ "$1" = 1 ]; then echo 0.7; else echo 3; fi; }
verdict() { awk -v r="$1" -v t="$2" 'BEGIN{ if (r == "-") print "-"; else if (r+0 >= t+0) print "met"; else print "**missed**" }'; }
verdict_below() { awk -v r="$1" -v t="$2" 'BEGIN{ if (r == "-" || r < 0) print "-"; else if (r+0 < t+0) print "met"; else print "**missed**" }'; }

# The hand-written analysis between these markers survives a rerun.
ANALYSIS_BEGIN='<!-- analysis: kept by tests/bench/run.sh across runs -->'
ANALYSIS_END='<!-- /analysis -->'
# ... and the peer's, in its section.
PEER_ANALYSIS_BEGIN='<!-- peer-analysis: kept by tests/bench/run.sh across runs -->'
PEER_ANALYSIS_END='<!-- /peer-analysis -->'

# The report's section 1, push throughput (write_report, into its output).
report_push() {
    local c b r t
    echo "## 1. Push throughput"
    echo
    echo "napsyncd: \`napsync-loadgen push\` (tests/bench/loadgen.c) runs N devices as N clients"
    echo "on one libuv loop in one thread. Each device has its own certificate and organisation;"
    echo "it creates a plan as that organisation's coordinator, and then pushes batches of B"
    echo "indicator creates (3 fields each, \`ns_client_push_batch\`, mode APPLY), one push in"
    if [ "$PUSH_PUSHES" -gt 0 ]; then
        echo "flight per device, $PUSH_PUSHES pushes each (smoke: fixed work, no warm-up)."
    else
        echo "flight per device, for ${warmup} s unmeasured and then ${duration} s measured."
    fi
    echo "Latency: from the call to the answer's callback, per push (monotonic clock). Every"
    echo "answer must be APPLIED at version 1, and afterwards the database must hold exactly the"
    echo "applied indicators, one feed entry and one stored answer each: else the run fails."
    echo
    echo "Baseline: \`pgbench -M prepared\` as the same database role, on the same schema"
    echo "(triggers, deferred checks and row-level security included), one connection per"
    echo "client, each transaction doing per mutation what the engine does: insert the"
    echo "mutation's answer into \`sync_mutations\`, \`SELECT … FOR UPDATE\` the record, upsert it,"
    echo "insert its revision with before and after, and insert its feed entry numbered under"
    echo "\`sync_feed_head\`'s row lock (the feed entries last, held to COMMIT, as the engine"
    echo "does). Batch B is B mutations per transaction. The engine also sends one"
    echo "\`pg_notify\` per batch and checks authorisation, which the baseline does not."
    echo
    echo "| clients | batch | napsyncd mutations/s | p50 ms | p99 ms | pgbench mutations/s | p50 ms | p99 ms | napsyncd / pgbench | target | |"
    echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    for c in "${PUSH_CLIENTS[@]}"; do
        for b in "${PUSH_BATCHES[@]}"; do
            r=$(ratio "${NS_MPS[$c.$b]}" "${PG_MPS[$c.$b]}")
            t=$(target_for "$c")
            echo "| $c | $b | $(fmt "${NS_MPS[$c.$b]}") | ${NS_P50[$c.$b]} | ${NS_P99[$c.$b]} | $(fmt "${PG_MPS[$c.$b]}") | ${PG_P50[$c.$b]} | ${PG_P99[$c.$b]} | $r | ≥ $t | $(verdict "$r" "$t") |"
        done
    done
    echo
    echo "pgbench's latency is per transaction (B mutations), napsyncd's per push (B mutations)."
    echo "Targets (the issue's): napsyncd / pgbench ≥ 0.7 at 1 client, ≥ 3 at 16 and 256."
    echo
    echo "Where the CPU went during the measured window (CPU seconds; busy: the whole machine,"
    echo "$(nproc) cores = 100 %):"
    echo
    echo "| clients | batch | napsyncd CPU s | load generator CPU s | machine busy (napsyncd run) | machine busy (pgbench run) |"
    echo "|---:|---:|---:|---:|---:|---:|"
    for c in "${PUSH_CLIENTS[@]}"; do
        for b in "${PUSH_BATCHES[@]}"; do
            echo "| $c | $b | ${NS_SRV[$c.$b]} | ${NS_CPU[$c.$b]} | ${NS_BUSY[$c.$b]} % | ${PG_BUSY[$c.$b]} % |"
        done
    done
    echo
}

# The report's section 2, catch-up (write_report, into its output).
report_catchup() {
    local k met
    echo "## 2. Catch-up"
    echo
    echo "One device seeds a plan (status adopted) with a backlog of K indicator creates through"
    echo "napsyncd (\`napsync-loadgen seed\`, batches of 1,000); then a fresh device of the same"
    echo "organisation, never synced, fetches the whole plan (K + 1 records, the plan included):"
    echo
    echo "* **streamed**: \`ns_client_pull_plan\`, pages of $PAGE through TLS and protobuf to a"
    echo "  callback that counts them, nothing kept. Bytes per record: what the client read from"
    echo "  its socket (TLS records included: /proc/self/io rchar) over the records;"
    echo "* **synced (end to end)**: \`ns_client_sync\` of that plan into a new store: pull every"
    echo "  page and apply it with its cursor in one SQLite transaction (WAL, synchronous=FULL),"
    echo "  then list conflicts. This is the figure the target is about;"
    echo "* baselines in SQL on the same feed, as the same role and reader (so the same row-level"
    echo "  security): keyset paging of the feed joined with the revisions, $PAGE rows a page"
    printf '%s\n' "  (\`pgbench -M prepared\`, one page per transaction, the cursor carried in \`\\aset\`), and"
    echo "  one \`COPY … TO STDOUT\` of the same rows through psql (bytes: COPY's text format)."
    echo
    echo "Records/s exclude the connection (TLS handshake and Hello; the baselines: the"
    echo "PostgreSQL connection). Peak RSS: VmHWM of the client process, and of napsyncd"
    echo "reset (/proc/PID/clear_refs) just before the fetch. Each backlog is seeded into the"
    echo "same database in turn and ANALYZEd before it is fetched, as autovacuum would have"
    echo "done on a live server."
    echo
    echo "| backlog | seeding mutations/s | streamed records/s | bytes/record | synced records/s | keyset SQL records/s | COPY records/s | COPY bytes/record | synced / keyset | target ≥ 100,000/s |"
    echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    for k in "${CATCHUP_SIZES[@]}"; do
        met=$(awk -v v="${CU_SYNC[$k]}" 'BEGIN{ if (v+0 >= 100000) print "met"; else print "**missed**" }')
        echo "| $k | $(fmt "${CU_SEED[$k]}") | $(fmt "${CU_PULL[$k]}") | ${CU_PULL_B[$k]} | $(fmt "${CU_SYNC[$k]}") | $(fmt "${CU_KEYSET[$k]}") | $(fmt "${CU_COPY[$k]}") | ${CU_COPY_B[$k]} | $(ratio "${CU_SYNC[$k]}" "${CU_KEYSET[$k]}") | $met |"
    done
    echo
    echo "Time, CPU and memory of each fetch (CPU seconds during the fetch; peak RSS in MiB):"
    echo
    echo "| backlog | fetch | seconds | client CPU s | napsyncd CPU s | client peak RSS | napsyncd peak RSS |"
    echo "|---:|---|---:|---:|---:|---:|---:|"
    for k in "${CATCHUP_SIZES[@]}"; do
        echo "| $k | streamed | ${CU_PULL_S[$k]} | ${CU_PULL_CCPU[$k]} | ${CU_PULL_SCPU[$k]} | $(kb_mib "${CU_PULL_CRSS[$k]}") | $(kb_mib "${CU_PULL_SRSS[$k]}") |"
        echo "| $k | synced | ${CU_SYNC_S[$k]} | ${CU_SYNC_CCPU[$k]} | ${CU_SYNC_SCPU[$k]} | $(kb_mib "${CU_SYNC_CRSS[$k]}") | $(kb_mib "${CU_SYNC_SRSS[$k]}") |"
    done
    echo
    [ "$full" = 1 ] || echo "The 1,000,000-change backlog runs only with \`--full\` (several minutes more)."
    echo
}

# The report's section 3, fan-out (write_report, into its output).
report_fanout() {
    echo "## 3. Fan-out"
    echo
    echo "$FAN_SUBS devices watch one plan: each runs \`ns_client_sync\` with \`watch\` and the plan as"
    echo "its scope, into its own device store, as \`napsync sync --watch --plan\` does"
    echo "(\`napsync-loadgen fanout\`). The load generator spreads them over ${FAN[procs]} processes (\`--procs\`;"
    echo "default: one per online CPU), forked before any session, each with its own libuv loop and"
    echo "an equal share of the devices; its first process runs the writer and collects every"
    echo "subscriber's timestamps over pipes. Each device has its own certificate, organisation"
    echo "and principal. One writer, a device of another organisation, owns the plan (adopted,"
    echo "so every organisation reads it) and pushes one indicator create at a time; when every"
    echo "subscriber has it, it waits 200 ms and pushes the next: one write to warm up (it also"
    echo "proves every subscription live), then $FAN_WRITES measured. A delivery is the subscriber's"
    echo "\`NS_SYNC_CHANGES\` event: the page has arrived, been decrypted, decoded and applied to its"
    echo "store with its cursor (SQLite, WAL, synchronous=FULL; the stores are on $STORES_FS)."
    echo "Delivered: from the writer's ack (its push callback) to each subscriber's delivery,"
    echo "every write and every subscriber, both timed with CLOCK_MONOTONIC (one clock for all"
    echo "the processes). Arrived: from the same ack to when the subscriber's loop saw the page"
    echo "(libuv's loop time, set when its poll returns, before that loop's own work on the page;"
    echo "1 ms resolution: the middle of that millisecond, no later than the delivery). Every"
    echo "subscriber must receive every write exactly once, in order, and the database must hold"
    echo "exactly the writes; else the run fails."
    echo
    echo "| subscribers | load generator processes | writes | deliveries | delivered p50 ms | p99 ms | max ms | last subscriber, median of writes, ms | arrived p50 ms | p99 ms | max ms | last subscriber, median of writes, ms | target p99 < 35 ms | |"
    echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"
    echo "| $FAN_SUBS | ${FAN[procs]} | $FAN_WRITES | $((FAN_SUBS * FAN_WRITES)) | ${FAN[delivered_p50_ms]} | ${FAN[delivered_p99_ms]} | ${FAN[delivered_max_ms]} | ${FAN[last_p50_ms]} | ${FAN[arrived_p50_ms]} | ${FAN[arrived_p99_ms]} | ${FAN[arrived_max_ms]} | ${FAN[arrived_last_p50_ms]} | < 35 | $(verdict_below "${FAN[delivered_p99_ms]}" 35) |"
    echo
    echo "CPU during the measured writes (${FAN[seconds]} s): napsyncd ${FAN[server_cpu_s]} s; load generator"
    echo "${FAN[loadgen_cpu_s]} s, of which the writer's process ${FAN[writer_cpu_s]} s and the subscriber processes"
    echo "${FAN[subscriber_cpu_s]//,/, } s. Setting up the $FAN_SUBS watches (connect, first sync, Subscribe) took"
    echo "${FAN[setup_s]} s; lost connections: ${FAN[disconnects]}; deliveries timed before the writer's process"
    echo "saw its ack (the processes share the CPUs; counted as 0 ms): ${FAN[before_ack]}."
    echo
}

# The report's section 4, connections (write_report, into its output).
report_conns() {
    echo "## 4. Connections"
    echo
    echo "\`napsync-loadgen conns\` opens $CONN_SESSIONS sessions (TLS 1.3 with client certificates, then"
    echo "Hello and Welcome: the device looked up in PostgreSQL) of ${CONN[devices]} devices, $CONN_WINDOW connects in"
    echo "flight at a time, and leaves them idle for $CONN_HOLD s; every session is then closed"
    echo "(Goodbye) and the same clients connect again, offering the TLS session each kept"
    echo "from the server's ticket: every one of them must resume (\`ns_identity.tls_resumed\`),"
    echo "else the run fails. Sessions/s: sessions up (Welcome received) over the time from the"
    echo "first connect to the last Welcome; latency per connect, from the call to Welcome."
    echo "RSS per idle session: napsyncd's VmRSS (/proc/PID/status) once all sessions have idled,"
    echo "less its VmRSS before the first connect, over the sessions."
    if [ "${#CONN_EXTRA[@]}" -gt 0 ]; then
        echo "napsyncd ran with \`${CONN_EXTRA[*]}\` for this figure ($CONN_SESSIONS sessions over"
        echo "${CONN[devices]} certificates; the default is 8 per device); max_sessions is the default 10,000."
    fi
    echo
    echo "| sessions | handshakes | sessions/s | p50 ms | p99 ms | napsyncd CPU s | load generator CPU s |"
    echo "|---:|---|---:|---:|---:|---:|---:|"
    echo "| $CONN_SESSIONS | full | $(fmt "${CONN[full_per_s]}") | ${CONN[full_p50_ms]} | ${CONN[full_p99_ms]} | ${CONN[full_server_cpu_s]} | ${CONN[full_loadgen_cpu_s]} |"
    echo "| $CONN_SESSIONS | resumed | $(fmt "${CONN[resumed_per_s]}") | ${CONN[resumed_p50_ms]} | ${CONN[resumed_p99_ms]} | ${CONN[resumed_server_cpu_s]} | ${CONN[resumed_loadgen_cpu_s]} |"
    echo
    echo "| sessions | resumed / full | target ≥ 5 | | napsyncd RSS before, MiB | with the sessions idle, MiB | per idle session, KiB | target < 64 KiB | |"
    echo "|---:|---:|---|---|---:|---:|---:|---|---|"
    echo "| $CONN_SESSIONS | ${CONN[ratio]} | ≥ 5 | $(verdict "${CONN[ratio]}" 5) | $(kb_mib "${CONN[server_rss0_kb]}") | $(kb_mib "${CONN[server_rss_kb]}") | ${CONN[per_session_kb]} | < 64 | $(verdict_below "${CONN[per_session_kb]}" 64) |"
    echo
    echo "After the resumed round napsyncd held $(kb_mib "${CONN[server_rss_resumed_kb]}") MiB (${CONN[per_session_resumed_kb]} KiB a session over the first"
    echo "figure's baseline). The load generator's own memory: ${CONN[loadgen_per_client_kb]} KiB per client."
    echo
}

# The report's section 5, the reconnect storm (write_report, into its output).
report_storm() {
    echo "## 5. Reconnect storm"
    echo
    echo "$STORM_CLIENTS device stores, on ${STORM[devices]} device certificates taken in turn, sync once against"
    echo "napsyncd, which leaves each a cursor and a TLS session, and then each queues"
    echo "$STORM_CHANGES changes offline (\`ns_client_put\`: a new plan and $((STORM_CHANGES - 1)) indicators in it; \`napsync-loadgen"
    echo "storm-prepare\`, ${STORM[prepare_s]} s). napsyncd restarts (SIGTERM, a new process: new ticket keys,"
    echo "so every session is a full handshake again). One well-behaved device connects and pings"
    echo "every 10 ms, one ping at a time; after 2 s of that, all $STORM_CLIENTS stores call \`ns_client_sync\`"
    echo "at once (connect, push the outbox, pull, list conflicts: \`napsync-loadgen storm\`), each"
    echo "waiting for an answer as long as libnapsync does by default (10 s). libnapsync connects a"
    echo "sync again when it loses its connection or an answer times out; when it gives up on"
    echo "one, the load generator starts it again after 0.25 to 0.5 s, doubling (retries). Sessions"
    echo "opened: every connection the devices' syncs made (one each when nothing is lost). Drained:"
    echo "the store's outbox has nothing pending (\`ns_client_status\`, after each push answer);"
    echo "every change must be applied and found once in the database, else the run fails. The"
    echo "pinger's own requests never time out. The stores are on $STORES_FS."
    echo
    echo "| devices | changes queued | every outbox drained, s | median device drained, ms | every sync done, s | sessions opened | retries | ping p50 ms | ping p99 ms | ping max ms | pings |"
    echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    echo "| $STORM_CLIENTS | $((STORM_CLIENTS * STORM_CHANGES)) | ${STORM[drained_s]} | ${STORM[drain_p50_ms]} | ${STORM[synced_s]} | ${STORM[connects]} | ${STORM[retries]} | ${STORM[ping_p50_ms]} | ${STORM[ping_p99_ms]} | ${STORM[ping_max_ms]} | ${STORM[pings]} |"
    echo
    echo "The same client's pings before the storm: p50 ${STORM[ping_before_p50_ms]} ms, p99 ${STORM[ping_before_p99_ms]} ms (${STORM[pings_before]} pings)."
    echo "Ticks that found the previous ping still unanswered (skipped): ${STORM[pings_skipped]}. Until every"
    echo "outbox was drained napsyncd used ${STORM[server_cpu_s]} CPU s and the load generator ${STORM[loadgen_cpu_s]}; napsyncd's"
    echo "peak RSS (since its restart): $(kb_mib "${STORM[server_hwm_kb]}") MiB. The issue sets no target here."
    echo
}

# The report's section 6, the PouchDB peer (write_report, into its output).
# peer_row FIGURE DOCS NAPSYNC_S POUCH_S: seconds, records/s, the ratio.
peer_row() {
    local what=$1 n=$2 ns=$3 po=$4 rate_ns
    rate_ns=$(awk -v n="$n" -v s="$ns" 'BEGIN{ if (s > 0) printf "%.0f", n / s; else print "-" }')
    if [ "$PEER_POUCH" = 1 ]; then
        local r rate_po
        rate_po=$(awk -v n="$n" -v s="$po" 'BEGIN{ if (s > 0) printf "%.0f", n / s; else print "-" }')
        r=$(ratio "$po" "$ns")
        echo "| $what | $n | $ns | $rate_ns | $po | $rate_po | $r | ≥ 10 | $(verdict "$r" 10) |"
    else
        echo "| $what | $n | $ns | $rate_ns | not run | not run | not run | ≥ 10 | not run |"
    fi
}

report_peer() {
    local k po_push po_pull
    echo "## 6. Peer"
    echo
    echo "PouchDB's own replication against napsync's, the same records on both, on this machine:"
    if [ "$PEER_POUCH" = 1 ]; then
        echo "pouchdb-server $(pouch_node -p "require('pouchdb-server/package.json').version") (npm, its default LevelDB backend) behind stunnel"
        echo "$(stunnel4 -version 2>&1 | awk '/^stunnel/{print $2; exit}') on loopback (TLS 1.3, napsyncd's certificate: pouchdb-server has no TLS of its own,"
        echo "so a deployment puts a terminator in front; both systems are then over TLS), and"
        echo "pouchdb-node $(pouch_node -p "require('pouchdb-node/package.json').version") clients on Node.js $(node --version), each with a new LevelDB database"
        echo "(\`PouchDB.replicate\` with its defaults: batches of 100, 10 in flight; a keep-alive agent)."
    else
        echo "**PouchDB was not run** ($PEER_WHY): only napsync's half of each figure is below."
    fi
    echo "napsync: napsyncd (TLS 1.3, mutual) and libnapsync into the device's SQLite store (WAL,"
    echo "synchronous=FULL), through \`napsync-loadgen\`. The data (\`tests/bench/peer.js gen\`): a plan,"
    echo "60 indicators (about 400 bytes of JSON each) and N indicator reports (indicator_id,"
    echo "a daily period, status, a decimal value, narrative and evidence text: ${PEER[report_bytes]} bytes of JSON"
    echo "on average as PouchDB documents), the same records as napsync changes."
    echo
    echo "* **push**: one client holds every record, written locally beforehand (not timed:"
    echo "  PouchDB \`bulkDocs\` into its database; napsync \`ns_client_put\` into its store's"
    echo "  outbox, \`napsync-loadgen peer-prepare\`), and replicates into an empty server. PouchDB:"
    echo "  \`PouchDB.replicate(local, remote)\` until it resolves (\`tests/bench/peer.js push\`);"
    echo "  napsync: \`ns_client_sync\` of the plan (\`napsync-loadgen peer-push\`: pushes of up to"
    echo "  1,000 changes, one in flight) until the answer that leaves the outbox empty. The"
    echo "  time runs from the call, before the connection, to the last acknowledgement (after"
    echo "  the server's COMMIT, fsync on). The database is then checked to hold every report;"
    echo "* **pull**: a new client, never synced, fetches everything into a new local database:"
    echo "  PouchDB \`PouchDB.replicate(remote, local)\` (\`tests/fieldlink/peer/pouch.js pull\`);"
    echo "  napsync \`ns_client_sync\` of the plan into a new store (\`napsync-loadgen catchup --store\`,"
    echo "  with its connect time added); both from the call to the last document stored;"
    echo "* **live**: one client subscribes (PouchDB: a live replication into a new local"
    echo "  database; napsync: \`ns_client_sync\` with \`watch\` into a new store, as \`napsync sync"
    echo "  --watch\`), and a writer on its own connection writes one report at a time (PouchDB:"
    echo "  \`db.put\` on the server; napsync: \`ns_client_push_batch\` of one): one to warm up, then"
    echo "  $PEER_WRITES measured, each ${PEER_GAP_MS} ms after the one before reached the subscriber. Latency: from the"
    echo "  write's call to the subscriber's having the document in its local database"
    echo "  (PouchDB's replication \`change\` event; napsync's \`NS_SYNC_CHANGES\`)."
    echo
    echo "Ratio: PouchDB's time over napsync's (for live, PouchDB's latency over napsync's)."
    echo "Durability is not alike: PouchDB writes LevelDB without an fsync (leveldown's default),"
    echo "on the server and on the client; napsync fsyncs both (PostgreSQL's COMMIT, SQLite's"
    echo "synchronous=FULL)."
    echo
    echo "| figure | records | napsync s | napsync records/s | PouchDB s | PouchDB docs/s | PouchDB / napsync | target | |"
    echo "|---|---:|---:|---:|---:|---:|---:|---|---|"
    for k in "${PEER_SIZES[@]}"; do
        po_push='' po_pull=''
        if [ "$PEER_POUCH" = 1 ]; then
            po_push=$(awk -v m="$(json_get ms "${PEER[$k.push.out]}")" 'BEGIN{printf "%.3f", m / 1000}')
            po_pull=$(awk -v m="$(json_get ms "${PEER[$k.pull.out]}")" 'BEGIN{printf "%.3f", m / 1000}')
        fi
        peer_row "push $k" "${PEER[$k.records]}" "${PEER[$k.ns_push.seconds]}" "$po_push"
        peer_row "pull $k" "${PEER[$k.records]}" "${PEER[$k.ns_pull.seconds]}" "$po_pull"
    done
    echo
    echo "| live, $PEER_WRITES writes | napsync ms | PouchDB ms | PouchDB / napsync | target | |"
    echo "|---|---:|---:|---:|---|---|"
    local q po r v
    for q in p50 p99 max; do
        po='not run' r='not run' v='not run'
        if [ "$PEER_POUCH" = 1 ]; then
            po=$(json_get "${q}_ms" "${PEER[live.out]}")
            r=$(ratio "$po" "${PEER[ns_live.latency_${q}_ms]}")
            v=$(verdict "$r" 10)
        fi
        if [ "$q" = max ]; then
            echo "| $q | ${PEER[ns_live.latency_${q}_ms]} | $po | $r | | |"
        else
            echo "| $q | ${PEER[ns_live.latency_${q}_ms]} | $po | $r | ≥ 10 | $v |"
        fi
    done
    echo
    echo "Of napsync's latency, the writer's own round trip (from its push to the answer, which"
    echo "comes after the server's COMMIT): p50 ${PEER[ns_live.ack_p50_ms]} ms, p99 ${PEER[ns_live.ack_p99_ms]} ms. Lost connections: ${PEER[ns_live.disconnects]}."
    echo
    echo "CPU seconds during each timed step: napsync's client and napsyncd (from the loadgen;"
    echo "for the push until the last acknowledgement), PostgreSQL's processes (from /proc, for"
    echo "the whole loadgen run: the push's includes the pull back of its own records, which"
    echo "its sync does after the push; that whole sync took the seconds in brackets);"
    echo "PouchDB's client (node: for the push during the replication, for the pull the whole"
    echo "process) and pouchdb-server with stunnel (from /proc):"
    echo
    echo "| step | napsync client | napsyncd | PostgreSQL | napsync total | PouchDB client | pouchdb-server + stunnel | PouchDB total |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|"
    local step po_cli po_srv ns_sum po_sum
    for k in "${PEER_SIZES[@]}"; do
        for step in push pull; do
            po_cli='not run' po_srv='not run' po_sum='not run'
            if [ "$PEER_POUCH" = 1 ]; then
                po_srv=${PEER[$k.$step.srv_cpu]}
                po_cli=${PEER[$k.$step.cli_cpu]}
                [ "$step" = push ] && po_cli=$(json_get cpu_s "${PEER[$k.push.out]}" | awk '{printf "%.2f", $1}')
                po_sum=$(awk -v a="$po_cli" -v b="$po_srv" 'BEGIN{printf "%.2f", a + b}')
            fi
            ns_sum=$(awk -v a="${PEER[$k.ns_$step.client_cpu_s]}" -v b="${PEER[$k.ns_$step.server_cpu_s]}" -v c="${PEER[$k.ns_$step.pg_cpu]}" 'BEGIN{printf "%.2f", a + b + c}')
            local what="$step $k"
            [ "$step" = push ] && what="push $k (sync ${PEER[$k.ns_push.sync_seconds]} s)"
            echo "| $what | ${PEER[$k.ns_$step.client_cpu_s]} | ${PEER[$k.ns_$step.server_cpu_s]} | ${PEER[$k.ns_$step.pg_cpu]} | $ns_sum | $po_cli | $po_srv | $po_sum |"
        done
    done
    echo
    echo "$PEER_ANALYSIS_BEGIN"
    echo "$peer_analysis"
    echo "$PEER_ANALYSIS_END"
    echo
}

write_report() {
    local f=$1 tmp c b k analysis='' peer_analysis=''
    if [ -f "$f" ]; then
        analysis=$(awk -v b="$ANALYSIS_BEGIN" -v e="$ANALYSIS_END" '$0==b{on=1; next} $0==e{on=0} on' "$f")
    fi
    [ -n "$analysis" ] || analysis='(No analysis yet: profile the figures that miss their target and describe the causes here.)'
    if [ -f "$f" ]; then
        peer_analysis=$(awk -v b="$PEER_ANALYSIS_BEGIN" -v e="$PEER_ANALYSIS_END" '$0==b{on=1; next} $0==e{on=0} on' "$f")
    fi
    [ -n "$peer_analysis" ] || peer_analysis='(No analysis of the peer figures yet.)'
    local cpu mem kernel pgver pgset describe
    # The "Field links" section is tests/fieldlink/run.sh's: kept as it is.
    local fieldlinks=''
    if [ -f "$f" ]; then
        fieldlinks=$(awk '/^<!-- field-links: /{on=1} on{print} /^<!-- \/field-links -->$/{on=0}' "$f")
    fi
    cpu=$(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)
    mem=$(awk '/^MemTotal/{printf "%.1f GiB", $2/1048576}' /proc/meminfo)
    kernel=$(uname -r)
    pgver=$(sql postgres <<<"SHOW server_version")
    pgset=$(sql postgres <<<"SELECT string_agg(name || ' = ' || setting || coalesce(' ' || unit, ''), ', ' ORDER BY name) FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit', 'shared_buffers', 'max_connections', 'wal_level', 'full_page_writes')")
    describe=$(git -C "$ROOT" describe --always --dirty --tags 2>/dev/null || echo unknown)
    tmp=$(mktemp "$f.XXXXXX")
    {
        echo "# Benchmarks"
        echo
        echo "Written by \`tests/bench/run.sh\`$([ "$smoke" = 1 ] && echo ' --smoke (tiny sizes: the figures mean nothing)') on $(date -u +%Y-%m-%d) at napsync \`$describe\`."
        echo "Everything below was measured in that one run, napsyncd and its baseline side by side"
        echo "on the same private PostgreSQL. The machine is shared with other work (builds and"
        echo "tests of other people may run at the same time): **the figures are indicative until"
        echo "rerun on a quiet machine**; the ratios, taken minutes apart, are steadier than the"
        echo "absolute numbers. Rerun with \`tests/bench/run.sh\` (this run took $((SECONDS / 60)) min $((SECONDS % 60)) s); \`--help\` lists the options."
        echo
        echo "## Machine and versions"
        echo
        echo "| | |"
        echo "|---|---|"
        echo "| CPU | $cpu, $(nproc) cores (nproc) |"
        echo "| memory | $mem |"
        echo "| kernel | Linux $kernel |"
        echo "| PostgreSQL | $pgver; $pgset; otherwise defaults (tests/lib/pg.sh) |"
        echo "| libuv | $(pkg-config --modversion libuv 2>/dev/null || echo '?') |"
        echo "| OpenSSL | $(openssl version | awk '{print $2}') |"
        echo "| protobuf-c | $(pkg-config --modversion libprotobuf-c 2>/dev/null || echo '?') |"
        echo "| SQLite | $(pkg-config --modversion sqlite3 2>/dev/null || echo '?') |"
        echo "| gcc | $(gcc --version | head -n 1) |"
        echo "| napsync | \`$describe\`, $(grep -m1 CMAKE_BUILD_TYPE: "$build/CMakeCache.txt" | cut -d= -f2) build |"
        echo "| napsyncd | default settings: db_pool_size 4, log_level info, TLS 1.3 with ECDSA P-256 certificates |"
        echo
        echo "Everything runs on this one machine: PostgreSQL, napsyncd and the load generator"
        echo "(or pgbench) share its $(nproc) cores, so the client's own work (TLS, protobuf, and for"
        echo "the catch-up SQLite) is inside every figure."
        echo
        local section
        for section in push catchup fanout conns storm peer; do
            if want "$section"; then "report_$section"; fi
        done
        echo "## Analysis"
        echo
        echo "$ANALYSIS_BEGIN"
        echo "$analysis"
        echo "$ANALYSIS_END"
        echo
        echo "## Not measured yet"
        echo
        echo "Updates (merges on older bases) and conflicts are not in these figures: every pushed"
        echo "mutation is a create."
        echo
        echo "## Commands"
        echo
        echo "PostgreSQL: \`NS_PG_FSYNC=on tests/lib/pg.sh start $PG_DIR\`, max_connections raised with"
        echo "ALTER SYSTEM when needed; certificates: \`deploy/ca.sh init|server|device $CA_DIR ...\`;"
        echo "each figure's database is \`CREATE DATABASE … TEMPLATE $TEMPLATE OWNER $DAEMON_ROLE\`, the"
        echo "template migrated by \`napsyncd --migrate\` and given its organisations and devices with"
        echo "\`napsync_register_device\`. napsyncd ran as"
        echo
        echo '```'
        echo "napsyncd --listen 127.0.0.1:PORT --tls-cert $CA_DIR/napsyncd.crt --tls-key $CA_DIR/napsyncd.key --tls-ca $CA_DIR/ca.crt --database 'host=$PGH port=$PGP dbname=DB user=$DAEMON_ROLE' --sql-dir $ROOT/sql --log-level info --http-listen off"
        echo '```'
        echo
        echo "and the measured commands were (pgbench's warm-up runs, the same command with"
        echo "\`-T $warmup\` and no log, are left out; the pgbench scripts are generated by run.sh's"
        echo "\`pgbench_script\` and \`catchup_keyset_script\`):"
        echo
        echo '```'
        local cmd
        for cmd in "${COMMANDS[@]}"; do echo "$cmd"; done
        echo '```'
        echo
        if want fanout || want storm || want peer; then
            echo "STORES is a directory on $STORES_FS, removed after each figure."
            echo
        fi
        if want peer; then
            echo "PEER is the npm install of tests/fieldlink/peer ($PEER_CACHE); pouchdb-server ran as"
            echo "\`pouchdb-server --host 127.0.0.1 --port PORT --dir DIR/db -c DIR/config.json\` behind"
            echo "\`stunnel4\` (accept PORT + 1, connect PORT, napsyncd's certificate and key)."
            echo
        fi
        if want push; then
            echo "The baseline's script for one mutation per transaction ($work/push-b1.sql; the"
            echo "batch of 100 repeats the four statements before the feed and then the feed's, with"
            echo "\`r1\` … \`r100\`):"
            echo
            echo '```sql'
            cat "$work/push-b1.sql"
            echo '```'
            echo
        fi
        if want catchup; then
            echo "Keyset paging ($work/keyset.sql) and the COPY ($work/copy.sql):"
            echo
            echo '```sql'
            cat "$work/keyset.sql" "$work/copy.sql"
            echo '```'
        fi
        [ -z "$fieldlinks" ] || printf '\n%s\n' "$fieldlinks"
    } >"$tmp"
    mv "$tmp" "$f"
}

# ---- main ----------------------------------------------------------------------------------------

SECONDS=0
start_pg
make_certs
make_template
if want push; then
    for b in "${PUSH_BATCHES[@]}"; do pgbench_script "$b" "$work/push-b$b.sql"; done
    for c in "${PUSH_CLIENTS[@]}"; do
        for b in "${PUSH_BATCHES[@]}"; do push_figure "$c" "$b"; done
    done
fi
want catchup && catchup_figures
want fanout && fanout_figure
want conns && conns_figure
want storm && storm_figure
want peer && peer_figure
write_report "$out"
note "report written to $out ($SECONDS s)"
