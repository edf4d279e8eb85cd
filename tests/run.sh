#!/usr/bin/env bash
# Everything CI checks, from any directory: formatting (clang-format),
# static analysis (cppcheck, shellcheck), a normal and a sanitizer
# (ASan+UBSan) build with warnings as errors, and every ctest test of both
# builds against a throwaway PostgreSQL cluster. Exits non-zero if anything
# fails; the summary at the end says what.
#
#   tests/run.sh [--no-asan] [--no-lint] [-- CTEST_ARGS...]
#
#   --no-asan   skip the sanitizer build and its tests (a quicker local round)
#   --no-lint   skip clang-format, cppcheck and shellcheck
#   --no-fuzz   skip the short run of the libFuzzer targets (tests/fuzz)
#   CTEST_ARGS  passed to both ctest runs, e.g. -- -L unit  or  -- -R frame
#
# Builds into build/ and build-asan/ of the checkout, and the Debian package
# into build/package/ (deploy/build-deb.sh). Installs missing Debian packages
# first (apt-get update only when something is missing). test_package, run as
# root, keeps a Debian root for it in var/cache/debroot/ (debootstrap'd once).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

asan=1
lint=1
fuzz=1
ctest_args=()
while [ $# -gt 0 ]; do
    case $1 in
    --no-asan) asan=0 ;;
    --no-lint) lint=0 ;;
    --no-fuzz) fuzz=0 ;;
    --)
        shift
        ctest_args=("$@")
        break
        ;;
    -h | --help)
        sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "${BASH_SOURCE[0]}"
        exit 0
        ;;
    *)
        echo "run.sh: unknown option '$1' (see tests/run.sh --help)" >&2
        exit 2
        ;;
    esac
    shift
done

JOBS=$(nproc 2>/dev/null || echo 2)
# Where the C sources live; build trees (build*/) are skipped wherever they are.
SOURCE_DIRS=(daemon proto client tests)

names=()
results=()
times=()
failed=()

# step NAME COMMAND...: runs one check, records its outcome and keeps going,
# so that one run reports every problem.
step() {
    local name=$1 start rc=0
    shift
    printf '\n==> %s\n' "$name"
    start=$SECONDS
    "$@" || rc=$?
    names+=("$name")
    times+=($((SECONDS - start)))
    if [ "$rc" = 0 ]; then
        results+=(ok)
    else
        results+=("FAILED ($rc)")
        failed+=("$name")
    fi
    return 0
}

skip() {
    names+=("$1")
    times+=(0)
    results+=("skipped: $2")
    failed+=("$1")
}

passed() {
    local i
    for i in "${!names[@]}"; do
        [ "${names[$i]}" = "$1" ] && [ "${results[$i]}" = ok ] && return 0
    done
    return 1
}

c_files() {
    find "${SOURCE_DIRS[@]}" -type d -name 'build*' -prune -o \
        -type f \( -name '*.c' -o -name '*.h' \) -print | sort
}

