#!/usr/bin/env bash
# The line of the field-link simulator: two network namespaces of their own,
# a server side and a client side, joined by a veth pair whose link-local
# addresses (169.254.77.1 server, .2 client) exist only inside them. The
# bandwidth of a profile is `tc tbf` on both ends, its loss an iptables
# `statistic` match dropping that share of the packets each end receives;
# its latency and its cuts are napsync-linkproxy's (linkproxy.c), which runs
# in the server namespace in front of the services there. (This kernel has
# no netem.) Needs root.
#
#   link.sh up NAME [--owner PID]   creates the pair, unshaped; prints
#                                   FL_ID=... and the names and addresses as
#                                   shell assignments (FL_SERVER_NS, ...)
#   link.sh shape FL_ID PROFILE     gives both ends the profile's bandwidth
#                                   and loss (replacing what was there)
#   link.sh profile PROFILE         prints the profile (FL_RATE, FL_LOSS,
#                                   FL_DELAY_MS, FL_CUT_MS, FL_CUT_FIRST_MS)
#   link.sh wire FL_ID              IP bytes each end has sent so far:
#                                   FL_WIRE_UP=... FL_WIRE_DOWN=...
#   link.sh down FL_ID              ends the processes still in the two
#                                   namespaces, deletes them (and the pair)
#   link.sh gc                      deletes every pair whose owner has ended
#   link.sh check                   checks that tbf and the statistic match
#                                   work here (on a pair of its own)
#
# Profiles (one-way delay; cuts of every connection):
#   poor        64 kbit/s, 400 ms, 5 % loss
#   fair        256 kbit/s, 150 ms, 1 % loss
#   poor-cuts   the poor line, cut every 10 s (the first time 5 s after
#               the proxy starts: in the middle of a first sync)
#   clear       no shaping, no loss, no delay (to prepare a device)
#
# The namespaces are nsfl-NAME-PID-s and -c, PID being the owner (--owner,
# by default the caller): `up` first removes pairs whose owner is gone, so a
# test killed before its cleanup leaves nothing behind for long.
set -euo pipefail

SERVER_IP=169.254.77.1
CLIENT_IP=169.254.77.2
DEV=fl0

die() {
    echo "link.sh: $*" >&2
    exit 1
}

usage() {
    sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "${BASH_SOURCE[0]}"
}

need_root() {
    [ "$(id -u)" = 0 ] || die "needs root (network namespaces, tc, iptables)"
    local t
    for t in ip tc iptables; do
        command -v "$t" >/dev/null || die "$t is missing (tests/lib/deps.sh --test installs iproute2 and iptables)"
    done
}

# Rate, loss (a probability), one-way delay, cut interval and first cut of
# a profile.
RATE='' LOSS='' DELAY_MS='' CUT_MS='' CUT_FIRST_MS=''
set_profile() {
    CUT_MS=0 CUT_FIRST_MS=0
    case $1 in
    poor) RATE=64kbit LOSS=0.05 DELAY_MS=400 ;;
    fair) RATE=256kbit LOSS=0.01 DELAY_MS=150 ;;
    poor-cuts) RATE=64kbit LOSS=0.05 DELAY_MS=400 CUT_MS=10000 CUT_FIRST_MS=5000 ;;
    clear) RATE='' LOSS='' DELAY_MS=0 ;;
    *) die "unknown profile '$1' (poor, fair, poor-cuts, clear)" ;;
    esac
}

check_id() {
    [[ $1 =~ ^[a-z0-9]{1,12}-[0-9]{1,10}$ ]] || die "'$1' is not an FL_ID (NAME-PID, from link.sh up)"
}

# Ends what still runs in a namespace (only processes started there, by the
# test that owns it), then deletes it.
delete_ns() {
    local ns=$1 pids i
    ip netns list | awk '{print $1}' | grep -qxF "$ns" || return 0
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    if [ -n "$pids" ]; then
        # shellcheck disable=SC2086 # one pid per word
        kill -TERM $pids 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            [ -z "$(ip netns pids "$ns" 2>/dev/null || true)" ] && break
            sleep 0.1
        done
        pids=$(ip netns pids "$ns" 2>/dev/null || true)
        # shellcheck disable=SC2086
        [ -z "$pids" ] || kill -KILL $pids 2>/dev/null || true
    fi
    ip netns del "$ns" 2>/dev/null || true
}

down() {
    delete_ns "nsfl-$1-s"
    delete_ns "nsfl-$1-c"
}

gc() {
    local ns id pid seen=' '
    while read -r ns _; do
        [[ $ns =~ ^nsfl-([a-z0-9]{1,12}-([0-9]{1,10}))-[sc]$ ]] || continue
        id=${BASH_REMATCH[1]}
        pid=${BASH_REMATCH[2]}
        [[ $seen == *" $id "* ]] && continue
        seen+="$id "
        kill -0 "$pid" 2>/dev/null && continue
        echo "link.sh: removing nsfl-$id (its owner $pid has ended)" >&2
        down "$id"
    done < <(ip netns list)
}

# The pair an EXIT trap removes (when set).
CLEANUP_ID=''
cleanup() {
    [ -z "$CLEANUP_ID" ] || down "$CLEANUP_ID"
}
trap cleanup EXIT

