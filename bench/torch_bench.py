#!/usr/bin/python3
"""PyTorch side of `bench/compare.sh` (Debian's python3-torch, CPU) and of
`bench/gpu_compare.sh` (--device cuda, against gpu-only mode): the same
models, batch, input and thread count as `asymml bench`, timed the same way
(median of --steps after --warmup; a training step is forward, loss, backward
and SGD update). On the GPU, as in gpu-only mode, each step copies the
batch and labels in from host memory and the loss out (.item()), and
inference waits for its result. One model per process, so peak RSS is that
model's.

Prints one line: name train_ms infer_ms peak_rss_mib
"""
import argparse
import resource
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision.models as tvm


def make(name, classes, hw):
    imagenet = name.endswith("-imagenet")
    base = name.replace("-imagenet", "")
    if base.startswith("vgg"):
        m = getattr(tvm, base + "_bn")(num_classes=classes)
        for mod in m.features:  # asymml's VGG pools use ceil_mode (same sizes on even inputs)
            if isinstance(mod, nn.MaxPool2d):
                mod.ceil_mode = True
        if not imagenet:
            with torch.no_grad():
                n = m.features(torch.zeros(1, 3, hw, hw)).numel()
            m = nn.Sequential(m.features, nn.Flatten(), nn.Linear(n, classes))
        return m
    m = getattr(tvm, base)(num_classes=classes)
    if not imagenet:
        m.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        m.maxpool = nn.Identity()
    return m


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--input", default="3,32,32")
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="cpu, or cuda (the first GPU)")
    a = ap.parse_args()
    dev = torch.device(a.device)
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    c, h, w = (int(v) for v in a.input.split(","))
    m = make(a.model, a.classes, h).to(dev)
    x = torch.randn(a.batch, c, h, w)
    y = torch.randint(0, a.classes, (a.batch,))
    if dev.type == "cuda":
        x, y = x.pin_memory(), y.pin_memory()
    opt = torch.optim.SGD(m.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)
    med = []
    for mode in ("train", "infer"):
        ts = []
        if mode == "train":
            m.train()
        else:
            m.eval()
        for i in range(a.warmup + a.steps):
            t0 = time.perf_counter()
            xb, yb = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
            if mode == "train":
                opt.zero_grad(set_to_none=True)
                loss = F.cross_entropy(m(xb), yb)
                loss.backward()
                opt.step()
                loss.item()
            else:
                with torch.no_grad():
                    m(xb)
                if dev.type == "cuda":
                    torch.cuda.synchronize()
            if i >= a.warmup:
                ts.append(time.perf_counter() - t0)
        ts.sort()
        med.append(ts[len(ts) // 2])
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(f"{a.model} {med[0] * 1e3:.1f} {med[1] * 1e3:.1f} {rss:.0f}")


if __name__ == "__main__":
    main()
