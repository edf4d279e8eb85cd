#!/usr/bin/env bash
# napsync's development environment, all of it under ./var of this checkout:
# a private PostgreSQL cluster, a dev CA, and napsyncd running in the
# background. Run `deploy/dev.sh --help` for the commands.
#
# Not for production: the cluster trusts every local connection and the CA
# key lies next to the certificates. docs/deploy.md describes a real
# installation.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VAR=$ROOT/var
BUILD=$ROOT/build
PG_DIR=$VAR/pg
CA_DIR=$VAR/ca
CONF=$VAR/napsyncd.conf
PID_FILE=$VAR/napsyncd.pid
PORT_FILE=$VAR/napsyncd.port
HTTP_PORT_FILE=$VAR/napsyncd.http-port # /healthz, /readyz, /metrics
LOG=$VAR/napsyncd.log
STORE_DIR=$VAR/store
PG_SH=$ROOT/tests/lib/pg.sh
CA_SH=$ROOT/deploy/ca.sh
DEPS_SH=$ROOT/tests/lib/deps.sh

DB_NAME=napsync
SERVER_CERT=napsyncd
DEMO_ORG=mogender
DEMO_PRINCIPAL="Demo Coordinator"
DEMO_DEVICE=demo-coordinator
DEMO_STORE=$STORE_DIR/$DEMO_DEVICE.db
# The demo NAP of mogender; every demo plan has a fixed id, so that `up` can
# tell whether it loaded it already, whatever was edited since.
DEMO_PLAN=d0000000-0000-4000-8000-000000000001
DEMO_DIR=$ROOT/deploy/demo
# The demo plan files (deploy/demo/*.json, napsync plan files), each with its
# id, the organisation that owns it and the role its importing device needs,
# in the order their references need: the Regional Action Plan before the
# NAPs whose indicators map to its indicators, a NAP before the plans that
# implement it.
DEMO_PLANS=(
    "rap.json|d1000000-0000-4000-8000-000000000001|regional|regional"
    "nap-zz.json|$DEMO_PLAN|mogender|coordinator"
    "nap-xa.json|d2000000-0000-4000-8000-000000000001|xa-women|coordinator"
    "nap-xb.json|d3000000-0000-4000-8000-000000000001|xb-gender|coordinator"
    "dap-defence.json|d4000000-0000-4000-8000-000000000001|defence|coordinator"
    "iap-police.json|d5000000-0000-4000-8000-000000000001|police|coordinator"
)
# A device for every demo organisation (demo-ORG, principal "ORG demo"),
# with the role the demo needs: the owners of plans are coordinators (the
# regional organisation: regional); the others keep their usual role.
DEMO_ORGS=(mogender mofa defence police wpsnet parliament regional donors xa-women xb-gender)
# A large import may take a while on a loaded machine.
IMPORT_TIMEOUT_MS=120000
# Seconds to wait for napsyncd to listen, and to drain on SIGTERM.
START_TIMEOUT=30
STOP_TIMEOUT=40
# Seconds `revoke` waits for napsyncd's log to say what the revocation did.
REVOKE_WAIT=10

ORG_RE='^[a-z0-9][a-z0-9-]{0,31}$'
NAME_RE='^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'
ROLE_RE='^(admin|coordinator|implementer|regional|observer)$'

die() {
    echo "dev.sh: $*" >&2
    exit 1
}

note() {
    echo "dev.sh: $*" >&2
}

# How to call this script in the messages it prints.
self() {
    if [ "$PWD" = "$ROOT" ]; then echo ./deploy/dev.sh; else echo "$ROOT/deploy/dev.sh"; fi
}

