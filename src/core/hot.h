/* Hot loops. AM_HOT builds a function twice, for AVX2 and for the baseline,
 * and the program takes the variant for the processor it runs on when it
 * starts (GCC's target_clones; x86-64 only). v8 is 8 floats in GCC's and
 * clang's vector extension: one AVX2 register, two SSE ones; LD8 and ST8
 * load and store 8 floats at any alignment. They are macros: a function
 * taking or giving a vector would change the calling convention between the
 * two variants. */
#ifndef ASYMML_CORE_HOT_H
#define ASYMML_CORE_HOT_H

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define AM_HOT __attribute__((target_clones("avx2", "default")))
#else
#define AM_HOT
#endif

typedef float v8 __attribute__((vector_size(32)));
typedef float v8u __attribute__((vector_size(32), aligned(4), may_alias));
#define LD8(p) (*(const v8u *)(const void *)(p))
#define ST8(p, v) (*(v8u *)(void *)(p) = (v))

#endif
