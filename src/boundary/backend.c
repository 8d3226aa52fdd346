/* The backend factory: see backend.h. */
#include "boundary/backend.h"

#include "untrusted/cpu_backend.h"

static am_accelerator_fn g_make;

void am_backend_set_factory(am_accelerator_fn make) { g_make = make; }

am_status am_backend_make(am_backend **out) {
    *out = NULL;
    return g_make ? g_make(out) : am_cpu_backend_create(out);
}
