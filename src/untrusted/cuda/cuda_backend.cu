/* The CUDA accelerator backend: cuDNN convolutions on the first visible GPU.
 *
 * Buffers. buffer() hands out pinned host memory (cudaHostAlloc), so that
 * copies are asynchronous DMA. The host process passes buffers in its
 * shared arena instead (adopt() names it). Every host
 * buffer a request names has a device mirror of the same size, found by its
 * address (the host's arena buffers are each pinned when first seen); a
 * mirror is valid while it holds what the host buffer held when
 * it was last copied. An input the trusted side marks unchanged
 * (am_req.keep) is not copied again if its mirror is valid: a layer's
 * residual and weights cross to the GPU once per step, and the output
 * gradient once for both backward requests.
 *
 * Overlap. A request runs in chunks of samples on three streams: copies in,
 * compute, copies out. Chunk i + 1 is copied in while chunk i is computed
 * and chunk i - 1 copied out; the weights go first, once. A weight gradient
 * accumulates over the chunks (beta = 1) and is copied out at the end.
 * Requests queue behind each other on the same streams; wait() synchronises.
 *
 * Algorithms. The first time a (kind, conv, chunk shape) is seen, cuDNN's
 * Find runs every algorithm once and the fastest that needs at most
 * WS_LIMIT bytes of workspace is kept for the rest of the run.
 *
 * Precision. Convolutions use cuDNN's default math, which lets Ampere and
 * later GPUs use TF32 tensor cores for FP32 data (as PyTorch does by
 * default); results then differ from FP32 by about 1e-3 relative. A request
 * marked AM_REQ_EXACT (the trusted side verifies it) runs in FP32 (FMA
 * math) with an algorithm that sums the products (no FFT, no Winograd). */
#include "untrusted/cuda/cuda_backend.h"
#include "untrusted/cuda/cuda_impl.h"

#include <cuda_runtime.h>
#include <cudnn.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

am_status cb_cu(cudaError_t e, const char *what) {
    if (e == cudaSuccess) return AM_OK;
    return am_fail(AM_EIO, "cuda: %s: %s", what, cudaGetErrorString(e));
}

am_status cb_dnn(cudnnStatus_t e, const char *what) {
    if (e == CUDNN_STATUS_SUCCESS) return AM_OK;
    return am_fail(AM_EIO, "cudnn: %s: %s", what, cudnnGetErrorString(e));
}

/* Pins an arena buffer for asynchronous copies. An optimisation only: if
 * it fails (a locked-memory limit, say), copies from pageable memory still
 * work, slower. */
static void pin(cuda_be *be, mirror *m) {
    const char *h = (const char *)m->host;
    if (m->pinned || !be->arena || h < be->arena || h + m->n * sizeof(float) > be->arena + be->arena_n) return;
    if (cudaHostRegister((void *)m->host, m->n * sizeof(float), cudaHostRegisterDefault) == cudaSuccess) m->pinned = 1;
    else cudaGetLastError();
}

static void unpin(mirror *m) {
    if (m->pinned) cudaHostUnregister((void *)m->host);
    m->pinned = 0;
}

/* Room for k more mirrors, so that pointers to mirrors stay valid while
 * the k are looked up. */
am_status cb_reserve(cuda_be *be, int k) {
    if (be->n_mir + k <= be->cap_mir) return AM_OK;
    int cap = be->cap_mir ? 2 * be->cap_mir : 64;
    while (cap < be->n_mir + k) cap *= 2;
    mirror *nm = (mirror *)realloc(be->mir, (size_t)cap * sizeof *nm);
    if (!nm) return am_fail(AM_ENOMEM, "cuda: out of memory");
    be->mir = nm;
    be->cap_mir = cap;
    return AM_OK;
}

/* The device copy of host buffer h of n floats (made, or grown, here);
 * cb_reserve() room first. */
