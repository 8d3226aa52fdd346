/* The narrow interface between the trusted side and the untrusted
 * accelerator. Both sides include this header and nothing of each other's.
 *
 * The accelerator owns its buffers: the trusted side asks for a buffer by
 * (layer, role), copies into it what it releases (that copy is the crossing
 * the ledger records), submits a request and waits for it. A request names
 * buffers only, never trusted memory. Requests are asynchronous in the
 * interface; a backend may run them at submit time. */
#ifndef ASYMML_BOUNDARY_BACKEND_H
#define ASYMML_BOUNDARY_BACKEND_H

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

typedef struct am_req {
    am_req_kind kind;
    int layer;
    am_conv2d_cfg cfg;
    am_shape x;              /* the conv's input shape */
    const float *in0, *in1;  /* backend buffers */
    float *out;              /* backend buffer */
    unsigned keep;           /* AM_KEEP_* hints; 0: copy everything */
} am_req;

typedef struct am_backend am_backend;
typedef am_status (*am_accelerator_fn)(am_backend **out); /* as in asymml/asym.h */

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
     * [mem, mem + bytes) that this backend did not hand out (the host's
     * shared arena); a GPU backend pins that memory for fast copies. */
    am_status (*adopt)(am_backend *be, void *mem, size_t bytes);
} am_backend_vt;

struct am_backend {
    const am_backend_vt *vt;
};

/* Which backend split layers get: the front end installs a factory (the
 * enclave: its channel to the host); without one, the in-process CPU
 * backend (simulation: no isolation). */
void am_backend_set_factory(am_accelerator_fn make);
am_status am_backend_make(am_backend **out);
/* For backends' (layer, role) tables: checks a buffer request (layer,
 * role, n > 0), grows *table (zeroed, *layers rows of AM_BUF_ROLES entries
 * of elem bytes) to hold layer, and points *entry at (layer, role)'s. */
am_status am_backend_slot(int layer, am_buf_role role, size_t n, size_t elem, void **table, int *layers,
                          void **entry);

#ifdef __cplusplus
}
#endif

#endif
