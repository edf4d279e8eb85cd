#!/usr/bin/env bash
# A private PostgreSQL cluster in a directory, run as an unprivileged user
# (PostgreSQL refuses to run as root). Used by deploy/dev.sh (./var/pg), by
# tests/run.sh (a throwaway cluster) and by tests that restart their own.
#
#   pg.sh start DIR [PORT]   create the cluster if needed, start it, print env lines
#   pg.sh stop DIR [fast|immediate]
#   pg.sh restart DIR        stop (fast) and start on the same port
#   pg.sh env DIR            print PGHOST/PGPORT/PGUSER/PGDATABASE lines
#   pg.sh status DIR         exit 0 if running
#   pg.sh standby PRIMARY DIR  a streaming replica of the running cluster in
#                            PRIMARY (pg_basebackup -R), started; env lines
#   pg.sh promote DIR        promote a standby to primary, waiting for it
#
# The cluster listens only on a Unix socket in DIR/run and on 127.0.0.1:PORT
# (a free port is chosen on first start and kept in DIR/port). Local
# connections are trusted: this is for development and tests, never production.
set -euo pipefail

PG_USER=${NS_PG_OS_USER:-napsync}
PG_BIN=${NS_PG_BIN:-$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1)}

die() { echo "pg.sh: $*" >&2; exit 1; }
[ -x "$PG_BIN/initdb" ] || die "PostgreSQL server binaries not found (install the postgresql package)"

# From /, because the cluster's user may not be allowed into the caller's
# working directory (a private checkout).
as_pg() {
    if [ "$(id -u)" = 0 ]; then (cd / && runuser -u "$PG_USER" -- "$@"); else "$@"; fi
}

ensure_user() {
    [ "$(id -u)" = 0 ] || return 0
    id -u "$PG_USER" >/dev/null 2>&1 && return 0
    useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$PG_USER"
}

# The cluster's user must be able to reach DIR. A checkout in a private
# directory (mktemp -d is 0700) blocks it, so grant search permission, and
# nothing more, to that user on each blocking ancestor.
ensure_reachable() {
    local dir=$1 d
    [ "$(id -u)" = 0 ] || return 0
    runuser -u "$PG_USER" -- test -x "$dir" 2>/dev/null && return 0
    command -v setfacl >/dev/null || die "setfacl missing (install the acl package)"
    d=$dir
    while [ "$d" != / ]; do
        if ! runuser -u "$PG_USER" -- test -x "$d" 2>/dev/null; then
            setfacl -m "u:$PG_USER:x" "$d"
        fi
        d=$(dirname "$d")
    done
    runuser -u "$PG_USER" -- test -x "$dir" || die "user $PG_USER cannot reach $dir"
}

free_port() {
    python3 - <<'PY' 2>/dev/null || shuf -i 20000-60000 -n 1
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()
PY
}

print_env() {
    local dir=$1
    echo "PGHOST=$dir/run"
    echo "PGPORT=$(cat "$dir/port")"
    echo "PGUSER=$PG_USER"
    echo "PGDATABASE=postgres"
}

cmd_start() {
    local dir port
    mkdir -p "$1"
    dir=$(cd "$1" && pwd)
    ensure_user
    ensure_reachable "$(dirname "$dir")"
    if [ -f "$dir/port" ]; then port=$(cat "$dir/port"); else port=${2:-$(free_port)}; fi
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        [ "$(id -u)" = 0 ] && chown "$PG_USER:" "$dir"
        as_pg "$PG_BIN/initdb" -D "$dir/data" -U "$PG_USER" -A trust -E UTF8 --locale=C.UTF-8 \
            >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
        echo "$port" >"$dir/port"
        as_pg mkdir -p "$dir/run"
    fi
    if as_pg "$PG_BIN/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
        print_env "$dir"
        return 0
    fi
    as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $dir/run -c fsync=${NS_PG_FSYNC:-on}" \
        start >/dev/null || { tail -n 20 "$dir/postgres.log" >&2; die "PostgreSQL did not start"; }
    print_env "$dir"
}

cmd_stop() {
    local dir mode=${2:-fast}
    dir=$(cd "$1" 2>/dev/null && pwd) || return 0
    [ -f "$dir/data/PG_VERSION" ] || return 0
    as_pg "$PG_BIN/pg_ctl" -D "$dir/data" status >/dev/null 2>&1 || return 0
    as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -m "$mode" -w -t 60 stop >/dev/null
}

# A standby of the cluster in $1, in $2 (created once): a base backup over
# the primary's Unix socket (initdb's pg_hba.conf trusts local replication
# connections) with -R, which writes primary_conninfo and standby.signal,
# then started like any cluster of this script, on a port of its own.
cmd_standby() {
    local primary dir
    primary=$(cd "$1" && pwd)
    mkdir -p "$2"
    dir=$(cd "$2" && pwd)
    ensure_user
    ensure_reachable "$(dirname "$dir")"
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        [ "$(id -u)" = 0 ] && chown "$PG_USER:" "$dir"
        as_pg "$PG_BIN/pg_basebackup" -h "$primary/run" -p "$(cat "$primary/port")" -U "$PG_USER" \
            -D "$dir/data" -R -X stream -c fast >"$dir/basebackup.log" 2>&1 ||
            { cat "$dir/basebackup.log" >&2; die "pg_basebackup from $primary failed"; }
        free_port >"$dir/port"
        as_pg mkdir -p "$dir/run"
    fi
    cmd_start "$dir"
}

cmd_promote() {
    local dir
    dir=$(cd "$1" && pwd)
    as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -w -t 60 promote >/dev/null
}

case ${1:-} in
    start) shift; [ $# -ge 1 ] || die "usage: pg.sh start DIR [PORT]"; cmd_start "$@" ;;
    stop) shift; [ $# -ge 1 ] || die "usage: pg.sh stop DIR [fast|immediate]"; cmd_stop "$@" ;;
    restart) shift; [ $# -ge 1 ] || die "usage: pg.sh restart DIR"; cmd_stop "$1" fast; cmd_start "$1" ;;
    env) shift; [ $# -ge 1 ] || die "usage: pg.sh env DIR"; print_env "$(cd "$1" && pwd)" ;;
    standby) shift; [ $# -ge 2 ] || die "usage: pg.sh standby PRIMARY DIR"; cmd_standby "$1" "$2" ;;
    promote) shift; [ $# -ge 1 ] || die "usage: pg.sh promote DIR"; cmd_promote "$1" ;;
    status) shift; [ $# -ge 1 ] || die "usage: pg.sh status DIR"
        as_pg "$PG_BIN/pg_ctl" -D "$(cd "$1" && pwd)/data" status >/dev/null 2>&1 ;;
    *) die "usage: pg.sh start|stop|restart|env|status|promote DIR, or standby PRIMARY DIR" ;;
esac
