#!/usr/bin/python3
"""Writes the PyTorch reference fixtures that the C tests read.

Run with Debian's python3-torch (and python3-torchvision for the zoo's
parameter counts and the imports):  /usr/bin/python3 tests/gen_fixtures.py tests/fixtures
Groups may be named after the folder to write only those: ops, train, zoo,
import (default: all).

PyTorch is the oracle: this script interprets asymml's model description
language with torch.nn modules of its own, so a mistake in the C parser or
graph shows up as a mismatch instead of being copied here.

File format (.amfx, little-endian): b"AMFX", u32 version (1), u32 count, then
per tensor: u32 name length, name, u32 dtype (0 float32, 1 int32, 2 bytes),
u32 ndim, u32 dims[ndim], data.
"""
import json
import math
import os
import struct
import sys

import numpy as np

import torch
import torch.nn as nn
import torch.nn.functional as F

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)


class Writer:
    def __init__(self):
        self.items = []

    def f32(self, name, t):
        t = torch.as_tensor(t).detach().to(torch.float32).contiguous()
        self.items.append((name, 0, list(t.shape), t.numpy().tobytes()))

    def i32(self, name, t):
        t = torch.as_tensor(t).to(torch.int32).contiguous()
        self.items.append((name, 1, list(t.shape), t.numpy().tobytes()))

    def text(self, name, s):
        b = s.encode()
        self.items.append((name, 2, [len(b)], b))

    def save(self, path):
        with open(path, "wb") as f:
            f.write(b"AMFX" + struct.pack("<II", 1, len(self.items)))
            for name, dt, dims, data in self.items:
                nb = name.encode()
                f.write(struct.pack("<I", len(nb)) + nb)
                f.write(struct.pack("<II", dt, len(dims)))
                f.write(struct.pack("<%dI" % len(dims), *dims))
                f.write(data)


