/* This machine's limits, measured with the threads the library uses: the
 * memory bandwidth of a STREAM-style triad and the sgemm rate of OpenBLAS.
 * bench's roofline divides by them. Each is the best of a few runs, as
 * STREAM reports, so that another process's load shows less. */
#include "asymml/core.h"

#include <cblas.h>
#include <stdlib.h>
#include <time.h>

static double mono(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

double am_measure_bandwidth(void) {
    const size_t n = (size_t)1 << 23; /* 32 MiB an array: far beyond the caches */
    float *a = am_aligned_alloc(n * sizeof(float)), *b = am_aligned_alloc(n * sizeof(float)),
          *c = am_aligned_alloc(n * sizeof(float));
    double best = 0;
    if (a && b && c) {
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) a[i] = 0.f, b[i] = 1.f, c[i] = 2.f;
        for (int rep = 0; rep < 6; rep++) {
            const float s = 0.5f + (float)rep;
            double t0 = mono();
#pragma omp parallel for schedule(static)
            for (size_t i = 0; i < n; i++) a[i] = b[i] + s * c[i];
            double t = mono() - t0, bw = 3.0 * sizeof(float) * (double)n / t; /* STREAM counts 3 arrays */
            if (rep && bw > best) best = bw;
        }
    }
    am_aligned_free(a), am_aligned_free(b), am_aligned_free(c);
    return best;
}

double am_measure_sgemm(void) {
    const int n = 1536;
    float *a = am_aligned_alloc(sizeof(float) * (size_t)n * n), *b = am_aligned_alloc(sizeof(float) * (size_t)n * n),
          *c = am_aligned_alloc(sizeof(float) * (size_t)n * n);
    double best = 0;
    if (a && b && c) {
        for (size_t i = 0; i < (size_t)n * n; i++) a[i] = (float)(i % 7) * 0.1f, b[i] = (float)(i % 5) * 0.1f;
        for (int rep = 0; rep < 4; rep++) {
            double t0 = mono();
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.f, a, n, b, n, 0.f, c, n);
            double t = mono() - t0, r = 2.0 * n * (double)n * n / t;
            if (rep && r > best) best = r;
        }
    }
    am_aligned_free(a), am_aligned_free(b), am_aligned_free(c);
    return best;
}
