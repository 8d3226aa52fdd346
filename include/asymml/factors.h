/* Slalom's factor store: unblinding factors made ahead of time (`asymml
 * precompute`), kept outside the trusted process in a folder of sealed
 * files, each used once. The header (sealed as the store's, written last:
 * an interrupted precompute leaves no usable store) holds the pads' key,
 * how many batches there are, the batch size, every layer's factor count
 * and the identity they are valid for (am_model_factor_identity). Each
 * batch's factors of each layer are a file sealed with its batch and
 * layer as index: one renamed, or of another store, is refused. A sealed
 * counter holds the next unused batch; it is written (synced, renamed)
 * before a batch is handed out, and the batch's files are deleted once
 * read. The store is locked while open: two processes never share it; and
 * bound to the folder it was made in (its device and inode, in the
 * header): a copy elsewhere, which would start from the same counter, is
 * refused. Rollback is not prevented: whoever can write the folder can
 * restore an older counter (and the files) in place, and the pads of those
 * batches would then be used twice (the difference of two inputs would
 * show). The pads' key stays in the header: whoever holds it and the
 * sealing key can regenerate every pad the store gave. */
#ifndef ASYMML_FACTORS_H
#define ASYMML_FACTORS_H

#include "asymml/asym.h"
#include "asymml/seal.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct am_factor_store am_factor_store;

/* A new store in dir (created, mode 0700; it must not exist) for count
 * batches of the given layers' factor counts; draws its identity and the
 * pads' key (am_factors_pad_key), with the process's sealing key set. */
am_status am_factors_create(const char *dir, uint64_t count, int batch, int layers, const size_t *lens,
                            const uint8_t ident[32], am_factor_store **out);
/* Batch t's factors of the layer of an ordinal (lens[ordinal] values). */
am_status am_factors_put(am_factor_store *s, uint64_t t, int ordinal, const int32_t *v);
/* Writes the header and the counter (0): the store is complete. */
am_status am_factors_finish(am_factor_store *s);
/* Opens a complete store and locks it. */
am_status am_factors_open(const char *dir, am_factor_store **out);
/* Whether the store was made for this batch size, these layers and this
 * identity: an error that says which differs, if not. */
am_status am_factors_match(const am_factor_store *s, int batch, int layers, const size_t *lens, const uint8_t ident[32]);
const uint8_t *am_factors_pad_key(const am_factor_store *s);
uint64_t am_factors_count(const am_factor_store *s);
uint64_t am_factors_left(const am_factor_store *s);
/* The store's folder, open: a locked-down process reads it through this. */
int am_factors_dir_fd(const am_factor_store *s);
/* The store as a factor source for am_model_use_factors. */
const am_factor_src *am_factors_source(am_factor_store *s);
void am_factors_close(am_factor_store *s);

/* One set (a batch's factors of one layer, n values) sealed as set says
 * (role, store identity, index below 2^53) under key (NULL: the process's
 * sealing key), in pieces sealed and unsealed in parallel; its size. */
size_t am_factor_set_size(size_t n);
am_status am_factor_set_seal(const uint8_t *key, const am_seal_id *set, const int32_t *v, size_t n, uint8_t **out,
                             size_t *out_n);
/* Unseals a set into out (n values), refusing one that is not set's whole
 * and unaltered. */
am_status am_factor_set_unseal(const uint8_t *key, const am_seal_id *set, const uint8_t *in, size_t in_n,
                               const char *what, int32_t *out, size_t n);

#ifdef __cplusplus
}
#endif
#endif
