/* Differential privacy on the residuals: per-sample clipping, Gaussian noise
 * from a cryptographic generator, and the accountant (the analytic Gaussian
 * mechanism of Balle and Wang, ICML 2018, composed as ALGORITHM.md derives). */
#define _GNU_SOURCE /* sincosf */
#include "asymml/asym.h"

#include <math.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

am_status am_dp_clip_noise(float *R, int B, size_t n, float clip, float sigma, const uint8_t *key, uint64_t seed,
                           uint64_t release) {
    return am_dp_clip_noise_at(R, B, n, 0, clip, sigma, key, seed, release);
}

am_status am_asym_secret_noise_key(am_asym_cfg *a) {
    if (!a) return am_fail(AM_EINVAL, "noise key: NULL config");
    if (sodium_init() < 0) return am_fail(AM_EIO, "noise key: libsodium failed to initialize");
    do
        randombytes_buf(a->noise_key, sizeof a->noise_key);
    while (sodium_is_zero(a->noise_key, sizeof a->noise_key)); /* all zeros means "no key" */
    return AM_OK;
}

am_status am_dp_clip_noise_at(float *R, int B, size_t n, int first, float clip, float sigma, const uint8_t *secret,
                              uint64_t seed, uint64_t release) {
    if (!R || B < 1 || !n || first < 0) return am_fail(AM_EINVAL, "dp: bad argument");
    if (!(clip >= 0.f) || !(sigma >= 0.f) || !isfinite(clip) || !isfinite(sigma))
        return am_fail(AM_EINVAL, "dp: clip and sigma must be finite and >= 0");
    if (clip == 0.f) return AM_OK;
    /* Each sample's norm from fixed blocks of its elements, summed in block
     * order: in parallel, and the same whatever the thread count. */
    const size_t blk = (size_t)1 << 16, nbk = (n + blk - 1) / blk;
    double *part = malloc(sizeof(double) * nbk * (size_t)B);
    if (!part) return am_fail(AM_ENOMEM, "dp: out of memory");
#pragma omp parallel for schedule(static) if ((size_t)B * n > blk)
    for (size_t t = 0; t < nbk * (size_t)B; t++) {
        const float *r = R + (t / nbk) * n + (t % nbk) * blk;
        size_t e = n - (t % nbk) * blk < blk ? n - (t % nbk) * blk : blk;
        double acc = 0;
        for (size_t i = 0; i < e; i++) acc += (double)r[i] * r[i];
        part[t] = acc;
    }
    for (int b = 0; b < B; b++) {
        double nn = 0;
        for (size_t k = 0; k < nbk; k++) nn += part[(size_t)b * nbk + k];
        part[(size_t)b * nbk] = sqrt(nn) > clip ? clip / sqrt(nn) : 1.0;
    }
    /* Every sample is scaled, by 1 when its norm is within the bound: no
     * branch on whether it was (its time would say so). */
#pragma omp parallel for schedule(static) if ((size_t)B * n > blk)
    for (size_t t = 0; t < nbk * (size_t)B; t++) {
        const float sc = (float)part[(t / nbk) * nbk];
        float *r = R + (t / nbk) * n + (t % nbk) * blk;
        size_t e = n - (t % nbk) * blk < blk ? n - (t % nbk) * blk : blk;
        for (size_t i = 0; i < e; i++) r[i] *= sc;
    }
    free(part);
    if (sigma == 0.f) return AM_OK;
    if (sodium_init() < 0) return am_fail(AM_EIO, "dp: libsodium failed to initialize");
    /* key = BLAKE2b-256(seed || release), keyed by the secret key if there
     * is one: each release number its own stream. */
    unsigned char in[16], key[randombytes_SEEDBYTES];
    memcpy(in, &seed, 8);
    memcpy(in + 8, &release, 8);
    const int keyed = secret && !sodium_is_zero(secret, 32);
    crypto_generichash(key, sizeof key, in, sizeof in, keyed ? secret : NULL, keyed ? 32 : 0);
    /* One ChaCha20 stream for the whole batch's tensor; Box-Muller on
     * pairs of values, each pair from three 32-bit words: a 64-bit uniform
     * in (0, 1] for the radius and a 32-bit one for the angle. The radius
     * sqrt(-2 ln u) reaches 9.42 (u = 2^-64), so the noise is cut off only
     * past 9.42 sigma, where the Gaussian holds under 1e-19 of its mass
     * (32-bit radii stopped at 6.66 sigma). The stream is generated in
     * chunks, each keyed by (key || chunk index), so memory stays small, the
     * chunks run in parallel, and samples first .. first + B - 1 draw exactly
     * the values they would draw in one call over the whole batch, whatever
     * the thread count. */
    const size_t chunk = 1 << 16, lo = (size_t)first * n, hi = lo + (size_t)B * n;
    const double sd = (double)sigma * clip;
    int oom = 0;
#pragma omp parallel if (hi - lo > chunk)
    {
        const size_t words = 3 * (chunk / 2 + 1);
        uint32_t *u = malloc(sizeof(uint32_t) * words);
        if (!u) {
#pragma omp atomic write
            oom = 1;
        }
#pragma omp for schedule(static)
        for (size_t ci = lo / chunk; ci < (hi + chunk - 1) / chunk; ci++) {
            if (!u) continue;
            size_t base = ci * chunk, from = lo > base ? lo - base : 0, to = hi - base < chunk ? hi - base : chunk;
            unsigned char ck[randombytes_SEEDBYTES];
            crypto_generichash(ck, sizeof ck, (const unsigned char *)&ci, sizeof ci, key, sizeof key);
            /* A prefix of the chunk's stream, to the pair that holds `to - 1`. */
            randombytes_buf_deterministic(u, sizeof(uint32_t) * 3 * ((to + 1) / 2), ck);
            sodium_memzero(ck, sizeof ck);
            for (size_t j = from & ~(size_t)1; j < to; j += 2) {
                const uint32_t *w = u + 3 * (j / 2);
                double u1 = ((double)(((uint64_t)w[0] << 32) | w[1]) + 1.0) * 0x1p-64, u2 = (double)w[2] * 0x1p-32;
                /* The radius in double (its tail is what matters); the angle's
                 * sine and cosine in float, as precise as the float32 sums
                 * they go into, and several times cheaper. */
                double rad = sqrt(-2.0 * log(u1)) * sd;
                float sn, cs;
                sincosf((float)(6.283185307179586 * u2), &sn, &cs);
                if (j >= from) R[base + j - lo] += (float)(rad * cs);
                if (j + 1 >= from && j + 1 < to) R[base + j + 1 - lo] += (float)(rad * sn);
            }
        }
        if (u) sodium_memzero(u, sizeof(uint32_t) * words);
        free(u);
    }
    sodium_memzero(key, sizeof key);
    if (oom) return am_fail(AM_ENOMEM, "dp: out of memory");
    return AM_OK;
}

