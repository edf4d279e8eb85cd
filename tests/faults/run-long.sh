#!/usr/bin/env bash
# Crash and fault injection, full counts: tests/faults/test_faults with at
# least 100 daemon kills, 50 client kills in a put and 50 in a sync, and
# longer PostgreSQL, link and disk-full phases than the CI-sized run that
# ctest does. The test starts its own PostgreSQL cluster; it needs root
# (PostgreSQL runs as another user, and the disk-full scenario mounts a
# tmpfs). Prints each scenario's summary line (seed, faults injected,
# mutations checked and their outcomes, syncs and their failures) and the
# run's duration; the whole output is kept in a file whose name it prints.
# A failure prints the command that reproduces the run's choices:
#   NS_TEST_SEED=<seed> NS_FAULT_DAEMON_KILLS=... build/tests/test_faults
#
# Usage: tests/faults/run-long.sh [-b BUILD_DIR] [-s SEED] [-k DAEMON_KILLS]
#            [-c CLIENT_KILLS] [-p PG_CYCLES] [-l LINK_SECONDS] [-d DISK_CYCLES]
#            [-n CLIENTS] [-t TIMEOUT_MS] [-o SCENARIO]
#   -b  build directory with test_faults built (default: build; configured
#       and built if test_faults is missing)
#   -s  seed (default: from the clock)
#   -k  napsyncd kills (default 120)       -c  client kills of each kind (50)
#   -p  PostgreSQL cycles: a fast stop, an immediate stop and a pause (10)
#   -l  seconds of link faults (300)       -d  disk fills (30)
#   -n  client processes (4)               -t  the clients' timeout, ms (2000)
#   -o  one scenario only: daemon_kill, postgres, links, client_kill, disk_full
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=tests/lib/longrun.sh disable=SC1091
. "$ROOT/tests/lib/longrun.sh"
build=build
seed=$(longrun_seed)
kills=120
client_kills=50
pg_cycles=10
link_seconds=300
disk_cycles=30
clients=4
timeout_ms=2000
only=''

while getopts "b:s:k:c:p:l:d:n:t:o:h" opt; do
    case $opt in
    b) build=$OPTARG ;;
    s) seed=$OPTARG ;;
    k) kills=$OPTARG ;;
    c) client_kills=$OPTARG ;;
    p) pg_cycles=$OPTARG ;;
    l) link_seconds=$OPTARG ;;
    d) disk_cycles=$OPTARG ;;
    n) clients=$OPTARG ;;
    t) timeout_ms=$OPTARG ;;
    o) only=$OPTARG ;;
    h)
        longrun_help "$0"
        exit 0
        ;;
    *) exit 2 ;;
    esac
done
longrun_numbers any "$seed" "$kills" "$client_kills" "$pg_cycles" "$link_seconds" \
    "$disk_cycles" "$clients" "$timeout_ms"
case $only in
'' | daemon_kill | postgres | links | client_kill | disk_full) ;;
*)
    echo "run-long.sh: -o is one of daemon_kill, postgres, links, client_kill, disk_full" >&2
    exit 2
    ;;
esac

cd "$ROOT"
build=$(longrun_build "$build" test_faults napsyncd napsync_faultclient)

log=$(mktemp "${TMPDIR:-/tmp}/napsync-faults.XXXXXX.log")
settings=(NS_TEST_SEED="$seed" NS_FAULT_DAEMON_KILLS="$kills" NS_FAULT_CLIENT_KILLS="$client_kills"
    NS_FAULT_PG_CYCLES="$pg_cycles" NS_FAULT_LINK_SECONDS="$link_seconds"
    NS_FAULT_DISK_CYCLES="$disk_cycles" NS_FAULT_CLIENTS="$clients"
    NS_FAULT_TIMEOUT_MS="$timeout_ms")
[ -n "$only" ] && settings+=(NS_FAULT_ONLY="*$only")

echo "run-long.sh: ${settings[*]}"
echo "run-long.sh: output in $log"
start=$SECONDS
rc=0
env "${settings[@]}" NS_FAULT_VERBOSE=1 NS_SOURCE_DIR="$ROOT" NS_BUILD_DIR="$build" \
    "$build/tests/test_faults" >"$log" 2>&1 || rc=$?
# The summary lines, and the failures by status under each.
grep -E '^faults: |^\[ +(OK|FAILED|SKIPPED) +\]' "$log" | grep -v ': daemon on ' || true
echo "run-long.sh: $((SECONDS - start)) s, exit status $rc"
if [ "$rc" != 0 ]; then
    echo "run-long.sh: FAILED; reproduce the run's choices with:" >&2
    echo "  ${settings[*]} NS_SOURCE_DIR=$ROOT NS_BUILD_DIR=$build $build/tests/test_faults" >&2
    exit 1
fi
