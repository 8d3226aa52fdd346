/* The safetensors reader (safetensors.h): a strict JSON reader for the
 * header's subset of JSON, then the layout's checks. No recursion and no
 * value kept but the tensors' descriptions: a hostile header costs at most
 * its own size in memory and a sort in time. Converting the data to floats
 * is stconv.c's. */
#include "train/safetensors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TENSORS (1 << 20)
#define MAX_NAME 1024

/* ---------------------------------------------------------------- JSON */

typedef struct js {
    const uint8_t *p;
    size_t n, i;     /* the header's bytes, the position */
    char *pool;      /* decoded strings: never longer than the header */
    size_t used;
    const char *cur; /* the tensor being read, for messages */
} js;

static am_status js_err(const js *j, const char *what) {
    if (j->cur)
        return am_fail(AM_EFORMAT, "safetensors: bad header at byte %zu (tensor '%.200s'): %s", j->i, j->cur, what);
    return am_fail(AM_EFORMAT, "safetensors: bad header at byte %zu: %s", j->i, what);
}

static int js_peek(js *j) {
    while (j->i < j->n && (j->p[j->i] == ' ' || j->p[j->i] == '\t' || j->p[j->i] == '\n' || j->p[j->i] == '\r'))
        j->i++;
    return j->i < j->n ? j->p[j->i] : -1;
}

static am_status js_expect(js *j, int c, const char *what) {
    if (js_peek(j) != c) return js_err(j, what);
    j->i++;
    return AM_OK;
}

/* The length of the well-formed UTF-8 sequence at s (n bytes left), or 0. */
static size_t utf8_len(const uint8_t *s, size_t n) {
    uint8_t c = s[0], lo = 0x80, hi = 0xBF;
    size_t k;
    if (c >= 0xC2 && c <= 0xDF) k = 2;
    else if (c >= 0xE0 && c <= 0xEF) k = 3, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
    else if (c >= 0xF0 && c <= 0xF4) k = 4, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
    else return 0;
    if (n < k || s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < k; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    return k;
}

static int hex4(const uint8_t *s, unsigned *v) {
    *v = 0;
    for (int i = 0; i < 4; i++) {
        int c = s[i], d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                        : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return 0;
        *v = *v << 4 | (unsigned)d;
    }
    return 1;
}

/* A \u escape at j->i (past the backslash and the u), a surrogate pair
 * whole, into out as UTF-8; its length into *len. */
static am_status js_unicode(js *j, char *out, size_t *len) {
    unsigned cp, lo;
    if (j->n - j->i < 4 || !hex4(j->p + j->i, &cp)) return js_err(j, "a \\u escape without four hex digits");
    j->i += 4;
    if (cp >= 0xDC00 && cp <= 0xDFFF) return js_err(j, "a lone low surrogate in a \\u escape");
    if (cp >= 0xD800 && cp <= 0xDBFF) {
        if (j->n - j->i < 6 || j->p[j->i] != '\\' || j->p[j->i + 1] != 'u' || !hex4(j->p + j->i + 2, &lo) ||
            lo < 0xDC00 || lo > 0xDFFF)
            return js_err(j, "a high surrogate without its low one");
        j->i += 6;
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
    }
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) o[0] = (unsigned char)cp, *len = 1;
    else if (cp < 0x800) o[0] = (unsigned char)(0xC0 | cp >> 6), o[1] = (unsigned char)(0x80 | (cp & 63)), *len = 2;
    else if (cp < 0x10000)
        o[0] = (unsigned char)(0xE0 | cp >> 12), o[1] = (unsigned char)(0x80 | (cp >> 6 & 63)),
        o[2] = (unsigned char)(0x80 | (cp & 63)), *len = 3;
    else
        o[0] = (unsigned char)(0xF0 | cp >> 18), o[1] = (unsigned char)(0x80 | (cp >> 12 & 63)),
        o[2] = (unsigned char)(0x80 | (cp >> 6 & 63)), o[3] = (unsigned char)(0x80 | (cp & 63)), *len = 4;
    return AM_OK;
}

/* One escape after a backslash, decoded to out. */
static am_status js_escape(js *j, char *out, size_t *len) {
    static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
    if (j->i >= j->n) return js_err(j, "the header ends inside a string");
    int c = j->p[j->i++];
    if (c == 'u') return js_unicode(j, out, len);
    const char *k = c ? strchr(from, c) : NULL;
    if (!k) return js_err(j, "an unknown escape in a string");
    out[0] = to[k - from];
    *len = 1;
    return AM_OK;
}

