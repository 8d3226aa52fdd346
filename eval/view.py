"""The host's recorded view (asymml ... --record DIR; format in
src/untrusted/recorder.h and scripts/hostview.py), read lazily: the values
stay in DIR/buffers.f32, mapped, and only what an attack asks for is read.
Everything here is what the accelerator received; nothing else."""
import json
import os

import numpy as np
import torch


class View:
    def __init__(self, directory):
        self.dir = directory
        with open(os.path.join(directory, "index.jsonl")) as f:
            self.index = [json.loads(line) for line in f]
        path = os.path.join(directory, "buffers.f32")
        self.data = np.memmap(path, dtype="<f4", mode="r") if os.path.getsize(path) else np.zeros(0, "<f4")

    def values(self, r):
        start = r["offset"] // 4
        return torch.from_numpy(np.array(self.data[start:start + r["floats"]])).reshape(r["shape"])

    def layers(self):
        """The split layers the host saw, in model order."""
        return sorted({r["layer"] for r in self.index})

    def entries(self, request, kind, layer=None):
        """{step: entry}, the first of each step (a layer's, or the first split layer's)."""
        if layer is None:
            layer = self.layers()[0] if self.index else -1
        out = {}
        for r in self.index:
            if r["request"] == request and r["kind"] == kind and r["layer"] == layer and r["step"] not in out:
                out[r["step"]] = r
        return out

    def by_step(self, request, kind, layer=None, steps=None):
        """{step: tensor} of one kind, for the given steps (default: all)."""
        e = self.entries(request, kind, layer)
        return {s: self.values(r) for s, r in sorted(e.items()) if steps is None or s in steps}

    def stacked(self, request, kind, layer=None, steps=None):
        """One kind's tensors of the given steps (default: all; in step order) along the batch."""
        t = self.by_step(request, kind, layer, steps)
        return torch.cat(list(t.values())) if t else None

    def all_of(self, request, kind, layer=None):
        """Every entry of a kind in order (an evaluation pass: steps may repeat), along the batch."""
        if layer is None:
            layer = self.layers()[0]
        t = [self.values(r) for r in self.index if r["request"] == request and r["kind"] == kind and r["layer"] == layer]
        return torch.cat(t) if t else None

    def blinded(self):
        """Slalom's first layer's inputs as they crossed (int32 residues mod p,
        in the order sent), as floats in [-1/2, 1/2]: every entry of kind
        "blinded" of the lowest layer, along the batch."""
        rs = [r for r in self.index if r["kind"] == "blinded"]
        if not rs:
            return None
        first = min(r["layer"] for r in rs)
        t = []
        for r in rs:
            if r["layer"] == first:
                start = r["offset"] // 4
                v = np.array(self.data[start:start + r["floats"]]).view("<i4").astype(np.float32) / 2.0 ** 31
                t.append(torch.from_numpy(v).reshape(r["shape"]))
        return torch.cat(t)

    def conv(self, layer=None):
        """The split layer's convolution as the request states it: out, kernel, stride, pad."""
        for r in self.index:
            if "conv" in r and (layer is None or r["layer"] == layer):
                return r["conv"]
        return None