# ---------------------------------------------------------------- ops
def op_fixtures(w):
    g = torch.Generator().manual_seed(7)

    def rn(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g) * scale).requires_grad_(True)

    def conv(name, xs, k_out, kh, kw, sh, sw, ph, pw, bias):
        x = rn(*xs)
        wt = rn(k_out, xs[1], kh, kw, scale=0.3)
        b = rn(k_out, scale=0.3) if bias else None
        y = F.conv2d(x, wt, b, stride=(sh, sw), padding=(ph, pw))
        dy = torch.randn(y.shape, generator=g)
        y.backward(dy)
        w.i32(name + ".cfg", [k_out, kh, kw, sh, sw, ph, pw, int(bias)])
        for n, t in [("x", x), ("w", wt), ("y", y), ("dy", dy)]:
            w.f32(f"{name}.{n}", t)
        w.f32(name + ".dx", x.grad)
        w.f32(name + ".dw", wt.grad)
        if bias:
            w.f32(name + ".b", b)
            w.f32(name + ".db", b.grad)

    conv("conv0", (2, 3, 8, 8), 4, 3, 3, 1, 1, 1, 1, True)
    conv("conv1", (2, 5, 9, 7), 6, 3, 3, 2, 2, 1, 1, False)
    conv("conv2", (3, 4, 5, 5), 3, 1, 1, 2, 2, 0, 0, False)
    conv("conv3", (2, 3, 9, 8), 4, 5, 3, 2, 1, 2, 0, True)
    conv("conv4", (2, 3, 15, 15), 8, 7, 7, 2, 2, 3, 3, False)
    conv("conv5", (6, 16, 2, 2), 8, 3, 3, 1, 1, 1, 1, True)
    conv("conv6", (2, 8, 6, 6), 16, 1, 1, 1, 1, 0, 0, True)

    # batchnorm, training then evaluation, same module.
    bn = nn.BatchNorm2d(5)
    with torch.no_grad():
        bn.weight.copy_(torch.randn(5, generator=g))
        bn.bias.copy_(torch.randn(5, generator=g))
        bn.running_mean.copy_(torch.randn(5, generator=g) * 0.1)
        bn.running_var.copy_(torch.rand(5, generator=g) + 0.5)
    w.f32("bn.gamma", bn.weight)
    w.f32("bn.beta", bn.bias)
    w.f32("bn.rm0", bn.running_mean)
    w.f32("bn.rv0", bn.running_var)
    x = (torch.randn(4, 5, 3, 3, generator=g) * 2 + 0.5).requires_grad_(True)
    bn.train()
    y = bn(x)
    dy = torch.randn(y.shape, generator=g)
    y.backward(dy)
    for n, t in [("x", x), ("y", y), ("dy", dy), ("dx", x.grad), ("dgamma", bn.weight.grad),
                 ("dbeta", bn.bias.grad), ("rm1", bn.running_mean), ("rv1", bn.running_var)]:
        w.f32("bn.train." + n, t)
    bn.zero_grad()
    bn.eval()
    x = torch.randn(3, 5, 2, 2, generator=g).requires_grad_(True)
    y = bn(x)
    dy = torch.randn(y.shape, generator=g)
    y.backward(dy)
    for n, t in [("x", x), ("y", y), ("dy", dy), ("dx", x.grad), ("dgamma", bn.weight.grad),
                 ("dbeta", bn.bias.grad)]:
        w.f32("bn.eval." + n, t)

    def unary(name, fn, xs, cfg=None):
        x = rn(*xs)
        y = fn(x)
        dy = torch.randn(y.shape, generator=g)
        y.backward(dy)
        if cfg is not None:
            w.i32(name + ".cfg", cfg)
        for n, t in [("x", x), ("y", y), ("dy", dy), ("dx", x.grad)]:
            w.f32(f"{name}.{n}", t)

    unary("relu", F.relu, (2, 3, 4, 5))
    # pools: cfg = kh kw sh sw ph pw ceil
    unary("maxpool0", lambda t: F.max_pool2d(t, 2, 2), (2, 3, 8, 8), [2, 2, 2, 2, 0, 0, 0])
    unary("maxpool1", lambda t: F.max_pool2d(t, 3, 2, 1), (2, 3, 9, 9), [3, 3, 2, 2, 1, 1, 0])
    unary("maxpool2", lambda t: F.max_pool2d(t, 2, 2, ceil_mode=True), (2, 3, 7, 7), [2, 2, 2, 2, 0, 0, 1])
    unary("avgpool0", lambda t: F.avg_pool2d(t, 3, 2, 1), (2, 3, 9, 9), [3, 3, 2, 2, 1, 1, 0])
    unary("avgpool1", lambda t: F.avg_pool2d(t, 3, 2, 1, ceil_mode=True), (2, 3, 6, 6), [3, 3, 2, 2, 1, 1, 1])
    unary("adaptive0", lambda t: F.adaptive_avg_pool2d(t, 1), (2, 4, 5, 5))
    unary("adaptive1", lambda t: F.adaptive_avg_pool2d(t, (3, 2)), (2, 3, 7, 5))
    unary("adaptive2", lambda t: F.adaptive_avg_pool2d(t, 7), (1, 2, 10, 9))

    # linear on a 4-D input, flattened as nn.Flatten would.
    x = rn(4, 2, 3, 2)
    lw = rn(5, 12, scale=0.5)
    lb = rn(5, scale=0.5)
    y = F.linear(x.flatten(1), lw, lb)
    dy = torch.randn(y.shape, generator=g)
    y.backward(dy)
    for n, t in [("x", x), ("w", lw), ("b", lb), ("y", y), ("dy", dy), ("dx", x.grad),
                 ("dw", lw.grad), ("db", lb.grad)]:
        w.f32("linear." + n, t)

    # dropout: the mask is PyTorch's, recovered from its output.
    x = rn(3, 4, 2, 2)
    torch.manual_seed(3)
    y = F.dropout(x, 0.4, training=True)
    dy = torch.randn(y.shape, generator=g)
    y.backward(dy)
    mask = (y / x).detach()
    for n, t in [("x", x), ("mask", mask), ("y", y), ("dy", dy), ("dx", x.grad)]:
        w.f32("dropout." + n, t)

    # residual add
    a, b = rn(2, 3, 4, 4), rn(2, 3, 4, 4)
    y = a + b
    dy = torch.randn(y.shape, generator=g)
    y.backward(dy)
    for n, t in [("a", a), ("b", b), ("y", y), ("dy", dy), ("da", a.grad), ("db", b.grad)]:
        w.f32("add." + n, t)

    # softmax cross-entropy, mean over the batch
    z = rn(6, 10, scale=3.0)
    lab = torch.randint(0, 10, (6,), generator=g)
    loss = F.cross_entropy(z, lab)
    loss.backward()
    w.f32("ce.logits", z)
    w.i32("ce.labels", lab)
    w.f32("ce.loss", loss.reshape(1))
    w.f32("ce.dlogits", z.grad)

    # 3x3 convs on planes a multiple of 16 wide (the direct forward pass and
    # weight gradient with AVX-512): RGB with a bias, and 8 channels into 6
    # (a split conv's low-rank part); last, so the values above stay put.
    conv("conv7", (2, 3, 5, 32), 5, 3, 3, 1, 1, 1, 1, True)
    conv("conv8", (2, 8, 3, 16), 6, 3, 3, 1, 1, 1, 1, False)


