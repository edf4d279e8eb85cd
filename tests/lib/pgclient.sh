# shellcheck shell=bash
# Sourced by the benchmark scripts (tests/bench/run.sh, tests/fieldlink/run.sh):
# what they need of a cluster that tests/lib/pg.sh started. The sourcing
# script defines die().

PGH='' PGP='' PGU=''

# pg_env OUTPUT: PGH, PGP and PGU from pg.sh start's PGHOST=, PGPORT= and
# PGUSER= lines.
pg_env() {
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

# sql DB [PSQL ARGS]: psql as the cluster's superuser; SQL on stdin, values
# as -v name=value (used as :'name', quoted by psql).
sql() {
    local db=$1
    shift
    PGOPTIONS='-c client_min_messages=warning' \
        psql -X -q -A -t -v ON_ERROR_STOP=1 -h "$PGH" -p "$PGP" -U "$PGU" -d "$db" "$@"
}
