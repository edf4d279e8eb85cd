#!/usr/bin/env bash
# Runs Debian's testssl.sh (package testssl.sh) against the development
# napsyncd of this checkout (start it with ./deploy/dev.sh up), presenting the
# demo coordinator's device certificate, and prints a summary: the findings
# by severity and every one above INFO. docs/security.md quotes a run.
#
#   tests/tls/run-testssl.sh [--out DIR] [-- TESTSSL_ARGS...]
#
#   --out DIR      where the full report goes (default var/testssl):
#                  testssl.log (the text report), testssl.json (every finding)
#   TESTSSL_ARGS   more testssl.sh options, e.g. -- --fast
#
# napsyncd refuses a handshake without a client certificate. testssl.sh 3.2
# takes one with --mtls (certificate and key in one PEM file); Debian 12 has
# 3.0.8, which lacks the option, so its openssl is given as a wrapper that
# adds -cert and -key to every s_client it runs. testssl.sh's own socket
# probes send no certificate: they read what the server says before it asks
# for one (ServerHello: versions, suites, groups, extensions), which is what
# they test. Takes a few minutes; not part of tests/run.sh.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VAR=$ROOT/var
CA_DIR=$VAR/ca
PORT_FILE=$VAR/napsyncd.port
DEVICE=demo-coordinator
OUT=$VAR/testssl

die() {
    echo "run-testssl.sh: $*" >&2
    exit 1
}

extra=()
while [ $# -gt 0 ]; do
    case $1 in
    --out)
        [ $# -ge 2 ] || die "--out needs a directory"
        OUT=$2
        shift 2
        ;;
    --)
        shift
        extra=("$@")
        break
        ;;
    -h | --help)
        sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "${BASH_SOURCE[0]}"
        exit 0
        ;;
    *) die "unknown option '$1' (see --help)" ;;
    esac
done

"$ROOT/tests/lib/deps.sh" testssl.sh jq
{ [ -f "$PORT_FILE" ] && [ -f "$CA_DIR/$DEVICE.crt" ]; } ||
    die "no development environment here; run: $ROOT/deploy/dev.sh up"
ADDR=127.0.0.1:$(cat "$PORT_FILE")
"$ROOT/deploy/dev.sh" status >/dev/null || die "napsyncd is not running; run: $ROOT/deploy/dev.sh up"

mkdir -p "$OUT"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/napsync-testssl.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
# The client certificate and key in one file (--mtls), readable by us only.
(
    umask 077
    cat "$CA_DIR/$DEVICE.crt" "$CA_DIR/$DEVICE.key" >"$WORK/client.pem"
)

client=()
if testssl --help 2>&1 | grep -q -- '--mtls'; then
    client=(--mtls "$WORK/client.pem")
else
    cat >"$WORK/openssl" <<EOF
#!/bin/sh
# openssl for testssl.sh 3.0: every s_client presents the device certificate.
if [ "\$1" = s_client ]; then
    shift
    exec /usr/bin/openssl s_client -cert '$CA_DIR/$DEVICE.crt' -key '$CA_DIR/$DEVICE.key' "\$@"
fi
exec /usr/bin/openssl "\$@"
EOF
    chmod 700 "$WORK/openssl"
    client=(--openssl "$WORK/openssl")
fi

rm -f "$OUT/testssl.log" "$OUT/testssl.json"
echo "testssl.sh $(dpkg-query -W -f='${Version}' testssl.sh 2>/dev/null) against napsyncd at $ADDR" >&2
# testssl.sh exits with the number of findings it could not test (or an
# error); the report says which, so only a missing report fails here.
rc=0
testssl --quiet --color 0 --warnings off --nodns none --add-ca "$CA_DIR/ca.crt" \
    --logfile "$OUT/testssl.log" --jsonfile "$OUT/testssl.json" "${client[@]}" \
    "${extra[@]}" "$ADDR" >/dev/null || rc=$?
[ -s "$OUT/testssl.json" ] || die "testssl.sh wrote no report (exit $rc); see $OUT/testssl.log"

echo "== testssl.sh findings by severity (exit status $rc)"
jq -r 'group_by(.severity)[] | "\(.[0].severity)\t\(length)"' "$OUT/testssl.json"
echo "== findings above INFO"
jq -r '.[] | select(.severity | IN("OK", "INFO", "DEBUG") | not)
           | "\(.severity)\t\(.id)\t\(.finding)"' "$OUT/testssl.json"
echo "== full report: $OUT/testssl.log"