# Creates the pair. On any failure what was made is removed again.
up() {
    local id=$1 s c
    s=nsfl-$id-s
    c=nsfl-$id-c
    ip netns list | awk '{print $1}' | grep -qxF "$s" && die "$s exists already"
    CLEANUP_ID=$id
    ip netns add "$s"
    ip netns add "$c"
    ip link add "$DEV" netns "$s" type veth peer name "$DEV" netns "$c"
    local ns ip
    for ns in "$s" "$c"; do
        if [ "$ns" = "$s" ]; then ip=$SERVER_IP; else ip=$CLIENT_IP; fi
        # No IPv6 chatter (router solicitations, DAD) on the measured line.
        # shellcheck disable=SC2016 # expanded by that sh, inside the namespace
        ip netns exec "$ns" sh -c 'for f in /proc/sys/net/ipv6/conf/*/disable_ipv6; do [ -e "$f" ] && echo 1 >"$f"; done; exit 0'
        ip -n "$ns" link set lo up
        ip -n "$ns" addr add "$ip/30" dev "$DEV"
        ip -n "$ns" link set "$DEV" up
    done
    CLEANUP_ID=''
    printf 'FL_ID=%s\nFL_SERVER_NS=%s\nFL_CLIENT_NS=%s\nFL_SERVER_IP=%s\nFL_CLIENT_IP=%s\n' \
        "$id" "$s" "$c" "$SERVER_IP" "$CLIENT_IP"
}

shape() {
    local id=$1 ns
    set_profile "$2"
    for ns in "nsfl-$id-s" "nsfl-$id-c"; do
        ip netns list | awk '{print $1}' | grep -qxF "$ns" || die "no namespace $ns (link.sh up first)"
        ip netns exec "$ns" iptables -F INPUT
        if [ -z "$RATE" ]; then
            tc -n "$ns" qdisc del dev "$DEV" root 2>/dev/null || true
            continue
        fi
        # A queue of at most 1 s at the line's rate, as a modem's buffer.
        tc -n "$ns" qdisc replace dev "$DEV" root tbf rate "$RATE" burst 1600 latency 1s
        ip netns exec "$ns" iptables -A INPUT -i "$DEV" -m statistic --mode random \
            --probability "$LOSS" -j DROP
    done
}

wire() {
    local id=$1 up_b down_b
    up_b=$(ip netns exec "nsfl-$id-c" cat "/sys/class/net/$DEV/statistics/tx_bytes")
    down_b=$(ip netns exec "nsfl-$id-s" cat "/sys/class/net/$DEV/statistics/tx_bytes")
    echo "FL_WIRE_UP=$up_b FL_WIRE_DOWN=$down_b"
}

check() {
    local id out
    id=check-$$
    up "$id" >/dev/null || die "cannot create a pair of network namespaces"
    CLEANUP_ID=$id
    shape "$id" poor || die "cannot shape the line: is sch_tbf or xt_statistic missing from this kernel?"
    out=$(tc -n "nsfl-$id-s" qdisc show dev "$DEV")
    [[ $out == *"tbf"*"rate 64Kbit"* ]] || die "tc does not show the tbf qdisc: $out"
    out=$(ip netns exec "nsfl-$id-c" iptables -S INPUT)
    [[ $out == *"-m statistic --mode random --probability 0.0"* ]] ||
        die "iptables does not show the statistic match: $out"
    echo "link.sh: tbf and the statistic match work here"
}

[ $# -ge 1 ] || {
    usage >&2
    exit 2
}
cmd=$1
shift
case $cmd in
up)
    [ $# -ge 1 ] || die "usage: link.sh up NAME [--owner PID]"
    name=$1
    owner=$PPID
    if [ $# -ge 3 ] && [ "$2" = --owner ]; then
        owner=$3
    elif [ $# -ne 1 ]; then
        die "usage: link.sh up NAME [--owner PID]"
    fi
    [[ $name =~ ^[a-z0-9]{1,12}$ ]] || die "NAME must be 1 to 12 of a-z 0-9, not '$name'"
    [[ $owner =~ ^[0-9]{1,10}$ ]] || die "--owner must be a process id, not '$owner'"
    need_root
    gc
    up "$name-$owner"
    ;;
shape)
    [ $# -eq 2 ] || die "usage: link.sh shape FL_ID PROFILE"
    check_id "$1"
    set_profile "$2"
    need_root
    shape "$1" "$2"
    ;;
profile)
    [ $# -eq 1 ] || die "usage: link.sh profile PROFILE"
    set_profile "$1"
    printf 'FL_RATE=%s\nFL_LOSS=%s\nFL_DELAY_MS=%s\nFL_CUT_MS=%s\nFL_CUT_FIRST_MS=%s\n' \
        "$RATE" "$LOSS" "$DELAY_MS" "$CUT_MS" "$CUT_FIRST_MS"
    ;;
wire)
    [ $# -eq 1 ] || die "usage: link.sh wire FL_ID"
    check_id "$1"
    need_root
    wire "$1"
    ;;
down)
    [ $# -eq 1 ] || die "usage: link.sh down FL_ID"
    check_id "$1"
    need_root
    down "$1"
    ;;
gc)
    need_root
    gc
    ;;
check)
    need_root
    check
    ;;
-h | --help | help) usage ;;
*) die "unknown command '$cmd' (see --help)" ;;
esac
