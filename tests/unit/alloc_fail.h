/* Allocation-failure injection for unit tests. The program is linked with
 * -Wl,--wrap=malloc -Wl,--wrap=calloc -Wl,--wrap=realloc -Wl,--wrap=free
 * (tests/CMakeLists.txt), so every call to those, in the code under test
 * and in the libraries it calls, goes through the wrappers in alloc_fail.c:
 * production code carries no test hook.
 *
 * A test arms the countdown, runs the operation, disarms, and repeats with
 * the next allocation until a run needs no more:
 *
 *     for (long at = 0;; at++) {
 *         long live = ns_af_live();
 *         ns_af_arm(at);
 *         int rc = operation();
 *         bool hit = ns_af_disarm();
 *         ...  rc != 0 only if hit; ns_af_live() == live once the
 *              result is freed, whichever way it went
 *     }
 *
 * Single-threaded: the counters are plain globals. */
#ifndef NS_TEST_ALLOC_FAIL_H
#define NS_TEST_ALLOC_FAIL_H

#include <stdbool.h>
#include <stddef.h>

/* The wrappers, for a library that takes allocator functions (jansson's
 * json_set_alloc_funcs), so its blocks are counted and can fail too. */
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t m);
void *__wrap_realloc(void *p, size_t n);
void __wrap_free(void *p);

/* Fails allocation number `at` counting from now (0: the next one); the
 * others succeed. */
void ns_af_arm(long at);

/* Stops failing. Returns true if the armed allocation was reached, that
 * is, one allocation was failed since ns_af_arm. */
bool ns_af_disarm(void);

/* Blocks allocated through the wrappers and not yet freed: compared before
 * and after an operation, a difference is a leak (or a double free). */
long ns_af_live(void);

#endif
