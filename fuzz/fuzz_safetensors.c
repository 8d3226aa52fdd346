/* Fuzz target: the safetensors reader, each float tensor's conversion, and
 * the importer on what parses (LeNet at 1x4x4, whose whole state dict is a
 * seed: a file that parses must not crash the code that maps it). */
#include <stdint.h>

#include "fuzz.h"
#include "train/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void convert(const am_safetensors *st) {
    for (int i = 0; i < st->n; i++) {
        const am_st_tensor *t = &st->t[i];
        if (am_st_find(st, t->name) != t) abort();
        if (t->bytes != t->numel * am_st_dtype_size(t->dtype)) abort();
        if (!am_st_is_float(t->dtype)) continue;
        float *f = malloc(t->numel ? t->numel * sizeof(float) : 1);
        if (!f) return;
        fuzz_check_failure(am_st_to_float(t, f));
        free(f);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    am_safetensors st;
    am_status s = am_st_parse(data, size, &st);
    fuzz_check_failure(s);
    if (s != AM_OK) {
        if (st.t || st.n || st.names) abort();
        return 0;
    }
    for (int i = 0; i < st.n; i++)
        if (st.t[i].data < data || st.t[i].data + st.t[i].bytes > data + size) abort();
    convert(&st);
    am_st_free(&st);
    am_model *m;
    s = am_import_safetensors("lenet", am_shape4(1, 1, 4, 4), 10, data, size, &m, NULL);
    fuzz_check_failure(s);
    if (s == AM_OK) am_model_free(m);
    return 0;
}