usage() {
    local me
    me=$(self)
    cat <<EOF
Usage: $me COMMAND [OPTIONS]

The napsync development environment under $VAR.

Commands:
  up                      install missing packages, build, start PostgreSQL, create the
                          dev CA and the demo coordinator's device, migrate, load the
                          demo organisations, start napsyncd, register a device for each
                          demo organisation, and import the demo plans (deploy/demo/)
                          with napsync import; safe to run again
  env                     print export lines for PATH and NAPSYNC_* (the demo
                          coordinator's device and store); use it as
                            eval "\$($me env)"; napsync sync; napsync list plan
  cert ORG DEVICE [--role ROLE] [--principal NAME]
                          issue a certificate for DEVICE and register it for the
                          principal NAME (default: the device name) of organisation ORG,
                          with ROLE (default: the organisation's usual role); prints
                          export lines for NAPSYNC_CERT/NAPSYNC_KEY and NAPSYNC_STORE
                          (var/store/DEVICE.db). For a device that exists it prints the
                          same lines again. ROLE is one of
                            admin        administers organisations, people and devices
                            coordinator  edits the plans its organisation owns, approves
                                         reported values
                            implementer  edits its own implementation plan and reports on
                                         the indicators it is responsible for
                            regional     reads its member states' plans, writes its RAP
                            observer     reads plans and approved progress, comments
  revoke DEVICE [--reason TEXT]
                          revoke a device: napsyncd closes its open sessions at once
                          (Error DEVICE_REVOKED) and refuses its certificate from then on;
                          prints what napsyncd's log says it did
  admin ARGS...           napsyncd admin ARGS on the dev database as the cluster's
                          superuser: organisations, people, roles, devices, the feed
                          (e.g. admin device list; admin --help lists the commands)
  status                  PostgreSQL, napsyncd and a ping through the demo device
  logs [-f] [-n LINES]    napsyncd's log (-f: follow it)
  down [--purge]          stop napsyncd (gracefully) and PostgreSQL; --purge also
                          deletes $VAR
  --help                  this text

Organisations in the demo data (deploy/demo.sql), with their usual role:
  mogender (coordinator; owns the NAP of ZZ), mofa, defence, police (implementers; defence
  and police own implementation plans), wpsnet (a CSO: implementer), parliament
  (observer), donors (observer), regional (regional; owns the RAP), xa-women and xb-gender
  (coordinators of the NAPs of XA and XB). "up" registers demo-ORG for each of them.
EOF
}

# ---- PostgreSQL -------------------------------------------------------------

PGH='' PGP='' PGU=''

# Reads the cluster's connection settings from pg.sh's "KEY=value" lines.
read_pg_env() {
    local line
    while IFS= read -r line; do
        case $line in
        PGHOST=*) PGH=${line#PGHOST=} ;;
        PGPORT=*) PGP=${line#PGPORT=} ;;
        PGUSER=*) PGU=${line#PGUSER=} ;;
        esac
    done <<<"$1"
    { [ -n "$PGH" ] && [ -n "$PGP" ] && [ -n "$PGU" ]; } || die "unexpected output from pg.sh: $1"
}

pg_start() {
    local out
    out=$("$PG_SH" start "$PG_DIR") || die "PostgreSQL did not start (see $PG_DIR/postgres.log)"
    read_pg_env "$out"
}

# For the commands that need the cluster that `up` started.
pg_require() {
    [ -f "$PG_DIR/port" ] || die "no dev environment here; run: $(self) up"
    "$PG_SH" status "$PG_DIR" || die "PostgreSQL is not running; run: $(self) up"
    read_pg_env "$("$PG_SH" env "$PG_DIR")"
}

# psql on the napsync database. SQL comes on stdin or with -f and takes its
# values as psql variables (-v name=value, used as :'name'), which psql
# quotes, so nothing a user types is spliced into SQL text.
sql() {
    psql -X -q -A -t -v ON_ERROR_STOP=1 -h "$PGH" -p "$PGP" -U "$PGU" -d "$DB_NAME" "$@"
}

# The role napsyncd connects as: an ordinary one that owns the database,
# so that PostgreSQL's row-level security (sql/005) applies to everything
# the daemon does, as in production (docs/deploy.md). Scripts and psql use
# the cluster's superuser.
DAEMON_ROLE=napsyncd

create_database() {
    psql -X -q -v ON_ERROR_STOP=1 -h "$PGH" -p "$PGP" -U "$PGU" -d postgres -v db="$DB_NAME" \
        -v role="$DAEMON_ROLE" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN NOSUPERUSER NOBYPASSRLS', :'role')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'role') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'role')
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db') \gexec
SQL
}

# The database role napsyncd uses: DAEMON_ROLE, or, for a database made
# before dev.sh created one (./var from an older checkout), its owner (the
# superuser: napsyncd then warns that row-level security does not apply;
# `down --purge` starts afresh).
daemon_db_user() {
    local owner
    owner=$(psql -X -q -A -t -v ON_ERROR_STOP=1 -h "$PGH" -p "$PGP" -U "$PGU" -d postgres \
        -v db="$DB_NAME" <<<"SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = :'db'")
    if [ "$owner" = "$DAEMON_ROLE" ]; then echo "$DAEMON_ROLE"; else echo "$PGU"; fi
}

# A libpq connection-string value, quoted when it must be.
conninfo_value() {
    local v=$1
    if [[ $v =~ ^[A-Za-z0-9_./-]+$ ]]; then
        printf '%s' "$v"
    else
        v=${v//\\/\\\\}
        printf "'%s'" "${v//\'/\\\'}"
    fi
}

# `napsyncd admin` (docs/operations.md) on the napsync database as the
# cluster's superuser: the directory's row-level security lets only such a
# role (or one with BYPASSRLS) write it outside napsyncd.
napsyncd_admin() {
    "$BUILD/napsyncd" --database "host=$(conninfo_value "$PGH") port=$PGP dbname=$DB_NAME user=$(conninfo_value "$PGU")" \
        admin "$@"
}

# register_device ORG PRINCIPAL ROLE DEVICE FINGERPRINT
# Returns 0 when the device is registered with this certificate (now or
# before), 2 when it is but has been revoked; dies on any mismatch (another
# owner or certificate: napsyncd admin says which, above).
register_device() {
    local org=$1 principal=$2 role=$3 device=$4 fp=$5 out args
    args=(device register "$org" "$principal" "$device" --fingerprint "$fp")
    [ -z "$role" ] || args+=(--role "$role")
    out=$(napsyncd_admin --json "${args[@]}") || die "could not register device $device (above)"
    [[ $out != *'"changed":true'* ]] || note "registered device $device for \"$principal\" of $org"
    [[ $out != *'"state":"revoked"'* ]] || return 2
    return 0
}

# ---- napsyncd -----------------------------------------------------------------

# True while the process is there and not a zombie (a container's init may be
# slow to reap it).
alive() {
    local state
    kill -0 "$1" 2>/dev/null || return 1
    state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
    [ "$state" != Z ]
}

# The pid of the napsyncd that `up` started, if it still runs. The command
# line must name our configuration, so a recycled pid is not mistaken for it.
daemon_pid() {
    local pid
    [ -f "$PID_FILE" ] || return 1
    pid=$(cat "$PID_FILE")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    alive "$pid" || return 1
    grep -qxF -- "$CONF" < <(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
    echo "$pid"
}

free_port() {
    local port
    if command -v python3 >/dev/null &&
        port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null); then
        echo "$port"
        return 0
    fi
    for _ in $(seq 1 50); do
        port=$(shuf -i 20000-60000 -n 1)
        listen_inode "$port" >/dev/null || {
            echo "$port"
            return 0
        }
    done
    die "found no free TCP port"
}

# The inode of the socket listening on 127.0.0.1:PORT, if any. Read from
# the kernel, so that probing opens no session in napsyncd's log.
listen_inode() {
    local hex
    hex=$(printf '0100007F:%04X' "$1")
    awk -v a="$hex" '$2 == a && $4 == "0A" { print $10; found = 1; exit } END { exit !found }' /proc/net/tcp
}

# True if PID itself listens on 127.0.0.1:PORT (not merely someone).
pid_listens() {
    local inode
    inode=$(listen_inode "$2") || return 1
    [ -n "$(find "/proc/$1/fd" -lname "socket:\[$inode\]" 2>/dev/null)" ]
}

server_addr() {
    echo "127.0.0.1:$(cat "$PORT_FILE")"
}

http_addr() {
    [ -f "$HTTP_PORT_FILE" ] || pick_http_port >"$HTTP_PORT_FILE"
    echo "127.0.0.1:$(cat "$HTTP_PORT_FILE")"
}

# napsyncd's usual HTTP port when it is free (another checkout's daemon may
# hold it), else any free one.
pick_http_port() {
    if listen_inode 9187 >/dev/null; then free_port; else echo 9187; fi
}

write_config() {
    local tmp
    tmp=$(mktemp "$VAR/.napsyncd.conf.XXXXXX")
    cat >"$tmp" <<EOF
# Written by deploy/dev.sh up; changes here are overwritten on the next up.
listen = $(server_addr)
tls_cert = $CA_DIR/$SERVER_CERT.crt
tls_key = $CA_DIR/$SERVER_CERT.key
tls_ca = $CA_DIR/ca.crt
database = host=$(conninfo_value "$PGH") port=$PGP dbname=$DB_NAME user=$(daemon_db_user)
sql_dir = $ROOT/sql
log_level = info
http_listen = $(http_addr)
EOF
    mv -f "$tmp" "$CONF"
}

# Runs the CLI as the demo coordinator, whatever NAPSYNC_* the caller has set.
demo_cli() {
    env -u NAPSYNC_CONFIG -u NAPSYNC_STORE \
        NAPSYNC_SERVER="$(server_addr)" NAPSYNC_CA="$CA_DIR/ca.crt" \
        NAPSYNC_CERT="$CA_DIR/$DEMO_DEVICE.crt" NAPSYNC_KEY="$CA_DIR/$DEMO_DEVICE.key" \
        "$BUILD/napsync" "$@"
}

# Runs the CLI as demo device DEVICE, whatever NAPSYNC_* the caller has set.
device_cli() {
    local device=$1
    shift
    env -u NAPSYNC_CONFIG -u NAPSYNC_STORE \
        NAPSYNC_SERVER="$(server_addr)" NAPSYNC_CA="$CA_DIR/ca.crt" \
        NAPSYNC_CERT="$CA_DIR/$device.crt" NAPSYNC_KEY="$CA_DIR/$device.key" \
        "$BUILD/napsync" "$@"
}

# The device of demo organisation ORG: the demo coordinator for mogender.
demo_device_of() {
    if [ "$1" = "$DEMO_ORG" ]; then echo "$DEMO_DEVICE"; else echo "demo-$1"; fi
}

# The role demo organisation ORG's device needs: coordinator (regional for
# the regional organisation) when it owns a demo plan, else its usual role.
demo_role_of() {
    local entry file id org role
    for entry in "${DEMO_PLANS[@]}"; do
        IFS='|' read -r file id org role <<<"$entry"
        [ "$org" != "$1" ] || {
            echo "$role"
            return 0
        }
    done
    echo ""
}

# Registers a device for every demo organisation but mogender (whose device
# is the demo coordinator's). Prints a warning for a revoked one.
register_demo_devices() {
    local org device fp rc
    for org in "${DEMO_ORGS[@]}"; do
        [ "$org" != "$DEMO_ORG" ] || continue
        device=$(demo_device_of "$org")
        fp=$("$CA_SH" device "$CA_DIR" "$device" | tail -n 1)
        rc=0
        register_device "$org" "$device" "$(demo_role_of "$org")" "$device" "$fp" || rc=$?
        [ "$rc" = 0 ] || note "warning: $device has been revoked; the demo data it owns will not load"
    done
}

# True when the demo organisations have the fixed ids the plan files name.
# A database made before the ids were fixed has them under other ids.
demo_org_ids_ok() {
    [ "$(sql <<<"SELECT count(*) FROM organisations
                  WHERE id::text LIKE '0e000000-0000-4000-8000-0000000000%'")" = "${#DEMO_ORGS[@]}" ]
}

# The demo is three years of reporting loaded in one go, so every report's
# history would say it was submitted just now, and the reports' on-time
# figures would all read "late". For the demo only, its reports' history is
# dated as if each had been submitted some days after its period ended
# (within the 60 days allowed for about two thirds of them: a fixed choice
# per report, so every `up` gives the same figures), its later steps a day
# apart. Nothing but dev.sh's demo is ever back-dated.
backdate_demo_reports() {
    sql -v plan="$1" <<'SQL' >/dev/null
UPDATE sync_revisions r
   SET at = LEAST(now(), rep.period_end + make_interval(days => 5 + (abs(hashtext(rep.id::text)) % 85))
                              + make_interval(days => (r.version - 1)::int))
  FROM indicator_reports rep
 WHERE r.entity_type = 'indicator_report' AND r.record_id = rep.id AND rep.tenant_id = :'plan'
SQL
}

# The demo plans, made the way a user would: `napsync import` of each plan
# file with a device of the organisation that owns it, all or nothing each.
# Only plans that are not in the database yet, so edits made since are kept.
load_demo_plans() {
    local entry file id org role device loaded=0 out
    if ! demo_org_ids_ok; then
        note "warning: the demo organisations in this database predate the fixed ids the demo"
        note "plans name; not loading them ($(self) down --purge && $(self) up starts afresh)"
        return 0
    fi
    for entry in "${DEMO_PLANS[@]}"; do
        IFS='|' read -r file id org role <<<"$entry"
        [ -z "$(sql -v id="$id" <<<"SELECT 1 FROM plans WHERE id = :'id'")" ] || continue
        device=$(demo_device_of "$org")
        out=$(device_cli "$device" --timeout "$IMPORT_TIMEOUT_MS" import plan "$DEMO_DIR/$file" 2>&1) || {
            printf '%s\n' "$out" | tail -n 40 >&2
            die "napsync import of $file as $device failed (above; napsyncd's log: $(self) logs)"
        }
        note "${out#imported }"
        backdate_demo_reports "$id"
        loaded=$((loaded + 1))
    done
    if [ "$loaded" = 0 ]; then
        note "the demo plans are in the database already (edits made since are kept)"
    else
        note "loaded $loaded demo plan(s) from $DEMO_DIR"
    fi
}

start_daemon() {
    local pid port
    if pid=$(daemon_pid); then
        note "napsyncd is already running (pid $pid); to run a new build: $(self) down && $(self) up"
        return 0
    fi
    port=$(cat "$PORT_FILE")
    # setsid: the daemon outlives this script and the terminal it runs in.
    setsid "$BUILD/napsyncd" --config "$CONF" </dev/null >>"$LOG" 2>&1 &
    pid=$!
    echo "$pid" >"$PID_FILE"
    for _ in $(seq 1 $((START_TIMEOUT * 5))); do
        alive "$pid" || {
            tail -n 30 "$LOG" >&2
            die "napsyncd exited during start (log above, in $LOG)"
        }
        pid_listens "$pid" "$port" && return 0
        sleep 0.2
    done
    kill -TERM "$pid" 2>/dev/null || true
    tail -n 30 "$LOG" >&2
    listen_inode "$port" >/dev/null && note "another process listens on $(server_addr); free it or delete $PORT_FILE"
    die "napsyncd (pid $pid) does not accept connections on $(server_addr) after ${START_TIMEOUT}s"
}

stop_daemon() {
    local pid
    pid=$(daemon_pid) || {
        rm -f "$PID_FILE"
        return 0
    }
    kill -TERM "$pid"
    for _ in $(seq 1 $((STOP_TIMEOUT * 5))); do
        alive "$pid" || {
            rm -f "$PID_FILE"
            note "napsyncd stopped"
            return 0
        }
        sleep 0.2
    done
    note "napsyncd (pid $pid) still running ${STOP_TIMEOUT}s after SIGTERM; killing it"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.5
    rm -f "$PID_FILE"
}

# ---- commands -----------------------------------------------------------------

cmd_up() {
    local fp rc=0 pid
    [ $# -eq 0 ] || die "usage: $(self) up"
    "$DEPS_SH" --build
    mkdir -p "$VAR" "$STORE_DIR"

    if [ ! -f "$BUILD/CMakeCache.txt" ]; then
        cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null ||
            die "cmake configure failed"
    fi
    cmake --build "$BUILD" -j "$(nproc)" --target napsyncd napsync_cli || die "build failed"

    pg_start
    create_database

    "$CA_SH" init "$CA_DIR" "napsync dev CA" >/dev/null
    "$CA_SH" server "$CA_DIR" "$SERVER_CERT" DNS:localhost,IP:127.0.0.1,IP:::1 >/dev/null
    fp=$("$CA_SH" device "$CA_DIR" "$DEMO_DEVICE" | tail -n 1)

    [ -f "$PORT_FILE" ] || free_port >"$PORT_FILE"
    write_config
    "$BUILD/napsyncd" --config "$CONF" --migrate >>"$LOG" 2>&1 || {
        tail -n 20 "$LOG" >&2
        die "migrations failed (log above, in $LOG)"
    }
    sql -f "$ROOT/deploy/demo.sql" >/dev/null
    register_device "$DEMO_ORG" "$DEMO_PRINCIPAL" "" "$DEMO_DEVICE" "$fp" || rc=$?
    [ "$rc" = 0 ] || note "warning: $DEMO_DEVICE has been revoked; napsyncd will refuse it ($(self) down --purge starts afresh)"
    register_demo_devices

    start_daemon
    pid=$(daemon_pid) || die "napsyncd is not running"
    if [ "$rc" = 0 ]; then
        demo_cli ping >/dev/null || {
            tail -n 20 "$LOG" >&2
            die "napsyncd runs but 'napsync ping' as $DEMO_DEVICE fails (log above, in $LOG)"
        }
        load_demo_plans
    fi

    cat <<EOF

napsync dev environment is up.
  napsyncd     $(server_addr), pid $pid, log $LOG
  health       curl http://$(http_addr)/readyz   (and /healthz, /metrics)
  PostgreSQL   psql -h $PGH -p $PGP -U $PGU $DB_NAME
  dev CA       $CA_DIR (device: $DEMO_DEVICE of $DEMO_ORG, "$DEMO_PRINCIPAL")
  demo plans   $DEMO_DIR (the NAP of ZZ: $DEMO_PLAN)

Use it:
  eval "\$($(self) env)"
  napsync ping
  napsync sync; napsync list plan
  napsync sync --directory; napsync list organisation
  napsync history plan $DEMO_PLAN
  napsync export plan $DEMO_PLAN -o nap.csv     # and: napsync import plan FILE
  $(self) cert $DEMO_ORG second-laptop  # another device of $DEMO_ORG (prints its own NAPSYNC_STORE)
  $(self) cert mofa mofa-desk-1        # a device for another organisation
  eval "\$($(self) cert ORG demo-ORG)"   # act as a demo organisation's device:
        # demo-regional, demo-defence, demo-police, demo-xa-women, demo-xb-gender (owners),
        # demo-mofa, demo-wpsnet (implementers), demo-parliament, demo-donors (observers)
  $(self) cert parliament mp-1 --role observer  # a device with a given role
  $(self) status | logs | down
EOF
}

cmd_env() {
    local path=:$PATH: bin=$BUILD
    [ $# -eq 0 ] || die "usage: $(self) env"
    { [ -f "$PORT_FILE" ] && [ -f "$CA_DIR/$DEMO_DEVICE.crt" ]; } ||
        die "no dev environment here; run: $(self) up"
    # Put the build directory first exactly once, however often this is evaluated.
    while [[ $path == *":$bin:"* ]]; do path=${path//:$bin:/:}; done
    path=${path#:}
    path=${path%:}
    printf 'export PATH=%q\n' "$bin${path:+:$path}"
    printf 'export NAPSYNC_SERVER=%q\n' "$(server_addr)"
    printf 'export NAPSYNC_CA=%q\n' "$CA_DIR/ca.crt"
    printf 'export NAPSYNC_CERT=%q\n' "$CA_DIR/$DEMO_DEVICE.crt"
    printf 'export NAPSYNC_KEY=%q\n' "$CA_DIR/$DEMO_DEVICE.key"
    printf 'export NAPSYNC_STORE=%q\n' "$DEMO_STORE"
}

cmd_cert() {
    local org device role="" principal="" out crt key fp rc=0
    [ $# -ge 2 ] || die "usage: $(self) cert ORG DEVICE [--role ROLE] [--principal NAME]"
    org=$1 device=$2
    shift 2
    while [ $# -gt 0 ]; do
        case $1 in
        --role)
            [ $# -ge 2 ] || die "--role needs a value"
            role=$2
            shift 2
            ;;
        --principal)
            [ $# -ge 2 ] || die "--principal needs a value"
            principal=$2
            shift 2
            ;;
        *) die "unknown option '$1' (see $(self) --help)" ;;
        esac
    done
    [[ $org =~ $ORG_RE ]] || die "invalid organisation code '$org'"
    [[ $device =~ $NAME_RE ]] || die "invalid device name '$device': use 1-64 of A-Z a-z 0-9 . _ - (not starting with . _ -)"
    [ -z "$role" ] || [[ $role =~ $ROLE_RE ]] ||
        die "invalid role '$role': admin, coordinator, implementer, regional or observer"
    pg_require
    # A device that exists keeps its principal: rerunning prints its lines again.
    [ -n "$principal" ] ||
        principal=$(sql -v device="$device" <<<"SELECT p.name FROM devices d JOIN principals p ON p.id = d.principal_id WHERE d.name = :'device'")
    principal=${principal:-$device}
    { [ ${#principal} -le 200 ] && [[ $principal != *[[:cntrl:]]* ]]; } ||
        die "invalid principal name: at most 200 characters, no control characters"
    [ -n "$(sql -v org="$org" <<<"SELECT 1 FROM organisations WHERE code = :'org'")" ] ||
        die "unknown organisation '$org'; known: $(sql <<<"SELECT string_agg(code, ' ' ORDER BY code) FROM organisations")"

    out=$("$CA_SH" device "$CA_DIR" "$device")
    {
        read -r crt
        read -r key
        read -r fp
    } <<<"$out"
    register_device "$org" "$principal" "$role" "$device" "$fp" || rc=$?
    [ "$rc" = 0 ] || die "device $device has been revoked; issue a certificate under a new device name"
    if [ -n "$role" ] && [ -z "$(sql -v device="$device" -v role="$role" <<'SQL'
SELECT 1 FROM devices d JOIN principals p ON p.id = d.principal_id
  JOIN principal_roles r ON r.principal_id = p.id AND r.organisation_id = p.organisation_id
 WHERE d.name = :'device' AND r.role = :'role'
SQL
    )" ]; then
        die "device $device exists and its principal \"$principal\" has not the role $role; issue a certificate under a new device name (and --principal NAME)"
    fi
    mkdir -p "$STORE_DIR"
    printf 'export NAPSYNC_CERT=%q NAPSYNC_KEY=%q\n' "$crt" "$key"
    printf 'export NAPSYNC_STORE=%q\n' "$STORE_DIR/$device.db"
}

# The messages (msg="...") of napsyncd's log lines after byte OFFSET that
# hold TEXT.
log_msgs_after() {
    local offset=$1 text=$2
    tail -c +"$((offset + 1))" "$LOG" 2>/dev/null | grep -F -- "$text" |
        sed -n 's/.* msg="\(\([^"\\]\|\\.\)*\)".*/\1/p' | sed 's/\\"/"/g' || true
}

# Waits up to REVOKE_WAIT seconds for a log line after OFFSET that holds
# TEXT, and prints its message.
wait_log_msg() {
    local offset=$1 text=$2 msg
    for _ in $(seq 1 $((REVOKE_WAIT * 5))); do
        msg=$(log_msgs_after "$offset" "$text" | head -n 1)
        [ -z "$msg" ] || {
            echo "$msg"
            return 0
        }
        sleep 0.2
    done
    return 1
}

# What napsyncd did with the revocation of DEVICE (id ID), from its log
# after OFFSET: the notification (with how many of the device's sessions
# were open), each session it closed, and the check's summary.
show_revocation() {
    local device=$1 id=$2 offset=$3 heard open msg
    heard=$(wait_log_msg "$offset" "access changed for device:$id") || {
        note "napsyncd logged nothing about it within ${REVOKE_WAIT}s; see $(self) logs"
        return 0
    }
    note "napsyncd: $heard"
    open=$(sed -n 's/.*: \([0-9][0-9]*\) open session(s) to check$/\1/p' <<<"$heard")
    [ "${open:-0}" != 0 ] || return 0
    msg=$(wait_log_msg "$offset" "access check:") ||
        note "napsyncd has not finished checking within ${REVOKE_WAIT}s; see $(self) logs"
    log_msgs_after "$offset" "device \\\"$device\\\" has been revoked: this session ends" |
        while IFS= read -r line; do note "napsyncd: $line"; done
    [ -z "$msg" ] || note "napsyncd: $msg"
}

cmd_revoke() {
    local device reason="" out id offset=0 args
    [ $# -ge 1 ] || die "usage: $(self) revoke DEVICE [--reason TEXT]"
    device=$1
    shift
    while [ $# -gt 0 ]; do
        case $1 in
        --reason)
            [ $# -ge 2 ] || die "--reason needs a value"
            reason=$2
            shift 2
            ;;
        *) die "unknown option '$1' (see $(self) --help)" ;;
        esac
    done
    [[ $device =~ $NAME_RE ]] || die "invalid device name '$device'"
    pg_require
    [ ! -f "$LOG" ] || offset=$(stat -c %s "$LOG")
    args=(device revoke "$device")
    [ -z "$reason" ] || args+=(--reason "$reason")
    out=$(napsyncd_admin --json "${args[@]}") || die "could not revoke device $device (above)"
    id=$(sed -n 's/^{"id":"\([0-9a-f-]*\)".*/\1/p' <<<"$out")
    if [[ $out != *'"changed":true'* ]]; then
        note "device $device was already revoked (at $(sed -n 's/.*"revoked_at":"\([^"]*\)".*/\1/p' <<<"$out"))"
        return 0
    fi
    note "device $device revoked: napsyncd refuses its certificate from now on"
    if daemon_pid >/dev/null; then
        show_revocation "$device" "$id" "$offset"
    else
        note "napsyncd is not running; it checks every open session when it listens again"
    fi
}

cmd_admin() {
    pg_require
    [ -x "$BUILD/napsyncd" ] || die "napsyncd is not built; run: $(self) up"
    napsyncd_admin "$@"
}

cmd_status() {
    local ok=0 pid out
    [ $# -eq 0 ] || die "usage: $(self) status"
    if [ ! -f "$PG_DIR/port" ]; then
        echo "PostgreSQL  not created (run: $(self) up)"
        ok=1
    elif "$PG_SH" status "$PG_DIR"; then
        read_pg_env "$("$PG_SH" env "$PG_DIR")"
        echo "PostgreSQL  running: psql -h $PGH -p $PGP -U $PGU $DB_NAME (log $PG_DIR/postgres.log)"
    else
        echo "PostgreSQL  stopped"
        ok=1
    fi
    if pid=$(daemon_pid); then
        echo "napsyncd    running: pid $pid on $(server_addr) (log $LOG)"
        if [ -x "$BUILD/napsync" ]; then
            if out=$(demo_cli ping 2>&1); then
                echo "ping        $out"
            else
                echo "ping        FAILED: $out"
                ok=1
            fi
        fi
    else
        echo "napsyncd    not running"
        ok=1
    fi
    return "$ok"
}

cmd_logs() {
    local follow=0 lines=100
    while [ $# -gt 0 ]; do
        case $1 in
        -f | --follow)
            follow=1
            shift
            ;;
        -n)
            { [ $# -ge 2 ] && [[ $2 =~ ^[0-9]+$ ]]; } || die "-n needs a number of lines"
            lines=$2
            shift 2
            ;;
        *) die "usage: $(self) logs [-f] [-n LINES]" ;;
        esac
    done
    [ -f "$LOG" ] || die "no log yet ($LOG); run: $(self) up"
    if [ "$follow" = 1 ]; then exec tail -n "$lines" -F "$LOG"; fi
    tail -n "$lines" "$LOG"
}

cmd_down() {
    local purge=0
    case ${1:-} in
    "") ;;
    --purge) purge=1 ;;
    *) die "usage: $(self) down [--purge]" ;;
    esac
    if [ -d "$VAR" ]; then
        stop_daemon
        if [ -d "$PG_DIR" ] && "$PG_SH" status "$PG_DIR"; then
            "$PG_SH" stop "$PG_DIR"
            note "PostgreSQL stopped"
        fi
    fi
    if [ "$purge" = 1 ]; then
        rm -rf "$VAR"
        note "deleted $VAR"
    fi
}

case ${1:-} in
up | env | cert | revoke | admin | status | logs | down)
    cmd=$1
    shift
    "cmd_$cmd" "$@"
    ;;
-h | --help | help) usage ;;
*)
    usage >&2
    exit 2
    ;;
esac