/* A string, decoded into the pool after what is kept there (NUL-ended;
 * kept only if the caller adds its length + 1 to j->used). */
static am_status js_string(js *j, char **out, size_t *len) {
    if (js_peek(j) != '"') return js_err(j, "expected a string");
    j->i++;
    char *d = j->pool + j->used;
    size_t k = 0;
    for (;;) {
        if (j->i >= j->n) return js_err(j, "the header ends inside a string");
        uint8_t c = j->p[j->i];
        if (c == '"') break;
        if (c < 0x20) return js_err(j, "a control character in a string");
        if (c == '\\') {
            size_t l = 0;
            j->i++;
            AM_TRY(js_escape(j, d + k, &l));
            k += l;
        } else if (c >= 0x80) {
            size_t l = utf8_len(j->p + j->i, j->n - j->i);
            if (!l) return js_err(j, "a string that is not UTF-8");
            memcpy(d + k, j->p + j->i, l);
            k += l, j->i += l;
        } else {
            d[k++] = (char)c, j->i++;
        }
    }
    j->i++;
    d[k] = 0;
    *out = d;
    *len = k;
    return AM_OK;
}

/* A whole number: digits only (no sign, fraction, exponent or leading zero). */
static am_status js_uint(js *j, uint64_t *v) {
    int c = js_peek(j);
    if (c == '-') return js_err(j, "a negative number");
    if (c < '0' || c > '9') return js_err(j, "expected a whole number");
    *v = 0;
    size_t start = j->i;
    while (j->i < j->n && j->p[j->i] >= '0' && j->p[j->i] <= '9') {
        unsigned d = j->p[j->i] - '0';
        if (*v > (UINT64_MAX - d) / 10) return js_err(j, "a number beyond 2^64");
        *v = *v * 10 + d;
        j->i++;
    }
    if (j->p[start] == '0' && j->i - start > 1) return js_err(j, "a number with a leading zero");
    if (j->i < j->n && (j->p[j->i] == '.' || j->p[j->i] == 'e' || j->p[j->i] == 'E'))
        return js_err(j, "a fraction or exponent where a whole number belongs");
    return AM_OK;
}

/* [n, ...]: at most max whole numbers into v, their count into *k. */
static am_status js_uints(js *j, uint64_t *v, int max, int *k) {
    AM_TRY(js_expect(j, '[', "expected '['"));
    *k = 0;
    if (js_peek(j) == ']') return j->i++, AM_OK;
    for (;;) {
        if (*k == max) return js_err(j, "too many numbers in a list");
        AM_TRY(js_uint(j, &v[(*k)++]));
        if (js_peek(j) == ']') return j->i++, AM_OK;
        AM_TRY(js_expect(j, ',', "expected ',' or ']' in a list"));
    }
}

/* ---------------------------------------------------------------- tensors */

static const char *const dtype_names[AM_ST_DTYPES] = {"BOOL", "U8",  "I8",  "F8_E5M2", "F8_E4M3",
                                                      "I16",  "U16", "F16", "BF16",    "I32",
                                                      "U32",  "F32", "I64", "U64",     "F64"};
static const unsigned char dtype_sizes[AM_ST_DTYPES] = {1, 1, 1, 1, 1, 2, 2, 2, 2, 4, 4, 4, 8, 8, 8};

const char *am_st_dtype_name(am_st_dtype d) { return (unsigned)d < AM_ST_DTYPES ? dtype_names[d] : "?"; }
size_t am_st_dtype_size(am_st_dtype d) { return (unsigned)d < AM_ST_DTYPES ? dtype_sizes[d] : 0; }
int am_st_is_float(am_st_dtype d) { return d == AM_ST_F32 || d == AM_ST_F16 || d == AM_ST_BF16 || d == AM_ST_F64; }

void am_st_shape_words(int ndim, const uint64_t *dims, char *buf, size_t cap) {
    size_t k = 0;
    if (!cap) return;
    buf[0] = 0;
    if (!ndim) snprintf(buf, cap, "scalar");
    for (int i = 0; i < ndim && k < cap; i++) {
        int w = snprintf(buf + k, cap - k, "%s%llu", i ? "x" : "", (unsigned long long)dims[i]);
        if (w < 0) break;
        k += (size_t)w;
    }
}