def fused_fixtures(out):
    """Batchnorm (training), ReLU and the ResNet stem's max-pool (3x3,
    stride 2, padding 1), as asymml fuses them (src/ops/bn_act.c,
    pool3.c): planes 11 or more wide take the four-output path, odd sizes
    leave edges to the one-output path. And the residual add with its
    ReLU."""
    w = Writer()
    g = torch.Generator().manual_seed(31)
    bn = nn.BatchNorm2d(3)
    with torch.no_grad():
        bn.weight.copy_(torch.randn(3, generator=g))
        bn.bias.copy_(torch.randn(3, generator=g))
    x = torch.randn(2, 3, 23, 26, generator=g).requires_grad_(True)
    y = F.max_pool2d(F.relu(bn(x)), 3, 2, 1)
    dy = torch.randn(y.shape, generator=g)
    y.backward(dy)
    for n, t in [("gamma", bn.weight), ("beta", bn.bias), ("x", x), ("y", y), ("dy", dy), ("dx", x.grad),
                 ("dgamma", bn.weight.grad), ("dbeta", bn.bias.grad), ("rm1", bn.running_mean),
                 ("rv1", bn.running_var)]:
        w.f32("bnpool." + n, t)
    # The residual add with the ReLU after it (src/ops/eltwise.c), as a
    # ResNet block ends: 35-value planes leave a short last mask word.
    a = torch.randn(2, 3, 5, 7, generator=g).requires_grad_(True)
    b = torch.randn(2, 3, 5, 7, generator=g).requires_grad_(True)
    y = F.relu(a + b)
    dy = torch.randn(y.shape, generator=g)
    y.backward(dy)
    for n, t in [("a", a), ("b", b), ("y", y), ("dy", dy), ("da", a.grad), ("db", b.grad)]:
        w.f32("addrelu." + n, t)
    w.save(os.path.join(out, "fused.amfx"))


def wino_fixtures(out):
    """A 3x3 conv (stride 1, padding 1, bias) that asymml computes by
    Winograd's F(4x4, 3x3) (src/ops/winograd.c): planes 16 high (whole
    tiles) and 17 wide (a partial tile), 16 channels in and 17 out."""
    w = Writer()
    g = torch.Generator().manual_seed(37)
    x = torch.randn(1, 16, 16, 17, generator=g).requires_grad_(True)
    wt = (torch.randn(17, 16, 3, 3, generator=g) * 0.2).requires_grad_(True)
    b = torch.randn(17, generator=g).requires_grad_(True)
    y = F.conv2d(x, wt, b, stride=1, padding=1)
    dy = torch.randn(y.shape, generator=g)
    y.backward(dy)
    for n, t in [("x", x), ("w", wt), ("b", b), ("y", y), ("dy", dy), ("dx", x.grad), ("dw", wt.grad),
                 ("db", b.grad)]:
        w.f32("wino." + n, t)
    w.save(os.path.join(out, "wino.amfx"))


