#!/usr/bin/env bash
# Runs the libFuzzer targets of tests/fuzz, each for a given time, and
# prints per target: executions, executions per second, the corpus it
# ended with, coverage (libFuzzer's cov: edges and ft: features) and the
# crashes found. Each run starts from the committed seeds
# (tests/fuzz/corpus/NAME) and replays every regression input
# (tests/fuzz/regressions/NAME) first. ctest -L fuzz (tests/run.sh) calls
# it for a short run of each target.
#
#   tests/fuzz/run-long.sh [options] TARGET... | all
#
#   TARGET        frame envelope value config planfile_json planfile_csv
#                 session client (all: every one)
#   --seconds N   how long each target runs (default 600)
#   --jobs J      targets run at once (default 1)
#   --build DIR   the fuzz build tree (default build-fuzz of the checkout);
#                 configured (CC=clang, -DNS_FUZZ=ON) and built when a target
#                 is missing from it
#   --fresh       grow the corpus in a temporary directory, deleted at the
#                 end (default: DIR/fuzz-work/NAME, kept between runs)
#   --fail-fast   stop a target at its first crash; otherwise it is
#                 restarted for the rest of its time and every crash counts
#
# Crashing inputs are kept in DIR/fuzz-artifacts/NAME/; replay one with
#   DIR/tests/fuzz/fuzz_NAME FILE
# and, once fixed, commit it under tests/fuzz/regressions/NAME/.
# The session target needs PostgreSQL: NS_TEST_PGHOST, NS_TEST_PGPORT and
# NS_TEST_PGUSER, or else this script starts a throwaway cluster.
# To rewrite the seed corpora: DIR/tests/fuzz/fuzz_mkcorpus tests/fuzz/corpus
#
# Exits 1 if any target crashed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
ALL=(frame envelope value config planfile_json planfile_csv session client)

seconds=600
jobs=1
build=$ROOT/build-fuzz
fresh=0
fail_fast=0
targets=()

usage() {
    sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "${BASH_SOURCE[0]}"
}

number() {
    case $2 in
    '' | *[!0-9]*)
        echo "run-long.sh: $1 takes a whole number, not '$2'" >&2
        exit 2
        ;;
    esac
}

while [ $# -gt 0 ]; do
    case $1 in
    --seconds)
        number "$1" "${2:-}"
        seconds=$2
        shift
        ;;
    --jobs)
        number "$1" "${2:-}"
        jobs=$2
        shift
        ;;
    --build)
        build=${2:?--build takes a directory}
        shift
        ;;
    --fresh) fresh=1 ;;
    --fail-fast) fail_fast=1 ;;
    -h | --help)
        usage
        exit 0
        ;;
    all) targets+=("${ALL[@]}") ;;
    -*)
        echo "run-long.sh: unknown option '$1' (see --help)" >&2
        exit 2
        ;;
    *)
        case " ${ALL[*]} " in
        *" $1 "*) targets+=("$1") ;;
        *)
            echo "run-long.sh: no fuzz target '$1' (${ALL[*]})" >&2
            exit 2
            ;;
        esac
        ;;
    esac
    shift
