"""The zoo's LeNet (src/nn/zoo.c) in PyTorch, with an asymml checkpoint's
weights (`attack_hostview weights CK OUT`: each tensor in the model's order,
weight then bias, PyTorch's layouts, each starting on a 64-byte boundary):
the white-box attacker's copy of the trained model."""
import json
import os

import numpy as np
import torch
import torch.nn as nn


def lenet(classes=10, channels=1, size=28):
    s = size // 4
    return nn.Sequential(
        nn.Conv2d(channels, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * s * s, 128), nn.ReLU(), nn.Linear(128, classes))


SPLIT = 3  # the Sequential index of LeNet's split layer (asymml's layer 4)


def load(directory, net):
    """Fills net's parameters from DIR/weights.f32; returns (mean, std) of the input normalization."""
    with open(os.path.join(directory, "model.json")) as f:
        meta = json.load(f)
    flat = np.fromfile(os.path.join(directory, "weights.f32"), dtype="<f4")
    off = 0
    with torch.no_grad():
        for p in net.parameters():
            n = p.numel()
            p.copy_(torch.from_numpy(flat[off:off + n].copy()).reshape(p.shape))
            off += -(-n // 16) * 16
    if off != len(flat) or len(flat) != meta["floats"]:
        raise ValueError(f"{directory}: {len(flat)} floats, not this model's {off}")
    return meta["mean"], meta["std"]
