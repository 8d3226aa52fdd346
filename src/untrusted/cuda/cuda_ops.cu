/* gpu-only mode's ops on the GPU (am_op in boundary/backend.h): cuDNN for
 * convolutions, batchnorm, ReLU and pooling; linear layers as 1x1
 * convolutions through the same cuDNN calls (cuBLAS is not bundled: the
 * bundle a GPU machine gets stays small); a few kernels of our own for
 * biases, element-wise sums and products, the loss and SGD. Every buffer
 * an op names has a device mirror (cuda_backend.cu); only PUT and GET copy
 * between the host and the GPU. Ops run in order on the compute stream.
 *
 * Not done here: a batchnorm's backward pass after an evaluation-mode
 * forward (bench never asks for it), and adaptive pooling whose windows are
 * uneven (the zoo's are global or 1x1). Both are refused with a message. */
#include "untrusted/cuda/cuda_impl.h"

#include <math.h>
#include <string.h>

#define THREADS 256

static unsigned blocks(size_t n) {
    size_t b = (n + THREADS - 1) / THREADS;
    return (unsigned)(b > 65535 * 16 ? 65535 * 16 : b);
}

/* ------------------------------------------------------------ kernels */

/* y[n][k][p] += b[k] over N x K planes of P */
__global__ void k_bias(float *y, const float *b, size_t K, size_t P, size_t total) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x)
        y[i] += b[(i / P) % K];
}

/* db[k] = sum over n, p of dy[n][k][p]: one block per channel */
__global__ void k_bias_grad(const float *dy, float *db, int N, int K, size_t P) {
    __shared__ float part[THREADS];
    const int k = blockIdx.x;
    float s = 0.f;
    for (int n = 0; n < N; n++) {
        const float *g = dy + ((size_t)n * K + k) * P;
        for (size_t i = threadIdx.x; i < P; i += blockDim.x) s += g[i];
    }
    part[threadIdx.x] = s;
    __syncthreads();
    for (int h = blockDim.x / 2; h > 0; h /= 2) {
        if ((int)threadIdx.x < h) part[threadIdx.x] += part[threadIdx.x + h];
        __syncthreads();
    }
    if (threadIdx.x == 0) db[k] = part[0];
}

/* y = a + b;  y (=, +=) x * m (m NULL: 1) */
__global__ void k_add(const float *a, const float *b, float *y, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        y[i] = a[i] + b[i];
}
__global__ void k_mul(const float *x, const float *m, float *y, size_t n, int acc) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float v = m ? x[i] * m[i] : x[i];
        y[i] = acc ? y[i] + v : v;
    }
}

/* Mean softmax cross-entropy and its gradient, one block: each thread a
 * sample at a time, then a fixed-order sum (the same every run). */
__global__ void k_loss(const float *logits, const int *labels, float *loss, float *dl, int N, int K) {
    __shared__ double part[THREADS];
    double s = 0;
    for (int n = threadIdx.x; n < N; n += blockDim.x) {
        const float *z = logits + (size_t)n * K;
        float *d = dl + (size_t)n * K;
        const int lab = labels[n];
        float mx = z[0];
        for (int k = 1; k < K; k++) mx = fmaxf(mx, z[k]);
        double e = 0;
        for (int k = 0; k < K; k++) e += exp((double)z[k] - mx);
        if (lab < 0 || lab >= K) {
            s += NAN;
            continue;
        }
        s += log(e) + mx - z[lab];
        for (int k = 0; k < K; k++)
            d[k] = (float)((exp((double)z[k] - mx) / e - (k == lab ? 1.0 : 0.0)) / N);
    }
    part[threadIdx.x] = s;
    __syncthreads();
    for (int h = blockDim.x / 2; h > 0; h /= 2) {
        if ((int)threadIdx.x < h) part[threadIdx.x] += part[threadIdx.x + h];
        __syncthreads();
    }
    if (threadIdx.x == 0) loss[0] = (float)(part[0] / N);
}

/* torch.optim.SGD's update (am_sgd_update) */
__global__ void k_sgd(float *w, const float *g, float *buf, size_t n, float lr, float mu, float damp, float wd,
                      int nest, int first) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float d = g[i] + wd * w[i];
        if (buf) {
            float b = first ? d : mu * buf[i] + (1.f - damp) * d;
            buf[i] = b;
            d = nest ? d + mu * b : b;
        }
        w[i] -= lr * d;
    }
}

static am_status launched(const char *what) { return cb_cu(cudaGetLastError(), what); }

/* ------------------------------------------------------------ set-up */

