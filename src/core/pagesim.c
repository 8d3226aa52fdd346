/* An LRU cache of pages: see pagesim.h. Pages get dense indices through an
 * open-addressing hash of their numbers; the resident ones form a doubly
 * linked list by index, most recent at the head. */
#include "core/pagesim.h"

#include <stdlib.h>

#define NIL UINT32_MAX

struct am_pagesim {
    size_t cap, resident;
    uint64_t touches, misses;
    /* page table: key = page number + 1 (0: empty), val = dense index */
    uint64_t *key;
    uint32_t *val;
    size_t slots; /* a power of two */
    /* per dense index */
    uint32_t *prev, *next;
    uint8_t *in;
    size_t n, n_cap;
    uint32_t head, tail;
};

static size_t hash(uint64_t k, size_t mask) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    return (size_t)k & mask;
}

am_status am_pagesim_create(size_t capacity, am_pagesim **out) {
    *out = NULL;
    if (capacity < 1) return am_fail(AM_EINVAL, "page cache: capacity of 0 pages");
    am_pagesim *s = calloc(1, sizeof *s);
    if (!s) return am_fail(AM_ENOMEM, "page cache: out of memory");
    s->cap = capacity;
    s->head = s->tail = NIL;
    *out = s;
    return AM_OK;
}

void am_pagesim_free(am_pagesim *s) {
    if (!s) return;
    free(s->key);
    free(s->val);
    free(s->prev);
    free(s->next);
    free(s->in);
    free(s);
}

static am_status rehash(am_pagesim *s, size_t slots) {
    uint64_t *k = calloc(slots, sizeof *k);
    uint32_t *v = malloc(slots * sizeof *v);
    if (!k || !v) {
        free(k);
        free(v);
        return am_fail(AM_ENOMEM, "page cache: out of memory for %zu pages", slots / 2);
    }
    for (size_t i = 0; i < s->slots; i++) {
        if (!s->key[i]) continue;
        size_t h = hash(s->key[i], slots - 1);
        while (k[h]) h = (h + 1) & (slots - 1);
        k[h] = s->key[i];
        v[h] = s->val[i];
    }
    free(s->key);
    free(s->val);
    s->key = k, s->val = v, s->slots = slots;
    return AM_OK;
}

/* The dense index of page pg, made if new. */
static am_status index_of(am_pagesim *s, uint64_t pg, uint32_t *out) {
    if (2 * (s->n + 1) > s->slots) AM_TRY(rehash(s, s->slots ? 2 * s->slots : 1024));
    size_t h = hash(pg + 1, s->slots - 1);
    while (s->key[h] && s->key[h] != pg + 1) h = (h + 1) & (s->slots - 1);
    if (s->key[h]) {
        *out = s->val[h];
        return AM_OK;
    }
    if (s->n >= NIL) return am_fail(AM_ENOMEM, "page cache: more than 2^32 pages");
    if (s->n == s->n_cap) {
        size_t c = s->n_cap ? 2 * s->n_cap : 1024;
        uint32_t *p = realloc(s->prev, c * sizeof *p);
        if (p) s->prev = p;
        uint32_t *q = p ? realloc(s->next, c * sizeof *q) : NULL;
        if (q) s->next = q;
        uint8_t *f = q ? realloc(s->in, c) : NULL;
        if (!f) return am_fail(AM_ENOMEM, "page cache: out of memory for %zu pages", c);
        s->in = f;
        s->n_cap = c;
    }
    s->key[h] = pg + 1;
    s->val[h] = (uint32_t)s->n;
    s->in[s->n] = 0;
    *out = (uint32_t)s->n++;
    return AM_OK;
}

static void unlink_page(am_pagesim *s, uint32_t i) {
    if (s->prev[i] != NIL) s->next[s->prev[i]] = s->next[i];
    else s->head = s->next[i];
    if (s->next[i] != NIL) s->prev[s->next[i]] = s->prev[i];
    else s->tail = s->prev[i];
}

static void push_head(am_pagesim *s, uint32_t i) {
    s->prev[i] = NIL;
    s->next[i] = s->head;
    if (s->head != NIL) s->prev[s->head] = i;
    s->head = i;
    if (s->tail == NIL) s->tail = i;
}

am_status am_pagesim_touch(am_pagesim *s, uintptr_t addr, size_t bytes) {
    if (!bytes) return AM_OK;
    uint64_t first = (uint64_t)addr / AM_PAGE_BYTES, last = ((uint64_t)addr + bytes - 1) / AM_PAGE_BYTES;
    for (uint64_t pg = first; pg <= last; pg++) {
        uint32_t i = 0;
        AM_TRY(index_of(s, pg, &i));
        s->touches++;
        if (s->in[i]) {
            if (s->head != i) {
                unlink_page(s, i);
                push_head(s, i);
            }
            continue;
        }
        s->misses++;
        if (s->resident == s->cap) {
            uint32_t t = s->tail;
            unlink_page(s, t);
            s->in[t] = 0;
            s->resident--;
        }
        push_head(s, i);
        s->in[i] = 1;
        s->resident++;
    }
    return AM_OK;
}

uint64_t am_pagesim_touches(const am_pagesim *s) { return s->touches; }
uint64_t am_pagesim_misses(const am_pagesim *s) { return s->misses; }
void am_pagesim_reset_counts(am_pagesim *s) { s->touches = s->misses = 0; }
size_t am_pagesim_distinct(const am_pagesim *s) { return s->n; }
