/* The narrow interface between the trusted side and the untrusted
 * accelerator. Both sides include this header and nothing of each other's;
 * it includes only the public headers.
 *
 * A backend is an object that whoever builds a model creates and hands to
 * it (am_model_set_asym); nothing chooses one through a global. The
 * accelerator's buffers are the backend's: the trusted side asks for a
 * buffer by (layer, role), copies into it what it releases (that copy is
 * the crossing the ledger records), submits a request and waits for it. A
 * request names buffers only, never trusted memory, and says what kind of
 * crossing each input is (asymml/crossing.h), so that the untrusted side
 * can record exactly what it was sent. Requests are asynchronous in the
 * interface; a backend may run them at submit time. */
#ifndef ASYMML_BOUNDARY_BACKEND_H
#define ASYMML_BOUNDARY_BACKEND_H

#include <stdint.h>

#include "asymml/crossing.h"
#include "asymml/ops.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum am_req_kind {
    AM_REQ_CONV_FWD,        /* out[y] = conv(in0[x], in1[w]), no bias */
    AM_REQ_CONV_BWD_DATA,   /* out[dx] = conv_transpose(in1[w], in0[dy]) */
    AM_REQ_CONV_BWD_FILTER, /* out[dw] = corr(in0[x], in1[dy]) */
    AM_REQ_CONV_MODP,       /* blinded inference: out[y] = conv(in0[x], in1[w]) mod AM_MODP, exactly; in0 holds
                             * int32 residues in [-(p-1)/2, (p-1)/2], in1 integers of |w| <= 127 (as floats),
                             * out gets int32 in [0, p) */
} am_req_kind;

/* The field of blinded inference: the Mersenne prime 2^31 - 1. Every zoo
 * layer's conv of residues by 8-bit weights stays below 2^53 (exact in
 * double) and its quantized result below p/2. */
#define AM_MODP 2147483647
/* An integer v held exactly in a double (|v| < 2^53) mod p, centered in
 * [-(p-1)/2, (p-1)/2]: the quotient from a product with 1/p is off by at
 * most one, and q p and v - q p are exact. (fmod is far slower.) */
static inline double am_modp_center(double v) {
    const double p = AM_MODP, h = (AM_MODP - 1) / 2;
    double q = v * (1.0 / AM_MODP);
    q = q < 0 ? -(double)(long long)(-q + 0.5) : (double)(long long)(q + 0.5);
    double r = v - q * p;
    return r > h ? r - p : r < -h ? r + p : r;
}

/* The same in [0, p), as an int32. */
static inline int32_t am_modp_residue(double v) {
    double c = am_modp_center(v);
    return (int32_t)(c < 0 ? c + AM_MODP : c);
}

/* Buffer roles, per layer. */
typedef enum am_buf_role {
    AM_BUF_INPUT,   /* what the layer's forward reads: residual (+ noise), or X in open mode */
    AM_BUF_WEIGHT,  /* gpu-only: the layer's trainable parameters, concatenated (weight, then bias) */
    AM_BUF_OUTPUT,  /* forward result */
    AM_BUF_GRAD,    /* output gradient */
    AM_BUF_DX,      /* input gradient result */
    AM_BUF_DW,      /* weight gradient result (gpu-only: the parameters' gradients, concatenated) */
    /* gpu-only mode's own (am_op): */
    AM_BUF_MOMENTUM, /* SGD's momentum for the layer's parameters */
    AM_BUF_STATS,    /* batchnorm: running mean, then running variance */
    AM_BUF_SAVED,    /* batchnorm: the batch's mean and 1/std; max-pool: argmax (int32) */
    AM_BUF_AUX,      /* labels (int32, last layer), a dropout mask */
    AM_BUF_LOSS,     /* the mean loss (1 float, last layer) */
    AM_BUF_ROLES
} am_buf_role;

/* am_req.keep: an input the trusted side has not written since the last
 * request that read the same buffer (the residual in a layer's backward
 * pass, its weights, the output gradient between the two backward
 * requests). A backend with its own copy of that buffer may reuse it
 * instead of copying it again; one without a copy must copy. */
enum { AM_KEEP_IN0 = 1, AM_KEEP_IN1 = 2 };
/* am_req.flags: AM_REQ_EXACT asks for FP32 arithmetic (no TF32 or other
 * reduced-precision math), for requests whose results the trusted side
 * verifies against float error bounds (--verify). */
enum { AM_REQ_EXACT = 1 };

typedef struct am_req {
    am_req_kind kind;
    int layer;
    am_conv2d_cfg cfg;
    am_shape x;              /* the conv's input shape */
    const float *in0, *in1;  /* backend buffers */
    float *out;              /* backend buffer */
    unsigned keep;           /* AM_KEEP_* hints; 0: copy everything */
    am_cross_kind tag0, tag1; /* what in0 and in1 are */
    uint32_t step;           /* the trusted side's step counter, for records */
    unsigned flags;          /* AM_REQ_* */
} am_req;

/* gpu-only mode (the paper's GPU-only baseline; no privacy): every layer
 * on the accelerator, its data staying there between ops. An op names
 * backend buffers (inputs first, then outputs; am_op_check gives each
 * kind's list and sizes), which hold their contents on the accelerator:
 * PUT copies a buffer's host content there, GET brings it back; no other
 * op moves data across. */