am_status cuda_ops_init(cuda_be *be) {
    AM_TRY(cb_dnn(cudnnCreateTensorDescriptor(&be->td_c), "descriptor"));
    AM_TRY(cb_dnn(cudnnCreateActivationDescriptor(&be->act), "descriptor"));
    AM_TRY(cb_dnn(cudnnSetActivationDescriptor(be->act, CUDNN_ACTIVATION_RELU, CUDNN_NOT_PROPAGATE_NAN, 0.0),
                  "ReLU descriptor"));
    AM_TRY(cb_dnn(cudnnCreatePoolingDescriptor(&be->pd), "descriptor"));
    return AM_OK;
}

void cuda_ops_free(cuda_be *be) {
    if (be->td_c) cudnnDestroyTensorDescriptor(be->td_c);
    if (be->act) cudnnDestroyActivationDescriptor(be->act);
    if (be->pd) cudnnDestroyPoolingDescriptor(be->pd);
}

static am_status tensor(cudnnTensorDescriptor_t d, am_shape s) {
    return cb_dnn(cudnnSetTensor4dDescriptor(d, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, s.n, s.c, s.h, s.w), "tensor");
}
static size_t numel(am_shape s) { return (size_t)s.n * s.c * s.h * s.w; }

/* ------------------------------------------------------------ the ops */

static const float one = 1.f, zero = 0.f;

/* A conv (or a linear layer as a 1x1 conv) of x with w: forward, or the
 * weight gradient and the input gradient (beta: 1 accumulates). */
static am_status conv(cuda_be *be, const am_op *o, am_conv2d_cfg c, am_shape x, float *const *d) {
    const int bias = c.bias;
    c.bias = 0;
    am_shape y;
    AM_TRY(am_conv2d_out_shape(&c, x, &y));
    AM_TRY(cb_describe(be, &c, x, y));
    const size_t wn = (size_t)c.out_c * x.c * c.kh * c.kw, P = (size_t)y.h * y.w;
    algo *a;
    if (o->kind == AM_OP_CONV_FWD || o->kind == AM_OP_LINEAR_FWD) {
        AM_TRY(cb_find_algo(be, AM_REQ_CONV_FWD, 0, &c, x, &a));
        AM_TRY(cb_dnn(cudnnSetConvolutionMathType(be->cd, a->math), "math type"));
        AM_TRY(cb_dnn(cudnnConvolutionForward(be->dnn, &one, be->td_x, d[0], be->fd_w, d[1], be->cd,
                                              (cudnnConvolutionFwdAlgo_t)a->algo, be->ws, a->ws, &zero, be->td_y, d[2]),
                      "forward"));
        if (bias) k_bias<<<blocks(numel(y)), THREADS, 0, be->s_comp>>>(d[2], d[1] + wn, (size_t)y.c, P, numel(y));
        return launched("bias");
    }
    AM_TRY(cb_find_algo(be, AM_REQ_CONV_BWD_FILTER, 0, &c, x, &a));
    AM_TRY(cb_dnn(cudnnSetConvolutionMathType(be->cd, a->math), "math type"));
    AM_TRY(cb_dnn(cudnnConvolutionBackwardFilter(be->dnn, &one, be->td_x, d[0], be->td_y, d[2], be->cd,
                                                 (cudnnConvolutionBwdFilterAlgo_t)a->algo, be->ws, a->ws, &zero,
                                                 be->fd_w, d[4]),
                  "backward filter"));
    if (bias) k_bias_grad<<<c.out_c, THREADS, 0, be->s_comp>>>(d[2], d[4] + wn, y.n, y.c, P);
    AM_TRY(launched("bias gradient"));
    if (!d[3]) return AM_OK;
    AM_TRY(cb_find_algo(be, AM_REQ_CONV_BWD_DATA, 0, &c, x, &a));
    AM_TRY(cb_dnn(cudnnSetConvolutionMathType(be->cd, a->math), "math type"));
    return cb_dnn(cudnnConvolutionBackwardData(be->dnn, &one, be->fd_w, d[1], be->td_y, d[2], be->cd,
                                               (cudnnConvolutionBwdDataAlgo_t)a->algo, be->ws, a->ws,
                                               (o->flags & AM_OP_ACCUM) ? &one : &zero, be->td_x, d[3]),
                  "backward data");
}

