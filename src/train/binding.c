/* A run's binding (binding.h): the digests of its data, so that a resumed
 * run is the run its checkpoint says, and its accountant counts releases
 * of the same samples. (Its noise never repeats whatever the data: each
 * session draws its own, src/nn/modes.c.) */
#include "train/binding.h"

#include <sodium.h>
#include <string.h>

#include "asymml/asymml.h"

void am_dataset_digest(const am_dataset *d, uint8_t out[AM_DIGEST_BYTES]) {
    memset(out, 0, AM_DIGEST_BYTES);
    if (!d || !d->pixels || sodium_init() < 0) return;
    crypto_generichash_state h;
    crypto_generichash_init(&h, (const uint8_t *)"asymml-dataset", 14, AM_DIGEST_BYTES);
    const int32_t shape[5] = {d->n, d->c, d->h, d->w, d->classes};
    crypto_generichash_update(&h, (const uint8_t *)shape, sizeof shape);
    crypto_generichash_update(&h, d->pixels, (size_t)d->n * d->c * d->h * d->w);
    crypto_generichash_update(&h, (const uint8_t *)d->labels, sizeof(int32_t) * (size_t)d->n);
    crypto_generichash_final(&h, out, AM_DIGEST_BYTES);
}

/* A test set sealed apart from the training set, or not sealed where the
 * training set is (or the reverse), is not the run's. */
static am_status same_sealing(const am_trainer_io *io) {
    if (io->test && io->train->sealed != io->test->sealed)
        return am_fail(AM_EINVAL, "the %s data are sealed and the %s data are not (seal a dataset's files together)",
                       io->train->sealed ? "training" : "test", io->train->sealed ? "test" : "training");
    if (io->test && io->train->sealed && io->test->sealed && memcmp(io->train->seal_id, io->test->seal_id, 16))
        return am_fail(AM_EINVAL, "the test data were sealed with another dataset than the training data (seal a "
                                  "dataset's files together)");
    return AM_OK;
}

am_status am_binding_new(const am_trainer_io *io, am_run_binding *b) {
    memset(b, 0, sizeof *b);
    AM_TRY(same_sealing(io));
    if (sodium_init() < 0) return am_fail(AM_EIO, "trainer: libsodium failed to initialize");
    randombytes_buf(b->run_id, sizeof b->run_id);
    am_dataset_digest(io->train, b->train_digest);
    b->n_train = io->train->n;
    if (io->test) am_dataset_digest(io->test, b->test_digest), b->n_test = io->test->n;
    b->threads = am_get_threads();
    return AM_OK;
}

am_status am_binding_check(const am_checkpoint *ck, const am_trainer_io *io) {
    const am_run_binding *b = &ck->bind;
    static const uint8_t zero[AM_DIGEST_BYTES];
    if (ck->version < 6)
        return am_fail(AM_EINVAL, "a checkpoint of version %d does not record %s: it can be evaluated, not resumed",
                       ck->version, ck->version < 5 ? "the data it was bound to" : "how its run was started");
    AM_TRY(same_sealing(io));
    uint8_t d[AM_DIGEST_BYTES];
    am_dataset_digest(io->train, d);
    if (sodium_memcmp(d, b->train_digest, sizeof d))
        return am_fail(AM_EINVAL, "the training data differ from the run's (%d images; another --data or --limit-train?)",
                       b->n_train);
    if (io->test && memcmp(b->test_digest, zero, sizeof zero)) {
        am_dataset_digest(io->test, d);
        if (sodium_memcmp(d, b->test_digest, sizeof d))
            return am_fail(AM_EINVAL, "the test data differ from the run's (%d images; another --data or --limit-test?)",
                           b->n_test);
    }
    return AM_OK;
}
