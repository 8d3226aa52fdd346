#include "fixture.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint32_t rd32(FILE *fp) {
    unsigned char b[4];
    if (fread(b, 1, 4, fp) != 4) fail_msg("fixture truncated");
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

void fx_load(fx_file *f, const char *name) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", ASYMML_FIXTURES, name);
    FILE *fp = fopen(path, "rb");
    if (!fp) fail_msg("cannot open fixture %s", path);
    char magic[4];
    if (fread(magic, 1, 4, fp) != 4 || memcmp(magic, "AMFX", 4)) fail_msg("%s: bad magic", path);
    if (rd32(fp) != 1) fail_msg("%s: unknown version", path);
    f->n = (int)rd32(fp);
    if (f->n < 0 || f->n > 100000) fail_msg("%s: bad count", path);
    f->t = calloc((size_t)f->n, sizeof(fx_tensor));
    for (int i = 0; i < f->n; i++) {
        fx_tensor *t = &f->t[i];
        uint32_t nl = rd32(fp);
        if (nl >= sizeof t->name || fread(t->name, 1, nl, fp) != nl) fail_msg("%s: bad name", path);
        t->dtype = (int)rd32(fp);
        t->ndim = (int)rd32(fp);
        if (t->ndim > 8 || t->dtype > 2) fail_msg("%s: bad tensor header", path);
        t->numel = 1;
        for (int d = 0; d < t->ndim; d++) {
            t->dims[d] = (int)rd32(fp);
            t->numel *= (size_t)t->dims[d];
        }
        size_t esz = t->dtype == 2 ? 1 : 4;
        t->data = calloc(t->numel * esz + 1, 1);
        if (fread(t->data, esz, t->numel, fp) != t->numel) fail_msg("%s: %s truncated", path, t->name);
    }
    fclose(fp);
}

void fx_free(fx_file *f) {
    for (int i = 0; i < f->n; i++) free(f->t[i].data);
    free(f->t);
    f->t = NULL;
    f->n = 0;
}

int fx_has(const fx_file *f, const char *name) {
    for (int i = 0; i < f->n; i++)
        if (!strcmp(f->t[i].name, name)) return 1;
    return 0;
}

const fx_tensor *fx_get(const fx_file *f, const char *name) {
    for (int i = 0; i < f->n; i++)
        if (!strcmp(f->t[i].name, name)) return &f->t[i];
    fail_msg("fixture has no tensor '%s'", name);
    return NULL;
}

const float *fx_f32(const fx_file *f, const char *name, size_t expect) {
    const fx_tensor *t = fx_get(f, name);
    if (t->dtype != 0) fail_msg("fixture %s is not float32", name);
    if (expect && t->numel != expect) fail_msg("fixture %s has %zu elements, expected %zu", name, t->numel, expect);
    return t->data;
}

const int32_t *fx_i32(const fx_file *f, const char *name, size_t expect) {
    const fx_tensor *t = fx_get(f, name);
    if (t->dtype != 1) fail_msg("fixture %s is not int32", name);
    if (expect && t->numel != expect) fail_msg("fixture %s has %zu elements, expected %zu", name, t->numel, expect);
    return t->data;
}

const char *fx_text(const fx_file *f, const char *name) {
    const fx_tensor *t = fx_get(f, name);
    if (t->dtype != 2) fail_msg("fixture %s is not text", name);
    return t->data;
}

double fx_err(const char *what, const float *a, const float *b, size_t n, double atol, double rtol) {
    double worst = 0;
    size_t wi = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - b[i]) / (atol + rtol * fabs((double)b[i]));
        if (!(e <= worst)) {
            worst = e;
            wi = i;
            if (isnan(e)) break;
        }
    }
    if (!(worst <= 1.0))
        print_error("%s: element %zu is %.8g, reference %.8g (error %.3g of tolerance)\n", what, wi,
                    (double)a[wi], (double)b[wi], worst);
    return worst;
}

void fx_close(const char *what, const float *a, const float *b, size_t n, double atol, double rtol) {
    if (!(fx_err(what, a, b, n, atol, rtol) <= 1.0)) fail_msg("%s differs from PyTorch", what);
}

double fx_scaled_err(const float *a, const float *b, size_t n) {
    double mx = 1e-30, e = 0;
    for (size_t i = 0; i < n; i++) {
        mx = fmax(mx, fabs(b[i]));
        e = fmax(e, fabs((double)a[i] - b[i]));
    }
    return e / mx;
}

am_model *fx_params_model(const fx_file *F, int B) {
    am_model *m;
    if (am_model_create(fx_text(F, "desc"), &m)) fail_msg("%s", am_last_error());
    char nm[32];
    for (int i = 0; i < am_model_num_params(m); i++) {
        am_param *p = am_model_param(m, i);
        snprintf(nm, sizeof nm, "p%d", i);
        memcpy(p->data, fx_f32(F, nm, p->numel), p->numel * sizeof(float));
    }
    if (am_model_set_batch(m, B)) fail_msg("%s", am_last_error());
    return m;
}

am_model *fx_fixed_model(const fx_file *F, am_mode md, am_backend *be) {
    am_model *m = fx_params_model(F, 4), *f;
    if (am_model_fold_bn(m, &f, NULL) || am_model_set_batch(f, 4)) fail_msg("%s", am_last_error());
    am_model_free(m);
    am_asym_cfg c = am_asym_defaults();
    c.mode = md;
    if (am_model_set_asym(f, &c, be)) fail_msg("%s", am_last_error());
    am_shape in = am_model_input_shape(f);
    in.n = 4;
    am_tensor t = {in, (float *)fx_f32(F, "calib", 2 * am_shape_numel(in))};
    if (am_model_calibrate(f, &t)) fail_msg("%s", am_last_error());
    return f;
}

am_model *fx_model(const char *desc, uint64_t seed, int B) {
    am_model *m = NULL;
    if (am_model_create(desc, &m) || am_model_init(m, seed) || am_model_set_batch(m, B))
        fail_msg("model: %s", am_last_error());
    return m;
}
