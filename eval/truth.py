"""The evaluator's knowledge of a run, which the attacker never sees: its
batches as the trusted side's loader gave them, written by
`attack_hostview truth DATA LIMIT BATCH SEED FIRST STEPS OUT [CKDIR LAYER]`
(tests/attack_hostview.c): OUT/truth.json (first, steps, batch, shape,
classes, layer, input_shape), OUT/labels.i32, OUT/images.f32 (pixels in
[0, 1]) and, given the run's checkpoints, OUT/inputs.f32 (the split layer's
true input at each step)."""
import json
import os

import numpy as np
import torch


def load(directory):
    """(meta, labels (steps, batch) int64 tensor, images (steps, batch, C, H, W) float tensor)."""
    with open(os.path.join(directory, "truth.json")) as f:
        meta = json.load(f)
    s, b = meta["steps"], meta["batch"]
    labels = np.fromfile(os.path.join(directory, "labels.i32"), dtype="<i4").reshape(s, b)
    images = np.fromfile(os.path.join(directory, "images.f32"), dtype="<f4").reshape(s, b, *meta["shape"])
    return meta, torch.from_numpy(labels.astype(np.int64)), torch.from_numpy(images.copy())


def inputs(directory):
    """The split layer's true inputs, (steps, batch, C, H, W)."""
    with open(os.path.join(directory, "truth.json")) as f:
        meta = json.load(f)
    x = np.fromfile(os.path.join(directory, "inputs.f32"), dtype="<f4")
    return torch.from_numpy(x.reshape(meta["steps"], meta["batch"], *meta["input_shape"]).copy())