am_status cb_mirror_of(cuda_be *be, const float *h, size_t n, mirror **out) {
    for (int i = 0; i < be->n_mir; i++) {
        mirror *m = &be->mir[i];
        if (m->host != h) continue;
        if (m->n < n) {
            AM_TRY(cb_cu(cudaDeviceSynchronize(), "synchronize"));
            unpin(m);
            cudaFree(m->dev);
            m->dev = NULL;
            m->n = 0;
            m->valid = 0;
            AM_TRY(cb_cu(cudaMalloc((void **)&m->dev, n * sizeof(float)), "device buffer"));
            m->n = n;
            pin(be, m);
        }
        *out = m;
        return AM_OK;
    }
    if (be->n_mir == be->cap_mir) return am_fail(AM_EINVAL, "cuda: mirror table not reserved");
    mirror *m = &be->mir[be->n_mir];
    memset(m, 0, sizeof *m);
    AM_TRY(cb_cu(cudaMalloc((void **)&m->dev, n * sizeof(float)), "device buffer"));
    m->host = h;
    m->n = n;
    be->n_mir++;
    pin(be, m);
    *out = m;
    return AM_OK;
}

/* Forgets the mirror of a host buffer that is being freed. */
static void mirror_drop(cuda_be *be, const float *h) {
    for (int i = 0; i < be->n_mir; i++)
        if (be->mir[i].host == h) {
            unpin(&be->mir[i]);
            cudaFree(be->mir[i].dev);
            be->mir[i] = be->mir[--be->n_mir];
            return;
        }
}

static am_status cuda_buffer(am_backend *b, int layer, am_buf_role role, size_t n, float **out) {
    cuda_be *be = (cuda_be *)b;
    slot *s;
    AM_TRY(am_backend_slot(layer, role, n, sizeof(slot), (void **)&be->slots, &be->layers, (void **)&s));
    if (s->n < n) {
        AM_TRY(cb_cu(cudaDeviceSynchronize(), "synchronize"));
        if (s->p) {
            mirror_drop(be, s->p);
            cudaFreeHost(s->p);
        }
        s->p = NULL;
        s->n = 0;
        AM_TRY(cb_cu(cudaHostAlloc((void **)&s->p, n * sizeof(float), cudaHostAllocDefault), "pinned host buffer"));
        s->n = n;
    }
    *out = s->p;
    return AM_OK;
}

/* Algorithms whose results are float sums of the products, as the trusted
 * side's verification bound assumes (AM_REQ_EXACT); FFT and Winograd
 * transforms round otherwise. */
static int summing(int kind, int g) {
    if (kind == AM_REQ_CONV_FWD)
        return g != CUDNN_CONVOLUTION_FWD_ALGO_FFT && g != CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING &&
               g != CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD && g != CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED;
    if (kind == AM_REQ_CONV_BWD_DATA)
        return g != CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT && g != CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT_TILING &&
               g != CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD && g != CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD_NONFUSED;
    return g != CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT && g != CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT_TILING &&
           g != CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD_NONFUSED;
}

/* The fastest of Find's results (sorted by time) that ran and needs at
 * most WS_LIMIT bytes of workspace (and, exact, sums in FP32: FMA math, no
 * transform); 0 if none. Any of cuDNN's three AlgoPerf structs. */
template <typename Perf> static int pick(const Perf *p, int got, algo *a) {
    for (int i = 0; i < got; i++)
        if (p[i].status == CUDNN_STATUS_SUCCESS && p[i].memory <= WS_LIMIT &&
            (!a->exact || (p[i].mathType == CUDNN_FMA_MATH && summing(a->kind, (int)p[i].algo)))) {
            a->algo = (int)p[i].algo, a->math = p[i].mathType, a->ws = p[i].memory;
            return 1;
        }
    return 0;
}

