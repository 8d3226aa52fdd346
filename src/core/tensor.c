/* Aligned allocation, tensors and the arena. The arena exists so that a
 * training step allocates nothing: a model sizes every buffer it will need for
 * a batch size once, takes one block, and hands out slices. */
#include "asymml/core.h"

#include <stdlib.h>
#include <string.h>

int am_shape_eq(am_shape a, am_shape b) {
    return a.n == b.n && a.c == b.c && a.h == b.h && a.w == b.w;
}

am_status am_shape_check(am_shape s) {
    const int lim = 1 << 24;
    if (s.n < 1 || s.c < 1 || s.h < 1 || s.w < 1 || s.n > lim || s.c > lim || s.h > lim ||
        s.w > lim)
        return am_fail(AM_EINVAL, "bad shape %dx%dx%dx%d", s.n, s.c, s.h, s.w);
    if (am_shape_numel(s) > ((size_t)1 << 40))
        return am_fail(AM_EINVAL, "shape %dx%dx%dx%d is too large", s.n, s.c, s.h, s.w);
    return AM_OK;
}

void *am_aligned_alloc(size_t bytes) {
    size_t n = am_align_up(bytes ? bytes : 1);
    void *p = aligned_alloc(AM_ALIGN, n);
    if (p) memset(p, 0, n);
    return p;
}

void am_aligned_free(void *p) { free(p); }

am_status am_tensor_alloc(am_tensor *t, am_shape s) {
    t->d = NULL;
    AM_TRY(am_shape_check(s));
    t->d = am_aligned_alloc(am_shape_numel(s) * sizeof(float));
    if (!t->d) return am_fail(AM_ENOMEM, "cannot allocate a %dx%dx%dx%d tensor", s.n, s.c, s.h, s.w);
    t->s = s;
    return AM_OK;
}

void am_tensor_free(am_tensor *t) {
    am_aligned_free(t->d);
    t->d = NULL;
}

am_status am_arena_init(am_arena *a, size_t bytes) {
    a->used = 0;
    a->cap = am_align_up(bytes);
    a->base = am_aligned_alloc(a->cap);
    if (!a->base) {
        a->cap = 0;
        return am_fail(AM_ENOMEM, "cannot allocate an arena of %zu MiB", bytes >> 20);
    }
    return AM_OK;
}

void *am_arena_take(am_arena *a, size_t bytes) {
    size_t n = am_align_up(bytes);
    if (!a->base || n > a->cap - a->used) return NULL;
    void *p = a->base + a->used;
    a->used += n;
    return p;
}

void am_arena_free(am_arena *a) {
    am_aligned_free(a->base);
    a->base = NULL;
    a->cap = a->used = 0;
}
