"""The evaluation's settings (issue 14): one factor at a time around a base
(LeNet on Fashion-MNIST, asymml, rank 1/8, per-sample basis, batch 64, no
noise), VGG11 on Fashion-MNIST padded to 32x32 for the base and the rank
sweep, and the short runs the weight-update attacks read."""

BASE = dict(model="lenet", size=28, mode="asymml", rank=0.125, basis="per-sample", protect=False, sigma=0.0,
            clip=0.0, batch=64)
CLIP = 0.25  # the per-sample bound of the noised settings: the main job's (the SNR statement holds at any)


def lr_for(batch):
    """The base learning rate 0.05 at batch 64, scaled by sqrt(batch / 64) below it."""
    return 0.05 * min(1.0, (batch / 64) ** 0.5)


def _s(name, group, **kw):
    s = dict(BASE)
    s.update(kw)
    s["name"], s["group"] = name, group
    return s


def lenet():
    out = [_s("base", "base"),
           _s("tee-only", "mode", mode="tee-only"),
           _s("lowrank-only", "mode", mode="lowrank-only")]
    for r, n in ((1 / 16, "1/16"), (0.25, "1/4"), (0.5, "1/2")):
        out.append(_s(f"rank {n}", "rank", rank=r))
        out.append(_s(f"lowrank-only rank {n}", "rank", mode="lowrank-only", rank=r))
    out.append(_s("shared basis", "basis", basis="shared"))
    out.append(_s("protected gradients", "grads", protect=True))
    for sg in (0.5, 1.0, 2.0):
        out.append(_s(f"sigma {sg:g}", "noise", sigma=sg, clip=CLIP))
    for b in (8, 1):
        out.append(_s(f"batch {b}", "batch", batch=b))
    return out


def vgg11():
    v = dict(model="vgg11", size=32)
    out = [_s("vgg11 base", "vgg11", **v), _s("vgg11 tee-only", "vgg11", mode="tee-only", **v)]
    for r, n in ((1 / 16, "1/16"), (0.25, "1/4"), (0.5, "1/2")):
        out.append(_s(f"vgg11 rank {n}", "vgg11", rank=r, **v))
    return out


def slalom():
    """Private inference by blinding: the base recipe trained in the TEE, its
    model then run in slalom mode on the victim's private images."""
    return _s("slalom", "inference", mode="tee-only")


RANK_WORDS = {1 / 16: "1/16", 0.125: "1/8", 0.25: "1/4", 0.5: "1/2"}