/* s for a one-line message: a string from the header may hold anything. */
static const char *shown(const char *s) {
    for (const char *c = s; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7F) return "(with control characters)";
    return s;
}

/* One field of a tensor's object. have: the fields seen (bits). */
static am_status js_field(js *j, am_st_tensor *t, uint64_t off[2], unsigned *have) {
    char *key, *v;
    size_t kl, vl;
    int k;
    AM_TRY(js_string(j, &key, &kl));
    AM_TRY(js_expect(j, ':', "expected ':' after a field's name"));
    unsigned bit = !strcmp(key, "dtype") ? 1 : !strcmp(key, "shape") ? 2 : !strcmp(key, "data_offsets") ? 4 : 0;
    if (!bit) return js_err(j, "a field other than dtype, shape and data_offsets");
    if (*have & bit) return js_err(j, "a field given twice");
    *have |= bit;
    if (bit == 2) return js_uints(j, t->dims, AM_ST_MAX_DIMS, &t->ndim);
    if (bit == 4) {
        AM_TRY(js_uints(j, off, 2, &k));
        return k == 2 ? AM_OK : js_err(j, "data_offsets is not [begin, end]");
    }
    AM_TRY(js_string(j, &v, &vl));
    for (int d = 0; d < AM_ST_DTYPES; d++)
        if (!strcmp(v, dtype_names[d])) return t->dtype = (am_st_dtype)d, AM_OK;
    return am_fail(AM_EFORMAT, "safetensors: tensor '%.200s' has an unknown dtype '%.40s'", t->name, shown(v));
}

static am_status js_tensor(js *j, am_st_tensor *t, uint64_t off[2]) {
    unsigned have = 0;
    j->cur = t->name;
    AM_TRY(js_expect(j, '{', "expected a tensor's '{'"));
    if (js_peek(j) != '}')
        for (;;) {
            AM_TRY(js_field(j, t, off, &have));
            if (js_peek(j) != ',') break;
            j->i++;
        }
    AM_TRY(js_expect(j, '}', "expected ',' or '}' in a tensor"));
    if (have != 7)
        return am_fail(AM_EFORMAT, "safetensors: tensor '%.200s' has no %s", t->name,
                       !(have & 1) ? "dtype" : !(have & 2) ? "shape" : "data_offsets");
    j->cur = NULL;
    return AM_OK;
}

static int by_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* "__metadata__": {string: string, ...}, keys once each. */
static am_status js_meta(js *j, int *count) {
    size_t kl, vl, mark = j->used;
    char *k, *v, **keys = NULL;
    int n = 0;
    am_status st = js_expect(j, '{', "__metadata__ is not an object");
    if (st == AM_OK && js_peek(j) != '}')
        while (st == AM_OK) {
            char **nk = n % 64 ? keys : realloc(keys, sizeof *keys * (size_t)(n + 64));
            if (!nk) st = am_fail(AM_ENOMEM, "safetensors: out of memory");
            else keys = nk, st = js_string(j, &k, &kl);
            if (st == AM_OK) keys[n++] = k, j->used += kl + 1, st = js_expect(j, ':', "expected ':' in __metadata__");
            if (st == AM_OK && js_peek(j) != '"') st = js_err(j, "__metadata__ holds a value that is not a string");
            if (st == AM_OK) st = js_string(j, &v, &vl);
            if (st != AM_OK || js_peek(j) != ',') break;
            j->i++;
        }
    if (st == AM_OK) st = js_expect(j, '}', "expected ',' or '}' in __metadata__");
    if (st == AM_OK && n > 1) qsort(keys, (size_t)n, sizeof *keys, by_str);
    for (int i = 1; st == AM_OK && i < n; i++)
        if (!strcmp(keys[i - 1], keys[i]))
            st = am_fail(AM_EFORMAT, "safetensors: __metadata__ has '%.200s' twice", shown(keys[i]));
    free(keys);
    j->used = mark; /* not kept */
    *count = n;
    return st;
}

/* A tensor's name: not empty, not too long, no control characters (a name
 * goes into one-line messages). */
static am_status check_name(const js *j, const char *s, size_t len) {
    if (!len) return js_err(j, "an empty tensor name");
    if (len > MAX_NAME) return js_err(j, "a tensor name longer than 1024 bytes");
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7F) return js_err(j, "a control character in a tensor name");
    return AM_OK;
}

