/* The CUDA accelerator backend: cuDNN convolutions on one GPU, behind the
 * boundary's accelerator interface. Lives on the untrusted side; the enclave
 * program never links it. */
#ifndef ASYMML_UNTRUSTED_CUDA_BACKEND_H
#define ASYMML_UNTRUSTED_CUDA_BACKEND_H

#include "boundary/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A backend on the first visible GPU. Fails with a one-line reason where
 * this build has no CUDA backend or no GPU is visible. */
am_status am_cuda_backend_create(am_backend **out);
/* AM_OK if a backend can be made here (one is made and freed); else the
 * reason, as am_cuda_backend_create gives it. */
am_status am_cuda_usable(void);
/* 1 if this build has the CUDA backend compiled in. */
int am_cuda_built(void);
/* The GPU's name and the cuDNN version, for the mode line; a reason when
 * none is usable. */
void am_cuda_describe(char *buf, size_t n);

#ifdef __cplusplus
}
#endif

#endif