static am_status batchnorm(cuda_be *be, const am_op *o, float *const *d) {
    const int C = o->x.c;
    const int training = (o->flags & AM_OP_TRAINING) != 0;
    AM_TRY(tensor(be->td_x, o->x));
    AM_TRY(cb_dnn(cudnnDeriveBNTensorDescriptor(be->td_c, be->td_x, CUDNN_BATCHNORM_SPATIAL), "batchnorm descriptor"));
    if (o->kind == AM_OP_BN_FWD && training)
        return cb_dnn(cudnnBatchNormalizationForwardTraining(be->dnn, CUDNN_BATCHNORM_SPATIAL, &one, &zero, be->td_x, d[0],
                                                             be->td_x, d[2], be->td_c, d[1], d[1] + C, o->bn_momentum,
                                                             d[3], d[3] + C, o->eps, d[4], d[4] + C),
                      "batchnorm forward");
    if (o->kind == AM_OP_BN_FWD)
        return cb_dnn(cudnnBatchNormalizationForwardInference(be->dnn, CUDNN_BATCHNORM_SPATIAL, &one, &zero, be->td_x,
                                                              d[0], be->td_x, d[2], be->td_c, d[1], d[1] + C, d[3],
                                                              d[3] + C, o->eps),
                      "batchnorm inference");
    if (!training) return am_fail(AM_EINVAL, "cuda: batchnorm's backward pass after an evaluation-mode forward");
    return cb_dnn(cudnnBatchNormalizationBackward(be->dnn, CUDNN_BATCHNORM_SPATIAL, &one,
                                                  (o->flags & AM_OP_ACCUM) ? &one : &zero, &one, &zero, be->td_x, d[0],
                                                  be->td_x, d[3], be->td_x, d[4], be->td_c, d[1], d[5], d[5] + C, o->eps,
                                                  d[2], d[2] + C),
                  "batchnorm backward");
}

static am_status pool(cuda_be *be, const am_op *o, float *const *d) {
    const am_pool_cfg *p = &o->pool;
    int kh = p->kh, kw = p->kw, sh = p->sh, sw = p->sw, ph = p->ph, pw = p->pw;
    cudnnPoolingMode_t mode = o->pool_kind == AM_POOL_MAX ? CUDNN_POOLING_MAX : CUDNN_POOLING_AVERAGE_COUNT_INCLUDE_PADDING;
    if (o->pool_kind == AM_POOL_ADAPTIVE) {
        if (o->x.h % o->y.h || o->x.w % o->y.w)
            return am_fail(AM_EINVAL, "cuda: adaptive pooling of %dx%d to %dx%d (uneven windows)", o->x.h, o->x.w, o->y.h,
                           o->y.w);
        kh = sh = o->x.h / o->y.h, kw = sw = o->x.w / o->y.w, ph = pw = 0;
    }
    AM_TRY(cb_dnn(cudnnSetPooling2dDescriptor(be->pd, mode, CUDNN_NOT_PROPAGATE_NAN, kh, kw, ph, pw, sh, sw), "pooling"));
    AM_TRY(tensor(be->td_x, o->x));
    AM_TRY(tensor(be->td_y, o->y));
    int n, c, h, w;
    AM_TRY(cb_dnn(cudnnGetPooling2dForwardOutputDim(be->pd, be->td_x, &n, &c, &h, &w), "pooling shape"));
    if (h != o->y.h || w != o->y.w)
        return am_fail(AM_EINVAL, "cuda: this pooling gives %dx%d, the model wants %dx%d (ceil mode)", h, w, o->y.h, o->y.w);
    if (o->kind == AM_OP_POOL_FWD)
        return cb_dnn(cudnnPoolingForward(be->dnn, be->pd, &one, be->td_x, d[0], &zero, be->td_y, d[1]), "pooling forward");
    return cb_dnn(cudnnPoolingBackward(be->dnn, be->pd, &one, be->td_y, d[1], be->td_y, d[3], be->td_x, d[0],
                                       (o->flags & AM_OP_ACCUM) ? &one : &zero, be->td_x, d[4]),
                  "pooling backward");
}

static am_status relu(cuda_be *be, const am_op *o, float *const *d) {
    AM_TRY(tensor(be->td_x, o->x));
    if (o->kind == AM_OP_RELU_FWD)
        return cb_dnn(cudnnActivationForward(be->dnn, be->act, &one, be->td_x, d[0], &zero, be->td_x, d[1]), "relu");
    /* d[0] is the output, which is positive exactly where the input was */
    return cb_dnn(cudnnActivationBackward(be->dnn, be->act, &one, be->td_x, d[0], be->td_x, d[1], be->td_x, d[0],
                                          (o->flags & AM_OP_ACCUM) ? &one : &zero, be->td_x, d[2]),
                  "relu backward");
}

