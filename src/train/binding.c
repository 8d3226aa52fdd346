/* A run's binding (binding.h). Why each part: resuming continues the
 * release counter from the checkpoint, so the steps after it are released
 * again with the same noise. That is harmless only if those releases
 * repeat bitwise: then the host learns nothing it had not seen. The same
 * noise on other samples (other data, another --limit-train), or on the
 * same samples computed with other rounding (another thread count, build or
 * BLAS), would cancel when the host subtracts the two releases. */
#include "train/binding.h"

#include <sodium.h>
#include <stdio.h>
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

void am_platform_digest(uint8_t out[AM_DIGEST_BYTES]) {
    char s[512];
    int n = snprintf(s, sizeof s, "asymml %s | %s | %s", ASYMML_VERSION, __VERSION__, am_blas_describe());
    memset(out, 0, AM_DIGEST_BYTES);
    if (sodium_init() < 0) return;
    crypto_generichash(out, AM_DIGEST_BYTES, (const uint8_t *)s, (size_t)n, NULL, 0);
}

am_status am_binding_new(const am_trainer_io *io, am_run_binding *b) {
    memset(b, 0, sizeof *b);
    if (sodium_init() < 0) return am_fail(AM_EIO, "trainer: libsodium failed to initialize");
    randombytes_buf(b->run_id, sizeof b->run_id);
    am_dataset_digest(io->train, b->train_digest);
    if (io->test) am_dataset_digest(io->test, b->test_digest);
    am_platform_digest(b->platform);
    b->threads = am_get_threads();
    return AM_OK;
}

am_status am_binding_check(const am_checkpoint *ck, const am_trainer_io *io) {
    const am_run_binding *b = &ck->bind;
    static const uint8_t zero[AM_DIGEST_BYTES];
    if (ck->version < 5)
        return am_fail(AM_EINVAL, "a checkpoint of version %d does not record the data it was bound to: it can be "
                                  "evaluated, not resumed", ck->version);
    uint8_t d[AM_DIGEST_BYTES];
    am_dataset_digest(io->train, d);
    if (sodium_memcmp(d, b->train_digest, sizeof d))
        return am_fail(AM_EINVAL, "the training data differ from the run's (another --data or --limit-train): resuming "
                                  "would repeat its noise on other samples");
    if (io->test && memcmp(b->test_digest, zero, sizeof zero)) {
        am_dataset_digest(io->test, d);
        if (sodium_memcmp(d, b->test_digest, sizeof d))
            return am_fail(AM_EINVAL, "the test data differ from the run's (another --data or --limit-test): resuming "
                                      "would repeat its noise on other samples");
    }
    const am_asym_cfg *a = &ck->cfg.asym;
    if (a->mode != AM_MODE_ASYMML || !(a->sigma > 0.f)) return AM_OK;
    if (am_get_threads() != b->threads)
        return am_fail(AM_EINVAL, "the run used %d threads; resume it with --threads %d, so that the releases after "
                                  "the checkpoint repeat bitwise (other rounding under the same noise would leak)",
                       b->threads, b->threads);
    am_platform_digest(d);
    if (sodium_memcmp(d, b->platform, sizeof d))
        return am_fail(AM_EINVAL, "the run ran on another build or BLAS (kernels %s here): its releases after the "
                                  "checkpoint would not repeat bitwise, and their noise would leak",
                       am_blas_describe());
    return AM_OK;
}
