#include "envelope.h"

#include <stdlib.h>
#include <string.h>

/* Allocation budget for one unpack: generous for real messages, small
 * enough that a crafted frame cannot make us allocate without bound. */
#define NS_UNPACK_OVERHEAD (64 * 1024)
#define NS_UNPACK_FACTOR   8

typedef struct {
    size_t used;
    size_t budget;
} unpack_budget;

typedef struct {
    size_t size;
    max_align_t align[]; /* the caller's memory starts here */
} alloc_header;

static void *budget_alloc(void *data, size_t size)
{
    unpack_budget *b = data;
    if (size > b->budget - b->used)
        return NULL;
    alloc_header *h = malloc(sizeof(*h) + size);
    if (h == NULL)
        return NULL;
    h->size = size;
    b->used += size;
    return h->align;
}

static void budget_free(void *data, void *ptr)
{
    (void)data;
    if (ptr == NULL)
        return;
    alloc_header *h = (alloc_header *)((char *)ptr - offsetof(alloc_header, align));
    free(h);
}

void *ns_envelope_alloc(size_t size)
{
    alloc_header *h = malloc(sizeof(*h) + size);
    if (h == NULL)
        return NULL;
    h->size = size;
    memset(h->align, 0, size);
    return h->align;
}

/* Frees go through the same header arithmetic whether or not the budget
 * object still exists, so ns_envelope_free needs no allocator state. */
static ProtobufCAllocator free_allocator = {
    .alloc = budget_alloc,
    .free = budget_free,
    .allocator_data = NULL,
};

/* Reads a base-128 varint at *i; false when it runs past len or 10 bytes. */
static bool scan_varint(const uint8_t *p, size_t len, size_t *i, uint64_t *out)
{
    uint64_t v = 0;
    for (unsigned shift = 0; shift < 70 && *i < len; shift += 7) {
        uint8_t c = p[(*i)++];
        v |= (uint64_t)(c & 0x7f) << shift;
        if ((c & 0x80) == 0) {
            *out = v;
            return true;
        }
    }
    return false;
}

/* Whether no string field of message d, encoded in p[0..len), holds a NUL
 * byte. protobuf-c copies a string into a NUL-terminated C string, so
 * "a\0b" would silently arrive as "a": a stored value that differs from
 * the one sent. No napsync string may hold a NUL (protocol.md), so such a
 * frame is malformed. Runs after protobuf-c has accepted the bytes; the
 * depth bound is only defensive (the schema has no recursive message). */
static bool strings_nul_free(const ProtobufCMessageDescriptor *d, const uint8_t *p, size_t len,
                             unsigned depth)
{
    if (depth > 32)
        return false;
    size_t i = 0;
    while (i < len) {
        uint64_t key = 0, n = 0;
        if (!scan_varint(p, len, &i, &key))
            return false;
        switch (key & 7) {
        case 0: /* varint */
            if (!scan_varint(p, len, &i, &n))
                return false;
            break;
        case 1: /* 64-bit */
            if (len - i < 8)
                return false;
            i += 8;
            break;
        case 5: /* 32-bit */
            if (len - i < 4)
                return false;
            i += 4;
            break;
        case 2: { /* length-delimited: strings, bytes, messages, packed arrays */
            if (!scan_varint(p, len, &i, &n) || n > len - i)
                return false;
            const ProtobufCFieldDescriptor *f =
                key >> 3 <= UINT32_MAX
                    ? protobuf_c_message_descriptor_get_field(d, (unsigned)(key >> 3))
                    : NULL;
            if (f != NULL && f->type == PROTOBUF_C_TYPE_STRING && memchr(p + i, 0, n) != NULL)
                return false;
            if (f != NULL && f->type == PROTOBUF_C_TYPE_MESSAGE &&
                !strings_nul_free(f->descriptor, p + i, n, depth + 1))
                return false;
            i += n;
            break;
        }
        default:
            return false;
        }
    }
    return true;
}

ns_envelope *ns_envelope_unpack(const uint8_t *buf, size_t len)
{
    unpack_budget b = {0, NS_UNPACK_OVERHEAD + NS_UNPACK_FACTOR * len};
    ProtobufCAllocator a = {.alloc = budget_alloc, .free = budget_free, .allocator_data = &b};
    ns_envelope *e = napsync__v1__envelope__unpack(&a, len, buf);
    if (e != NULL && !strings_nul_free(&napsync__v1__envelope__descriptor, buf, len, 0)) {
        ns_envelope_free(e);
        return NULL;
    }
    return e;
}

void ns_envelope_free(ns_envelope *e)
{
    if (e)
        napsync__v1__envelope__free_unpacked(e, &free_allocator);
}

int ns_envelope_pack(const ns_envelope *e, uint8_t **out, size_t *len)
{
    size_t n = napsync__v1__envelope__get_packed_size(e);
    uint8_t *buf = malloc(n ? n : 1);
    if (buf == NULL)
        return -1;
    *len = napsync__v1__envelope__pack(e, buf);
    *out = buf;
    return 0;
}

int ns_envelope_send(ns_conn *c, const ns_envelope *e)
{
    uint8_t stackbuf[1024];
    size_t n = napsync__v1__envelope__get_packed_size(e);
    uint8_t *buf = n <= sizeof(stackbuf) ? stackbuf : malloc(n);
    if (buf == NULL)
        return UV_ENOMEM;
    size_t packed = napsync__v1__envelope__pack(e, buf);
    int rc = ns_conn_send(c, buf, packed);
    if (buf != stackbuf)
        free(buf);
    return rc;
}

bool ns_text_ok(const char *s, size_t max_bytes)
{
    if (s == NULL)
        return true;
    const unsigned char *p = (const unsigned char *)s;
    size_t n = 0;
    while (p[n]) {
        if (n >= max_bytes)
            return false;
        unsigned char c = p[n];
        if (c < 0x80) {
            if (c < 0x20 && c != '\t')
                return false;
            if (c == 0x7f)
                return false;
            n++;
            continue;
        }
        size_t extra;
        uint32_t cp;
        if ((c & 0xe0) == 0xc0) {
            extra = 1;
            cp = c & 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            extra = 2;
            cp = c & 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            extra = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        for (size_t i = 1; i <= extra; i++) {
            if ((p[n + i] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (p[n + i] & 0x3f);
        }
        /* Overlong forms, surrogates and values past Unicode are invalid. */
        static const uint32_t min_cp[] = {0, 0x80, 0x800, 0x10000};
        if (cp < min_cp[extra] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        /* C1 controls: U+009B is an 8-bit CSI that terminals obey like ESC [. */
        if (cp <= 0x9f)
            return false;
        n += extra + 1;
    }
    return n <= max_bytes;
}

const char *ns_error_code_name(int code)
{
    const ProtobufCEnumValue *v =
        protobuf_c_enum_descriptor_get_value(&napsync__v1__error_code__descriptor, code);
    if (v == NULL)
        return "UNKNOWN";
    /* "ERROR_CODE_" is the proto enum prefix; callers want the rest. */
    const char *name = v->name;
    return strncmp(name, "ERROR_CODE_", 11) == 0 ? name + 11 : name;
}
