/* The trainer: model, SGD, learning-rate schedule and loader behind one
 * step function, and its checkpoints. The command line and the tests drive
 * this same loop, so a resumed run in the tests is a resumed run for users. */
#include "asymml/train.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "train/binding.h"

struct am_trainer {
    am_train_cfg cfg;
    const am_dataset *train;
    am_model *m;
    am_sgd *opt;
    am_loader loader;
    am_schedule sched;
    am_rng rng; /* dropout masks */
    float mean[4], std[4];
    int global_step, total_steps, steps_per_epoch;
    float *x;
    int32_t *labels;
    am_run_binding bind;
    int sessions; /* 1, and one more per resume */
};

static am_status check_cfg(const am_train_cfg *c) {
    if (!c) return am_fail(AM_EINVAL, "trainer: NULL configuration");
    if (c->epochs < 1 || c->epochs > 100000) return am_fail(AM_EINVAL, "epochs %d outside [1, 100000]", c->epochs);
    if (c->batch < 1 || c->batch > 65536) return am_fail(AM_EINVAL, "batch %d outside [1, 65536]", c->batch);
    if (c->step_size < 1) return am_fail(AM_EINVAL, "step size %d must be at least 1", c->step_size);
    return AM_OK;
}

static am_status make(const am_train_cfg *cfg, const char *desc, const am_trainer_io *io,
                      const float *mean, const float *std, am_trainer **out) {
    *out = NULL;
    AM_TRY(check_cfg(cfg));
    const am_dataset *train = io->train;
    if (!train || !train->pixels || !desc) return am_fail(AM_EINVAL, "trainer: NULL argument");
    am_trainer *t = calloc(1, sizeof *t);
    if (!t) return am_fail(AM_ENOMEM, "out of memory");
    t->cfg = *cfg;
    t->train = train;
    am_status st = am_model_create(desc, &t->m);
    if (st == AM_OK) {
        am_shape in = am_model_input_shape(t->m);
        if (in.c != train->c || in.h != train->h || in.w != train->w || am_model_num_classes(t->m) != train->classes)
            st = am_fail(AM_EINVAL, "the model takes %dx%dx%d images in %d classes; the data has %dx%dx%d in %d",
                         in.c, in.h, in.w, am_model_num_classes(t->m), train->c, train->h, train->w, train->classes);
    }
    if (st == AM_OK) st = am_model_init(t->m, cfg->seed);
    if (st == AM_OK) st = am_model_set_batch(t->m, cfg->batch);
    if (st == AM_OK && cfg->asym.mode != AM_MODE_TEE_ONLY) st = am_model_set_asym(t->m, &cfg->asym, io->accel);
    /* This process's noise is its own (see am_model_new_noise_session). */
    if (st == AM_OK) st = am_model_new_noise_session(t->m);
    t->sessions = 1;
    if (st == AM_OK) {
        am_sgd_cfg sc = {cfg->momentum, 0.f, cfg->wd, cfg->nesterov};
        st = am_sgd_create(&sc, am_model_weights_len(t->m), &t->opt);
    }
    if (st == AM_OK) {
        memcpy(t->mean, mean, sizeof(float) * (size_t)train->c);
        memcpy(t->std, std, sizeof(float) * (size_t)train->c);
        am_loader_cfg lc = {cfg->batch, cfg->seed, cfg->crop_pad, cfg->flip};
        st = am_loader_init(&t->loader, train, &lc, mean, std);
    }
    if (st == AM_OK) {
        t->steps_per_epoch = am_loader_steps_per_epoch(&t->loader);
        if ((long)t->steps_per_epoch * cfg->epochs > INT_MAX)
            st = am_fail(AM_EINVAL, "%d epochs of %d steps: more steps than a run can count (%d)", cfg->epochs,
                         t->steps_per_epoch, INT_MAX);
    }
    if (st == AM_OK) {
        t->total_steps = t->steps_per_epoch * cfg->epochs;
        long every = (long)cfg->step_size * t->steps_per_epoch;
        t->sched = (am_schedule){cfg->sched, cfg->lr, every > INT_MAX ? INT_MAX : (int)every, cfg->gamma,
                                 t->total_steps - cfg->warmup, 0.f, cfg->warmup, 0.01f};
        if (t->sched.total < 1) t->sched.total = 1;
        st = am_schedule_check(&t->sched);
    }
    if (st == AM_OK) {
        am_rng_seed(&t->rng, cfg->seed ^ 0xA5A5A5A5DEADBEEFULL);
        size_t per = (size_t)train->c * train->h * train->w;
        t->x = am_aligned_alloc(sizeof(float) * per * (size_t)cfg->batch);
        t->labels = malloc(sizeof(int32_t) * (size_t)cfg->batch);
        if (!t->x || !t->labels) st = am_fail(AM_ENOMEM, "trainer: out of memory for a batch");
    }
    if (st != AM_OK) {
        am_trainer_free(t);
        return st;
    }
    *out = t;
    return AM_OK;
}

