/* Shared by the fuzz targets: what every failure must look like. */
#ifndef ASYMML_FUZZ_H
#define ASYMML_FUZZ_H

#include <stdlib.h>
#include <string.h>

#include "asymml/asymml.h"

/* A failure is a status with a one-line, non-empty message; anything else
 * (a crash, an empty or multi-line message) is a bug the fuzzer reports. */
static inline void fuzz_check_failure(am_status st) {
    const char *e = am_last_error();
    if (st == AM_OK) return;
    if (!e[0] || strchr(e, '\n')) abort();
}
#endif