check_format() {
    local files
    mapfile -t files < <(c_files)
    [ ${#files[@]} -gt 0 ] || {
        echo "no C files found"
        return 1
    }
    clang-format --dry-run -Werror "${files[@]}"
}

check_cppcheck() {
    local inc=()
    # The generated protocol header gives cppcheck the message types.
    [ -d build/generated ] && inc=(-I build/generated)
    cppcheck --enable=warning,performance,portability --error-exitcode=1 --inline-suppr -q \
        --std=c11 -j "$JOBS" --suppress=missingIncludeSystem \
        -I proto -I daemon -I client/include "${inc[@]}" "${SOURCE_DIRS[@]}"
}

check_shell() {
    local files
    mapfile -t files < <({
        find deploy tests -type d -name 'build*' -prune -o -type f -name '*.sh' -print
        # The Debian package's maintainer scripts (cmake/package.cmake).
        find deploy/debian -type f -perm -u+x
        echo .ci/run
    } | sort)
    shellcheck "${files[@]}"
}

build() {
    local dir=$1
    shift
    cmake -S "$ROOT" -B "$dir" -DNS_BUILD_TESTS=ON "$@" >/dev/null &&
        cmake --build "$dir" -j "$JOBS"
}

PG_TMP=''
cleanup() {
    if [ -n "$PG_TMP" ]; then
        "$ROOT/tests/lib/pg.sh" stop "$PG_TMP/pg" immediate || true
        rm -rf "$PG_TMP"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

start_pg() {
    local out line
    PG_TMP=$(mktemp -d "${TMPDIR:-/tmp}/napsync-test.XXXXXX")
    # fsync off: the cluster is thrown away, and tests run faster.
    out=$(NS_PG_FSYNC=off "$ROOT/tests/lib/pg.sh" start "$PG_TMP/pg") || return 1
    while IFS= read -r line; do
        case $line in
        PGHOST=*) export NS_TEST_PGHOST=${line#PGHOST=} ;;
        PGPORT=*) export NS_TEST_PGPORT=${line#PGPORT=} ;;
        PGUSER=*) export NS_TEST_PGUSER=${line#PGUSER=} ;;
        esac
    done <<<"$out"
    echo "PostgreSQL on $NS_TEST_PGHOST port $NS_TEST_PGPORT (user $NS_TEST_PGUSER)"
}

run_ctest() {
    local dir=$1
    NS_BUILD_DIR="$ROOT/$dir" ctest --test-dir "$dir" --output-on-failure --no-tests=error \
        -j 2 --timeout 300 "${ctest_args[@]}"
}

# The libFuzzer targets in a clang build of their own (build-fuzz), each
# for NS_FUZZ_SECONDS (30) over its seeds and regressions: ctest -L fuzz
# runs tests/fuzz/run-long.sh for each.
run_fuzz() {
    CC=clang cmake -S "$ROOT" -B build-fuzz -DNS_FUZZ=ON -DNS_BUILD_TESTS=OFF \
        -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNS_FUZZ_SECONDS="${NS_FUZZ_SECONDS:-30}" >/dev/null &&
        cmake --build build-fuzz -j "$JOBS" --target ns_fuzz &&
        ctest --test-dir build-fuzz -L fuzz --output-on-failure --no-tests=error -j 2
}

# Every process the tests start inherits these (napsyncd, the napsync CLI,
# the load generator, forked children), and LeakSanitizer runs when each
# exits. Their reports go to files of their own: a process whose exit
# status no test checks (a CLI expected to fail, a daemon killed at the
# end) would otherwise report unseen. Any report fails the step, printed.
run_ctest_asan() {
    local reports rc=0 f
    reports=$(mktemp -d "${TMPDIR:-/tmp}/napsync-sanitizers.XXXXXX")
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:log_path=$reports/asan \
        UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:log_path=$reports/ubsan \
        run_ctest build-asan || rc=$?
    for f in "$reports"/*; do
        [ -e "$f" ] || continue
        printf '\n---- sanitizer report %s ----\n' "${f##*/}"
        cat "$f"
        [ "$rc" != 0 ] || rc=1
    done
    rm -rf "$reports"
    return "$rc"
}

total_start=$SECONDS

extra=()
[ "$lint" = 1 ] && extra=(clang-format cppcheck shellcheck)
step "packages" "$ROOT/tests/lib/deps.sh" --build --test "${extra[@]}"

export NS_SOURCE_DIR=$ROOT
if [ "$lint" = 1 ]; then
    step "clang-format" check_format
    step "shellcheck" check_shell
fi
step "build" build build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNS_SANITIZE=OFF
# The .deb (prefix /usr, its own tree build/package), which test_package
# installs; the test rebuilds it too, so this step only says early if it breaks.
step "package" "$ROOT/deploy/build-deb.sh" "$ROOT/build/package"
[ "$lint" = 1 ] && step "cppcheck" check_cppcheck
[ "$asan" = 1 ] && step "build-asan" build build-asan -DCMAKE_BUILD_TYPE=Debug -DNS_SANITIZE=ON

step "postgresql" start_pg
if passed postgresql; then
    if passed build; then step "ctest" run_ctest build; else skip "ctest" "build failed"; fi
    if [ "$asan" = 1 ]; then
        if passed build-asan; then
            step "ctest-asan" run_ctest_asan
        else
            skip "ctest-asan" "build failed"
        fi
    fi
    [ "$fuzz" = 1 ] && step "fuzz" run_fuzz
else
    skip "ctest" "no PostgreSQL"
    [ "$asan" = 1 ] && skip "ctest-asan" "no PostgreSQL"
    [ "$fuzz" = 1 ] && skip "fuzz" "no PostgreSQL"
fi

printf '\n==== tests/run.sh summary ====\n'
for i in "${!names[@]}"; do
    printf '  %-14s %-28s %4ss\n' "${names[$i]}" "${results[$i]}" "${times[$i]}"
done
if [ ${#failed[@]} -gt 0 ]; then
    printf 'FAILED: %s (%ss)\n' "${failed[*]}" $((SECONDS - total_start))
    exit 1
fi
printf 'All passed (%ss).\n' $((SECONDS - total_start))
