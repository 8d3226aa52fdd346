/* A safetensors tensor's data as floats (safetensors.h): F32, F16, BF16 and
 * F64, little-endian as the format is, read byte by byte (the data need not
 * be aligned). Every value must be finite: a NaN or an infinity in a model
 * is refused here, naming the tensor and the element. */
#include "train/safetensors.h"

#include <float.h>
#include <math.h>
#include <string.h>

static float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, e = (h >> 10) & 31, m = h & 1023, u;
    float f;
    if (e == 0) { /* zero or subnormal: m x 2^-24, exact */
        f = (float)m * 0x1p-24f;
        memcpy(&u, &f, 4);
        u |= sign;
    } else if (e == 31) {
        u = sign | 0x7F800000u | m << 13;
    } else {
        u = sign | (e + 112) << 23 | m << 13;
    }
    memcpy(&f, &u, 4);
    return f;
}

static uint64_t le(const uint8_t *b, size_t k) {
    uint64_t v = 0;
    for (size_t i = k; i-- > 0;) v = v << 8 | b[i];
    return v;
}

/* Element i of t as a float; *range set when an F64 lies beyond float's range. */
static float element(const am_st_tensor *t, size_t i, int *range) {
    const uint8_t *b = t->data + i * am_st_dtype_size(t->dtype);
    uint32_t u;
    uint64_t v;
    float f;
    double d;
    switch (t->dtype) {
    case AM_ST_F32: u = (uint32_t)le(b, 4); memcpy(&f, &u, 4); return f;
    case AM_ST_F16: return half_to_float((uint16_t)le(b, 2));
    case AM_ST_BF16: u = (uint32_t)le(b, 2) << 16; memcpy(&f, &u, 4); return f;
    default:
        v = le(b, 8);
        memcpy(&d, &v, 8);
        if (isfinite(d) && fabs(d) > FLT_MAX) { /* converting it would be undefined */
            *range = 1;
            return 0.f;
        }
        return (float)d;
    }
}

am_status am_st_to_float(const am_st_tensor *t, float *out) {
    if (!t || !out) return am_fail(AM_EINVAL, "safetensors: NULL argument");
    if (!am_st_is_float(t->dtype))
        return am_fail(AM_EINVAL, "safetensors: tensor '%.200s' is %s, not a float (F32, F16, BF16, F64)", t->name,
                       am_st_dtype_name(t->dtype));
    for (size_t i = 0; i < t->numel; i++) {
        int range = 0;
        out[i] = element(t, i, &range);
        if (range || !isfinite(out[i]))
            return am_fail(AM_ENUM, "tensor '%.200s' holds %s at element %zu", t->name,
                           range ? "a value beyond float's range" : isnan(out[i]) ? "a NaN" : "an infinity", i);
    }
    return AM_OK;
}
