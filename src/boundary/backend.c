/* Helpers every backend shares: its (layer, role) table, a request's
 * shapes. See backend.h. */
#include "boundary/backend.h"

#include <stdlib.h>
#include <string.h>

am_status am_backend_slot(int layer, am_buf_role role, size_t n, size_t elem, void **table, int *layers,
                          void **entry) {
    if (layer < 0 || layer > 65535 || role < 0 || role >= AM_BUF_ROLES || !n)
        return am_fail(AM_EINVAL, "backend: bad buffer request (layer %d, role %d)", layer, (int)role);
    *entry = NULL;
    if (layer >= *layers) {
        int nl = layer + 16;
        char *t = realloc(*table, elem * (size_t)nl * AM_BUF_ROLES);
        if (!t) return am_fail(AM_ENOMEM, "backend: out of memory");
        memset(t + elem * (size_t)*layers * AM_BUF_ROLES, 0, elem * (size_t)(nl - *layers) * AM_BUF_ROLES);
        *table = t;
        *layers = nl;
    }
    *entry = (char *)*table + elem * ((size_t)layer * AM_BUF_ROLES + role);
    return AM_OK;
}

am_status am_req_shapes(const am_req *r, am_shape *in0, am_shape *in1, am_shape *out) {
    am_shape y, w = am_shape4(r->cfg.out_c, r->x.c, r->cfg.kh, r->cfg.kw);
    AM_TRY(am_conv2d_out_shape(&r->cfg, r->x, &y));
    switch (r->kind) {
    case AM_REQ_CONV_FWD: *in0 = r->x, *in1 = w, *out = y; return AM_OK;
    case AM_REQ_CONV_BWD_DATA: *in0 = y, *in1 = w, *out = r->x; return AM_OK;
    case AM_REQ_CONV_BWD_FILTER: *in0 = r->x, *in1 = y, *out = w; return AM_OK;
    }
    return am_fail(AM_EINVAL, "backend: unknown request kind %d", (int)r->kind);
}
