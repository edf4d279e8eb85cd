#!/usr/bin/env bash
# A small certificate authority for napsync, on the openssl command line.
# deploy/dev.sh and the integration tests issue every certificate through it.
#
#   ca.sh init DIR [NAME]            create the CA (ECDSA P-256, 10 years) unless DIR has one
#   ca.sh server DIR NAME SAN...     server certificate, e.g. DNS:localhost,IP:127.0.0.1,IP:::1
#   ca.sh device DIR DEVICE          device (client) certificate with CN=DEVICE; the last
#                                    line of output is its SHA-256 fingerprint (64 hex digits)
#   ca.sh fingerprint CERT           SHA-256 of the DER certificate, as napsyncd computes it
#
# Files: DIR/ca.crt, DIR/ca.key, and DIR/NAME.crt + DIR/NAME.key for each
# server and device (keys are 0600). A certificate that DIR already holds is
# kept when it still fits the request (issued by this CA, for the same
# purpose, and for a server the same names), so every command can be rerun.
# A device's certificate is its identity: to replace one, issue a certificate
# under a new device name and revoke the old device.
#
# For development and tests. A production CA keeps its key offline; see
# docs/deploy.md.
set -euo pipefail

NAME_RE='^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'
CA_NAME_RE='^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$'
CA_DAYS=3650
LEAF_DAYS=825
# A leaf that expires sooner than this is reissued rather than kept.
RENEW_SECONDS=$((30 * 24 * 3600))

die() {
    echo "ca.sh: $*" >&2
    exit 1
}

usage() {
    sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "${BASH_SOURCE[0]}"
}

command -v openssl >/dev/null || die "openssl not found (install the openssl package)"

check_name() {
    [[ $1 =~ $NAME_RE ]] || die "invalid name '$1': use 1-64 of A-Z a-z 0-9 . _ - (not starting with . _ -)"
    [ "$1" != ca ] || die "'ca' is the CA's own file name; choose another name"
}

# A directory with a CA: resolves it and takes its lock, so that parallel
# callers (tests under ctest -j) neither race nor see half-written files.
open_ca() {
    local dir=$1
    { [ -f "$dir/ca.crt" ] && [ -f "$dir/ca.key" ]; } || die "no CA in $dir (run: ca.sh init $dir)"
    CA_DIR=$(cd "$dir" && pwd)
    lock "$CA_DIR"
}

lock() {
    exec 9>"$1/.lock"
    flock 9
}

# Writes a new P-256 key readable by its owner only.
new_key() {
    (umask 077 && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null) ||
        die "could not generate a key in $1"
}

# A positive 127-bit serial: unique without keeping a serial file.
random_serial() {
    local hex
    hex=$(openssl rand -hex 16)
    printf '0x%x%s' $((0x${hex:0:1} & 7)) "${hex:1}"
}

