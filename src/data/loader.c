/* The training loader: per-epoch shuffling, random crop with zero padding,
 * horizontal flip, normalization, batching. Randomness is derived from
 * (seed, epoch) for the order and (seed, epoch, position) for augmentation,
 * never from a running generator, so (epoch, position) is the whole state:
 * resuming from a checkpoint gives the same batches as never stopping. */
#include "asymml/data.h"

#include <stdlib.h>
#include <string.h>

static void order(am_loader *l) {
    am_rng r;
    am_rng_seed(&r, l->cfg.seed ^ (0x9E3779B97F4A7C15ULL * (uint64_t)(l->epoch + 1)));
    int n = l->d->n;
    for (int i = 0; i < n; i++) l->perm[i] = (uint32_t)i;
    for (int i = n - 1; i > 0; i--) { /* Fisher-Yates */
        uint32_t j = am_rng_below(&r, (uint32_t)i + 1), t = l->perm[i];
        l->perm[i] = l->perm[j];
        l->perm[j] = t;
    }
}

am_status am_loader_init(am_loader *l, const am_dataset *d, const am_loader_cfg *cfg,
                         const float *mean, const float *std) {
    memset(l, 0, sizeof *l);
    if (!d || !d->pixels || !cfg || !mean || !std) return am_fail(AM_EINVAL, "loader: NULL argument");
    if (cfg->batch < 1 || cfg->batch > d->n)
        return am_fail(AM_EINVAL, "loader: batch %d must be in [1, %d] (the number of images)", cfg->batch, d->n);
    if (cfg->crop_pad < 0 || cfg->crop_pad > d->h || cfg->crop_pad > d->w || cfg->crop_pad > 64)
        return am_fail(AM_EINVAL, "loader: crop padding %d out of range", cfg->crop_pad);
    if (d->c > 4) return am_fail(AM_EINVAL, "loader: at most 4 channels");
    for (int c = 0; c < d->c; c++)
        if (!(std[c] > 0.f) || mean[c] != mean[c])
            return am_fail(AM_EINVAL, "loader: bad normalization of channel %d", c);
    l->d = d;
    l->cfg = *cfg;
    memcpy(l->mean, mean, sizeof(float) * (size_t)d->c);
    memcpy(l->std, std, sizeof(float) * (size_t)d->c);
    l->perm = malloc(sizeof(uint32_t) * (size_t)d->n);
    l->scratch = malloc((size_t)d->c * d->h * d->w);
    if (!l->perm || !l->scratch) {
        am_loader_free(l);
        return am_fail(AM_ENOMEM, "loader: out of memory");
    }
    order(l);
    return AM_OK;
}

void am_loader_free(am_loader *l) {
    free(l->perm);
    free(l->scratch);
    memset(l, 0, sizeof *l);
}

int am_loader_steps_per_epoch(const am_loader *l) { return l->d->n / l->cfg.batch; }

am_status am_loader_seek(am_loader *l, int epoch, int step) {
    if (epoch < 0 || step < 0 || step > am_loader_steps_per_epoch(l))
        return am_fail(AM_EINVAL, "loader: position epoch %d step %d out of range", epoch, step);
    if (epoch != l->epoch) {
        l->epoch = epoch;
        order(l);
    }
    l->pos = step * l->cfg.batch;
    return AM_OK;
}

am_status am_loader_next(am_loader *l, float *x, int32_t *labels) {
    if (!l->perm || !x || !labels) return am_fail(AM_EINVAL, "loader: not initialized");
    const am_dataset *d = l->d;
    const int B = l->cfg.batch, C = d->c, H = d->h, W = d->w, P = l->cfg.crop_pad;
    if (l->pos + B > d->n) {
        l->epoch++;
        l->pos = 0;
        order(l);
    }
    const size_t plane = (size_t)H * W;
    for (int b = 0; b < B; b++, l->pos++) {
        uint32_t idx = l->perm[l->pos];
        const uint8_t *src = d->pixels + (size_t)idx * C * plane;
        int oy = 0, ox = 0, flip = 0;
        if (P || l->cfg.flip) {
            am_rng r;
            am_rng_seed(&r, l->cfg.seed ^ (0xD1B54A32D192ED03ULL * (uint64_t)(l->epoch + 1)) ^
                                (0x8CB92BA72F3D8DD7ULL * (uint64_t)(l->pos + 1)));
            if (P) {
                oy = (int)am_rng_below(&r, (uint32_t)(2 * P + 1)) - P;
                ox = (int)am_rng_below(&r, (uint32_t)(2 * P + 1)) - P;
            }
            if (l->cfg.flip) flip = (int)(am_rng_u64(&r) >> 63);
        }
        for (int c = 0; c < C; c++) {
            const float a = 1.f / (255.f * l->std[c]), o = l->mean[c] / l->std[c];
            float *q = x + ((size_t)b * C + c) * plane;
            const uint8_t *s = src + (size_t)c * plane;
            for (int i = 0; i < H; i++) {
                int si = i + oy;
                for (int j = 0; j < W; j++) {
                    int sj = (flip ? W - 1 - j : j) + ox;
                    /* Padding is a zero pixel before normalization, as
                     * torchvision's RandomCrop before Normalize. */
                    uint8_t v = (si >= 0 && si < H && sj >= 0 && sj < W) ? s[(size_t)si * W + sj] : 0;
                    q[(size_t)i * W + j] = (float)v * a - o;
                }
            }
        }
        labels[b] = d->labels[idx];
    }
    return AM_OK;
}
