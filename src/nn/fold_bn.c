/* BatchNorm folded into the conv before it, for inference: with
 * g = gamma / sqrt(running_var + eps), the pair conv(W, b) -> BN becomes one
 * conv(W g, (b - running_mean) g + beta) per output channel. A BatchNorm
 * folds where it reads the conv on the line just before it and nothing else
 * reads that conv; any other stays a BatchNorm. The folded model is a new
 * description (those BatchNorm lines gone, their convs with a bias and the
 * BatchNorm's name) with the folded parameters. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/model_impl.h"

static int folds(const am_model *m, int j) {
    if (j < 2 || j >= m->n) return 0;
    const layer *l = &m->L[j], *c = &m->L[j - 1];
    return l->kind == K_BN && l->n_in == 1 && l->in[0] == j - 1 && c->kind == K_CONV && c->consumers == 1;
}

/* One canonical line of the source (layer k) into the new description: a
 * folded conv with a bias and its BatchNorm's name, if it had one. */
static void emit_line(const am_model *m, int k, const char *line, size_t len, char **out) {
    if (!folds(m, k + 1)) {
        *out += sprintf(*out, "%.*s\n", (int)len, line);
        return;
    }
    const char *bn_name = m->L[k + 1].name;
    char buf[1024];
    snprintf(buf, sizeof buf, "%.*s", (int)len, line);
    char *save = NULL;
    for (char *tok = strtok_r(buf, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
        if (!strncmp(tok, "bias=", 5) || (bn_name[0] && !strncmp(tok, "name=", 5))) continue;
        *out += sprintf(*out, "%s ", tok);
    }
    *out += sprintf(*out, "bias=1%s%s\n", bn_name[0] ? " name=" : "", bn_name);
}

static am_status folded_desc(const am_model *m, char **out) {
    size_t n = strlen(m->desc);
    char *d = malloc(n + (size_t)m->n * (NAME_LEN + 16) + 1), *o = d;
    if (!d) return am_fail(AM_ENOMEM, "fold: out of memory");
    const char *line = m->desc;
    for (int k = 0; k < m->n && *line; k++) {
        const char *e = strchr(line, '\n');
        size_t len = e ? (size_t)(e - line) : strlen(line);
        if (len >= 1000) {
            free(d);
            return am_fail(AM_EINVAL, "fold: layer %d's description is too long", k);
        }
        if (!folds(m, k)) emit_line(m, k, line, len, &o);
        line += len + (e ? 1 : 0);
    }
    *o = 0;
    *out = d;
    return AM_OK;
}

/* conv (K x C x kk, optional bias) and its BatchNorm into dst's weight and bias. */
static void fold_params(const am_model *m, const layer *c, const layer *bn, am_param *dw, am_param *db) {
    const am_param *w = &m->P[c->param0], *b = c->conv.bias ? &m->P[c->param0 + 1] : NULL;
    const float *gamma = m->P[bn->param0].data, *beta = m->P[bn->param0 + 1].data;
    const float *mean = m->P[bn->param0 + 2].data, *var = m->P[bn->param0 + 3].data;
    const int K = c->conv.out_c;
    const size_t per = w->numel / (size_t)K;
    for (int k = 0; k < K; k++) {
        double g = gamma[k] / sqrt((double)var[k] + bn->bn.eps);
        for (size_t i = 0; i < per; i++) dw->data[(size_t)k * per + i] = (float)(w->data[(size_t)k * per + i] * g);
        db->data[k] = (float)(((b ? b->data[k] : 0.0) - mean[k]) * g + beta[k]);
    }
}

am_status am_model_fold_bn(const am_model *m, am_model **out, int *n_folded) {
    *out = NULL;
    char *desc = NULL;
    AM_TRY(folded_desc(m, &desc));
    am_model *f;
    am_status st = am_model_create(desc, &f);
    free(desc);
    AM_TRY(st);
    int nf = 0;
    for (int k = 1, j = 1; k < m->n; k++) {
        if (folds(m, k)) continue;
        const layer *s = &m->L[k];
        layer *d = &f->L[j++];
        if (folds(m, k + 1)) {
            fold_params(m, s, &m->L[k + 1], &f->P[d->param0], &f->P[d->param0 + 1]);
            nf++;
            continue;
        }
        for (int p = 0; p < s->nparam; p++)
            memcpy(f->P[d->param0 + p].data, m->P[s->param0 + p].data, sizeof(float) * m->P[s->param0 + p].numel);
    }
    if (n_folded) *n_folded = nf;
    *out = f;
    return AM_OK;
}
