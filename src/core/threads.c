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