static am_status copy(cuda_be *be, const am_op *o, mirror *m) {
    const size_t bytes = numel(o->x) * sizeof(float);
    if (o->kind == AM_OP_PUT) {
        AM_TRY(cb_cu(cudaMemcpyAsync(m->dev, m->host, bytes, cudaMemcpyHostToDevice, be->s_comp), "copy in"));
        m->valid = 1;
        return AM_OK;
    }
    return cb_cu(cudaMemcpyAsync((void *)m->host, m->dev, bytes, cudaMemcpyDeviceToHost, be->s_comp), "copy out");
}

static am_status dispatch(cuda_be *be, const am_op *o, mirror **m, float *const *d, size_t n0) {
    const int acc = (o->flags & AM_OP_ACCUM) != 0;
    switch (o->kind) {
    case AM_OP_PUT: case AM_OP_GET: return copy(be, o, m[0]);
    case AM_OP_CONV_FWD: case AM_OP_CONV_BWD: return conv(be, o, o->conv, o->x, d);
    case AM_OP_LINEAR_FWD: case AM_OP_LINEAR_BWD: {
        am_conv2d_cfg c = {o->y.c, 1, 1, 1, 1, 0, 0, (o->flags & AM_OP_BIAS) ? 1 : 0};
        return conv(be, o, c, am_shape4(o->x.n, o->x.c * o->x.h * o->x.w, 1, 1), d);
    }
    case AM_OP_BN_FWD: case AM_OP_BN_BWD: return batchnorm(be, o, d);
    case AM_OP_RELU_FWD: case AM_OP_RELU_BWD: return relu(be, o, d);
    case AM_OP_POOL_FWD: case AM_OP_POOL_BWD: return pool(be, o, d);
    case AM_OP_ADD: k_add<<<blocks(n0), THREADS, 0, be->s_comp>>>(d[0], d[1], d[2], n0); return launched("add");
    case AM_OP_MUL: k_mul<<<blocks(n0), THREADS, 0, be->s_comp>>>(d[0], d[1], d[2], n0, acc); return launched("mul");
    case AM_OP_ACC:
        if (!acc && d[0] == d[1]) return AM_OK;
        if (!acc) return cb_cu(cudaMemcpyAsync(d[1], d[0], n0 * sizeof(float), cudaMemcpyDeviceToDevice, be->s_comp), "copy");
        k_mul<<<blocks(n0), THREADS, 0, be->s_comp>>>(d[0], NULL, d[1], n0, 1);
        return launched("accumulate");
    case AM_OP_LOSS:
        k_loss<<<1, THREADS, 0, be->s_comp>>>(d[0], (const int *)d[1], d[2], d[3], o->x.n, o->x.c);
        return launched("loss");
    case AM_OP_SGD:
        k_sgd<<<blocks(n0), THREADS, 0, be->s_comp>>>(d[1], d[0], d[2], n0, o->lr, o->momentum, o->dampening, o->decay,
                                                       (o->flags & AM_OP_NESTEROV) != 0, !(o->flags & AM_OP_STARTED));
        return launched("sgd");
    default: break;
    }
    return am_fail(AM_EINVAL, "cuda: unknown op");
}

am_status cuda_op(am_backend *b, const am_op *o) {
    cuda_be *be = (cuda_be *)b;
    size_t n[AM_OP_BUFS];
    int inputs;
    AM_TRY(am_op_check(o, n, &inputs));
    mirror *m[AM_OP_BUFS] = {NULL};
    float *d[AM_OP_BUFS] = {NULL};
    AM_TRY(cb_reserve(be, AM_OP_BUFS));
    for (int i = 0; i < AM_OP_BUFS; i++) {
        if (!n[i]) continue;
        if (!o->b[i]) return am_fail(AM_EINVAL, "backend: %s without its buffer %d", am_op_name(o->kind), i);
        AM_TRY(cb_mirror_of(be, o->b[i], n[i], &m[i]));
        d[i] = m[i]->dev;
    }
    if (be->pending == MAX_PENDING) AM_TRY(b->vt->wait(b));
    cudaEvent_t t0 = be->t0[be->pending], t1 = be->t1[be->pending];
    be->pending++;
    AM_TRY(cb_cu(cudaEventRecord(t0, be->s_comp), "event"));
    AM_TRY(dispatch(be, o, m, d, n[0]));
    for (int i = inputs; i < AM_OP_BUFS; i++)
        if (m[i]) m[i]->valid = 1;
    return cb_cu(cudaEventRecord(t1, be->s_comp), "event");
}
