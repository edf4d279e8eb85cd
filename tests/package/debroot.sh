#!/usr/bin/env bash
# A throwaway Debian root to install a .deb into, for test_package: a
# minimal Debian (debootstrap --variant=minbase, the release of this machine)
# with the packages the .deb depends on (and systemd, procps) already installed, so that
# `chroot ROOT dpkg -i` sees a real system and needs no network. The first
# run downloads it (about half a minute) and keeps it as a tarball in
# CACHE_DIR, one per set of dependencies; later runs unpack that (seconds).
#
#   debroot.sh DEB ROOT [CACHE_DIR]
#
# ROOT must not exist. CACHE_DIR defaults to $NS_PACKAGE_CACHE, else var/cache/
# debroot of the checkout. NS_DEBIAN_MIRROR overrides the mirror
# (http://deb.debian.org/debian). Needs root (debootstrap, chroot) and the
# Debian package debootstrap (tests/lib/deps.sh --test).
set -euo pipefail

die() {
    echo "debroot.sh: $*" >&2
    exit 1
}

[ $# -ge 2 ] || die "usage: debroot.sh DEB ROOT [CACHE_DIR]"
DEB=$1
ROOT=$2
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CACHE=${3:-${NS_PACKAGE_CACHE:-$SRC/var/cache/debroot}}
MIRROR=${NS_DEBIAN_MIRROR:-http://deb.debian.org/debian}

[ "$(id -u)" = 0 ] || die "needs root (debootstrap and chroot)"
[ -f "$DEB" ] || die "no such package: $DEB"
[ ! -e "$ROOT" ] || die "$ROOT exists"
command -v debootstrap >/dev/null || die "debootstrap is missing (apt-get install debootstrap)"

# shellcheck source=/dev/null
SUITE=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
[ -n "$SUITE" ] || die "cannot tell this machine's Debian release from /etc/os-release"

# The names in Depends ("libc6 (>= 2.34), libuv1 (>= 1.44), adduser"),
# without versions; for alternatives ("a | b") the first. Then systemd, to
# check the unit in place (systemd-analyze --root), and procps, whose
# /bin/kill the unit's ExecReload runs (every standard system has it).
depends=$(dpkg-deb -f "$DEB" Depends)
[ -n "$depends" ] || die "$DEB has no Depends"
deps=$({
    printf '%s\n' "$depends" | tr ',' '\n' | sed -e 's/|.*//' -e 's/(.*)//' -e 's/[[:space:]]//g'
    printf '%s\n' systemd procps
} | grep -v '^$' | sort -u | paste -sd, -)
arch=$(dpkg --print-architecture)
key=$(printf '%s %s %s %s' "$SUITE" "$arch" "$MIRROR" "$deps" | sha256sum | cut -c1-16)
tarball=$CACHE/$SUITE-$arch-$key.tar.gz

if [ ! -f "$tarball" ]; then
    mkdir -p "$CACHE"
    work=$(mktemp -d "$CACHE/.build.XXXXXX")
    trap 'rm -rf "$work"' EXIT
    echo "debroot.sh: debootstrap $SUITE with $deps (once; kept in $tarball)" >&2
    debootstrap --variant=minbase --arch="$arch" --include="$deps" "$SUITE" "$work/root" \
        "$MIRROR" >"$work/debootstrap.log" 2>&1 || {
        tail -n 20 "$work/debootstrap.log" >&2
        die "debootstrap failed"
    }
    chroot "$work/root" apt-get clean
    tar -C "$work/root" --numeric-owner -czf "$work/root.tar.gz" .
    mv "$work/root.tar.gz" "$tarball"
    rm -rf "$work"
    trap - EXIT
    # Roots for earlier dependency lists are not needed any more.
    find "$CACHE" -maxdepth 1 -name "$SUITE-$arch-*.tar.gz" ! -name "${tarball##*/}" -delete
fi

mkdir -p "$ROOT"
tar -C "$ROOT" --numeric-owner -xzf "$tarball"