# Every openssl call gets this configuration instead of the system's, so the
# result does not depend on /etc/ssl/openssl.cnf. SAN (optional, validated by
# the caller) goes into the server profile.
write_conf() {
    local san=${2:-DNS:localhost}
    cat >"$1" <<EOF
[req]
distinguished_name = dn
prompt = no
[dn]
[ca_ext]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = $san
[device_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
}

fingerprint() {
    local der
    der=$(openssl x509 -in "$1" -outform DER 2>/dev/null | sha256sum) || die "$1 is not a PEM certificate"
    der=${der%% *}
    [[ $der =~ ^[0-9a-f]{64}$ ]] || die "could not fingerprint $1"
    echo "$der"
}

# True if CERT (with its key) is still usable for PURPOSE (sslserver or
# sslclient) under this CA.
usable() {
    local crt=$1 key=$2 purpose=$3
    [ -f "$crt" ] && [ -f "$key" ] || return 1
    openssl verify -CAfile "$CA_DIR/ca.crt" -purpose "$purpose" "$crt" >/dev/null 2>&1 || return 1
    openssl x509 -in "$crt" -noout -checkend "$RENEW_SECONDS" >/dev/null 2>&1 || return 1
    [ "$(openssl x509 -in "$crt" -noout -pubkey 2>/dev/null)" = "$(openssl pkey -in "$key" -pubout 2>/dev/null)" ]
}

# issue NAME EXTENSION [SAN]: a new key and certificate for CN=NAME, written next
# to each other and moved into place together.
issue() {
    local name=$1 ext=$2 san=${3:-} tmp
    tmp=$(mktemp -d "$CA_DIR/.issue.XXXXXX")
    # shellcheck disable=SC2064 # expand now: tmp is local
    trap "rm -rf '$tmp'" EXIT
    write_conf "$tmp/openssl.cnf" "$san"
    new_key "$tmp/key"
    openssl req -new -config "$tmp/openssl.cnf" -key "$tmp/key" -subj "/CN=$name" -out "$tmp/csr" ||
        die "could not create a request for $name"
    openssl x509 -req -in "$tmp/csr" -CA "$CA_DIR/ca.crt" -CAkey "$CA_DIR/ca.key" \
        -set_serial "$(random_serial)" -days "$LEAF_DAYS" -sha256 \
        -extfile "$tmp/openssl.cnf" -extensions "$ext" -out "$tmp/crt" 2>"$tmp/err" ||
        die "could not sign the certificate for $name: $(cat "$tmp/err")"
    mv -f "$tmp/key" "$CA_DIR/$name.key"
    mv -f "$tmp/crt" "$CA_DIR/$name.crt"
    rm -rf "$tmp"
    trap - EXIT
}

cmd_init() {
    local dir=$1 name=${2:-napsync CA} tmp
    [[ $name =~ $CA_NAME_RE ]] || die "invalid CA name '$name': use 1-64 of A-Z a-z 0-9 space . _ -"
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    lock "$dir"
    if [ -f "$dir/ca.crt" ] && [ -f "$dir/ca.key" ]; then
        openssl x509 -in "$dir/ca.crt" -noout 2>/dev/null || die "$dir/ca.crt is not a certificate"
        echo "$dir/ca.crt"
        return 0
    fi
    { [ ! -e "$dir/ca.crt" ] && [ ! -e "$dir/ca.key" ]; } ||
        die "$dir holds only half a CA (ca.crt or ca.key); move it away first"
    tmp=$(mktemp -d "$dir/.init.XXXXXX")
    # shellcheck disable=SC2064 # expand now: tmp is local
    trap "rm -rf '$tmp'" EXIT
    write_conf "$tmp/openssl.cnf"
    new_key "$tmp/key"
    openssl req -new -x509 -config "$tmp/openssl.cnf" -key "$tmp/key" -subj "/CN=$name" \
        -days "$CA_DAYS" -sha256 -set_serial "$(random_serial)" -extensions ca_ext -out "$tmp/crt" ||
        die "could not create the CA certificate"
    mv -f "$tmp/key" "$dir/ca.key"
    mv -f "$tmp/crt" "$dir/ca.crt"
    rm -rf "$tmp"
    trap - EXIT
    echo "$dir/ca.crt"
}

cmd_server() {
    local dir=$1 name=$2 san entry
    local -a entries
    shift 2
    check_name "$name"
    [ $# -ge 1 ] || die "a server certificate needs at least one name (DNS:host or IP:address)"
    san=$(
        IFS=,
        echo "$*"
    )
    IFS=, read -r -a entries <<<"$san"
    for entry in "${entries[@]}"; do
        [[ $entry =~ ^DNS:[A-Za-z0-9*]([A-Za-z0-9.-]{0,252})$ || $entry =~ ^IP:[0-9A-Fa-f:.]{2,45}$ ]] ||
            die "invalid subject alternative name '$entry': use DNS:name or IP:address"
    done
    open_ca "$dir"
    # The names are kept beside the certificate: openssl prints them back in
    # another spelling (IP Address:0:0:...:1 for IP:::1), so compare requests.
    if usable "$CA_DIR/$name.crt" "$CA_DIR/$name.key" sslserver &&
        [ "$(cat "$CA_DIR/$name.san" 2>/dev/null)" = "$san" ]; then
        echo "$CA_DIR/$name.crt"
        return 0
    fi
    if [ -f "$CA_DIR/$name.crt" ] && ! [ -f "$CA_DIR/$name.san" ]; then
        die "$CA_DIR/$name.crt exists and is not a server certificate issued by ca.sh"
    fi
    issue "$name" server_ext "$san"
    echo "$san" >"$CA_DIR/$name.san"
    echo "$CA_DIR/$name.crt"
}

cmd_device() {
    local dir=$1 name=$2
    check_name "$name"
    open_ca "$dir"
    if ! usable "$CA_DIR/$name.crt" "$CA_DIR/$name.key" sslclient; then
        [ ! -e "$CA_DIR/$name.san" ] || die "'$name' is a server certificate in $CA_DIR; choose another device name"
        # Keep the old files: a device that is registered with them would
        # otherwise lose its identity without a trace.
        if [ -e "$CA_DIR/$name.crt" ]; then
            mv -f "$CA_DIR/$name.crt" "$CA_DIR/$name.crt.old"
            [ ! -e "$CA_DIR/$name.key" ] || mv -f "$CA_DIR/$name.key" "$CA_DIR/$name.key.old"
            echo "ca.sh: $name.crt was unusable (expired, foreign or damaged); kept as $name.crt.old" >&2
        fi
        issue "$name" device_ext
    fi
    echo "$CA_DIR/$name.crt"
    echo "$CA_DIR/$name.key"
    fingerprint "$CA_DIR/$name.crt"
}

case ${1:-} in
init)
    { [ $# -ge 2 ] && [ $# -le 3 ]; } || die "usage: ca.sh init DIR [NAME]"
    cmd_init "$2" "${3:-}"
    ;;
server)
    [ $# -ge 4 ] || die "usage: ca.sh server DIR NAME SAN..."
    shift
    cmd_server "$@"
    ;;
device)
    [ $# -eq 3 ] || die "usage: ca.sh device DIR DEVICE"
    cmd_device "$2" "$3"
    ;;
fingerprint)
    [ $# -eq 2 ] || die "usage: ca.sh fingerprint CERT"
    fingerprint "$2"
    ;;
-h | --help | help)
    usage
    ;;
*)
    usage >&2
    exit 2
    ;;
esac
