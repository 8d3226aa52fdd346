/* Blinded inference's request on the GPU (AM_REQ_CONV_MODP): int32
 * residues and integer weights widened to double, cuDNN's implicit-GEMM
 * conv in double (products and sums only: every partial sum an integer
 * below 2^53, so the result is exact in any order), reduced mod p into
 * int32 in [0, p). Runs on the compute stream between the backend's copy
 * streams, timed like its other requests. */
#include <stdint.h>

#include "untrusted/cuda/cuda_impl.h"

__global__ void k_i32_f64(const int32_t *s, double *d, size_t n) {
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i < n) d[i] = (double)s[i];
}

__global__ void k_f32_f64(const float *s, double *d, size_t n) {
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i < n) d[i] = (double)s[i];
}

__global__ void k_mod_p(const double *s, int32_t *d, size_t n) {
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i >= n) return;
    double v = fmod(s[i], (double)AM_MODP);
    d[i] = (int32_t)(v < 0 ? v + AM_MODP : v);
}

static unsigned blocks(size_t n) { return (unsigned)((n + 255) / 256); }

/* The double scratch: x, w and y, grown as needed. */
static am_status scratch(cuda_be *be, size_t n) {
    if (n <= be->dbl_n) return AM_OK;
    AM_TRY(cb_cu(cudaStreamSynchronize(be->s_comp), "synchronize"));
    cudaFree(be->dbl);
    be->dbl = NULL;
    be->dbl_n = 0;
    AM_TRY(cb_cu(cudaMalloc((void **)&be->dbl, n * sizeof(double)), "double scratch"));
    be->dbl_n = n;
    return AM_OK;
}

/* The conv in double, on the compute stream. */
static am_status conv_f64(cuda_be *be, const am_req *r, am_shape ys, const double *x, const double *w, double *y) {
    cudnnTensorDescriptor_t tx = NULL, ty = NULL;
    cudnnFilterDescriptor_t fw = NULL;
    cudnnConvolutionDescriptor_t cd = NULL;
    const am_conv2d_cfg *c = &r->cfg;
    am_status st = cb_dnn(cudnnCreateTensorDescriptor(&tx), "descriptor");
    if (!st) st = cb_dnn(cudnnCreateTensorDescriptor(&ty), "descriptor");
    if (!st) st = cb_dnn(cudnnCreateFilterDescriptor(&fw), "descriptor");
    if (!st) st = cb_dnn(cudnnCreateConvolutionDescriptor(&cd), "descriptor");
    if (!st) st = cb_dnn(cudnnSetTensor4dDescriptor(tx, CUDNN_TENSOR_NCHW, CUDNN_DATA_DOUBLE, r->x.n, r->x.c, r->x.h, r->x.w), "input");
    if (!st) st = cb_dnn(cudnnSetTensor4dDescriptor(ty, CUDNN_TENSOR_NCHW, CUDNN_DATA_DOUBLE, ys.n, ys.c, ys.h, ys.w), "output");
    if (!st) st = cb_dnn(cudnnSetFilter4dDescriptor(fw, CUDNN_DATA_DOUBLE, CUDNN_TENSOR_NCHW, c->out_c, r->x.c, c->kh, c->kw), "filter");
    if (!st)
        st = cb_dnn(cudnnSetConvolution2dDescriptor(cd, c->ph, c->pw, c->sh, c->sw, 1, 1, CUDNN_CROSS_CORRELATION,
                                                    CUDNN_DATA_DOUBLE), "convolution");
    const double one = 1.0, zero = 0.0;
    if (!st)
        st = cb_dnn(cudnnConvolutionForward(be->dnn, &one, tx, x, fw, w, cd, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, NULL,
                                            0, &zero, ty, y), "forward in double");
    if (cd) cudnnDestroyConvolutionDescriptor(cd);
    if (fw) cudnnDestroyFilterDescriptor(fw);
    if (ty) cudnnDestroyTensorDescriptor(ty);
    if (tx) cudnnDestroyTensorDescriptor(tx);
    return st;
}

am_status cb_conv_modp(cuda_be *be, const am_req *r) {
    am_shape ys;
    AM_TRY(am_conv2d_out_shape(&r->cfg, r->x, &ys));
    const size_t xn = (size_t)r->x.n * r->x.c * r->x.h * r->x.w, yn = (size_t)ys.n * ys.c * ys.h * ys.w;
    const size_t wn = (size_t)r->cfg.out_c * r->x.c * r->cfg.kh * r->cfg.kw;
    mirror *m0, *m1, *mo;
    AM_TRY(cb_reserve(be, 3));
    AM_TRY(cb_mirror_of(be, r->in0, xn, &m0));
    AM_TRY(cb_mirror_of(be, r->in1, wn, &m1));
    AM_TRY(cb_mirror_of(be, r->out, yn, &mo));
    if (m0 == mo || m1 == mo) return am_fail(AM_EINVAL, "backend: a request's output is one of its inputs");
    AM_TRY(scratch(be, xn + wn + yn));
    double *x = be->dbl, *w = x + xn, *y = w + wn;
    if (be->pending == MAX_PENDING) AM_TRY(be->base.vt->wait(&be->base));
    cudaEvent_t t0 = be->t0[be->pending], t1 = be->t1[be->pending];
    be->pending++;
    AM_TRY(cb_cu(cudaEventRecord(t0, be->s_in), "event"));
    AM_TRY(cb_cu(cudaMemcpyAsync(m0->dev, r->in0, xn * 4, cudaMemcpyHostToDevice, be->s_in), "copy in"));
    if (!((r->keep & AM_KEEP_IN1) && m1->valid)) /* the weights: sent once, kept since */
        AM_TRY(cb_cu(cudaMemcpyAsync(m1->dev, r->in1, wn * 4, cudaMemcpyHostToDevice, be->s_in), "copy in"));
    AM_TRY(cb_cu(cudaEventRecord(be->ev_w, be->s_in), "event"));
    AM_TRY(cb_cu(cudaStreamWaitEvent(be->s_comp, be->ev_w, 0), "wait"));
    k_i32_f64<<<blocks(xn), 256, 0, be->s_comp>>>((const int32_t *)(const void *)m0->dev, x, xn);
    k_f32_f64<<<blocks(wn), 256, 0, be->s_comp>>>(m1->dev, w, wn);
    AM_TRY(conv_f64(be, r, ys, x, w, y));
    k_mod_p<<<blocks(yn), 256, 0, be->s_comp>>>(y, (int32_t *)(void *)mo->dev, yn);
    AM_TRY(cb_cu(cudaGetLastError(), "kernel launch"));
    AM_TRY(cb_cu(cudaEventRecord(be->ev_c[0], be->s_comp), "event"));
    AM_TRY(cb_cu(cudaStreamWaitEvent(be->s_out, be->ev_c[0], 0), "wait"));
    AM_TRY(cb_cu(cudaMemcpyAsync(r->out, mo->dev, yn * 4, cudaMemcpyDeviceToHost, be->s_out), "copy out"));
    m0->valid = m1->valid = mo->valid = 1;
    AM_TRY(cb_cu(cudaStreamWaitEvent(be->s_in, be->ev_c[0], 0), "wait"));
    return cb_cu(cudaEventRecord(t1, be->s_out), "event");
}

void cb_modp_free(cuda_be *be) {
    cudaFree(be->dbl);
    be->dbl = NULL;
    be->dbl_n = 0;
}
