/* A model's description, parsed into layers and parameters (the syntax is
 * in asymml/nn.h): every keyword, option and reference checked, with the
 * line it came from in the message. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/model_impl.h"

typedef struct kv {
    char key[16];
    char val[64];
} kv;

static int parse_int(const char *s, int *out) {
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end || v < -1000000000L || v > 1000000000L) return 0;
    *out = (int)v;
    return 1;
}

static int parse_float(const char *s, float *out) {
    char *end;
    float v = strtof(s, &end);
    if (end == s || *end || !isfinite(v)) return 0;
    *out = v;
    return 1;
}

static int find_layer(const am_model *m, const char *name) {
    for (int i = m->n - 1; i >= 0; i--)
        if (!strcmp(m->L[i].name, name)) return i;
    return -1;
}

/* Options by key; each lookup marks the option used so that unknown keys are
 * reported. */
typedef struct opts {
    kv kv[16];
    int n, used[16];
    char pos[4][64];
    int npos;
} opts;

static const char *opt(opts *o, const char *key) {
    for (int i = 0; i < o->n; i++)
        if (!strcmp(o->kv[i].key, key)) {
            o->used[i] = 1;
            return o->kv[i].val;
        }
    return NULL;
}

static am_status opt_int(opts *o, int line, const char *key, int def, int lo, int hi, int *out) {
    const char *v = opt(o, key);
    *out = def;
    if (!v) return AM_OK;
    if (!parse_int(v, out) || *out < lo || *out > hi)
        return am_fail(AM_EINVAL, "model line %d: %s=%s must be an integer in [%d, %d]", line, key, v, lo, hi);
    return AM_OK;
}

static am_status opt_float(opts *o, int line, const char *key, float def, float lo, float hi,
                           float *out) {
    const char *v = opt(o, key);
    *out = def;
    if (!v) return AM_OK;
    if (!parse_float(v, out) || !(*out >= lo && *out <= hi))
        return am_fail(AM_EINVAL, "model line %d: %s=%s must be a number in [%g, %g]", line, key, v,
                       (double)lo, (double)hi);
    return AM_OK;
}

static am_status pos_int(opts *o, int line, int i, const char *what, int lo, int hi, int *out) {
    if (i >= o->npos) return am_fail(AM_EINVAL, "model line %d: missing %s", line, what);
    if (!parse_int(o->pos[i], out) || *out < lo || *out > hi)
        return am_fail(AM_EINVAL, "model line %d: %s '%s' must be an integer in [%d, %d]", line, what,
                       o->pos[i], lo, hi);
    return AM_OK;
}

static am_status add_param(am_model *m, int li, const char *role, am_param_kind kind, am_shape s) {
    am_param *np = realloc(m->P, sizeof(am_param) * (size_t)(m->np + 1));
    if (!np) return am_fail(AM_ENOMEM, "out of memory for parameters");
    m->P = np;
    am_param *p = &m->P[m->np++];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%d.%s", li, role);
    p->kind = kind;
    p->trainable = kind != AM_P_RUNNING_MEAN && kind != AM_P_RUNNING_VAR;
    p->layer = li;
    p->shape = s;
    p->numel = am_shape_numel(s);
    /* Offsets for now; pointers once the storage exists. Each tensor starts
     * on a 64-byte boundary. */
    size_t *cnt = p->trainable ? &m->n_train : &m->n_buf;
    p->data = (float *)(uintptr_t)(*cnt);
    *cnt += am_align_up(p->numel * sizeof(float)) / sizeof(float);
    if (m->n_train > ((size_t)1 << 34)) return am_fail(AM_EINVAL, "model too large");
    m->L[li].nparam++;
    return AM_OK;
}