/* The algorithm for (kind, cfg, x, exact) with descriptors already set. */
am_status cb_find_algo(cuda_be *be, int kind, int exact, const am_conv2d_cfg *cfg, am_shape x, algo **out) {
    for (int i = 0; i < be->n_algos; i++) {
        algo *a = &be->algos[i];
        if (a->kind == kind && a->exact == exact && !memcmp(&a->cfg, cfg, sizeof *cfg) && !memcmp(&a->x, &x, sizeof x)) {
            *out = a;
            return AM_OK;
        }
    }
    if (be->n_algos == be->cap_algos) {
        int cap = be->cap_algos ? 2 * be->cap_algos : 64;
        algo *na = (algo *)realloc(be->algos, (size_t)cap * sizeof *na);
        if (!na) return am_fail(AM_ENOMEM, "cuda: out of memory");
        be->algos = na;
        be->cap_algos = cap;
    }
    algo a;
    memset(&a, 0, sizeof a);
    a.kind = kind;
    a.exact = exact;
    a.cfg = *cfg;
    a.x = x;
    enum { N = 16 };
    int got = 0, found = 0;
    AM_TRY(cb_cu(cudaStreamSynchronize(be->s_comp), "synchronize"));
    AM_TRY(cb_dnn(cudnnSetConvolutionMathType(be->cd, exact ? CUDNN_FMA_MATH : CUDNN_DEFAULT_MATH), "math type"));
    if (kind == AM_REQ_CONV_FWD) {
        cudnnConvolutionFwdAlgoPerf_t p[N];
        AM_TRY(cb_dnn(cudnnFindConvolutionForwardAlgorithm(be->dnn, be->td_x, be->fd_w, be->cd, be->td_y, N, &got, p),
                   "find forward algorithm"));
        found = pick(p, got, &a);
    } else if (kind == AM_REQ_CONV_BWD_DATA) {
        cudnnConvolutionBwdDataAlgoPerf_t p[N];
        AM_TRY(cb_dnn(cudnnFindConvolutionBackwardDataAlgorithm(be->dnn, be->fd_w, be->td_y, be->cd, be->td_x, N, &got, p),
                   "find backward-data algorithm"));
        found = pick(p, got, &a);
    } else {
        cudnnConvolutionBwdFilterAlgoPerf_t p[N];
        AM_TRY(cb_dnn(cudnnFindConvolutionBackwardFilterAlgorithm(be->dnn, be->td_x, be->td_y, be->cd, be->fd_w, N, &got, p),
                   "find backward-filter algorithm"));
        found = pick(p, got, &a);
    }
    if (!found)
        return am_fail(AM_EIO, "cudnn: no algorithm for a %dx%d conv of %dx%dx%dx%d within %zu MiB of workspace",
                       cfg->kh, cfg->kw, x.n, x.c, x.h, x.w, WS_LIMIT >> 20);
    if (a.ws > be->ws_n) {
        AM_TRY(cb_cu(cudaStreamSynchronize(be->s_comp), "synchronize"));
        cudaFree(be->ws);
        be->ws = NULL;
        be->ws_n = 0;
        AM_TRY(cb_cu(cudaMalloc(&be->ws, a.ws), "cuDNN workspace"));
        be->ws_n = a.ws;
    }
    be->algos[be->n_algos] = a;
    *out = &be->algos[be->n_algos++];
    return AM_OK;
}

/* Descriptors for a chunk of n samples. */
am_status cb_describe(cuda_be *be, const am_conv2d_cfg *c, am_shape x, am_shape y) {
    AM_TRY(cb_dnn(cudnnSetTensor4dDescriptor(be->td_x, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, x.n, x.c, x.h, x.w), "input"));
    AM_TRY(cb_dnn(cudnnSetTensor4dDescriptor(be->td_y, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, y.n, y.c, y.h, y.w), "output"));
    AM_TRY(cb_dnn(cudnnSetFilter4dDescriptor(be->fd_w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, c->out_c, x.c, c->kh, c->kw),
               "filter"));
    AM_TRY(cb_dnn(cudnnSetConvolution2dDescriptor(be->cd, c->ph, c->pw, c->sh, c->sw, 1, 1, CUDNN_CROSS_CORRELATION,
                                               CUDNN_DATA_FLOAT),
               "convolution"));
    return AM_OK;
}

