/* Fuzz target: the IDX parser. Input: u16 length L of the image file, then
 * L bytes of image file, then the label file. */
#include <stdint.h>

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    size_t l = (size_t)data[0] | (size_t)data[1] << 8;
    data += 2, size -= 2;
    if (l > size) l = size;
    am_dataset d;
    am_status st = am_idx_parse(data, l, data + l, size - l, 10, "fuzz", &d);
    fuzz_check_failure(st);
    if (st == AM_OK) {
        /* Everything the parser promises about a dataset it returns. */
        if (d.n < 1 || d.c != 1 || (size_t)d.n * d.h * d.w + 16 != l) abort();
        for (int i = 0; i < d.n; i++)
            if (d.labels[i] < 0 || d.labels[i] >= 10) abort();
    }
    am_dataset_free(&d);
    return 0;
}