# ---------------------------------------------------------------- models
class DescNet(nn.Module):
    """asymml's description language, executed with torch.nn modules."""

    def __init__(self, desc):
        super().__init__()
        self.mods = nn.ModuleList()
        self.wiring = []  # (kind, inputs)
        self.order = []   # tensors in asymml's parameter order
        names, shapes = {}, []
        for raw in desc.replace(";", "\n").split("\n"):
            toks = raw.split("#")[0].split()
            if not toks:
                continue
            kw, pos, kv = toks[0], [], {}
            for t in toks[1:]:
                if "=" in t:
                    k, v = t.split("=", 1)
                    kv[k] = v
                else:
                    pos.append(t)
            i = len(shapes)
            ins = [i - 1]
            if "from" in kv:
                ins = [names[n] for n in kv["from"].split(",")]
            if "name" in kv:
                names[kv["name"]] = i
            gi = lambda k, d: int(kv.get(k, d))
            if kw == "input":
                shapes.append(tuple(int(p) for p in pos))
                self.mods.append(nn.Identity())
                self.wiring.append(("input", []))
                continue
            c, h, wd = shapes[ins[0]]
            if kw == "conv":
                k = gi("k", 0)
                kh, kwid = gi("kh", k), gi("kw", k)
                s = gi("s", 1)
                p = gi("p", 0)
                m = nn.Conv2d(c, int(pos[0]), (kh, kwid), (gi("sh", s), gi("sw", s)),
                              (gi("ph", p), gi("pw", p)), bias=bool(gi("bias", 1)))
                self.order += [m.weight] + ([m.bias] if m.bias is not None else [])
            elif kw == "bn":
                m = nn.BatchNorm2d(c, eps=float(kv.get("eps", 1e-5)),
                                   momentum=float(kv.get("momentum", 0.1)))
                self.order += [m.weight, m.bias, m.running_mean, m.running_var]
            elif kw == "relu":
                m = nn.ReLU()
            elif kw in ("maxpool", "avgpool"):
                k = gi("k", 0)
                kk = (gi("kh", k), gi("kw", k))
                s = gi("s", 0)
                ss = (gi("sh", s or kk[0]), gi("sw", s or kk[1]))
                p = gi("p", 0)
                pp = (gi("ph", p), gi("pw", p))
                cls = nn.MaxPool2d if kw == "maxpool" else nn.AvgPool2d
                m = cls(kk, ss, pp, ceil_mode=bool(gi("ceil", 0)))
            elif kw == "adaptiveavg":
                m = nn.AdaptiveAvgPool2d((int(pos[0]), int(pos[1])))
            elif kw == "gap":
                m = nn.AdaptiveAvgPool2d(1)
            elif kw == "flatten":
                m = nn.Flatten()
            elif kw == "linear":
                m = nn.Linear(c * h * wd, int(pos[0]), bias=bool(gi("bias", 1)))
                self.order += [m.weight] + ([m.bias] if m.bias is not None else [])
            elif kw == "dropout":
                m = nn.Dropout(float(kv.get("p", 0.5)))
            elif kw == "add":
                m = nn.Identity()
            else:
                raise ValueError(kw)
            self.mods.append(m)
            self.wiring.append((kw, ins))
            with torch.no_grad():
                probe = torch.zeros(2, c, h, wd) if kw != "add" else None
                if kw == "add":
                    shapes.append(shapes[ins[0]])
                else:
                    o = m.eval()(probe.flatten(1) if kw == "linear" else probe)
                    m.train()
                    o = o.reshape(2, -1, 1, 1) if o.dim() == 2 else o
                    shapes.append(tuple(o.shape[1:]))

    def forward(self, x):
        outs = []
        for m, (kw, ins) in zip(self.mods, self.wiring):
            if kw == "input":
                outs.append(x)
            elif kw == "add":
                outs.append(outs[ins[0]] + outs[ins[1]])
            elif kw == "linear":
                outs.append(m(outs[ins[0]].flatten(1)))
            else:
                outs.append(m(outs[ins[0]]))
        return outs[-1]


SMALL_VGG = """input 3 16 16
conv 8 k=3 p=1
bn
relu
maxpool k=2
conv 16 k=3 p=1 bias=0
bn
relu
maxpool k=2 ceil=1
conv 16 k=3 p=1
bn
relu
maxpool k=2
flatten
linear 32
relu
linear 10
"""

SMALL_RESNET = """input 3 12 12
conv 8 k=3 p=1 bias=0
bn
relu name=s0
conv 8 k=3 p=1 bias=0
bn
relu
conv 8 k=3 p=1 bias=0
bn name=m1
add from=m1,s0
relu name=s1
conv 16 k=3 s=2 p=1 bias=0
bn
relu
conv 16 k=3 p=1 bias=0
bn name=m2
conv 16 k=1 s=2 bias=0 from=s1
bn name=d2
add from=m2,d2
relu
avgpool k=2
gap
flatten
linear 5
"""


