/* The CUDA backend's internals, shared by its files: cuda_backend.cu (the
 * buffers, their device mirrors, the convolution requests), cuda_ops.cu
 * (gpu-only mode's ops) and cuda_modp.cu (blinded inference's conv). Internal to src/untrusted/cuda. */
#ifndef ASYMML_UNTRUSTED_CUDA_IMPL_H
#define ASYMML_UNTRUSTED_CUDA_IMPL_H

#include <cuda_runtime.h>
#include <cudnn.h>

#include "boundary/backend.h"

#define MAX_CHUNKS 4
#define CHUNK_MIN_BYTES ((size_t)4 << 20) /* below this, fewer chunks */
#define WS_LIMIT ((size_t)1 << 30)
#define MAX_PENDING 64 /* timed requests between two waits */

typedef struct slot { /* buffer(): pinned host memory */
    float *p;
    size_t n;
} slot;

typedef struct mirror { /* a host buffer's device copy */
    const float *host;
    size_t n;
    float *dev;
    int valid;
    int pinned; /* an arena buffer this backend registered */
} mirror;

typedef struct algo {
    int kind, exact;
    am_conv2d_cfg cfg;
    am_shape x;
    int algo;
    cudnnMathType_t math;
    size_t ws;
} algo;

typedef struct cuda_be {
    am_backend base;
    int device;
    cudaStream_t s_in, s_comp, s_out;
    cudnnHandle_t dnn;
    cudnnTensorDescriptor_t td_x, td_y;
    cudnnFilterDescriptor_t fd_w;
    cudnnConvolutionDescriptor_t cd;
    cudaEvent_t ev_w, ev_in[MAX_CHUNKS], ev_c[MAX_CHUNKS];
    cudaEvent_t t0[MAX_PENDING], t1[MAX_PENDING];
    int pending;
    slot *slots;
    int layers;
    mirror *mir;
    int n_mir, cap_mir;
    algo *algos;
    int n_algos, cap_algos;
    void *ws;
    size_t ws_n;
    cudnnTensorDescriptor_t td_c;   /* gpu-only: a 1 x C x 1 x 1 tensor (bias, batchnorm's parameters) */
    cudnnActivationDescriptor_t act; /* gpu-only: ReLU */
    cudnnPoolingDescriptor_t pd;     /* gpu-only: pooling */
    double *dbl;       /* blinded inference: the conv's operands in double */
    size_t dbl_n;
    const char *arena; /* adopt(): the host's arena */
    size_t arena_n;
    double busy;
} cuda_be;

am_status cb_cu(cudaError_t e, const char *what);
am_status cb_dnn(cudnnStatus_t e, const char *what);
/* Room for k more mirrors (pointers to mirrors stay valid while the k are
 * looked up), and the device copy of host buffer h of n floats. */
am_status cb_reserve(cuda_be *be, int k);
am_status cb_mirror_of(cuda_be *be, const float *h, size_t n, mirror **out);
/* The descriptors of a conv of x into y, and the algorithm for it. */
am_status cb_describe(cuda_be *be, const am_conv2d_cfg *c, am_shape x, am_shape y);
am_status cb_find_algo(cuda_be *be, int kind, int exact, const am_conv2d_cfg *cfg, am_shape x, algo **out);
/* gpu-only mode's ops (cuda_ops.cu); their descriptors and scratch. */
am_status cuda_op(am_backend *b, const am_op *o);
am_status cuda_ops_init(cuda_be *be);
void cuda_ops_free(cuda_be *be);
/* Blinded inference's conv mod p (cuda_modp.cu), and its scratch. */
am_status cb_conv_modp(cuda_be *be, const am_req *r);
void cb_modp_free(cuda_be *be);

#endif
