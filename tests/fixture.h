/* Reader for the .amfx reference files that tests/gen_fixtures.py writes
 * with PyTorch. Test support code: failures abort the test via cmocka. */
#ifndef ASYMML_TEST_FIXTURE_H
#define ASYMML_TEST_FIXTURE_H

#include <stddef.h>
#include <stdint.h>

#include "asymml/asymml.h"

typedef struct fx_tensor {
    char name[64];
    int dtype; /* 0 float32, 1 int32, 2 bytes */
    int ndim;
    int dims[8];
    size_t numel;
    void *data;
} fx_tensor;

typedef struct fx_file {
    int n;
    fx_tensor *t;
} fx_file;

/* A model from its description, initialized from seed, at batch B; a test
 * failure (naming the library's error) if any of it fails. */
am_model *fx_model(const char *desc, uint64_t seed, int B);
/* The fixture's model ("desc") with its parameters p0, p1, ... at batch B. */
am_model *fx_params_model(const fx_file *F, int B);
/* That model folded (am_model_fold_bn) at batch 4 in fixed-point mode md
 * (be: slalom's accelerator), calibrated on the first 4 images of "calib". */
am_model *fx_fixed_model(const fx_file *F, am_mode md, am_backend *be);

/* Loads ASYMML_FIXTURES/name; fails the test if missing or malformed. */
void fx_load(fx_file *f, const char *name);
void fx_free(fx_file *f);
/* The named tensor, or a test failure naming it. */
const fx_tensor *fx_get(const fx_file *f, const char *name);
const float *fx_f32(const fx_file *f, const char *name, size_t expect_numel);
const int32_t *fx_i32(const fx_file *f, const char *name, size_t expect_numel);
/* A bytes tensor as a NUL-terminated string (owned by the file). */
const char *fx_text(const fx_file *f, const char *name);
int fx_has(const fx_file *f, const char *name);

/* Max over i of |a-b| / (atol + rtol*|b|); <= 1 passes. Prints the worst
 * element when it fails. */
double fx_err(const char *what, const float *a, const float *b, size_t n, double atol, double rtol);
void fx_close(const char *what, const float *a, const float *b, size_t n, double atol, double rtol);

/* max |a - b| over max |b|: how far a is from b relative to b's scale, not
 * to each (possibly tiny) element. */
double fx_scaled_err(const float *a, const float *b, size_t n);

#endif
