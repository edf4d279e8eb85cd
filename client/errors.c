/* Stable names for ns_status: scripts and JSON output depend on them, so a
 * name never changes once released; new statuses get new names. */
#include "napsync.h"

const char *ns_status_name(ns_status st)
{
    switch (st) {
    case NS_OK:
        return "ok";
    case NS_ERR_INVALID_ARGUMENT:
        return "invalid_argument";
    case NS_ERR_CONFIG:
        return "config";
    case NS_ERR_RESOLVE:
        return "resolve";
    case NS_ERR_CONNECT:
        return "connect";
    case NS_ERR_TIMEOUT:
        return "timeout";
    case NS_ERR_TLS:
        return "tls";
    case NS_ERR_SERVER_CERT:
        return "server_cert";
    case NS_ERR_CERT_REFUSED:
        return "cert_refused";
    case NS_ERR_UNKNOWN_DEVICE:
        return "unknown_device";
    case NS_ERR_DEVICE_REVOKED:
        return "device_revoked";
    case NS_ERR_VERSION:
        return "version";
    case NS_ERR_PROTOCOL:
        return "protocol";
    case NS_ERR_SERVER:
        return "server";
    case NS_ERR_CLOSED:
        return "closed";
    case NS_ERR_UNAVAILABLE:
        return "unavailable";
    case NS_ERR_NOMEM:
        return "nomem";
    case NS_ERR_STATE:
        return "state";
    }
    return "unknown";
}
