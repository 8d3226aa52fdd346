/* gpu-only mode's ops on the CPU (the CPU backend's; see am_op in
 * boundary/backend.h), with the trusted side's own kernels; and blinded
 * inference's conv mod p. */
#ifndef ASYMML_UNTRUSTED_CPU_OPS_H
#define ASYMML_UNTRUSTED_CPU_OPS_H

#include "boundary/backend.h"

/* Grows the backend's scratch *work (*work_n floats) to at least need. */
am_status am_cpu_grow(float **work, size_t *work_n, size_t need);
/* Runs o (checked here) on its buffers; *work / *work_n: the backend's
 * scratch, grown as needed. */
am_status am_cpu_op(const am_op *o, float **work, size_t *work_n);
/* AM_REQ_CONV_MODP (cpu_modp.c); *work / *work_n: double scratch. */
am_status am_cpu_conv_modp(const am_req *r, double **work, size_t *work_n);

#endif