/* Builds layer li from its tokens; the output shape of every input is known. */
static am_status build_layer(am_model *m, int li, const char *kw, opts *o, int line) {
    layer *l = &m->L[li];
    const char *v;
    int k, i;
    l->param0 = m->np;
    if ((v = opt(o, "name"))) {
        if (strlen(v) >= NAME_LEN) return am_fail(AM_EINVAL, "model line %d: name too long", line);
        for (const char *c = v; *c; c++)
            if (!isalnum((unsigned char)*c) && *c != '_' && *c != '-' && *c != '.')
                return am_fail(AM_EINVAL, "model line %d: bad character in name '%s'", line, v);
        if (find_layer(m, v) >= 0) return am_fail(AM_EINVAL, "model line %d: name '%s' used twice", line, v);
        strcpy(l->name, v);
    }
    if (!strcmp(kw, "input")) {
        if (li != 0) return am_fail(AM_EINVAL, "model line %d: input must be the first layer", line);
        l->kind = K_INPUT;
        int c, h, w;
        AM_TRY(pos_int(o, line, 0, "channels", 1, 65536, &c));
        AM_TRY(pos_int(o, line, 1, "height", 1, 65536, &h));
        AM_TRY(pos_int(o, line, 2, "width", 1, 65536, &w));
        l->os = am_shape4(1, c, h, w);
        o->npos -= 3;
        goto done;
    }
    if (li == 0) return am_fail(AM_EINVAL, "model line %d: the first layer must be 'input C H W'", line);
    /* Inputs. */
    l->n_in = 1;
    l->in[0] = li - 1;
    if ((v = opt(o, "from"))) {
        char buf[64];
        snprintf(buf, sizeof buf, "%s", v);
        char *comma = strchr(buf, ',');
        if (comma) *comma = 0;
        l->n_in = comma ? 2 : 1;
        for (int j = 0; j < l->n_in; j++) {
            const char *nm = j ? comma + 1 : buf;
            l->in[j] = find_layer(m, nm);
            if (l->in[j] < 0) return am_fail(AM_EINVAL, "model line %d: no earlier layer named '%s'", line, nm);
        }
    }
    if (!strcmp(kw, "add")) {
        if (l->n_in != 2) return am_fail(AM_EINVAL, "model line %d: add needs from=A,B", line);
    } else if (l->n_in != 1) {
        return am_fail(AM_EINVAL, "model line %d: %s reads one layer", line, kw);
    }
    am_shape xs = m->L[l->in[0]].os;
    if (!strcmp(kw, "conv")) {
        l->kind = K_CONV;
        AM_TRY(pos_int(o, line, 0, "output channels", 1, 65536, &l->conv.out_c));
        o->npos--;
        AM_TRY(opt_int(o, line, "k", 0, 1, 64, &k));
        AM_TRY(opt_int(o, line, "kh", k, 1, 64, &l->conv.kh));
        AM_TRY(opt_int(o, line, "kw", k, 1, 64, &l->conv.kw));
        if (!l->conv.kh || !l->conv.kw) return am_fail(AM_EINVAL, "model line %d: conv needs k=", line);
        AM_TRY(opt_int(o, line, "s", 1, 1, 64, &i));
        AM_TRY(opt_int(o, line, "sh", i, 1, 64, &l->conv.sh));
        AM_TRY(opt_int(o, line, "sw", i, 1, 64, &l->conv.sw));
        AM_TRY(opt_int(o, line, "p", 0, 0, 63, &i));
        AM_TRY(opt_int(o, line, "ph", i, 0, 63, &l->conv.ph));
        AM_TRY(opt_int(o, line, "pw", i, 0, 63, &l->conv.pw));
        AM_TRY(opt_int(o, line, "bias", 1, 0, 1, &l->conv.bias));
        am_shape ys;
        if (am_conv2d_out_shape(&l->conv, xs, &ys) != AM_OK)
            return am_fail(AM_EINVAL, "model line %d: %s", line, am_last_error());
        l->os = ys;
        AM_TRY(add_param(m, li, "weight", AM_P_WEIGHT, am_shape4(l->conv.out_c, xs.c, l->conv.kh, l->conv.kw)));
        if (l->conv.bias) AM_TRY(add_param(m, li, "bias", AM_P_BIAS, am_shape4(l->conv.out_c, 1, 1, 1)));
    } else if (!strcmp(kw, "bn")) {
        l->kind = K_BN;
        AM_TRY(opt_float(o, line, "eps", 1e-5f, 1e-12f, 1.f, &l->bn.eps));
        AM_TRY(opt_float(o, line, "momentum", 0.1f, 0.f, 1.f, &l->bn.momentum));
        l->os = xs;
        am_shape cs = am_shape4(xs.c, 1, 1, 1);
        AM_TRY(add_param(m, li, "weight", AM_P_BN_WEIGHT, cs));
        AM_TRY(add_param(m, li, "bias", AM_P_BN_BIAS, cs));
        AM_TRY(add_param(m, li, "running_mean", AM_P_RUNNING_MEAN, cs));
        AM_TRY(add_param(m, li, "running_var", AM_P_RUNNING_VAR, cs));
    } else if (!strcmp(kw, "relu")) {
        l->kind = K_RELU;
        l->os = xs;
    } else if (!strcmp(kw, "maxpool") || !strcmp(kw, "avgpool")) {
        l->kind = kw[0] == 'm' ? K_MAXPOOL : K_AVGPOOL;
        AM_TRY(opt_int(o, line, "k", 0, 1, 64, &k));
        AM_TRY(opt_int(o, line, "kh", k, 1, 64, &l->pool.kh));
        AM_TRY(opt_int(o, line, "kw", k, 1, 64, &l->pool.kw));
        if (!l->pool.kh || !l->pool.kw) return am_fail(AM_EINVAL, "model line %d: %s needs k=", line, kw);
        AM_TRY(opt_int(o, line, "s", 0, 1, 64, &i));
        AM_TRY(opt_int(o, line, "sh", i ? i : l->pool.kh, 1, 64, &l->pool.sh));
        AM_TRY(opt_int(o, line, "sw", i ? i : l->pool.kw, 1, 64, &l->pool.sw));
        AM_TRY(opt_int(o, line, "p", 0, 0, 32, &i));
        AM_TRY(opt_int(o, line, "ph", i, 0, 32, &l->pool.ph));
        AM_TRY(opt_int(o, line, "pw", i, 0, 32, &l->pool.pw));
        AM_TRY(opt_int(o, line, "ceil", 0, 0, 1, &l->pool.ceil_mode));
        if (am_pool_out_shape(&l->pool, xs, &l->os) != AM_OK)
            return am_fail(AM_EINVAL, "model line %d: %s", line, am_last_error());
    } else if (!strcmp(kw, "adaptiveavg") || !strcmp(kw, "gap")) {
        l->kind = K_ADAPTIVE;
        int h = 1, w = 1;
        if (kw[0] == 'a') {
            AM_TRY(pos_int(o, line, 0, "output height", 1, 65536, &h));
            AM_TRY(pos_int(o, line, 1, "output width", 1, 65536, &w));
            o->npos -= 2;
        }
        l->os = am_shape4(1, xs.c, h, w);
    } else if (!strcmp(kw, "linear")) {
        l->kind = K_LINEAR;
        AM_TRY(pos_int(o, line, 0, "output features", 1, 1 << 24, &l->out_f));
        o->npos--;
        AM_TRY(opt_int(o, line, "bias", 1, 0, 1, &l->lin_bias));
        l->os = am_shape4(1, l->out_f, 1, 1);
        /* As a 1x1 conv of its flattened input, for the modes that run it as one. */
        l->conv = (am_conv2d_cfg){.out_c = l->out_f, .kh = 1, .kw = 1, .sh = 1, .sw = 1, .bias = l->lin_bias};
        AM_TRY(add_param(m, li, "weight", AM_P_WEIGHT, am_shape4(l->out_f, xs.c * xs.h * xs.w, 1, 1)));
        if (l->lin_bias) AM_TRY(add_param(m, li, "bias", AM_P_BIAS, am_shape4(l->out_f, 1, 1, 1)));
    } else if (!strcmp(kw, "dropout")) {
        l->kind = K_DROPOUT;
        AM_TRY(opt_float(o, line, "p", 0.5f, 0.f, 0.99f, &l->p));
        l->os = xs;
    } else if (!strcmp(kw, "flatten")) {
        l->kind = K_FLATTEN;
        l->os = am_shape4(1, xs.c * xs.h * xs.w, 1, 1);
    } else if (!strcmp(kw, "add")) {
        l->kind = K_ADD;
        am_shape bs = m->L[l->in[1]].os;
        if (!am_shape_eq(xs, bs))
            return am_fail(AM_EINVAL, "model line %d: add of shapes %dx%dx%d and %dx%dx%d", line, xs.c,
                           xs.h, xs.w, bs.c, bs.h, bs.w);
        l->os = xs;
    } else {
        return am_fail(AM_EINVAL, "model line %d: unknown layer '%s'", line, kw);
    }
done:
    if (o->npos > 0) return am_fail(AM_EINVAL, "model line %d: too many values for %s", line, kw);
    for (int j = 0; j < o->n; j++)
        if (!o->used[j]) return am_fail(AM_EINVAL, "model line %d: unknown option '%s'", line, o->kv[j].key);
    return AM_OK;
}

