/* Fuzz target: the CIFAR binary parser. Input: one byte (bit 0 selects
 * CIFAR-100), then the file. */
#include <stdint.h>

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int c100 = data[0] & 1;
    am_dataset d = {0};
    am_status st = am_cifar_parse(data + 1, size - 1, c100, "fuzz", &d);
    fuzz_check_failure(st);
    if (st == AM_OK) {
        if (d.n < 1 || d.c != 3 || d.h != 32 || d.w != 32 || d.classes != (c100 ? 100 : 10)) abort();
        for (int i = 0; i < d.n; i++)
            if (d.labels[i] < 0 || d.labels[i] >= d.classes) abort();
    } else if (d.pixels) {
        abort(); /* a failed parse of an empty dataset leaves it empty */
    }
    am_dataset_free(&d);
    return 0;
}
