/* The host's view, recorded: a backend that writes every input it is sent
 * to two files, then passes the request on to the backend it wraps. It
 * sits on the untrusted side and sees exactly what the accelerator
 * receives, never anything of the trusted side's: attacks and audits read
 * its files (format below; scripts/hostview.py reads them in Python).
 *
 *   index.jsonl   one JSON object a line, for each input of each request:
 *       {"seq": 12, "step": 3, "layer": 4, "request": "conv-forward",
 *        "input": 0, "kind": "residual", "shape": [64, 6, 14, 14],
 *        "offset": 1204224, "floats": 75264,
 *        "conv": {"out": 16, "kernel": [5, 5], "stride": [1, 1], "pad": [0, 0]}}
 *     seq counts requests from 0; step is the trusted side's step counter
 *     as the request states it; kind is a crossing kind (asymml/crossing.h);
 *     shape is [n, c, h, w], weights [K, C, kh, kw].
 *   buffers.f32   the inputs' values, float32 little-endian, one after
 *     another: input i is floats [offset / 4, offset / 4 + floats) (4-byte
 *     values; kind "blinded", slalom's, holds int32 residues mod 2^31 - 1
 *     in [-(p-1)/2, (p-1)/2], and "labels" int32, in those 4 bytes).
 * An input that the request marks unchanged since a request that read the
 * same buffer (am_req.keep: a layer's residual and weights in its backward
 * pass, the output gradient for the second backward request) was recorded
 * when first sent and is not written again.
 * In gpu-only mode (every layer on the accelerator, no privacy) what
 * arrives is what its PUT ops copy in: one line each, "request": "put",
 * kind "activation" (the batch), "labels" (int32 values), "weights" or
 * "state", no "conv" field; its other ops bring nothing new and are not
 * recorded.
 * Only the requests of steps first to last (inclusive) are recorded: an
 * evaluation's window on a long run (0 and UINT32_MAX: all of them). */
#ifndef ASYMML_UNTRUSTED_RECORDER_H
#define ASYMML_UNTRUSTED_RECORDER_H

#include "boundary/backend.h"

/* Wraps inner (which it destroys with itself); writes to the open
 * descriptors index_fd and data_fd (which it closes with itself). */
am_status am_recorder_create(am_backend *inner, int index_fd, int data_fd, uint32_t first, uint32_t last,
                             am_backend **out);

#endif