am_status am_trainer_create(const am_train_cfg *cfg, const char *desc, const am_trainer_io *io, am_trainer **out) {
    *out = NULL;
    const am_dataset *train = io ? io->train : NULL;
    if (!train || !train->pixels) return am_fail(AM_EINVAL, "trainer: no training data");
    float mean[4], std[4];
    if (train->c > 4) return am_fail(AM_EINVAL, "trainer: at most 4 channels");
    AM_TRY(am_dataset_stats(train, mean, std));
    AM_TRY(make(cfg, desc, io, mean, std, out));
    am_status st = am_binding_new(io, &(*out)->bind);
    if (st != AM_OK) {
        am_trainer_free(*out);
        *out = NULL;
    }
    return st;
}

void am_trainer_free(am_trainer *t) {
    if (!t) return;
    am_loader_free(&t->loader);
    am_sgd_free(t->opt);
    am_model_free(t->m);
    am_aligned_free(t->x);
    free(t->labels);
    free(t);
}

am_model *am_trainer_model(am_trainer *t) { return t->m; }
const am_train_cfg *am_trainer_cfg(const am_trainer *t) { return &t->cfg; }
int am_trainer_global_step(const am_trainer *t) { return t->global_step; }
int am_trainer_done(const am_trainer *t) { return t->global_step >= t->total_steps; }

float am_trainer_lr_at(const am_trainer *t, int epochs) {
    am_schedule s = t->sched;
    s.total = t->steps_per_epoch * epochs - t->cfg.warmup;
    if (s.total < 1) s.total = 1;
    return am_schedule_lr(&s, t->global_step);
}

int am_trainer_resumes(const am_trainer *t) { return t->sessions - 1; }

void am_trainer_count_lost(am_trainer *t, int reached_step) {
    /* Not capped at this checkpoint's length: that session may have
     * extended the run. Capped only where the count is kept. */
    const long spe = t->steps_per_epoch;
    long lost = ((long)reached_step + spe - 1) / spe - ((long)t->global_step + spe - 1) / spe;
    if (lost > 0) t->sessions = lost > (1L << 24) - t->sessions ? 1 << 24 : t->sessions + (int)lost;
}

/* The predicted class: the first largest logit. */
static int argmax(const float *z, int K) {
    int best = 0;
    for (int k = 1; k < K; k++) best = z[k] > z[best] ? k : best;
    return best;
}

am_status am_trainer_step(am_trainer *t, am_step_info *info) {
    if (am_trainer_done(t)) return am_fail(AM_EINVAL, "trainer: all %d steps are done", t->total_steps);
    am_shape s = am_model_input_shape(t->m);
    s.n = t->cfg.batch;
    am_tensor x = {s, t->x};
    float lr = am_schedule_lr(&t->sched, t->global_step), loss;
    AM_TRY(am_loader_next(&t->loader, t->x, t->labels));
    am_model_set_step(t->m, (uint64_t)t->global_step);
    AM_TRY(am_model_forward(t->m, &x, 1, &t->rng));
    AM_TRY(am_model_loss(t->m, t->labels, &loss));
    if (!isfinite(loss))
        return am_fail(AM_ENUM, "loss is %g at step %d (learning rate too high?)", (double)loss, t->global_step + 1);
    AM_TRY(am_model_backward(t->m));
    AM_TRY(am_sgd_step(t->opt, am_model_weights(t->m), am_model_grads(t->m), lr));
    t->global_step++;
    if (info) {
        const am_tensor *lg = am_model_logits(t->m);
        int correct = 0;
        for (int b = 0; b < t->cfg.batch; b++)
            correct += argmax(lg->d + (size_t)b * lg->s.c, lg->s.c) == t->labels[b];
        *info = (am_step_info){(t->global_step - 1) / t->steps_per_epoch + 1,
                               (t->global_step - 1) % t->steps_per_epoch + 1,
                               t->steps_per_epoch, t->global_step, t->total_steps, loss, lr, correct,
                               t->cfg.batch};
    }
    return AM_OK;
}