typedef enum am_op_kind {
    AM_OP_PUT,        /* b0: the accelerator's copy := the host's (x: numel) */
    AM_OP_GET,        /* b0: the host's copy := the accelerator's (x: numel) */
    AM_OP_CONV_FWD,   /* b0 x, b1 w|bias -> b2 y                 (conv, x) */
    AM_OP_CONV_BWD,   /* b0 x, b1 w|bias, b2 dy -> b3 dx|none, b4 dw|db */
    AM_OP_BN_FWD,     /* b0 x, b1 gamma|beta -> b2 y, b3 running mean|var (updated in training), b4 mean|invstd */
    AM_OP_BN_BWD,     /* b0 x, b1 gamma|beta, b2 mean|invstd, b3 dy -> b4 dx, b5 dgamma|dbeta */
    AM_OP_RELU_FWD,   /* b0 x -> b1 y (may be b0) */
    AM_OP_RELU_BWD,   /* b0 y, b1 dy -> b2 dx (may be b1) */
    AM_OP_POOL_FWD,   /* b0 x -> b1 y, b2 saved (argmax for max, one per output) (pool, pool_kind, x, y) */
    AM_OP_POOL_BWD,   /* b0 x, b1 y, b2 saved, b3 dy -> b4 dx */
    AM_OP_LINEAR_FWD, /* b0 x, b1 w|b -> b2 y                      (x, y.c: outputs) */
    AM_OP_LINEAR_BWD, /* b0 x, b1 w|b, b2 dy -> b3 dx|none, b4 dw|db */
    AM_OP_ADD,        /* b0 a, b1 b -> b2 y (may be a or b) */
    AM_OP_MUL,        /* b0 x, b1 mask -> b2 y (may be x): dropout, both ways */
    AM_OP_ACC,        /* b0 src -> b1 dst (=, or += with AM_OP_ACCUM) */
    AM_OP_LOSS,       /* b0 logits, b1 labels (int32) -> b2 loss (1 float), b3 dlogits (mean softmax cross-entropy) */
    AM_OP_SGD,        /* b0 g -> b1 w, b2 momentum (both updated; x: numel)  as torch.optim.SGD */
    AM_OP_KINDS
} am_op_kind;

/* am_op.flags */
enum {
    AM_OP_TRAINING = 1, /* batchnorm: batch statistics; dropout in training */
    AM_OP_ACCUM = 2,    /* the input gradient (dx, ACC's dst, MUL's y) is added to, not written */
    AM_OP_HAS_DX = 4,   /* backward ops: an input gradient is wanted (b3 / b4 exists) */
    AM_OP_BIAS = 8,     /* conv, linear: the parameters end with a bias */
    AM_OP_NESTEROV = 16,
    AM_OP_STARTED = 32, /* SGD: the momentum holds a previous step's */
    AM_OP_FLAGS = 63
};
#define AM_OP_BUFS 6
enum { AM_POOL_MAX, AM_POOL_AVG, AM_POOL_ADAPTIVE };

typedef struct am_op {
    am_op_kind kind;
    int layer;
    uint32_t step;
    unsigned flags;      /* AM_OP_* */
    am_shape x;          /* the op's main input (PUT, GET, ACC, SGD: x.n x.c x.h x.w floats) */
    am_shape y;          /* pool: its output; linear: y.c outputs */
    am_conv2d_cfg conv;  /* conv (cfg.bias as AM_OP_BIAS) */
    am_pool_cfg pool;
    int pool_kind;       /* AM_POOL_* */
    float eps, bn_momentum;                /* batchnorm */
    float lr, momentum, dampening, decay;  /* SGD */
    am_cross_kind tag;                     /* PUT: what the host is given */
    float *b[AM_OP_BUFS];                  /* backend buffers; NULL where the list has none */
} am_op;

/* Checks an op's kind, flags and shapes, and gives its buffers' sizes in
 * floats (n[i] = 0: no buffer i) and how many of them are inputs. */
am_status am_op_check(const am_op *o, size_t n[AM_OP_BUFS], int *inputs);
const char *am_op_name(am_op_kind k);

typedef struct am_backend am_backend;

typedef struct am_backend_vt {
    const char *name;
    /* A buffer of at least n floats for (layer, role), kept until destroy;
     * asking again with a larger n may move it. */
    am_status (*buffer)(am_backend *be, int layer, am_buf_role role, size_t n, float **out);
    am_status (*submit)(am_backend *be, const am_req *req);
    am_status (*wait)(am_backend *be); /* all submitted requests done */
    double (*busy_seconds)(am_backend *be); /* time spent computing, in total */
    void (*destroy)(am_backend *be);
    /* Optional (may be NULL): requests will name buffers inside
     * [mem, mem + bytes) that this backend did not hand out (the server's
     * shared arena); a GPU backend pins that memory for fast copies. */
    am_status (*adopt)(am_backend *be, void *mem, size_t bytes);
    /* Optional (NULL: no gpu-only mode): runs (or queues) one op. */
    am_status (*op)(am_backend *be, const am_op *op);
} am_backend_vt;

struct am_backend {
    const am_backend_vt *vt;
};

/* For backends' (layer, role) tables: checks a buffer request (layer,
 * role, n > 0), grows *table (zeroed, *layers rows of AM_BUF_ROLES entries
 * of elem bytes) to hold layer, and points *entry at (layer, role)'s. */
am_status am_backend_slot(int layer, am_buf_role role, size_t n, size_t elem, void **table, int *layers,
                          void **entry);
/* The shapes of a request's input 0, input 1 and output, from its kind,
 * conv settings and input shape (weights as [K, C, kh, kw]). */
am_status am_req_shapes(const am_req *r, am_shape *in0, am_shape *in1, am_shape *out);

#ifdef __cplusplus
}
#endif

#endif