am_status am_model_parse(am_model *m, const char *desc) {
    size_t len = strlen(desc);
    char *canon = malloc(len * 2 + 2), *cp = canon;
    char *copy = malloc(len + 1);
    if (!canon || !copy) {
        free(canon), free(copy);
        return am_fail(AM_ENOMEM, "out of memory");
    }
    memcpy(copy, desc, len + 1);
    m->desc = canon;
    am_status st = AM_OK;
    int line = 1;
    char *save_line = NULL;
    /* Split on newlines and ';', tracking line numbers for messages. */
    char *s = copy;
    while (st == AM_OK && *s) {
        char *e = s;
        while (*e && *e != '\n' && *e != ';') e++;
        int nl = *e == '\n';
        char end = *e;
        *e = 0;
        char *hash = strchr(s, '#');
        if (hash) *hash = 0;
        opts o;
        memset(&o, 0, sizeof o);
        char *kw = NULL;
        for (char *tok = strtok_r(s, " \t\r", &save_line); tok; tok = strtok_r(NULL, " \t\r", &save_line)) {
            if (!kw) {
                kw = tok;
                continue;
            }
            char *eq = strchr(tok, '=');
            if (eq) {
                if (o.n == 16 || eq - tok >= 16 || strlen(eq + 1) >= 64 || !eq[1]) {
                    st = am_fail(AM_EINVAL, "model line %d: bad option '%s'", line, tok);
                    break;
                }
                memcpy(o.kv[o.n].key, tok, (size_t)(eq - tok));
                strcpy(o.kv[o.n].val, eq + 1);
                o.n++;
            } else {
                if (o.npos == 4 || strlen(tok) >= 64) {
                    st = am_fail(AM_EINVAL, "model line %d: too many values", line);
                    break;
                }
                strcpy(o.pos[o.npos++], tok);
            }
        }
        if (st == AM_OK && kw) {
            if (m->n == MAX_LAYERS) {
                st = am_fail(AM_EINVAL, "model: more than %d layers", MAX_LAYERS);
                break;
            }
            memset(&m->L[m->n], 0, sizeof(layer));
            m->n++;
            int npos = o.npos;
            st = build_layer(m, m->n - 1, kw, &o, line);
            /* Canonical text: the tokens of this layer on one line. */
            if (st == AM_OK) {
                cp += sprintf(cp, "%s", kw);
                for (int j = 0; j < npos; j++) cp += sprintf(cp, " %s", o.pos[j]);
                for (int j = 0; j < o.n; j++) cp += sprintf(cp, " %s=%s", o.kv[j].key, o.kv[j].val);
                *cp++ = '\n';
            }
        }
        line += nl;
        s = end ? e + 1 : e;
    }
    *cp = 0;
    free(copy);
    return st;
}
