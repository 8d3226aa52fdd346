"""The evaluator's knowledge of a run, which the attacker never sees: its
batches as the trusted side's loader gave them, written by
`attack_hostview truth DATA LIMIT BATCH SEED STEPS OUT` (tests/attack_hostview.c):
OUT/truth.json (steps, batch, shape, classes), OUT/labels.i32, OUT/images.f32
(pixels in [0, 1])."""
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
