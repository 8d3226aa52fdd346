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
} am_req_kind;

/* Buffer roles, per layer. */
typedef enum am_buf_role {
    AM_BUF_INPUT,   /* what the layer's forward reads: residual (+ noise), or X in open mode */
    AM_BUF_WEIGHT,
    AM_BUF_OUTPUT,  /* forward result */
    AM_BUF_GRAD,    /* output gradient */
    AM_BUF_DX,      /* input gradient result */
    AM_BUF_DW,      /* weight gradient result */
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
