/* An LRU cache of 4 KiB pages, for modelling an SGX1 enclave's page cache
 * (EPC): touch address ranges in the order a program would, and count the
 * touches that miss (a page swapped in, another evicted when it is full)
 * and the distinct pages (the working set). Internal to the library. */
#ifndef ASYMML_CORE_PAGESIM_H
#define ASYMML_CORE_PAGESIM_H

#include <stddef.h>
#include <stdint.h>

#include "asymml/core.h"

#define AM_PAGE_BYTES 4096u

typedef struct am_pagesim am_pagesim;

/* capacity: pages the cache holds (>= 1). */
am_status am_pagesim_create(size_t capacity, am_pagesim **out);
void am_pagesim_free(am_pagesim *s);
/* Touches every page of [addr, addr + bytes) in address order; nothing
 * when bytes is 0. An address is a number here, never dereferenced.
 * AM_ENOMEM when the page table cannot grow. */
am_status am_pagesim_touch(am_pagesim *s, uintptr_t addr, size_t bytes);
/* Counts since creation or the last reset (the cache's content stays). */
uint64_t am_pagesim_touches(const am_pagesim *s);
uint64_t am_pagesim_misses(const am_pagesim *s);
void am_pagesim_reset_counts(am_pagesim *s);
/* Distinct pages ever touched. */
size_t am_pagesim_distinct(const am_pagesim *s);

#endif