def train_fixture(w, desc, steps, batch, classes, lr, momentum, wd, nesterov, seed):
    torch.manual_seed(seed)
    net = DescNet(desc)
    first = [int(v) for v in desc.split("\n")[0].split()[1:4]]
    w.text("desc", desc)
    w.i32("cfg", [steps, batch, classes, int(nesterov)])
    w.f32("hyper", [lr, momentum, wd])
    for i, t in enumerate(net.order):
        w.f32(f"p{i}", t)
    g = torch.Generator().manual_seed(seed + 1)
    xs = torch.randn(steps, batch, *first, generator=g)
    ys = torch.randint(0, classes, (steps, batch), generator=g)
    w.f32("x", xs)
    w.i32("labels", ys)
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=momentum, weight_decay=wd,
                          nesterov=nesterov)
    losses = []
    net.train()
    for s in range(steps):
        opt.zero_grad()
        loss = F.cross_entropy(net(xs[s]), ys[s])
        loss.backward()
        if s == 0:
            for i, t in enumerate(net.order):
                if t.grad is not None:
                    w.f32(f"g{i}", t.grad)
        opt.step()
        losses.append(loss.item())
    w.f32("losses", losses)
    for i, t in enumerate(net.order):
        w.f32(f"final{i}", t)
    net.eval()
    with torch.no_grad():
        w.f32("eval_logits", net(xs[0]))


# ---------------------------------------------------------------- zoo
def zoo_counts(w):
    import torchvision.models as tvm

    def count(m):
        return sum(p.numel() for p in m.parameters())

    def cifar_vgg(name, classes, hw):
        feats = getattr(tvm, name + "_bn")(num_classes=classes).features
        for m in feats:  # asymml's VGG pools use ceil_mode (same sizes on even inputs)
            if isinstance(m, nn.MaxPool2d):
                m.ceil_mode = True
        with torch.no_grad():
            o = feats(torch.zeros(1, 3, hw, hw))
        return count(feats) + o.numel() * classes + classes

    def cifar_resnet(name, classes):
        m = getattr(tvm, name)(num_classes=classes)
        m.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        m.maxpool = nn.Identity()
        return count(m)

    rows = []
    for n in ("vgg11", "vgg13", "vgg16", "vgg19"):
        rows.append((n, 3, 32, 10, cifar_vgg(n, 10, 32)))
        rows.append((n + "-imagenet", 3, 224, 1000, count(getattr(tvm, n + "_bn")(num_classes=1000))))
    for n in ("resnet18", "resnet34"):
        rows.append((n, 3, 32, 10, cifar_resnet(n, 10)))
        rows.append((n + "-imagenet", 3, 224, 1000, count(getattr(tvm, n)(num_classes=1000))))
    lenet = DescNet("input 1 28 28\nconv 16 k=5 p=2\nrelu\nmaxpool k=2\nconv 32 k=5 p=2\nrelu\n"
                    "maxpool k=2\nflatten\nlinear 128\nrelu\nlinear 10\n")
    rows.append(("lenet", 1, 28, 10, count(lenet)))
    w.text("names", "\n".join(r[0] for r in rows))
    w.i32("shape", [[r[1], r[2], r[3]] for r in rows])
    # Counts exceed int32 for nothing here, but keep them exact: split in two.
    w.i32("count_hi", [r[4] >> 24 for r in rows])
    w.i32("count_lo", [r[4] & 0xFFFFFF for r in rows])


# ---------------------------------------------------------------- import
# Models saved from PyTorch in the safetensors format, for `asymml import`
# (tests/test_import.c). Debian has no safetensors package; the format is
# simple, and written by scripts/save_safetensors.py.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
from save_safetensors import encode as safetensors  # noqa: E402  (the writer users run too)


def splitmix64(x):
    z = x + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def formula(index, name, shape):
    """Tensor number `index` of a state dict (in its order), as tests/test_import.c
    rebuilds it bit for bit: u = the top 24 bits of splitmix64(index << 40 | element)
    over 2^24, computed in double and rounded to float once. Weights of fan-in F
    (every dimension after the first) are (u - 1/2) 2^-k, k the largest with
    24 4^k <= 2F (a variance within 2x of 2/F); running variances 1/2 + u;
    BatchNorm weights 3/4 + u/2; running means and biases (u - 1/2) / 4."""
    n = int(np.prod(shape)) if len(shape) else 1
    x = (np.uint64(index) << np.uint64(40)) + np.arange(n, dtype=np.uint64)
    u = (splitmix64(x) >> np.uint64(40)).astype(np.float64) * 2.0 ** -24
    if name.endswith("running_var"):
        v = 0.5 + u
    elif name.endswith("running_mean"):
        v = (u - 0.5) * 0.25
    elif len(shape) >= 2:
        fan, k = int(np.prod(shape[1:])), 0
        while 24 * 4 ** (k + 1) <= 2 * fan:
            k += 1
        v = (u - 0.5) * 2.0 ** -k
    elif name.endswith("weight"):
        v = 0.75 + 0.5 * u
    else:
        v = (u - 0.5) * 0.25
    return torch.from_numpy(v.astype(np.float32).reshape(shape))


