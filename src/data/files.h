/* Reading a dataset's files: plain, gzip-compressed, or sealed (opened
 * with the process-wide key and checked to be what the reader expects).
 * Internal to src/data. */
#ifndef ASYMML_DATA_FILES_H
#define ASYMML_DATA_FILES_H

#include "asymml/data.h"
#include "asymml/seal.h"

#define AM_MAX_DATA_FILE ((size_t)2 << 30)

/* The files of one split read so far: a split is all sealed or all plain,
 * and its sealed files come from one sealing (the same dataset identity). */
typedef struct am_data_check {
    int files, sealed;
    uint8_t id[AM_SEAL_ID_BYTES];
} am_data_check;

/* Reads one file of a split. A sealed file must have the role and index
 * given (a test file given as training data is refused) and the identity
 * of the split's other sealed files. At most AM_MAX_DATA_FILE bytes after
 * decompression. */
am_status am_read_data_file(const char *path, am_seal_role role, uint64_t index, am_data_check *chk, uint8_t **buf,
                            size_t *n);

#endif
