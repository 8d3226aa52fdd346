/* asymml core: status codes, error messages, tensors, the arena, the RNG.
 *
 * Library functions never print and never exit: they return an am_status and
 * leave a one-line message that am_last_error() returns (per thread). */
#ifndef ASYMML_CORE_H
#define ASYMML_CORE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum am_status {
    AM_OK = 0,
    AM_EINVAL = 1,  /* bad argument or shape */
    AM_ENOMEM = 2,  /* allocation failed or over a memory limit */
    AM_EIO = 3,     /* file could not be read or written */
    AM_EFORMAT = 4, /* file content is corrupt, truncated or of the wrong kind */
    AM_ENUM = 5,    /* NaN or infinity where a finite number is required */
} am_status;

/* The message of the last failure on this thread ("" if none). */
const char *am_last_error(void);
/* Where in the source the last failure was raised, "file.c:line". */
const char *am_last_error_at(void);
/* Set the message; returns st so that callers can `return am_fail(...)`. */
am_status am_fail_at(am_status st, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
#define am_fail(st, ...) am_fail_at((st), __FILE__, __LINE__, __VA_ARGS__)
const char *am_status_name(am_status st);

/* Propagate a failure: evaluate x once, return its status if not AM_OK. */
#define AM_TRY(x)                                \
    do {                                         \
        am_status am_try_st_ = (x);              \
        if (am_try_st_ != AM_OK) return am_try_st_; \
    } while (0)

/* ---- tensors: NCHW float32; a 2-D [N, F] tensor is N x F x 1 x 1 ---- */
typedef struct am_shape {
    int n, c, h, w;
} am_shape;

typedef struct am_tensor {
    am_shape s;
    float *d; /* 64-byte aligned when it comes from am_tensor_alloc or an arena */
} am_tensor;

static inline size_t am_shape_numel(am_shape s) {
    return (size_t)s.n * (size_t)s.c * (size_t)s.h * (size_t)s.w;
}
static inline am_shape am_shape4(int n, int c, int h, int w) {
    am_shape s = {n, c, h, w};
    return s;
}
int am_shape_eq(am_shape a, am_shape b);
/* AM_OK if every dimension is in [1, 2^24] and the element count fits. */
am_status am_shape_check(am_shape s);

#define AM_ALIGN 64
void *am_aligned_alloc(size_t bytes); /* zeroed; NULL on failure */
/* n floats from src to dst (not overlapping), in parallel pieces. */
void am_copy_floats(float *dst, const float *src, size_t n);
void am_aligned_free(void *p);

/* This program's heap, counted (see src/core/mem.c): bytes in use, the peak
 * since the last reset, and a limit (0: none) past which allocations fail,
 * like an SGX enclave's EPC. am_mem_limit_hit: some allocation was refused. */
void am_mem_set_limit(size_t bytes);
size_t am_mem_limit(void);
size_t am_mem_in_use(void);
size_t am_mem_peak(void);
void am_mem_reset_peak(void);
int am_mem_limit_hit(void);

am_status am_tensor_alloc(am_tensor *t, am_shape s); /* zeroed */
void am_tensor_free(am_tensor *t);

/* ---- arena: plan sizes first, then one allocation, then hand out ---- */
typedef struct am_arena {
    unsigned char *base;
    size_t cap, used;
} am_arena;

/* Round a size up to the arena's alignment. */
static inline size_t am_align_up(size_t n) { return (n + AM_ALIGN - 1) & ~(size_t)(AM_ALIGN - 1); }
am_status am_arena_init(am_arena *a, size_t bytes);
void *am_arena_take(am_arena *a, size_t bytes); /* NULL if full; memory is zeroed */
void am_arena_free(am_arena *a);

/* ---- RNG: xoshiro256** seeded through splitmix64; not cryptographic.
 * Used for initialization, shuffling, augmentation and dropout masks. ---- */
typedef struct am_rng {
    uint64_t s[4];
    float spare; /* Box-Muller makes normals in pairs */
    int has_spare;
} am_rng;

void am_rng_seed(am_rng *r, uint64_t seed);
uint64_t am_rng_u64(am_rng *r);
float am_rng_uniform(am_rng *r); /* [0, 1) with 24 random bits */
float am_rng_normal(am_rng *r);  /* standard normal (Box-Muller) */
uint32_t am_rng_below(am_rng *r, uint32_t n); /* uniform in [0, n), unbiased */

/* ---- threads ---- */
/* Sets OpenMP's and OpenBLAS's thread counts (n >= 1). */
am_status am_set_threads(int n);
int am_get_threads(void);
/* on: OpenBLAS (and OpenMP) on one thread, for a run of small BLAS calls;
 * off: back to the count before. One such section at a time. */
void am_blas_serial(int on);
/* The BLAS in use, with the kernels it picked for this processor (OpenBLAS's
 * configuration string); a static string. */
const char *am_blas_describe(void);
/* This machine's limits with the library's threads (src/core/machine.c):
 * bytes per second of a STREAM triad over arrays far beyond the caches, and
 * FLOPs per second of a large sgemm; each the best of a few runs. */
double am_measure_bandwidth(void);
double am_measure_sgemm(void);

#ifdef __cplusplus
}
#endif
#endif