am_status am_evaluate(am_model *m, const am_dataset *d, const float *mean, const float *std, int B,
                      const am_progress *progress, double *acc, double *loss) {
    if (!m || !d || !d->pixels || !mean || !std || B < 1) return am_fail(AM_EINVAL, "evaluate: bad argument");
    am_shape s = am_model_input_shape(m);
    if (s.c != d->c || s.h != d->h || s.w != d->w || am_model_num_classes(m) != d->classes)
        return am_fail(AM_EINVAL, "the model takes %dx%dx%d images in %d classes; the data has %dx%dx%d in %d",
                       s.c, s.h, s.w, am_model_num_classes(m), d->c, d->h, d->w, d->classes);
    AM_TRY(am_model_set_batch(m, B));
    s.n = B;
    size_t per = (size_t)s.c * s.h * s.w;
    float *x = am_aligned_alloc(sizeof(float) * per * (size_t)B);
    int32_t *lab = malloc(sizeof(int32_t) * (size_t)B);
    uint32_t *idx = malloc(sizeof(uint32_t) * (size_t)B);
    am_status st = x && lab && idx ? AM_OK : am_fail(AM_ENOMEM, "evaluate: out of memory");
    long correct = 0;
    double total = 0;
    am_tensor xt = {s, x};
    for (int i0 = 0; st == AM_OK && i0 < d->n; i0 += B) {
        /* The last incomplete batch is padded with zeros, not with copies of
         * an image (each copy would be one more release of it); only real
         * images count. */
        int real = d->n - i0 < B ? d->n - i0 : B;
        for (int b = 0; b < B; b++) idx[b] = (uint32_t)(i0 + (b < real ? b : 0));
        st = am_dataset_batch(d, idx, B, mean, std, x, lab);
        if (real < B) memset(x + (size_t)real * per, 0, sizeof(float) * per * (size_t)(B - real));
        if (st == AM_OK) st = am_model_forward(m, &xt, 0, NULL);
        if (st != AM_OK) break;
        const am_tensor *lg = am_model_logits(m);
        int K = lg->s.c;
        for (int b = 0; b < real; b++) {
            const float *z = lg->d + (size_t)b * K;
            int best = argmax(z, K);
            double mx = z[best], se = 0;
            for (int k = 0; k < K; k++) se += exp(z[k] - mx);
            total += mx + log(se) - z[lab[b]];
            correct += best == lab[b];
        }
        if (progress && progress->fn) progress->fn(progress->ctx, i0 + real, d->n);
    }
    am_aligned_free(x);
    free(lab);
    free(idx);
    if (st != AM_OK) return st;
    if (acc) *acc = (double)correct / d->n;
    if (loss) *loss = total / d->n;
    return AM_OK;
}

am_status am_trainer_evaluate(am_trainer *t, const am_dataset *d, double *acc, double *loss) {
    /* Same batch size as training: the model's buffers stay as they are. */
    return am_evaluate(t->m, d, t->mean, t->std, t->cfg.batch, NULL, acc, loss);
}

void am_trainer_snapshot(am_trainer *t, am_checkpoint *ck) {
    int started;
    float *mom = am_sgd_momentum(t->opt, &started);
    memset(ck, 0, sizeof *ck);
    ck->desc = (char *)am_model_desc(t->m);
    ck->cfg = t->cfg;
    ck->channels = t->train->c;
    memcpy(ck->mean, t->mean, sizeof ck->mean);
    memcpy(ck->std, t->std, sizeof ck->std);
    ck->epoch = t->global_step / t->steps_per_epoch;
    ck->step = t->global_step % t->steps_per_epoch;
    ck->global_step = t->global_step;
    ck->n_weights = am_model_weights_len(t->m);
    ck->n_buffers = am_model_buffers_len(t->m);
    ck->weights = am_model_weights(t->m);
    ck->buffers = am_model_buffers(t->m);
    ck->momentum = mom;
    ck->momentum_started = started;
    ck->rng = t->rng;
    ck->n_asym = am_model_asym_state_len(t->m);
    ck->asym = am_model_asym_state(t->m);
    ck->n_plan = am_model_plan_get(t->m, ck->plan_rank, ck->plan_basis, AM_MAX_RANKS + 1);
    ck->bind = t->bind;
    ck->noise_counter = am_model_noise_counter(t->m);
    ck->releases = am_trainer_releases(t);
    ck->coupling = am_trainer_coupling(t);
    ck->sessions = t->sessions;
}

am_status am_trainer_save(am_trainer *t, const char *path) {
    am_checkpoint ck;
    am_trainer_snapshot(t, &ck);
    return am_checkpoint_write(path, &ck);
}

const am_run_binding *am_trainer_binding(const am_trainer *t) { return &t->bind; }

am_status am_trainer_resume_check(const am_checkpoint *ck, const am_trainer_io *io) {
    if (!ck || !io || !io->train) return am_fail(AM_EINVAL, "trainer: bad argument");
    return am_binding_check(ck, io);
}