/* One chunk's conv on the compute stream: samples [n0, n0 + x.n). */
static am_status run_chunk(cuda_be *be, const am_req *r, am_shape x, am_shape y, size_t n0, const float *d0,
                           const float *d1, float *dout, int first) {
    algo *a;
    AM_TRY(cb_describe(be, &r->cfg, x, y));
    AM_TRY(cb_find_algo(be, (int)r->kind, (r->flags & AM_REQ_EXACT) != 0, &r->cfg, x, &a));
    AM_TRY(cb_dnn(cudnnSetConvolutionMathType(be->cd, a->math), "math type"));
    const size_t xs = (size_t)x.c * x.h * x.w, ys = (size_t)y.c * y.h * y.w;
    const float one = 1.f, zero = 0.f;
    switch (r->kind) {
    case AM_REQ_CONV_FWD:
        return cb_dnn(cudnnConvolutionForward(be->dnn, &one, be->td_x, d0 + n0 * xs, be->fd_w, d1, be->cd,
                                           (cudnnConvolutionFwdAlgo_t)a->algo, be->ws, a->ws, &zero, be->td_y,
                                           dout + n0 * ys),
                   "forward");
    case AM_REQ_CONV_BWD_DATA:
        return cb_dnn(cudnnConvolutionBackwardData(be->dnn, &one, be->fd_w, d1, be->td_y, d0 + n0 * ys, be->cd,
                                                (cudnnConvolutionBwdDataAlgo_t)a->algo, be->ws, a->ws, &zero,
                                                be->td_x, dout + n0 * xs),
                   "backward data");
    default:
        return cb_dnn(cudnnConvolutionBackwardFilter(be->dnn, &one, be->td_x, d0 + n0 * xs, be->td_y, d1 + n0 * ys, be->cd,
                                                  (cudnnConvolutionBwdFilterAlgo_t)a->algo, be->ws, a->ws,
                                                  first ? &zero : &one, be->fd_w, dout),
                   "backward filter");
    }
}

