#!/usr/bin/env bash
# Builds the Debian package napsync_VERSION_ARCH.deb (cmake/package.cmake):
# configures BUILD_DIR for a system installation (prefix /usr, no tests,
# RelWithDebInfo, stripped in the package), builds it and runs cpack. Prints
# the path of the .deb on its last line. Rerunning it rebuilds only what
# changed.
#
#   deploy/build-deb.sh [BUILD_DIR]      (default: build-package/ of the checkout)
#
# Needs the build packages (tests/lib/deps.sh --build) and dpkg-dev, whose
# dpkg-shlibdeps computes the package's Depends.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${1:-$ROOT/build-package}
JOBS=$(nproc 2>/dev/null || echo 2)

cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_INSTALL_PREFIX=/usr \
    -DNS_BUILD_TESTS=OFF -DNS_SANITIZE=OFF >/dev/null
cmake --build "$BUILD_DIR" -j "$JOBS" >/dev/null
# A .deb of an earlier version must not be taken for this one.
rm -f "$BUILD_DIR"/napsync_*.deb
(cd "$BUILD_DIR" && cpack -G DEB >/dev/null)
debs=("$BUILD_DIR"/napsync_*.deb)
if [ ${#debs[@]} != 1 ] || [ ! -f "${debs[0]}" ]; then
    echo "build-deb.sh: cpack made no napsync_*.deb in $BUILD_DIR" >&2
    exit 1
fi
echo "${debs[0]}"
