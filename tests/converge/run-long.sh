#!/usr/bin/env bash
# The convergence property test, long: test_converge with many rounds and
# one seed after another, against a throwaway PostgreSQL cluster (as
# tests/run.sh does), until a number of runs or a time budget is used up.
# Each run prints its summary line (seed, mutations, outcomes, conflicts,
# syncs, cuts); a failing run keeps its output and stops the script, and its
# seed reproduces it:
#   NS_TEST_SEED=<seed> NS_TEST_ROUNDS=<rounds> build/tests/test_converge
#
# Usage: tests/converge/run-long.sh [-b BUILD_DIR] [-r ROUNDS] [-s FIRST_SEED]
#                                   [-n RUNS] [-m MINUTES] [-d DEVICES] [-p PLANS]
#   -b  a build directory with test_converge and napsyncd built
#       (default: build; it is configured and built if test_converge is missing)
#   -r  rounds per run (default 2000)
#   -s  first seed (default: from the clock); run i uses FIRST_SEED + i
#   -n  at most this many runs (default 1000)
#   -m  stop starting runs after this many minutes (default 10)
#   -d  devices (default 5), -p plans (default 3; each has 2 indicators)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=tests/lib/longrun.sh disable=SC1091
. "$ROOT/tests/lib/longrun.sh"
build=build
rounds=2000
seed=$(longrun_seed)
runs=1000
minutes=10
devices=5
plans=3

while getopts "b:r:s:n:m:d:p:h" opt; do
    case $opt in
    b) build=$OPTARG ;;
    r) rounds=$OPTARG ;;
    s) seed=$OPTARG ;;
    n) runs=$OPTARG ;;
    m) minutes=$OPTARG ;;
    d) devices=$OPTARG ;;
    p) plans=$OPTARG ;;
    h)
        longrun_help "$0"
        exit 0
        ;;
    *) exit 2 ;;
    esac
done
longrun_numbers any "$rounds" "$seed" "$runs" "$minutes" "$devices" "$plans"

cd "$ROOT"
build=$(longrun_build "$build" test_converge)
# The property is about the protocol, not the disk.
longrun_pg converge
tmp=$LONGRUN_TMP
export NS_SOURCE_DIR=$ROOT NS_BUILD_DIR=$build
export NS_TEST_ROUNDS=$rounds NS_TEST_DEVICES=$devices NS_TEST_PLANS=$plans

echo "run-long: rounds=$rounds devices=$devices plans=$plans first seed=$seed," \
    "up to $runs runs or $minutes minutes"
deadline=$((SECONDS + minutes * 60))
done_runs=0
while [ "$done_runs" -lt "$runs" ] && [ "$SECONDS" -lt "$deadline" ]; do
    s=$((seed + done_runs))
    log="$tmp/run-$s.log"
    if ! NS_TEST_SEED=$s "$build/tests/test_converge" >"$log" 2>&1; then
        cat "$log"
        echo "run-long: FAILED with NS_TEST_SEED=$s NS_TEST_ROUNDS=$rounds" \
            "NS_TEST_DEVICES=$devices NS_TEST_PLANS=$plans" >&2
        exit 1
    fi
    grep '^converge: seed=.*violations=' "$log" || true
    done_runs=$((done_runs + 1))
done
echo "run-long: $done_runs runs passed in $SECONDS s"