static am_status cuda_submit(am_backend *b, const am_req *r) {
    cuda_be *be = (cuda_be *)b;
    if (!r || !r->in0 || !r->in1 || !r->out) return am_fail(AM_EINVAL, "backend: incomplete request");
    if (r->kind != AM_REQ_CONV_FWD && r->kind != AM_REQ_CONV_BWD_DATA && r->kind != AM_REQ_CONV_BWD_FILTER &&
        r->kind != AM_REQ_CONV_MODP)
        return am_fail(AM_EINVAL, "backend: unknown request kind %d", (int)r->kind);
    if (r->cfg.bias) return am_fail(AM_EINVAL, "backend: requests carry no bias");
    if (r->kind == AM_REQ_CONV_MODP) return cb_conv_modp(be, r);
    am_shape ys;
    AM_TRY(am_conv2d_out_shape(&r->cfg, r->x, &ys));
    const int B = r->x.n;
    const size_t xs = (size_t)r->x.c * r->x.h * r->x.w, yss = (size_t)ys.c * ys.h * ys.w;
    const size_t xn = (size_t)B * xs, yn = (size_t)B * yss, wn = (size_t)r->cfg.out_c * r->x.c * r->cfg.kh * r->cfg.kw;
    /* What each kind reads (in0 chunked by sample; in1 whole, or chunked
     * for the weight gradient) and writes. */
    size_t n0, n1, no, per0, per1, pero;
    switch (r->kind) {
    case AM_REQ_CONV_FWD: n0 = xn, n1 = wn, no = yn, per0 = xs, per1 = 0, pero = yss; break;
    case AM_REQ_CONV_BWD_DATA: n0 = yn, n1 = wn, no = xn, per0 = yss, per1 = 0, pero = xs; break;
    default: n0 = xn, n1 = yn, no = wn, per0 = xs, per1 = yss, pero = 0; break;
    }
    mirror *m0, *m1, *mo;
    AM_TRY(cb_reserve(be, 3));
    AM_TRY(cb_mirror_of(be, r->in0, n0, &m0));
    AM_TRY(cb_mirror_of(be, r->in1, n1, &m1));
    AM_TRY(cb_mirror_of(be, r->out, no, &mo));
    if (m0 == mo || m1 == mo) return am_fail(AM_EINVAL, "backend: a request's output is one of its inputs");
    const int up0 = !((r->keep & AM_KEEP_IN0) && m0->valid), up1 = !((r->keep & AM_KEEP_IN1) && m1->valid);
    /* Chunks: up to MAX_CHUNKS, none under CHUNK_MIN_BYTES of input. */
    size_t bytes = (per0 + per1) * (size_t)B * sizeof(float);
    int nc = (int)(bytes / CHUNK_MIN_BYTES);
    nc = nc < 1 ? 1 : nc > MAX_CHUNKS ? MAX_CHUNKS : nc;
    nc = nc > B ? B : nc;
    const int cb = (B + nc - 1) / nc;
    nc = (B + cb - 1) / cb;
    if (be->pending == MAX_PENDING) AM_TRY(b->vt->wait(b));
    cudaEvent_t t0 = be->t0[be->pending], t1 = be->t1[be->pending];
    be->pending++;
    AM_TRY(cb_cu(cudaEventRecord(t0, be->s_in), "event"));
    if (per1 == 0) { /* the weights, whole, first */
        if (up1) AM_TRY(cb_cu(cudaMemcpyAsync(m1->dev, r->in1, n1 * sizeof(float), cudaMemcpyHostToDevice, be->s_in), "copy in"));
        AM_TRY(cb_cu(cudaEventRecord(be->ev_w, be->s_in), "event"));
        AM_TRY(cb_cu(cudaStreamWaitEvent(be->s_comp, be->ev_w, 0), "wait"));
    }
    for (int c = 0; c < nc; c++) {
        const int s0 = c * cb, cn = B - s0 < cb ? B - s0 : cb;
        if (up0)
            AM_TRY(cb_cu(cudaMemcpyAsync(m0->dev + (size_t)s0 * per0, r->in0 + (size_t)s0 * per0, (size_t)cn * per0 * sizeof(float),
                                      cudaMemcpyHostToDevice, be->s_in),
                      "copy in"));
        if (per1 && up1)
            AM_TRY(cb_cu(cudaMemcpyAsync(m1->dev + (size_t)s0 * per1, r->in1 + (size_t)s0 * per1, (size_t)cn * per1 * sizeof(float),
                                      cudaMemcpyHostToDevice, be->s_in),
                      "copy in"));
        AM_TRY(cb_cu(cudaEventRecord(be->ev_in[c], be->s_in), "event"));
        AM_TRY(cb_cu(cudaStreamWaitEvent(be->s_comp, be->ev_in[c], 0), "wait"));
        am_shape x = r->x, y = ys;
        x.n = y.n = cn;
        AM_TRY(run_chunk(be, r, x, y, (size_t)s0, m0->dev, m1->dev, mo->dev, c == 0));
        AM_TRY(cb_cu(cudaEventRecord(be->ev_c[c], be->s_comp), "event"));
        if (pero) {
            AM_TRY(cb_cu(cudaStreamWaitEvent(be->s_out, be->ev_c[c], 0), "wait"));
            AM_TRY(cb_cu(cudaMemcpyAsync(r->out + (size_t)s0 * pero, mo->dev + (size_t)s0 * pero, (size_t)cn * pero * sizeof(float),
                                      cudaMemcpyDeviceToHost, be->s_out),
                      "copy out"));
        }
    }
    m0->valid = m1->valid = 1;
    if (!pero) {
        AM_TRY(cb_cu(cudaStreamWaitEvent(be->s_out, be->ev_c[nc - 1], 0), "wait"));
        AM_TRY(cb_cu(cudaMemcpyAsync(r->out, mo->dev, no * sizeof(float), cudaMemcpyDeviceToHost, be->s_out), "copy out"));
    }
    mo->valid = 1;
    /* The next request's inputs must not be overwritten on the GPU while
     * this one still reads them: copies in wait for this compute. */
    AM_TRY(cb_cu(cudaStreamWaitEvent(be->s_in, be->ev_c[nc - 1], 0), "wait"));
    AM_TRY(cb_cu(cudaEventRecord(t1, be->s_out), "event"));
    return AM_OK;
}

