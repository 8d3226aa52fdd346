/* The CPU implementation of the accelerator interface: the reference every
 * other backend is tested against. Untrusted side: includes only the
 * boundary and the generic CPU kernels. */
#ifndef ASYMML_UNTRUSTED_CPU_BACKEND_H
#define ASYMML_UNTRUSTED_CPU_BACKEND_H

#include "boundary/backend.h"

am_status am_cpu_backend_create(am_backend **out);

#endif
