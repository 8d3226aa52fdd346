#!/usr/bin/env python3
"""Reads a recording of the host's view (asymml ... --record DIR).

The format (src/untrusted/recorder.h): DIR/index.jsonl has one JSON object a
line for each input of each request the accelerator received:
    {"seq": 12, "step": 3, "layer": 4, "request": "conv-forward", "input": 0,
     "kind": "residual", "shape": [64, 6, 14, 14], "offset": 1204224,
     "floats": 75264, "conv": {"out": 16, "kernel": [5, 5], "stride": [1, 1],
     "pad": [0, 0]}}
and DIR/buffers.f32 holds the values, float32 little-endian, input i being
floats [offset / 4, offset / 4 + floats). An input the request marks
unchanged since an earlier request that read the same buffer is recorded
once, when first sent.

As a module:
    from hostview import records
    for r in records("rec"):          # dicts as above, plus "values"
        x = r["values"]               # numpy array of r["shape"] (or a flat array.array without numpy)
As a program: python3 scripts/hostview.py DIR prints what crossed, by step,
layer and kind, and the totals.
"""
import array
import json
import os
import sys
from collections import Counter


def records(directory, load=True):
    """Yields the recording's entries in order, each with its "values"."""
    data = None
    if load:
        data = array.array("f")
        with open(os.path.join(directory, "buffers.f32"), "rb") as f:
            data.frombytes(f.read())
        if sys.byteorder != "little":
            data.byteswap()
    try:
        import numpy as np
    except ImportError:
        np = None
    with open(os.path.join(directory, "index.jsonl")) as f:
        for line in f:
            r = json.loads(line)
            if load:
                start = r["offset"] // 4
                v = data[start:start + r["floats"]]
                r["values"] = np.asarray(v, dtype=np.float32).reshape(r["shape"]) if np else v
            yield r


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: hostview.py DIR")
    kinds, layers, steps, floats = Counter(), set(), set(), Counter()
    for r in records(sys.argv[1], load=False):
        kinds[r["kind"]] += 1
        floats[r["kind"]] += r["floats"]
        layers.add(r["layer"])
        steps.add(r["step"])
    print(f"{sys.argv[1]}: {len(steps)} steps, layers {sorted(layers)}")
    for k in sorted(kinds):
        print(f"  {k:18s} {kinds[k]:6d} tensors {floats[k] * 4 / 2**20:10.1f} MiB")


if __name__ == "__main__":
    main()
