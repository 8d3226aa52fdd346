/* Counting this program's heap: every malloc, calloc, realloc, free and
 * aligned allocation made by asymml's code goes through these wrappers (the
 * link option --wrap, set on every program that links the library), which
 * keep the bytes in use, the peak, and refuse what would pass the limit
 * (like an SGX enclave's EPC). Sizes are the C library's usable sizes, so a
 * block freed here that was allocated elsewhere (strdup) is counted out as
 * it was counted in: not at all, within its usable size. Memory that other
 * libraries map themselves (OpenBLAS's buffers, OpenMP's stacks) and the
 * shared channel are not counted. */
#include "asymml/core.h"

#include <errno.h>
#include <malloc.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t m);
void *__real_realloc(void *p, size_t n);
void __real_free(void *p);
int __real_posix_memalign(void **p, size_t a, size_t n);
void *__real_aligned_alloc(size_t a, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t m);
void *__wrap_realloc(void *p, size_t n);
void __wrap_free(void *p);
int __wrap_posix_memalign(void **p, size_t a, size_t n);
void *__wrap_aligned_alloc(size_t a, size_t n);

static _Atomic long long g_cur, g_peak;
static _Atomic long long g_limit; /* 0: none */
static _Atomic int g_hit;

static int refuse(size_t n) {
    long long lim = atomic_load_explicit(&g_limit, memory_order_relaxed);
    if (!lim || (long long)n + atomic_load_explicit(&g_cur, memory_order_relaxed) <= lim) return 0;
    atomic_store(&g_hit, 1);
    errno = ENOMEM;
    return 1;
}

static void add(void *p) {
    if (!p) return;
    long long now = atomic_fetch_add(&g_cur, (long long)malloc_usable_size(p)) + (long long)malloc_usable_size(p);
    long long pk = atomic_load_explicit(&g_peak, memory_order_relaxed);
    while (now > pk && !atomic_compare_exchange_weak(&g_peak, &pk, now)) {
    }
}

static void sub(void *p) {
    if (p) atomic_fetch_sub(&g_cur, (long long)malloc_usable_size(p));
}

void *__wrap_malloc(size_t n) {
    if (refuse(n)) return NULL;
    void *p = __real_malloc(n);
    add(p);
    return p;
}

void *__wrap_calloc(size_t n, size_t m) {
    if (m && n > (size_t)-1 / m) return __real_calloc(n, m); /* let it fail */
    if (refuse(n * m)) return NULL;
    void *p = __real_calloc(n, m);
    add(p);
    return p;
}

void *__wrap_realloc(void *p, size_t n) {
    size_t old = p ? malloc_usable_size(p) : 0;
    if (n > old && refuse(n - old)) return NULL;
    void *q = __real_realloc(p, n);
    if (q || !n) {
        if (p) atomic_fetch_sub(&g_cur, (long long)old);
        add(q);
    }
    return q;
}

void __wrap_free(void *p) {
    sub(p);
    __real_free(p);
}

int __wrap_posix_memalign(void **p, size_t a, size_t n) {
    if (refuse(n)) return ENOMEM;
    int r = __real_posix_memalign(p, a, n);
    if (!r) add(*p);
    return r;
}

void *__wrap_aligned_alloc(size_t a, size_t n) {
    if (refuse(n)) return NULL;
    void *p = __real_aligned_alloc(a, n);
    add(p);
    return p;
}

void am_mem_set_limit(size_t bytes) { atomic_store(&g_limit, (long long)bytes); }
size_t am_mem_limit(void) { return (size_t)atomic_load(&g_limit); }
size_t am_mem_in_use(void) {
    long long c = atomic_load(&g_cur);
    return c > 0 ? (size_t)c : 0;
}
size_t am_mem_peak(void) { return (size_t)atomic_load(&g_peak); }
int am_mem_limit_hit(void) { return atomic_load(&g_hit); }
void am_mem_reset_peak(void) { atomic_store(&g_peak, atomic_load(&g_cur)); }

void am_copy_floats(float *dst, const float *src, size_t n) {
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i += 4096) memcpy(dst + i, src + i, sizeof(float) * (n - i < 4096 ? n - i : 4096));
}