static am_status cuda_wait(am_backend *b) {
    cuda_be *be = (cuda_be *)b;
    AM_TRY(cb_cu(cudaStreamSynchronize(be->s_out), "synchronize"));
    AM_TRY(cb_cu(cudaStreamSynchronize(be->s_comp), "synchronize"));
    AM_TRY(cb_cu(cudaStreamSynchronize(be->s_in), "synchronize"));
    for (int i = 0; i < be->pending; i++) {
        float ms = 0.f;
        if (cudaEventElapsedTime(&ms, be->t0[i], be->t1[i]) == cudaSuccess) be->busy += 1e-3 * ms;
    }
    be->pending = 0;
    return AM_OK;
}

static double cuda_busy(am_backend *b) { return ((cuda_be *)b)->busy; }

/* The arena is sparse and may be far larger than what is used: its
 * buffers are pinned one by one as requests name them (pin()). */
static am_status cuda_adopt(am_backend *b, void *mem, size_t bytes) {
    cuda_be *be = (cuda_be *)b;
    be->arena = (const char *)mem;
    be->arena_n = bytes;
    return AM_OK;
}

static void cuda_destroy(am_backend *b) {
    cuda_be *be = (cuda_be *)b;
    if (!be) return;
    cudaDeviceSynchronize();
    for (int i = 0; i < be->n_mir; i++) {
        unpin(&be->mir[i]);
        cudaFree(be->mir[i].dev);
    }
    free(be->mir);
    for (size_t i = 0; i < (size_t)be->layers * AM_BUF_ROLES; i++)
        if (be->slots[i].p) cudaFreeHost(be->slots[i].p);
    free(be->slots);
    free(be->algos);
    cudaFree(be->ws);
    for (int i = 0; i < MAX_CHUNKS; i++) {
        if (be->ev_in[i]) cudaEventDestroy(be->ev_in[i]);
        if (be->ev_c[i]) cudaEventDestroy(be->ev_c[i]);
    }
    for (int i = 0; i < MAX_PENDING; i++) {
        if (be->t0[i]) cudaEventDestroy(be->t0[i]);
        if (be->t1[i]) cudaEventDestroy(be->t1[i]);
    }
    cuda_ops_free(be);
    cb_modp_free(be);
    if (be->ev_w) cudaEventDestroy(be->ev_w);
    if (be->cd) cudnnDestroyConvolutionDescriptor(be->cd);
    if (be->fd_w) cudnnDestroyFilterDescriptor(be->fd_w);
    if (be->td_x) cudnnDestroyTensorDescriptor(be->td_x);
    if (be->td_y) cudnnDestroyTensorDescriptor(be->td_y);
    if (be->dnn) cudnnDestroy(be->dnn);
    if (be->s_in) cudaStreamDestroy(be->s_in);
    if (be->s_comp) cudaStreamDestroy(be->s_comp);
    if (be->s_out) cudaStreamDestroy(be->s_out);
    free(be);
}