static am_status grow(am_safetensors *st, uint64_t **offs, int *cap) {
    if (st->n < *cap) return AM_OK;
    if (st->n >= MAX_TENSORS) return am_fail(AM_EFORMAT, "safetensors: more than %d tensors", MAX_TENSORS);
    int nc = *cap ? *cap * 2 : 64;
    am_st_tensor *t = realloc(st->t, sizeof *t * (size_t)nc);
    if (t) st->t = t;
    uint64_t *o = t ? realloc(*offs, sizeof *o * 2 * (size_t)nc) : NULL;
    if (!o) return am_fail(AM_ENOMEM, "safetensors: out of memory for %d tensors", nc);
    *offs = o;
    *cap = nc;
    return AM_OK;
}

/* One member of the header's object: a tensor or the metadata. */
static am_status js_member(js *j, am_safetensors *st, uint64_t **offs, int *cap, int *meta) {
    char *name;
    size_t len;
    AM_TRY(js_string(j, &name, &len));
    AM_TRY(js_expect(j, ':', "expected ':' after a tensor's name"));
    if (!strcmp(name, "__metadata__") && len == 12) {
        if ((*meta)++) return js_err(j, "__metadata__ given twice");
        return js_meta(j, &st->n_meta);
    }
    j->used += len + 1;
    AM_TRY(check_name(j, name, len));
    AM_TRY(grow(st, offs, cap));
    am_st_tensor *t = &st->t[st->n];
    memset(t, 0, sizeof *t);
    t->name = name;
    AM_TRY(js_tensor(j, t, *offs + 2 * (size_t)st->n));
    st->n++;
    return AM_OK;
}

static am_status js_header(js *j, am_safetensors *st, uint64_t **offs) {
    int cap = 0, meta = 0;
    AM_TRY(js_expect(j, '{', "the header is not a JSON object"));
    if (js_peek(j) != '}')
        for (;;) {
            AM_TRY(js_member(j, st, offs, &cap, &meta));
            if (js_peek(j) != ',') break;
            j->i++;
        }
    AM_TRY(js_expect(j, '}', "expected ',' or '}' between tensors"));
    if (js_peek(j) != -1) return js_err(j, "text after the header's object");
    return AM_OK;
}

/* ---------------------------------------------------------------- layout */

/* A tensor's element count and bytes from its shape and dtype, against its
 * offsets and the data's length. */
static am_status sizes(am_st_tensor *t, const uint64_t off[2], size_t data_n) {
    uint64_t numel = 1;
    for (int d = 0; d < t->ndim; d++) {
        if (t->dims[d] && numel > ((uint64_t)1 << 60) / t->dims[d])
            return am_fail(AM_EFORMAT, "safetensors: tensor '%.200s' has a shape beyond 2^60 elements", t->name);
        numel *= t->dims[d];
    }
    uint64_t bytes = numel * am_st_dtype_size(t->dtype);
    if (off[1] < off[0])
        return am_fail(AM_EFORMAT, "safetensors: tensor '%.200s' has data_offsets [%llu, %llu], which end before they begin",
                       t->name, (unsigned long long)off[0], (unsigned long long)off[1]);
    if (off[1] > data_n)
        return am_fail(AM_EFORMAT, "safetensors: tensor '%.200s' has data_offsets [%llu, %llu], past the end of the data "
                       "(%zu bytes): the file is truncated or its offsets are wrong",
                       t->name, (unsigned long long)off[0], (unsigned long long)off[1], data_n);
    if (off[1] - off[0] != bytes) {
        char sh[200];
        am_st_shape_words(t->ndim, t->dims, sh, sizeof sh);
        return am_fail(AM_EFORMAT, "safetensors: tensor '%.200s' has %llu bytes of data; a %s %s tensor takes %llu",
                       t->name, (unsigned long long)(off[1] - off[0]), sh, am_st_dtype_name(t->dtype),
                       (unsigned long long)bytes);
    }
    t->numel = (size_t)numel;
    t->bytes = (size_t)bytes;
    t->offset = (size_t)off[0];
    return AM_OK;
}

static int by_offset(const void *a, const void *b) {
    const am_st_tensor *x = a, *y = b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    return x->bytes < y->bytes ? -1 : x->bytes > y->bytes;
}

