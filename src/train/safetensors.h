/* safetensors files (the format PyTorch state dicts are commonly saved in):
 *     u64 little-endian N, N bytes of a JSON header, the data.
 * The header maps each tensor's name to {"dtype", "shape", "data_offsets":
 * [begin, end]} (offsets into the data), and may hold "__metadata__", an
 * object of strings. Parsed from memory with every length checked: the
 * header's length against the file's, a strict JSON reader for exactly this
 * subset (no other fields, no duplicate names, no floats or negative
 * numbers), each tensor's bytes against its shape and dtype, and the data
 * covered exactly once, in no particular order (no overlap, no gap, nothing
 * after). Internal to src/train: the importer (import.c) and the fuzz
 * target use it; it does not write files. */
#ifndef ASYMML_TRAIN_SAFETENSORS_H
#define ASYMML_TRAIN_SAFETENSORS_H

#include "asymml/core.h"

#define AM_ST_MAX_DIMS 8
#define AM_ST_MAX_HEADER ((size_t)100 << 20) /* as the reference implementation */

typedef enum am_st_dtype {
    AM_ST_BOOL, AM_ST_U8, AM_ST_I8, AM_ST_F8_E5M2, AM_ST_F8_E4M3, AM_ST_I16, AM_ST_U16, AM_ST_F16,
    AM_ST_BF16, AM_ST_I32, AM_ST_U32, AM_ST_F32, AM_ST_I64, AM_ST_U64, AM_ST_F64, AM_ST_DTYPES
} am_st_dtype;

typedef struct am_st_tensor {
    const char *name;    /* UTF-8 without control characters */
    am_st_dtype dtype;
    int ndim;            /* 0: a scalar */
    uint64_t dims[AM_ST_MAX_DIMS];
    size_t numel;
    const uint8_t *data; /* into the buffer parsed (not aligned) */
    size_t offset;       /* of data, from the start of the data section */
    size_t bytes;        /* numel x the dtype's size */
} am_st_tensor;

typedef struct am_safetensors {
    int n;
    am_st_tensor *t; /* in the order of their data */
    am_st_tensor **by_name; /* the same, by name (strcmp) */
    char *names;     /* the names' storage */
    int n_meta;      /* "__metadata__" entries (read, checked, not kept) */
} am_safetensors;

/* Parses a whole file held in buf (n bytes); st borrows buf for the tensors'
 * data. On failure st is empty and the message says what is wrong, naming
 * the tensor where there is one. */
am_status am_st_parse(const uint8_t *buf, size_t n, am_safetensors *st);
void am_st_free(am_safetensors *st);
/* The tensor of that name, or NULL. */
const am_st_tensor *am_st_find(const am_safetensors *st, const char *name);
const char *am_st_dtype_name(am_st_dtype d);
size_t am_st_dtype_size(am_st_dtype d);
/* 1 for the dtypes am_st_to_float converts: F32, F16, BF16, F64. */
int am_st_is_float(am_st_dtype d);
/* The tensor's values as floats into out (numel). AM_EINVAL for a dtype
 * that is not a float's; AM_ENUM, naming the tensor and the element, for a
 * NaN, an infinity or an F64 beyond float's range. */
am_status am_st_to_float(const am_st_tensor *t, float *out);
/* "3x64x7x7", "scalar". */
void am_st_shape_words(int ndim, const uint64_t *dims, char *buf, size_t cap);

#endif
