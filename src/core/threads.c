/* One place that sets how many threads the library uses: OpenMP for our own
 * loops, OpenBLAS for sgemm. */
#include "asymml/core.h"

#include <cblas.h>
#include <omp.h>

am_status am_set_threads(int n) {
    if (n < 1 || n > 1024) return am_fail(AM_EINVAL, "thread count %d out of range [1, 1024]", n);
    omp_set_num_threads(n);
    openblas_set_num_threads(n);
    return AM_OK;
}

int am_get_threads(void) { return omp_get_max_threads(); }

const char *am_blas_describe(void) {
    /* OpenBLAS's build options, with the kernel set it picked at run time. */
    return openblas_get_config();
}

/* Many small GEMMs: OpenBLAS would spread each over all threads and spend
 * more on waking them than on the arithmetic. (Calling OpenBLAS from
 * several threads at once instead was once seen to give wrong results with
 * Debian's 0.3.21 OpenMP build, cause not found; winograd.c does call it so,
 * and tests/test_blas_threads.c checks such calls against one at a time.)
 * OpenBLAS's OpenMP build sets OpenMP's thread count too:
 * the count to go back to is remembered, or everything after would run on
 * one thread. Not reentrant: one serial section at a time. */
void am_blas_serial(int on) {
    static int saved;
    if (on) {
        saved = am_get_threads();
        openblas_set_num_threads(1);
    } else if (saved > 0) {
        openblas_set_num_threads(saved);
    }
}