def images(index, n, shape):
    """n inputs uniform in [-1, 1) from the formula's generator (stream
    `index`), as tests/test_import.c rebuilds them bit for bit."""
    x = (np.uint64(index) << np.uint64(40)) + np.arange(n * int(np.prod(shape)), dtype=np.uint64)
    u = (splitmix64(x) >> np.uint64(40)).astype(np.float64) * 2.0 ** -24
    return torch.from_numpy((2 * u - 1).astype(np.float32).reshape(n, *shape))


def import_fixture(w, name, net, in_shape, classes, seed):
    """The header of net's state dict with every float tensor from formula(),
    and PyTorch's logits in evaluation mode: the C test rebuilds the whole
    file (about 40 MB, too large to commit) from the header and the formula."""
    sd = net.state_dict()
    with torch.no_grad():
        for i, (n, t) in enumerate(sd.items()):
            if t.is_floating_point():
                t.copy_(formula(i, n, list(t.shape)))
    header, data = safetensors(sd, {"format": "pt"})
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, *in_shape, generator=g)
    net.eval()
    with torch.no_grad():
        logits = net(x)
    w.text("model", name)
    w.i32("input", list(in_shape) + [classes])
    w.text("header", header.decode())
    w.i32("data_bytes", [len(data)])
    w.f32("x", x)
    w.f32("logits", logits)
    # PyTorch's predictions (float) on a batch of 100 (images() stream
    # 2^20 + 1; stream 2^20 calibrates), for slalom's agreement.
    with torch.no_grad():
        w.i32("preds", net(images((1 << 20) + 1, 100, in_shape)).argmax(1))


