/* What the AVX-512 kernels share (skinny.c, fold512.c, project512.c): on
 * x86-64 with GCC or clang, AM_AVX512 builds a function for AVX-512F,
 * am_has_avx512 says whether this processor runs it, and am_lanes masks
 * the lanes of a 16-float step that lie before n. Elsewhere AM_HAVE_AVX512
 * is 0 and am_has_avx512 says no. */
#ifndef ASYMML_CORE_AVX512_H
#define ASYMML_CORE_AVX512_H

#if defined(__GNUC__) && defined(__x86_64__)
#define AM_HAVE_AVX512 1
#include <immintrin.h>
#define AM_AVX512 __attribute__((target("avx512f")))
static inline int am_has_avx512(void) { return __builtin_cpu_supports("avx512f"); }
AM_AVX512 static inline __mmask16 am_lanes(int n) {
    return n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1u);
}
#else
#define AM_HAVE_AVX512 0
static inline int am_has_avx512(void) { return 0; }
#endif

#endif
