/* Sealed files: datasets, checkpoints and logs encrypted and authenticated
 * with libsodium's secretstream (XChaCha20-Poly1305) under subkeys of a
 * 32-byte key file. The trusted side opens them itself; a wrong key, any
 * change to the file, or a file in another role or of another dataset or
 * run is a clear error.
 *
 * Keys. The key file holds a master key (mode 0600: a key file readable by
 * group or others is refused). Files are sealed under subkeys derived from
 * it with libsodium's KDF, one for data, one for checkpoints, one for logs,
 * one for slalom's factors: a sealed file of one kind never opens as
 * another.
 *
 * Identity. Each sealed file says what it is: a role (training images,
 * test labels, a checkpoint...), a 16-byte identity (the dataset's, drawn
 * when its files are sealed together; the run's, for checkpoints) and an
 * index (a CIFAR batch's number; a checkpoint's step). They sit in the
 * file's header in the clear and are authenticated (the first chunk's
 * associated data): a test set given as training data, labels of another
 * dataset, or a checkpoint renamed to another step is refused.
 *
 * Format, version 2: "AMSEAL" 0x02 0x00, role u32, identity (16 bytes),
 * index u64, the 24-byte stream header, then chunks of up to 1 MiB of
 * plaintext, each with its 17-byte tag; the last chunk carries the FINAL
 * tag, so a truncated file does not open. Version 1 files (no identity)
 * are refused: seal them again. */
#ifndef ASYMML_SEAL_H
#define ASYMML_SEAL_H

#include <stddef.h>
#include <stdint.h>

#include "asymml/core.h"

#ifdef __cplusplus
extern "C" {
#endif

#define AM_SEAL_KEY_BYTES 32
#define AM_SEAL_ID_BYTES 16

typedef enum am_seal_role {
    AM_SEAL_TRAIN_IMAGES = 1, /* IDX training images */
    AM_SEAL_TRAIN_LABELS,     /* IDX training labels */
    AM_SEAL_TEST_IMAGES,
    AM_SEAL_TEST_LABELS,
    AM_SEAL_TRAIN_RECORDS,    /* CIFAR training batches (labels and images); index: the batch's number */
    AM_SEAL_TEST_RECORDS,
    AM_SEAL_CHECKPOINT,       /* identity: the run; index: the global step */
    AM_SEAL_LOG,              /* identity: the run */
    AM_SEAL_FACTOR_STORE,     /* slalom's factor store's header; identity: the store */
    AM_SEAL_FACTORS,          /* one layer's factors of one batch; index: batch x 4096 + the layer's ordinal */
    AM_SEAL_FACTOR_NEXT,      /* the store's next unused batch; index: that batch */
    AM_SEAL_ROLES
} am_seal_role;

typedef struct am_seal_id {
    am_seal_role role;
    uint8_t id[AM_SEAL_ID_BYTES];
    uint64_t index;
} am_seal_id;

/* "train-images", "train-labels", "test-images", "test-labels",
 * "train-records", "test-records", "checkpoint", "log", "factor-store",
 * "factors", "factor-counter". */
const char *am_seal_role_name(am_seal_role r);
am_status am_seal_role_parse(const char *s, am_seal_role *out);
/* A dataset file's role and index from its name as the datasets ship it
 * ({train,t10k}-{images,labels}-*, data_batch_N.bin, test_batch.bin,
 * train.bin, test.bin); AM_EINVAL if the name does not say. */
am_status am_seal_role_of_name(const char *path, am_seal_role *role, uint64_t *index);

/* A new random key, written to path (created, mode 0600; an existing file
 * is never overwritten). */
am_status am_seal_keygen(const char *path);
/* Reads a key file: exactly AM_SEAL_KEY_BYTES bytes, not readable by group
 * or others. */
am_status am_seal_key_read(const char *path, uint8_t key[AM_SEAL_KEY_BYTES]);
/* The process-wide key (NULL clears it), held in locked memory. */
am_status am_seal_set_key(const uint8_t *key);
int am_seal_have_key(void);

int am_is_sealed(const uint8_t *buf, size_t n);
/* The header's role, identity and index as they stand, unauthenticated
 * (am_unseal checks them): to sort files, never to trust them. */
am_status am_seal_peek(const uint8_t *buf, size_t n, am_seal_id *id);
/* Encrypts n bytes as the file `id` says it is, under key's subkey for
 * that role; *out (malloc'd) receives the sealed file's bytes. */
am_status am_seal(const uint8_t key[AM_SEAL_KEY_BYTES], const am_seal_id *id, const uint8_t *in, size_t n,
                  uint8_t **out, size_t *out_n);
/* Decrypts and authenticates a sealed buffer; *id receives what it is (the
 * caller checks that it is what it expected). what names it in errors. */
am_status am_unseal(const uint8_t key[AM_SEAL_KEY_BYTES], const uint8_t *in, size_t n, const char *what,
                    am_seal_id *id, uint8_t **out, size_t *out_n);
/* The size of n bytes sealed. */
size_t am_sealed_size(size_t n);
/* The same with the process-wide key (an error names the need for --key
 * when none is set). */
am_status am_seal_current(const am_seal_id *id, const uint8_t *in, size_t n, uint8_t **out, size_t *out_n);
am_status am_unseal_current(const uint8_t *in, size_t n, const char *what, am_seal_id *id, uint8_t **out,
                            size_t *out_n);
/* Seals the file in into out as id says (written to a new temporary file,
 * synced, then renamed; an existing out is refused, and no symbolic link
 * is followed). */
am_status am_seal_file(const uint8_t key[AM_SEAL_KEY_BYTES], const am_seal_id *id, const char *in, const char *out);

#ifdef __cplusplus
}
#endif
#endif
