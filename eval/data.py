"""Fashion-MNIST for the evaluation, read and written in the idx format that
asymml reads (Debian's dataset-fashion-mnist: /usr/share/datasets/fashion-mnist).

The split that keeps the attacker honest: the victim trains on the first
VICTIM training images; the attacker's auxiliary set is the rest of the
training split (disjoint from the victim's data, of the same kind: the
public data the issue allows it). The test split is the victim's test set.
"""
import gzip
import os
import struct

import numpy as np
import torch

FMNIST = "/usr/share/datasets/fashion-mnist"
VICTIM = 50000  # the victim's training images: the first VICTIM of the training split


def _open(path):
    if os.path.exists(path):
        return open(path, "rb")
    return gzip.open(path + ".gz", "rb")


def read(split, directory=FMNIST):
    """(images uint8 (N, H, W), labels uint8 (N,)) of split 'train' or 't10k'."""
    with _open(os.path.join(directory, f"{split}-images-idx3-ubyte")) as f:
        magic, n, h, w = struct.unpack(">IIII", f.read(16))
        if magic != 2051:
            raise ValueError(f"{directory}: {split} images: not an idx3 file")
        img = np.frombuffer(f.read(n * h * w), dtype=np.uint8).reshape(n, h, w)
    with _open(os.path.join(directory, f"{split}-labels-idx1-ubyte")) as f:
        magic, n2 = struct.unpack(">II", f.read(8))
        if magic != 2049 or n2 != n:
            raise ValueError(f"{directory}: {split} labels: not an idx1 file of {n} labels")
        lab = np.frombuffer(f.read(n), dtype=np.uint8)
    return img, lab


def write(directory, split, images, labels):
    """Writes uint8 images (N, H, W) and labels as DIR/{split}-images-idx3-ubyte etc."""
    os.makedirs(directory, exist_ok=True)
    n, h, w = images.shape
    with open(os.path.join(directory, f"{split}-images-idx3-ubyte"), "wb") as f:
        f.write(struct.pack(">IIII", 2051, n, h, w))
        f.write(np.ascontiguousarray(images, dtype=np.uint8).tobytes())
    with open(os.path.join(directory, f"{split}-labels-idx1-ubyte"), "wb") as f:
        f.write(struct.pack(">II", 2049, n))
        f.write(np.ascontiguousarray(labels, dtype=np.uint8).tobytes())


def pad(images, to):
    """Zero padding around (N, H, W) uint8 images up to to x to."""
    n, h, w = images.shape
    t, l = (to - h) // 2, (to - w) // 2
    out = np.zeros((n, to, to), dtype=np.uint8)
    out[:, t:t + h, l:l + w] = images
    return out


def prepare(work, size=28):
    """Writes under WORK the victim's data (DIR 'victim': its training images
    and the test split), the attacker's auxiliary set (DIR 'aux', as a test
    split, for `asymml eval`), padded to size x size. Returns the paths."""
    tr_x, tr_y = read("train")
    te_x, te_y = read("t10k")
    if size != tr_x.shape[1]:
        tr_x, te_x = pad(tr_x, size), pad(te_x, size)
    victim, aux = os.path.join(work, f"victim{size}"), os.path.join(work, f"aux{size}")
    if not os.path.exists(os.path.join(victim, "t10k-labels-idx1-ubyte")):
        write(victim, "train", tr_x[:VICTIM], tr_y[:VICTIM])
        write(victim, "t10k", te_x, te_y)
    if not os.path.exists(os.path.join(aux, "t10k-labels-idx1-ubyte")):
        write(aux, "t10k", tr_x[VICTIM:], tr_y[VICTIM:])
        write(aux, "train", tr_x[VICTIM:], tr_y[VICTIM:])
    return victim, aux


def aux_tensors(size=28):
    """The auxiliary set as float pixels in [0, 1] (N, 1, size, size) and int64 labels."""
    x, y = read("train")
    x, y = x[VICTIM:], y[VICTIM:]
    if size != x.shape[1]:
        x = pad(x, size)
    return torch.from_numpy(x.astype(np.float32) / 255).unsqueeze(1), torch.from_numpy(y.astype(np.int64))


def as_dataset(directory, split, images):
    """Writes float pixels in [0, 1] (N, 1, H, W) as an idx split (labels 0):
    the evaluator's way to run the victim's own images through a model."""
    u8 = (images.squeeze(1).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    write(directory, split, u8, np.zeros(len(u8), dtype=np.uint8))
