/* Fuzz target: the checkpoint reader, then the model its description builds
 * (a checkpoint that parses must not crash the code that uses it). */
#include <sodium.h>
#include <stdint.h>

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void one(const uint8_t *data, size_t size);

/* Each input is tried as it is and with its checksum made right, so that
 * mutations reach the payload checks behind the checksum. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    one(data, size);
    if (size >= 48 && sodium_init() >= 0) {
        uint8_t *c = malloc(size);
        memcpy(c, data, size);
        crypto_generichash(c + size - 32, 32, c, size - 32, NULL, 0);
        one(c, size);
        free(c);
    }
    return 0;
}

static void one(const uint8_t *data, size_t size) {
    am_checkpoint ck;
    am_status st = am_checkpoint_parse(data, size, &ck);
    fuzz_check_failure(st);
    if (st != AM_OK) {
        if (ck.desc || ck.weights) abort();
        return;
    }
    am_model *m;
    st = am_model_create(ck.desc, &m);
    fuzz_check_failure(st);
    if (st == AM_OK) am_model_free(m);
    am_checkpoint_free(&ck);
}