done
if [ ${#targets[@]} -eq 0 ]; then
    usage >&2
    exit 2
fi
[ "$jobs" -ge 1 ] || jobs=1
[[ $build = /* ]] || build=$PWD/$build

missing=0
for t in "${targets[@]}"; do
    [ -x "$build/tests/fuzz/fuzz_$t" ] || missing=1
done
if [ "$missing" = 1 ]; then
    echo "run-long.sh: building the fuzz targets in $build" >&2
    CC=clang cmake -S "$ROOT" -B "$build" -DNS_FUZZ=ON -DNS_BUILD_TESTS=OFF \
        -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
    cmake --build "$build" -j "$(nproc)" --target ns_fuzz >/dev/null
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/napsync-fuzz.XXXXXX")
pg_started=0
cleanup() {
    if [ "$pg_started" = 1 ]; then
        "$ROOT/tests/lib/pg.sh" stop "$tmp/pg" immediate >/dev/null 2>&1 || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [[ " ${targets[*]} " = *" session "* ]] && [ -z "${NS_TEST_PGHOST:-}" ]; then
    out=$(NS_PG_FSYNC=off "$ROOT/tests/lib/pg.sh" start "$tmp/pg")
    pg_started=1
    while IFS= read -r line; do
        case $line in
        PGHOST=*) export NS_TEST_PGHOST=${line#PGHOST=} ;;
        PGPORT=*) export NS_TEST_PGPORT=${line#PGPORT=} ;;
        PGUSER=*) export NS_TEST_PGUSER=${line#PGUSER=} ;;
        esac
    done <<<"$out"
fi
export NS_SOURCE_DIR=$ROOT

# run_target NAME: runs it for $seconds and writes one summary line to
# $tmp/NAME.summary (and the crashes to $tmp/NAME.crashes).
run_target() {
    local t=$1 bin=$build/tests/fuzz/fuzz_$1 corpus art start end left rc runs=0
    local execs=0 crashes=0 cov='?' ft='?' log n
    if [ "$fresh" = 1 ]; then
        corpus=$tmp/$t/corpus
    else
        corpus=$build/fuzz-work/$t/corpus
    fi
    art=$build/fuzz-artifacts/$t
    mkdir -p "$corpus" "$art" "$tmp/$t"
    local dirs=("$corpus" "$ROOT/tests/fuzz/corpus/$t")
    [ -d "$ROOT/tests/fuzz/regressions/$t" ] && dirs+=("$ROOT/tests/fuzz/regressions/$t")
    : >"$tmp/$t.crashes"
    start=$SECONDS
    end=$((start + seconds))
    while :; do
        left=$((end - SECONDS))
        [ "$left" -gt 0 ] || break
        runs=$((runs + 1))
        log=$tmp/$t/run-$runs.log
        rc=0
        "$bin" -max_total_time="$left" -timeout=60 -rss_limit_mb=4096 -print_final_stats=1 \
            -artifact_prefix="$art/" "${dirs[@]}" >"$log" 2>&1 || rc=$?
        n=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
        execs=$((execs + ${n:-0}))
        if grep -q ' cov: ' "$log"; then
            cov=$(grep -o ' cov: [0-9]*' "$log" | tail -n 1 | tr -dc 0-9)
            ft=$(grep -o ' ft: [0-9]*' "$log" | tail -n 1 | tr -dc 0-9)
        fi
        [ "$rc" = 0 ] && break
        crashes=$((crashes + 1))
        {
            echo "== $t: run $runs exited $rc"
            grep -E 'SUMMARY|^fuzz|Test unit written' "$log" || true
        } >>"$tmp/$t.crashes"
        if [ "$fail_fast" = 1 ] || ! grep -q 'INITED' "$log"; then
            # A seed or regression that crashes would crash every restart.
            tail -n 80 "$log" >>"$tmp/$t.crashes"
            break
        fi
    done
    local elapsed=$((SECONDS - start)) files bytes
    [ "$elapsed" -gt 0 ] || elapsed=1
    files=$(find "$corpus" -type f | wc -l)
    bytes=$(du -sk "$corpus" | cut -f1)
    printf '%-14s %6s %10s %8s %7s %8s %6s %6s %7s\n' "$t" "$elapsed" "$execs" \
        "$((execs / elapsed))" "$files" "${bytes}K" "$cov" "$ft" "$crashes" >"$tmp/$t.summary"
}

echo "run-long.sh: ${targets[*]}, $seconds s each, $jobs at a time, on $(nproc) cores ($(uname -m))"
running=0
for t in "${targets[@]}"; do
    if [ "$running" -ge "$jobs" ]; then
        wait -n || true
        running=$((running - 1))
    fi
    run_target "$t" &
    running=$((running + 1))
done
wait || true

status=0
printf '%-14s %6s %10s %8s %7s %8s %6s %6s %7s\n' target seconds execs exec/s corpus size \
    cov ft crashes
for t in "${targets[@]}"; do
    cat "$tmp/$t.summary" 2>/dev/null || printf '%-14s (no result)\n' "$t"
done
for t in "${targets[@]}"; do
    if [ -s "$tmp/$t.crashes" ]; then
        status=1
        cat "$tmp/$t.crashes"
    fi
done
if [ "$status" != 0 ]; then
    echo "run-long.sh: crashes found; inputs in $build/fuzz-artifacts/" >&2
    exit 1
fi