class LeNet(nn.Module):
    """asymml's lenet under the names `asymml import` reads for it."""

    def __init__(self, c, hw, classes):
        super().__init__()
        self.conv1 = nn.Conv2d(c, 16, 5, padding=2)
        self.conv2 = nn.Conv2d(16, 32, 5, padding=2)
        self.fc1 = nn.Linear(32 * (hw // 4) ** 2, 128)
        self.fc2 = nn.Linear(128, classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


def import_fixtures(out):
    import torchvision.models as tvm

    torch.manual_seed(21)
    vgg = tvm.vgg11_bn(num_classes=10)
    vgg.avgpool = nn.Identity()
    vgg.classifier = nn.Linear(512, 10)
    w = Writer()
    import_fixture(w, "vgg11", vgg, (3, 32, 32), 10, 22)
    w.save(os.path.join(out, "import_vgg11.amfx"))
    resnet = tvm.resnet18(num_classes=10)
    resnet.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    resnet.maxpool = nn.Identity()
    w = Writer()
    import_fixture(w, "resnet18", resnet, (3, 32, 32), 10, 23)
    w.save(os.path.join(out, "import_resnet18.amfx"))
    # A whole file, every byte from here: LeNet at 1x12x12 (206 KB; at
    # 28x28 it would be 860 KB) with PyTorch's own initialization.
    torch.manual_seed(24)
    lenet = LeNet(1, 12, 10).eval()
    header, data = safetensors(lenet.state_dict(), {"format": "pt"})
    with open(os.path.join(out, "import_lenet.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header + data)
    x = torch.rand(4, 1, 12, 12, generator=torch.Generator().manual_seed(25))
    w = Writer()
    with torch.no_grad():
        w.f32("x", x)
        w.f32("logits", lenet(x))
    w.save(os.path.join(out, "import_lenet.amfx"))


# ---------------------------------------------------------------- quantized
def quant_fixture(w, desc, seed, bits=8):
    """BatchNorm folded by PyTorch's own fuse_conv_bn_eval, then fixed point by
    its fake-quantize ops: inputs per layer (scale: the largest |input| over a
    calibration batch of the folded float model, / (2^(bits-1) - 1)), weights
    per output channel (largest |w| / 127), symmetric."""
    import copy
    torch.manual_seed(seed)
    net = DescNet(desc)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for m in net.mods:
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
                m.running_var.copy_(torch.rand(n, generator=g) * 2 + 0.25)
                m.weight.copy_(torch.randn(n, generator=g))
                m.bias.copy_(torch.randn(n, generator=g) * 0.3)
    net.eval()
    first = [int(v) for v in desc.split("\n")[0].split()[1:4]]
    xc = torch.randn(8, *first, generator=g)
    xe = torch.randn(4, *first, generator=g)
    w.text("desc", desc)
    w.i32("bits", [bits])
    for i, t in enumerate(net.order):
        w.f32(f"p{i}", t)
    w.f32("calib", xc)
    w.f32("x", xe)
    readers = [sum(1 for _, ins in net.wiring if j in ins) for j in range(len(net.wiring))]
    fused = copy.deepcopy(net)
    folded = 0
    for i, (kw, ins) in enumerate(fused.wiring):
        if kw == "bn" and ins == [i - 1] and fused.wiring[i - 1][0] == "conv" and readers[i - 1] == 1:
            fused.mods[i - 1] = torch.nn.utils.fusion.fuse_conv_bn_eval(fused.mods[i - 1], fused.mods[i])
            fused.mods[i] = nn.Identity()
            folded += 1
    w.i32("folded", [folded])
    lin = [m for m in fused.mods if isinstance(m, (nn.Conv2d, nn.Linear))]
    top = {id(m): 0.0 for m in lin}

    def observe(m, inp):
        top[id(m)] = max(top[id(m)], inp[0].abs().max().item())

    with torch.no_grad():
        w.f32("float_logits", net(xe))
        w.f32("folded_logits", fused(xe))
    hooks = [m.register_forward_pre_hook(observe) for m in lin]
    with torch.no_grad():
        fused(xc)
    for h in hooks:
        h.remove()
    M = 2 ** (bits - 1) - 1
    with torch.no_grad():
        for m in lin:
            W = m.weight
            sk = W.abs().flatten(1).amax(1) / 127
            sk = torch.where(sk > 0, sk, torch.ones_like(sk)).double()
            zk = torch.zeros(W.shape[0], dtype=torch.int32)
            m.weight.copy_(torch.fake_quantize_per_channel_affine(W, sk.float(), zk, 0, -127, 127))
            sx = top[id(m)] / M if top[id(m)] > 0 else 1.0
            m.register_forward_pre_hook(
                lambda mod, inp, sx=sx: (torch.fake_quantize_per_tensor_affine(inp[0], sx, 0, -M, M),))
        w.f32("quant_logits", fused(xe))


def quant_fixtures(out):
    w = Writer()
    quant_fixture(w, SMALL_VGG, 21)
    w.save(os.path.join(out, "quant_vgg.amfx"))
    w = Writer()
    quant_fixture(w, SMALL_RESNET, 22)
    w.save(os.path.join(out, "quant_resnet.amfx"))


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "fixtures")
    groups = set(sys.argv[2:]) or {"ops", "fused", "wino", "train", "zoo", "import", "quant"}
    os.makedirs(out, exist_ok=True)
    if "ops" in groups:
        w = Writer()
        op_fixtures(w)
        w.save(os.path.join(out, "ops.amfx"))
    if "fused" in groups:
        fused_fixtures(out)
    if "wino" in groups:
        wino_fixtures(out)
    if "train" in groups:
        w = Writer()
        train_fixture(w, SMALL_VGG, 5, 8, 10, 0.05, 0.9, 5e-4, False, 11)
        w.save(os.path.join(out, "train_vgg.amfx"))
        w = Writer()
        train_fixture(w, SMALL_RESNET, 5, 6, 5, 0.05, 0.9, 1e-3, True, 12)
        w.save(os.path.join(out, "train_resnet.amfx"))
    if "zoo" in groups:
        w = Writer()
        zoo_counts(w)
        w.save(os.path.join(out, "zoo.amfx"))
    if "import" in groups:
        import_fixtures(out)
    if "quant" in groups:
        quant_fixtures(out)


if __name__ == "__main__":
    main()