am_status am_trainer_resume(const am_checkpoint *ck, const am_trainer_io *io, am_trainer **out) {
    *out = NULL;
    const am_dataset *train = io ? io->train : NULL;
    am_trainer *t = NULL;
    am_status st = AM_OK;
    if (!ck || !ck->desc) return am_fail(AM_EINVAL, "trainer: no checkpoint");
    if (!train || train->c != ck->channels)
        st = am_fail(AM_EINVAL, "checkpoint of a %d-channel model, the data has %d channels", ck->channels,
                     train ? train->c : 0);
    if (st == AM_OK) st = am_binding_check(ck, io);
    if (st == AM_OK) st = make(&ck->cfg, ck->desc, io, ck->mean, ck->std, &t);
    /* Data-driven ranks and bases were decided on the first batch: replay them. */
    if (st == AM_OK && ck->n_plan) st = am_model_plan_set(t->m, ck->plan_rank, ck->plan_basis, ck->n_plan);
    if (st == AM_OK && (am_model_weights_len(t->m) != ck->n_weights || am_model_buffers_len(t->m) != ck->n_buffers ||
                        am_model_asym_state_len(t->m) != ck->n_asym))
        st = am_fail(AM_EFORMAT, "checkpoint: tensor sizes do not match the model description");
    if (st == AM_OK && (ck->global_step > t->total_steps || ck->step >= t->steps_per_epoch ||
                        ck->epoch * t->steps_per_epoch + ck->step != ck->global_step))
        st = am_fail(AM_EFORMAT, "checkpoint: position (epoch %d, step %d) does not fit %d steps of %d per epoch "
                     "(is this the dataset it was trained on?)", ck->epoch, ck->step, ck->global_step, t->steps_per_epoch);
    if (st == AM_OK) st = am_sgd_restore(t->opt, ck->momentum, ck->momentum_started);
    if (st == AM_OK) st = am_loader_seek(&t->loader, ck->epoch, ck->step);
    if (st == AM_OK) {
        memcpy(am_model_weights(t->m), ck->weights, ck->n_weights * sizeof(float));
        memcpy(am_model_buffers(t->m), ck->buffers, ck->n_buffers * sizeof(float));
        if (ck->n_asym && ck->global_step > 0) {
            memcpy(am_model_asym_state(t->m), ck->asym, ck->n_asym * sizeof(float));
            am_model_asym_state_restored(t->m);
        }
        am_model_set_noise_counter(t->m, ck->noise_counter);
        t->rng = ck->rng;
        t->global_step = ck->global_step;
        t->bind = ck->bind;
        t->sessions = (ck->sessions > 0 ? ck->sessions : 1) + 1;
    }
    if (st != AM_OK) {
        am_trainer_free(t);
        return st;
    }
    *out = t;
    return AM_OK;
}

long am_trainer_releases(const am_trainer *t) {
    if (am_model_mode(t->m) != AM_MODE_ASYMML) return 0;
    int split = 0;
    for (int i = 0; i < am_model_num_convs(t->m); i++) {
        am_split_info si;
        if (am_model_split_info(t->m, i, &si) == AM_OK) split += si.split;
    }
    /* Each epoch begun visits a sample at most once (shuffling, no
     * subsampling), and each visit releases one residual per split layer;
     * each resume may release the rest of an epoch once more. */
    long epochs = (t->global_step + t->steps_per_epoch - 1) / t->steps_per_epoch + (t->sessions - 1);
    /* Protected gradients release a second residual per split layer: S. */
    return epochs * split * (t->cfg.asym.protect_grads ? 2 : 1);
}

double am_trainer_residual_share(am_trainer *t) {
    double kept = 0, total = 0;
    for (int i = 0; i < am_model_num_convs(t->m); i++) {
        am_split_info si;
        if (am_model_split_info(t->m, i, &si) != AM_OK || !si.split) continue;
        kept += si.energy_kept * si.energy_total;
        total += si.energy_total;
    }
    am_model_reset_timers(t->m);
    return total > 0 ? 1.0 - kept / total : 0.0;
}

long am_trainer_coupling(const am_trainer *t) {
    /* A shared basis (of inputs, or of output gradients when they are
     * protected) couples the batch. */
    if (t->cfg.asym.protect_grads) return t->cfg.batch;
    /* BatchNorm in training mode normalizes with the batch's statistics: a
     * sample then moves every later activation of its batch. Layers come in
     * order, so any BatchNorm before the last split conv couples. A layer
     * whose basis is not decided yet (AUTO before the first batch) counts
     * as shared. */
    int last_split = -1;
    for (int i = 0; i < am_model_num_convs(t->m); i++) {
        am_split_info si;
        if (am_model_split_info(t->m, i, &si) != AM_OK || !si.split) continue;
        if (si.basis != AM_BASIS_PER_SAMPLE) return t->cfg.batch;
        last_split = si.layer;
    }
    for (int i = 0; i < last_split; i++) {
        am_layer_info li;
        if (am_model_layer_info(t->m, i, &li) == AM_OK && !strcmp(li.kind, "bn")) return t->cfg.batch;
    }
    return 1;
}
