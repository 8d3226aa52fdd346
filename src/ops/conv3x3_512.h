/* The AVX-512 form of conv3x3.c's weight gradient (internal to src/ops):
 * one block of kb (4 or 1) output channels from k0, over the zero-padded
 * input xp ((H + 2) x (W + 2) planes, C <= AM_DW512_MAX_C channels) and dy
 * (B x K x H x W), W a multiple of 16, written into dw; scratch holds
 * am_conv3x3_dw512_scratch() bytes, 64-byte aligned (a thread's). Only
 * where am_has_avx512 (core/avx512.h). */
#ifndef ASYMML_OPS_CONV3X3_512_H
#define ASYMML_OPS_CONV3X3_512_H

#include <stddef.h>

#define AM_DW512_MAX_C 8

size_t am_conv3x3_dw512_scratch(void);
void am_conv3x3_dw512_block(const float *xp, const float *dy, int k0, int kb, int B, int C, int H, int W, int K,
                            void *scratch, float *dw);
/* The forward pass's block of kb (4 or 1) output channels from k0 of
 * sample n, no bias, into y (B x K x H x W), over the same padded xp and
 * w (K x C x 3 x 3). */
void am_conv3x3_fwd512_block(const float *xp, const float *w, int n, int k0, int kb, int C, int H, int W, int K,
                             float *y);

#endif