static const am_backend_vt cuda_vt = {"cuda", cuda_buffer, cuda_submit, cuda_wait, cuda_busy, cuda_destroy, cuda_adopt, cuda_op};

static am_status init(cuda_be *be) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
        const char *why = e == cudaSuccess                      ? "the driver sees no CUDA device"
                          : e == cudaErrorInsufficientDriver   ? "no NVIDIA driver, or one older than this CUDA runtime"
                          : e == cudaErrorNoDevice             ? "the driver sees no CUDA device"
                                                               : cudaGetErrorString(e);
        cudaGetLastError();
        return am_fail(AM_EINVAL, "no usable GPU (%s)", why);
    }
    AM_TRY(cb_cu(cudaSetDevice(0), "select device 0"));
    AM_TRY(cb_cu(cudaStreamCreateWithFlags(&be->s_in, cudaStreamNonBlocking), "stream"));
    AM_TRY(cb_cu(cudaStreamCreateWithFlags(&be->s_comp, cudaStreamNonBlocking), "stream"));
    AM_TRY(cb_cu(cudaStreamCreateWithFlags(&be->s_out, cudaStreamNonBlocking), "stream"));
    AM_TRY(cb_dnn(cudnnCreate(&be->dnn), "create handle"));
    AM_TRY(cb_dnn(cudnnSetStream(be->dnn, be->s_comp), "set stream"));
    AM_TRY(cb_dnn(cudnnCreateTensorDescriptor(&be->td_x), "descriptor"));
    AM_TRY(cb_dnn(cudnnCreateTensorDescriptor(&be->td_y), "descriptor"));
    AM_TRY(cb_dnn(cudnnCreateFilterDescriptor(&be->fd_w), "descriptor"));
    AM_TRY(cb_dnn(cudnnCreateConvolutionDescriptor(&be->cd), "descriptor"));
    AM_TRY(cb_cu(cudaEventCreateWithFlags(&be->ev_w, cudaEventDisableTiming), "event"));
    AM_TRY(cuda_ops_init(be));
    for (int i = 0; i < MAX_CHUNKS; i++) {
        AM_TRY(cb_cu(cudaEventCreateWithFlags(&be->ev_in[i], cudaEventDisableTiming), "event"));
        AM_TRY(cb_cu(cudaEventCreateWithFlags(&be->ev_c[i], cudaEventDisableTiming), "event"));
    }
    for (int i = 0; i < MAX_PENDING; i++) {
        AM_TRY(cb_cu(cudaEventCreate(&be->t0[i]), "event"));
        AM_TRY(cb_cu(cudaEventCreate(&be->t1[i]), "event"));
    }
    return AM_OK;
}

extern "C" am_status am_cuda_backend_create(am_backend **out) {
    *out = NULL;
    cuda_be *be = (cuda_be *)calloc(1, sizeof *be);
    if (!be) return am_fail(AM_ENOMEM, "cuda: out of memory");
    be->base.vt = &cuda_vt;
    am_status st = init(be);
    if (st != AM_OK) {
        cuda_destroy(&be->base);
        return st;
    }
    *out = &be->base;
    return AM_OK;
}

extern "C" am_status am_cuda_usable(void) {
    am_backend *be;
    AM_TRY(am_cuda_backend_create(&be));
    be->vt->destroy(be);
    return AM_OK;
}

extern "C" int am_cuda_built(void) { return 1; }

extern "C" void am_cuda_describe(char *buf, size_t n) {
    int count = 0;
    cudaDeviceProp p;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0 || cudaGetDeviceProperties(&p, 0) != cudaSuccess) {
        cudaGetLastError();
        snprintf(buf, n, "no usable GPU");
        return;
    }
    size_t v = cudnnGetVersion();
    snprintf(buf, n, "%s, cuDNN %zu.%zu.%zu", p.name, v / 10000, v / 100 % 100, v % 100);
}
