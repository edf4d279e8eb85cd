#!/usr/bin/env bash
# The memory soak, long (docs/reliability.md, "Memory"): test_soak for a
# number of minutes against a throwaway PostgreSQL cluster (as tests/run.sh
# does), then the daemon's VmRSS over the run: the samples at the start,
# the end of the warm-up, every quarter and the end, with the load done by
# then (connections, syncs, mutations), and the summary test_soak prints.
# It fails if test_soak fails: a device's error, a lost or extra indicator,
# or RSS growth beyond the bound after the warm-up.
#
# Usage: tests/soak/run.sh [-b BUILD_DIR] [-m MINUTES] [-d DEVICES]
#                          [-i SAMPLE_SECONDS] [-l SLACK_MB] [-o SAMPLES.tsv]
#   -b  a build directory with test_soak and napsyncd built (default: build;
#       configured and built if test_soak is missing)
#   -m  minutes of load (default 10)
#   -d  devices, each a thread with its own store (default 8)
#   -i  seconds between RSS samples (default 5)
#   -l  growth allowed after the warm-up, MiB (default 64)
#   -o  keep every sample there (TSV: seconds, rss_kib, hwm_kib, connects,
#       syncs, mutations)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=tests/lib/longrun.sh disable=SC1091
. "$ROOT/tests/lib/longrun.sh"
build=build
minutes=10
devices=8
interval=5
slack=64
samples=''

while getopts "b:m:d:i:l:o:h" opt; do
    case $opt in
    b) build=$OPTARG ;;
    m) minutes=$OPTARG ;;
    d) devices=$OPTARG ;;
    i) interval=$OPTARG ;;
    l) slack=$OPTARG ;;
    o) samples=$OPTARG ;;
    h)
        longrun_help "$0"
        exit 0
        ;;
    *) exit 2 ;;
    esac
done
longrun_numbers positive "$minutes" "$devices" "$interval" "$slack"

cd "$ROOT"
build=$(longrun_build "$build" test_soak napsyncd)
# The soak measures the daemon.
longrun_pg soak
tmp=$LONGRUN_TMP
[ -n "$samples" ] || samples=$tmp/samples.tsv
export NS_SOURCE_DIR=$ROOT NS_BUILD_DIR=$build
export NS_SOAK_SECONDS=$((minutes * 60)) NS_SOAK_DEVICES=$devices
export NS_SOAK_SAMPLE_MS=$((interval * 1000)) NS_SOAK_SLACK_MB=$slack NS_SOAK_OUT=$samples

echo "soak: $devices devices for $minutes minutes, VmRSS every ${interval} s;" \
    "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'), $build"
log=$tmp/soak.log
rc=0
"$build/tests/test_soak" >"$log" 2>&1 || rc=$?
grep '^soak:' "$log" || true
if [ -s "$samples" ]; then
    # Start, end of the warm-up (a tenth of the samples), each quarter, end.
    awk -F'\t' 'NR == 1 { next }
        { t[NR - 1] = $1; r[NR - 1] = $2; c[NR - 1] = $4; s[NR - 1] = $5; m[NR - 1] = $6; n = NR - 1 }
        END {
            split("1 " int(n / 10) + 1 " " int(n / 4) + 1 " " int(n / 2) + 1 " " int(3 * n / 4) + 1 " " n, at, " ")
            split("start warm 25% 50% 75% end", name, " ")
            printf "%-6s %9s %10s %12s %9s %10s\n", "", "seconds", "VmRSS KiB", "connections", "syncs", "mutations"
            for (i = 1; i <= 6; i++) {
                k = at[i]
                printf "%-6s %9s %10s %12s %9s %10s\n", name[i], t[k], r[k], c[k], s[k], m[k]
            }
        }' "$samples"
fi
if [ "$rc" != 0 ]; then
    echo "soak: FAILED (exit $rc); the end of its output:" >&2
    grep -v '^ts=' "$log" | tail -40 >&2
    exit 1
fi
echo "soak: passed"
