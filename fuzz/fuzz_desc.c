/* Fuzz target: the model description parser (checkpoints carry one). */
#include <stdint.h>

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 4096) return 0;
    char *s = malloc(size + 1);
    memcpy(s, data, size);
    s[size] = 0;
    am_model *m;
    am_status st = am_model_create(s, &m);
    fuzz_check_failure(st);
    if (st == AM_OK) {
        /* Built models are consistent enough to describe themselves again. */
        am_model *again;
        if (am_model_create(am_model_desc(m), &again) != AM_OK) abort();
        if (am_model_trainable_count(again) != am_model_trainable_count(m)) abort();
        am_model_free(again);
        am_model_free(m);
    }
    free(s);
    return 0;
}