/* log Phi(x), accurate far into the lower tail (where Phi underflows). */
static double log_phi(double x) {
    if (x > -30.0) return log(0.5 * erfc(-x / M_SQRT2));
    /* Asymptotic series of Mills' ratio. */
    double z = -x, z2 = z * z;
    return -0.5 * z2 - log(z) - 0.5 * log(2 * M_PI) + log1p(-1 / z2 + 3 / (z2 * z2) - 15 / (z2 * z2 * z2));
}

double am_agm_delta(double eps, double D, double s) {
    if (!(s > 0) || !(D > 0)) return 1.0;
    double a = D / (2 * s), b = eps * s / D;
    double t1 = exp(log_phi(a - b)), t2 = exp(eps + log_phi(-a - b));
    double d = t1 - t2;
    return d < 0 ? 0 : d;
}

double am_agm_epsilon(double delta, double D, double s) {
    if (!(delta > 0 && delta < 1) || !(s > 0) || !(D > 0)) return INFINITY;
    if (am_agm_delta(0, D, s) <= delta) return 0;
    /* delta(eps) decreases in eps: bracket, then bisect. */
    double lo = 0, hi = 1;
    while (am_agm_delta(hi, D, s) > delta) {
        lo = hi;
        hi *= 2;
        if (hi > 1e8) return INFINITY;
    }
    for (int i = 0; i < 200 && hi - lo > 1e-12 * hi; i++) {
        double mid = 0.5 * (lo + hi);
        if (am_agm_delta(mid, D, s) > delta) lo = mid;
        else hi = mid;
    }
    return hi;
}

double am_dp_mu2(double sigma, long releases, long coupling) {
    if (releases < 1) return 0;
    if (!(sigma > 0) || coupling < 1) return INFINITY;
    /* Sensitivity 2c sqrt(coupling) against std sigma c: (D/s)^2 per
     * release, and Gaussian mechanisms compose by adding these. */
    return (double)releases * (double)coupling * 4.0 / (sigma * sigma);
}

double am_dp_epsilon_mu2(double mu2, double delta) {
    if (mu2 <= 0) return 0;
    if (!isfinite(mu2)) return INFINITY;
    /* The analytic Gaussian mechanism depends on D / s alone. */
    return am_agm_epsilon(delta, sqrt(mu2), 1.0);
}

double am_dp_epsilon(double sigma, long releases, long coupling, double delta) {
    return am_dp_epsilon_mu2(am_dp_mu2(sigma, releases, coupling), delta);
}
