#!/usr/bin/env bash
# Installs those of the given Debian packages that are missing, and nothing
# else: when all are there it neither updates the package lists nor touches
# the system. Used by deploy/dev.sh and tests/run.sh.
#
#   deps.sh [--build] [--test] [PACKAGE...]
#
# --build stands for what building and running napsync needs (dpkg-dev:
# dpkg-shlibdeps for the .deb's Depends), --test for what only the tests
# need besides (chromium renders the HTML report in test_reports; debootstrap
# and systemd's systemd-analyze serve test_package; prometheus and its
# promtool scrape and lint napsyncd's /metrics in test_prometheus; clang and
# its runtime libraries build the libFuzzer targets of tests/fuzz), so that
# the scripts share one list. libcurl4-openssl-dev is under --build because
# the test programs are built with the rest.
#
# As root it calls apt-get directly, otherwise through sudo. Never prompts:
# it also runs in CI without a terminal.
set -euo pipefail

die() {
    echo "deps.sh: $*" >&2
    exit 1
}

BUILD_PACKAGES=(libuv1-dev libpq-dev postgresql libprotobuf-c-dev protobuf-c-compiler libssl-dev
    libcmocka-dev libsqlite3-dev libjansson-dev libyajl-dev libcsv-dev libzstd-dev cmake make gcc libc6-dev
    pkg-config acl openssl dpkg-dev libmicrohttpd-dev libcurl4-openssl-dev)
TEST_PACKAGES=(chromium debootstrap systemd prometheus clang libclang-rt-14-dev)
# haproxy: tests/scale/test_haproxy puts three napsyncd behind Debian's.
TEST_PACKAGES+=(haproxy)
# iproute2 and iptables: the simulated field line of tests/fieldlink (network
# namespaces, tc tbf, the iptables statistic match) for test_fieldlink.
TEST_PACKAGES+=(iproute2 iptables)
# nodejs and stunnel4: the PouchDB peer of tests/bench/run.sh (figure 6, also
# in its smoke run) and tests/fieldlink (pouchdb-server behind stunnel). npm
# comes with NodeSource's nodejs and separately with Debian's: those scripts
# install Debian's npm when there is no npm command.
TEST_PACKAGES+=(nodejs stunnel4)

[ $# -ge 1 ] || die "usage: deps.sh [--build] [--test] [PACKAGE...]"
wanted=()
for arg in "$@"; do
    case $arg in
    --build) wanted+=("${BUILD_PACKAGES[@]}") ;;
    --test) wanted+=("${TEST_PACKAGES[@]}") ;;
    -*) die "unknown option $arg" ;;
    *) wanted+=("$arg") ;;
    esac
done

if ! command -v dpkg-query >/dev/null; then
    echo "deps.sh: not a Debian system; make sure these are installed: ${wanted[*]}" >&2
    exit 0
fi

missing=()
for pkg in "${wanted[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
    [ "$status" = installed ] || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

as_root=()
if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || die "missing packages (${missing[*]}) and no sudo: install them as root"
    as_root=(sudo)
fi

echo "Installing missing packages: ${missing[*]}" >&2
"${as_root[@]}" apt-get update -q </dev/null >&2 || die "apt-get update failed"
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null >&2 ||
    die "could not install: ${missing[*]}"