/* Every byte of the data belongs to exactly one tensor; tensors sorted by
 * where their data lies. */
static am_status layout(am_safetensors *st, const uint64_t *offs, const uint8_t *data, size_t data_n) {
    for (int i = 0; i < st->n; i++) AM_TRY(sizes(&st->t[i], offs + 2 * (size_t)i, data_n));
    if (st->n > 1) qsort(st->t, (size_t)st->n, sizeof *st->t, by_offset);
    size_t pos = 0;
    for (int i = 0; i < st->n; i++) {
        am_st_tensor *t = &st->t[i];
        if (t->offset < pos)
            return am_fail(AM_EFORMAT, "safetensors: tensors '%.200s' and '%.200s' overlap in the data", st->t[i - 1].name,
                           t->name);
        if (t->offset > pos)
            return am_fail(AM_EFORMAT, "safetensors: bytes %zu to %zu of the data belong to no tensor (before '%.200s')",
                           pos, t->offset, t->name);
        t->data = data + t->offset;
        pos = t->offset + t->bytes;
    }
    if (pos != data_n)
        return am_fail(AM_EFORMAT, "safetensors: %zu bytes after the last tensor's data belong to no tensor", data_n - pos);
    return AM_OK;
}

static int by_name(const void *a, const void *b) {
    return strcmp((*(am_st_tensor *const *)a)->name, (*(am_st_tensor *const *)b)->name);
}

static am_status index_names(am_safetensors *st) {
    st->by_name = malloc(sizeof *st->by_name * (size_t)(st->n ? st->n : 1));
    if (!st->by_name) return am_fail(AM_ENOMEM, "safetensors: out of memory");
    for (int i = 0; i < st->n; i++) st->by_name[i] = &st->t[i];
    if (st->n > 1) qsort(st->by_name, (size_t)st->n, sizeof *st->by_name, by_name);
    for (int i = 1; i < st->n; i++)
        if (!strcmp(st->by_name[i - 1]->name, st->by_name[i]->name))
            return am_fail(AM_EFORMAT, "safetensors: tensor '%.200s' appears twice in the header", st->by_name[i]->name);
    return AM_OK;
}

static uint64_t le64(const uint8_t *b) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | b[i];
    return v;
}

am_status am_st_parse(const uint8_t *buf, size_t n, am_safetensors *st) {
    memset(st, 0, sizeof *st);
    if (!buf) return am_fail(AM_EINVAL, "safetensors: NULL buffer");
    if (n < 8) return am_fail(AM_EFORMAT, "safetensors: %zu bytes, too short for the header's length (8 bytes)", n);
    uint64_t hl = le64(buf);
    if (hl > n - 8)
        return am_fail(AM_EFORMAT, "safetensors: the header's length, %llu bytes, runs past the end of the file (%zu bytes)",
                       (unsigned long long)hl, n);
    if (hl > AM_ST_MAX_HEADER)
        return am_fail(AM_EFORMAT, "safetensors: a header of %llu bytes; at most %zu MiB are read", (unsigned long long)hl,
                       AM_ST_MAX_HEADER >> 20);
    js j = {buf + 8, (size_t)hl, 0, malloc((size_t)hl + 1), 0, NULL};
    if (!j.pool) return am_fail(AM_ENOMEM, "safetensors: out of memory for the header");
    st->names = j.pool;
    uint64_t *offs = NULL;
    am_status s = js_header(&j, st, &offs);
    if (s == AM_OK) s = layout(st, offs, buf + 8 + hl, n - 8 - (size_t)hl);
    if (s == AM_OK) s = index_names(st);
    free(offs);
    if (s != AM_OK) am_st_free(st);
    return s;
}

void am_st_free(am_safetensors *st) {
    if (!st) return;
    free(st->t);
    free(st->by_name);
    free(st->names);
    memset(st, 0, sizeof *st);
}

static int find_cmp(const void *key, const void *elem) {
    return strcmp(key, (*(am_st_tensor *const *)elem)->name);
}

const am_st_tensor *am_st_find(const am_safetensors *st, const char *name) {
    if (!st || !st->n || !name) return NULL;
    am_st_tensor *const *p = bsearch(name, st->by_name, (size_t)st->n, sizeof *st->by_name, find_cmp);
    return p ? *p : NULL;
}
