/* Allocation-failure injection: see alloc_fail.h. */
#include "alloc_fail.h"

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t m);
void *__real_realloc(void *p, size_t n);
void __real_free(void *p);

static long fail_at = -1; /* the index of the allocation to fail; -1: none */
static long attempts;     /* allocations attempted since arming */
static long live;         /* blocks allocated and not yet freed */

static bool should_fail(void)
{
    if (fail_at < 0)
        return false;
    return attempts++ == fail_at;
}

void *__wrap_malloc(size_t n)
{
    if (should_fail())
        return NULL;
    void *p = __real_malloc(n);
    if (p != NULL)
        live++;
    return p;
}

void *__wrap_calloc(size_t n, size_t m)
{
    if (should_fail())
        return NULL;
    void *p = __real_calloc(n, m);
    if (p != NULL)
        live++;
    return p;
}

void *__wrap_realloc(void *p, size_t n)
{
    if (should_fail())
        return NULL;
    void *q = __real_realloc(p, n);
    /* Growing a block moves it at most: only realloc(NULL, n) adds one. */
    if (p == NULL && q != NULL)
        live++;
    return q;
}

void __wrap_free(void *p)
{
    if (p != NULL)
        live--;
    __real_free(p);
}

void ns_af_arm(long at)
{
    attempts = 0;
    fail_at = at;
}

bool ns_af_disarm(void)
{
    bool hit = fail_at >= 0 && attempts > fail_at;
    fail_at = -1;
    return hit;
}

long ns_af_live(void)
{
    return live;
}
