/* Hot loops: also built for AVX2, the one this processor takes chosen when
 * the program starts (GCC's target_clones; x86-64 only). */
#ifndef ASYMML_CORE_HOT_H
#define ASYMML_CORE_HOT_H

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define AM_HOT __attribute__((target_clones("avx2", "default")))
#else
#define AM_HOT
#endif

#endif
