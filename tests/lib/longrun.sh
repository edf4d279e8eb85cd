# shellcheck shell=bash
# What the long-run scripts share (tests/converge/run-long.sh,
# tests/faults/run-long.sh, tests/soak/run.sh): their help, a seed from the
# clock, the check of their numeric options, a build of what they run and a
# throwaway PostgreSQL cluster. Sourced, after `set -euo pipefail`, by a
# script that has set ROOT to the checkout.

# A seed from the clock; RANDOM keeps two runs started in the same second
# apart.
longrun_seed() {
    echo $(($(date +%s) * 1000 + RANDOM))
}

# longrun_help SCRIPT: its header comment, from line 2 to `set -euo
# pipefail`, without the comment marks.
longrun_help() {
    sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$1"
}

# longrun_numbers any|positive VALUE...: exits 2 with a message unless
# every VALUE is a whole number (positive: and not 0).
longrun_numbers() {
    local kind=$1 n
    shift
    for n in "$@"; do
        case $n in
        '' | *[!0-9]*) ;;
        0) [ "$kind" = positive ] || continue ;;
        *) continue ;;
        esac
        if [ "$kind" = positive ]; then
            echo "${0##*/}: positive whole numbers only: '$n'" >&2
        else
            echo "${0##*/}: numbers only: $n" >&2
        fi
        exit 2
    done
}

# longrun_build BUILD_DIR TEST [TARGET...]: prints BUILD_DIR as an absolute
# path (relative ones are under ROOT), having configured and built TEST and
# the TARGETs there if tests/TEST is missing (cmake's output on stderr).
longrun_build() {
    local build=$1
    shift
    [[ $build = /* ]] || build=$ROOT/$build
    if [ ! -x "$build/tests/$1" ]; then
        cmake -S "$ROOT" -B "$build" -DNS_BUILD_TESTS=ON >/dev/null || return
        cmake --build "$build" -j "$(nproc)" --target "$@" >&2 || return
    fi
    echo "$build"
}

# longrun_pg NAME: a temporary directory in LONGRUN_TMP (napsync-NAME.*)
# holding a throwaway PostgreSQL cluster, both removed on exit, and the
# NS_TEST_PG* variables the tests read, as tests/run.sh exports them. fsync
# is off: the cluster is thrown away, and what these runs measure is not
# the disk (crash safety has its own tests).
longrun_pg() {
    local out line
    LONGRUN_TMP=$(mktemp -d "${TMPDIR:-/tmp}/napsync-$1.XXXXXX")
    trap longrun_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    out=$(NS_PG_FSYNC=off "$ROOT/tests/lib/pg.sh" start "$LONGRUN_TMP/pg")
    while IFS= read -r line; do
        case $line in
        PGHOST=*) export NS_TEST_PGHOST=${line#PGHOST=} ;;
        PGPORT=*) export NS_TEST_PGPORT=${line#PGPORT=} ;;
        PGUSER=*) export NS_TEST_PGUSER=${line#PGUSER=} ;;
        esac
    done <<<"$out"
}

longrun_cleanup() {
    "$ROOT/tests/lib/pg.sh" stop "$LONGRUN_TMP/pg" immediate >/dev/null 2>&1 || true
    rm -rf "$LONGRUN_TMP"
}
