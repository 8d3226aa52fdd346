/* The CUDA backend's stand-in for builds without CUDA (ASYMML_CUDA=off, or
 * auto where nvcc or cuDNN was not found). */
#include "untrusted/cuda/cuda_backend.h"

#include <stdio.h>

am_status am_cuda_backend_create(am_backend **out) {
    *out = NULL;
    return am_fail(AM_EINVAL, "this build has no CUDA backend (configure with -DASYMML_CUDA=on, which needs nvcc and cuDNN)");
}

am_status am_cuda_usable(void) {
    am_backend *be;
    return am_cuda_backend_create(&be);
}

int am_cuda_built(void) { return 0; }

void am_cuda_describe(char *buf, size_t n) { snprintf(buf, n, "no CUDA backend in this build"); }
