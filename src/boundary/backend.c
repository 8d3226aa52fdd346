/* The backend factory: see backend.h. */
#include "boundary/backend.h"

#include <stdlib.h>
#include <string.h>

#include "untrusted/cpu_backend.h"

static am_accelerator_fn g_make;

void am_backend_set_factory(am_accelerator_fn make) { g_make = make; }

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

am_status am_backend_make(am_backend **out) {
    *out = NULL;
    return g_make ? g_make(out) : am_cpu_backend_create(out);
}
