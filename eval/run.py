#!/usr/bin/python3
"""The whole evaluation (scripts/privacy-eval.sh runs it): trains every
setting of eval/settings.py with the host's view recorded, attacks each
view, and keeps each setting's figures in WORK/results/NAME.json (a rerun
skips what is there); eval/report.py then writes the report.

Usage: eval/run.py --asymml BIN --tool ATTACK_HOSTVIEW --work DIR [--epochs N] [--only NAME,...]

Who knows what: the attacks read the recordings (the host's view) and, as
the attacker's own, the auxiliary set and public programs (asymml itself,
to train a surrogate: host-only) or the victim's final checkpoint
(white-box). The truth (the victim's images, labels and layer inputs) is
written by the evaluator's tool and read only to score."""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)

import torch  # noqa: E402

import data  # noqa: E402
import decoder as dec  # noqa: E402
import inversion  # noqa: E402
import labels as lab  # noqa: E402
import metrics  # noqa: E402
import model as lenet_model  # noqa: E402
import settings  # noqa: E402
import truth  # noqa: E402
import updates as up  # noqa: E402
from view import View  # noqa: E402

TEST_IMAGES = 640   # the victim's images each decoder is scored on: the run's last ones
AUX_LIMIT = {"lenet": 10000, "vgg11": 5000}
SEED = 1


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def sh(args, what):
    p = subprocess.run([str(a) for a in args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if p.returncode:
        tail = p.stdout.strip().splitlines()[-1:] or ["(no output)"]
        raise RuntimeError(f"{what}: exit {p.returncode}: {tail[0]}")
    return p.stdout


def slug(name):
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def mode_args(s):
    a = ["--mode", s["mode"]]
    if s["mode"] in ("asymml", "lowrank-only"):
        a += ["--rank-ratio", s["rank"], "--basis", s["basis"]]
    if s["protect"]:
        a += ["--protect-grads"]
    if s["sigma"] > 0:
        a += ["--clip", s["clip"], "--sigma", s["sigma"]]
    return a


def parse_train(out):
    acc = re.search(r"final test accuracy: ([0-9.]+)", out)
    eps = re.search(r"privacy: \(epsilon ([0-9.e+]+), delta", out)
    share = re.findall(r"residual energy share ([0-9.]+)", out)
    return {"accuracy": float(acc.group(1)) if acc else None, "epsilon": float(eps.group(1)) if eps else None,
            "residual_share": float(share[-1]) if share else None}


class Eval:
    def __init__(self, a):
        self.a, self.work = a, a.work
        os.makedirs(os.path.join(self.work, "results"), exist_ok=True)
        os.makedirs(os.path.join(self.work, "samples"), exist_ok=True)
        self.dirs = {28: data.prepare(self.work, 28), 32: data.prepare(self.work, 32)}
        self.aux = {}
        self.judges = {}

    # ---- the attacker's auxiliary set and the independent judge ----
    def aux_set(self, size, n):
        if size not in self.aux:
            self.aux[size] = data.aux_tensors(size)
        x, y = self.aux[size]
        return x[:n], y[:n]

    def judge(self, size):
        if size not in self.judges:
            x, y = self.aux_set(size, 10000)
            self.judges[size] = dec.train_classifier(x, y)
        return self.judges[size]

    # ---- runs ----
    def n_train(self, s):
        return self.a.vgg_train if s["model"] == "vgg11" else data.VICTIM

    def train(self, s, d, ck, rec=None, window=None, epochs=None, n=None, extra=()):
        victim, _ = self.dirs[s["size"]]
        args = [self.a.asymml, "train", "--data", d or victim, "--model", s["model"], "--epochs", epochs or self.a.epochs,
                "--batch", s["batch"], "--lr", settings.lr_for(s["batch"]), "--seed", SEED, "--threads", 2,
                "--limit-train", n or self.n_train(s), "--limit-test", self.a.limit_test.get(s["model"], 10000),
                "--every", 100000, "--checkpoint-dir", ck, *mode_args(s), *extra]
        if rec:
            args += ["--record", rec] + (["--record-steps", f"{window[0]}-{window[1]}"] if window else [])
        return parse_train(sh(args, f"train {s['name']}"))

    def eval_record(self, ck, d, rec, batch, limit, mode=None):
        args = [self.a.asymml, "eval", "--checkpoint", ck, "--data", d, "--batch", batch, "--limit", limit,
                "--threads", 2, "--record", rec]
        if mode:
            args += ["--mode", mode]
        sh(args, f"eval --record {rec}")
        return View(rec)

    # ---- attacks ----
    def decode(self, train_views, train_images, test_views, test_images, test_labels, size, tag):
        t0 = time.time()
        d, scale = dec.train(train_views, train_images, epochs=self.a.decoder_epochs)
        rec = dec.reconstruct(d, scale, test_views)
        torch.save({"orig": test_images[:16], "rec": rec[:16]}, os.path.join(self.work, "samples", f"{tag}.pt"))
        out = self.scores(rec, test_images, size, test_labels)
        out["seconds"] = round(time.time() - t0, 1)
        return out

    def scores(self, rec, images, size, labels=None):
        p, s_ = metrics.psnr(rec, images), metrics.ssim(rec, images)
        out = {"psnr": metrics.summary(p)[0], "ssim": metrics.summary(s_)[0]}
        if labels is not None:
            out["judge"] = dec.accuracy(self.judge(size), rec.float(), labels)
        return out


def aux_batch(s):
    """The batch the attacker's pass over its auxiliary set runs at: the
    victim's where a shared basis couples a batch, any with per-sample bases."""
    return min(s["batch"], 100) if s["basis"] == "per-sample" else s["batch"]


def window_of(s, ev):
    steps = ev.a.epochs * (ev.n_train(s) // s["batch"])
    n = max(1, TEST_IMAGES // s["batch"])
    return steps - n, steps - 1


def split_layer(v):
    return v.layers()[0]


def run_setting(ev, s):
    path = os.path.join(ev.work, "results", slug(s["name"]) + ".json")
    if os.path.exists(path):
        return
    t0 = time.time()
    wd = os.path.join(ev.work, "runs", slug(s["name"]))
    shutil.rmtree(wd, ignore_errors=True)
    os.makedirs(wd)
    ck, rec = os.path.join(wd, "ck"), os.path.join(wd, "rec")
    sent = s["mode"] == "asymml"
    win = window_of(s, ev)
    res = dict(s)
    res.update(ev.train(s, None, ck, rec if sent else None, win))
    log(f"{s['name']}: accuracy {res['accuracy']}")
    if sent:
        attack_view(ev, s, res, wd, ck, View(rec), win)
    res["seconds"] = round(time.time() - t0, 1)
    with open(path, "w") as f:
        json.dump(res, f, indent=1)
    shutil.rmtree(wd, ignore_errors=True)


def attack_view(ev, s, res, wd, ck, v, win):
    victim, auxdir = ev.dirs[s["size"]]
    tdir = os.path.join(wd, "truth")
    os.makedirs(tdir)
    B = s["batch"]
    sh([ev.a.tool, "truth", victim, ev.n_train(s), B, SEED, win[0], win[1] - win[0] + 1, tdir], "truth")
    meta, y, img = truth.load(tdir)
    layer = split_layer(v)
    steps = set(range(win[0], win[1] + 1))
    R = v.stacked("conv-forward", "residual", layer, steps)
    images, labels = img.flatten(0, 1), y.flatten()
    res["layer"], res["view_shape"] = layer, list(R.shape[1:])
    # Labels from the output gradients (clear, or their residuals with --protect-grads).
    G = v.by_step("conv-backward-filter", "output-gradient", layer, steps) or \
        v.by_step("conv-backward-filter", "gradient-residual", layer, steps)
    if G and B > 1:
        nn, km = lab.over_steps(G, y, win[0], 10)
        res["labels_nn"], res["labels_kmeans"] = nn[0] / nn[1], km[0] / km[1]
    na = AUX_LIMIT[s["model"]]
    ax, _ = ev.aux_set(s["size"], na)
    # White-box: the victim's final model run on the auxiliary set gives pairs.
    av = ev.eval_record(ck, auxdir, os.path.join(wd, "aux"), aux_batch(s), na)
    AR = av.all_of("conv-forward", "residual", layer)[:na]  # a last batch is padded
    res["decoder_white"] = ev.decode(AR, ax, R, images, labels, s["size"], slug(s["name"]) + "-white")
    log(f"{s['name']}: white-box decoder PSNR {res['decoder_white']['psnr']:.2f}")
    if s["name"] in ev.a.host_only:
        host_only(ev, s, res, wd, layer, R, images, labels)
    if s["name"] in ("base", "vgg11 base"):
        controls(ev, s, res, wd, ck, layer, images, labels, ax)


def host_only(ev, s, res, wd, layer, R, images, labels):
    """The attacker trains its own model the same way on its auxiliary set
    (asymml is public) and its decoder on that model's residuals."""
    _, auxdir = ev.dirs[s["size"]]
    na = AUX_LIMIT[s["model"]]
    ck, rec = os.path.join(wd, "sur-ck"), os.path.join(wd, "sur-aux")
    ev.train(s, auxdir, ck, n=na)
    v = ev.eval_record(ck, auxdir, rec, aux_batch(s), na)
    ax, _ = ev.aux_set(s["size"], na)
    res["decoder_host"] = ev.decode(v.all_of("conv-forward", "residual", layer)[:na], ax, R, images, labels, s["size"],
                                    slug(s["name"]) + "-host")
    log(f"{s['name']}: host-only decoder PSNR {res['decoder_host']['psnr']:.2f}")


def controls(ev, s, res, wd, ck, layer, images, labels, ax):
    """Floor (a blank image, the auxiliary mean) and ceiling (the same decoder
    on the whole layer input: the model run in open mode)."""
    size = s["size"]
    res["floor_blank"] = ev.scores(torch.zeros_like(images), images, size, labels)
    res["floor_mean"] = ev.scores(ax.mean(0, keepdim=True).expand_as(images), images, size, labels)
    res["originals"] = {"judge": dec.accuracy(ev.judge(size), images, labels)}
    na = len(ax)
    vdir = os.path.join(wd, "victim-images")
    data.as_dataset(vdir, "t10k", images)
    B = s["batch"]
    av = ev.eval_record(ck, ev.dirs[size][1], os.path.join(wd, "open-aux"), B, na, mode="open")
    tv = ev.eval_record(ck, vdir, os.path.join(wd, "open-victim"), B, len(images), mode="open")
    res["ceiling"] = ev.decode(av.all_of("conv-forward", "activation", layer)[:na], ax,
                               tv.all_of("conv-forward", "activation", layer)[:len(images)], images, labels, size,
                               slug(s["name"]) + "-ceiling")
    log(f"{s['name']}: ceiling PSNR {res['ceiling']['psnr']:.2f}")


def infer_record(ev, ck, d, rec, limit):
    sh([ev.a.asymml, "infer", "--mode", "slalom", "--checkpoint", ck, "--data", d, "--batch", 64, "--limit", limit,
        "--calib", 1024, "--threads", 2, "--record", rec], f"infer --record {rec}")
    return View(rec)


def run_slalom(ev):
    """Slalom: the victim's model (the base recipe, trained in the TEE) runs
    its private images (the first TEST_IMAGES of the test split) in slalom
    mode, recorded. The white-box attacker also gets, for its auxiliary set
    run the same way, what crossed next to each image, and trains the
    decoder on the first layer's blinded inputs: the strongest position, as
    the pads are secret and fresh; it should be left at the floors."""
    s = settings.slalom()
    path = os.path.join(ev.work, "results", "slalom.json")
    if os.path.exists(path):
        return
    t0 = time.time()
    wd = os.path.join(ev.work, "runs", "slalom")
    shutil.rmtree(wd, ignore_errors=True)
    os.makedirs(wd)
    ck = os.path.join(wd, "ck")
    res = dict(s)
    res.update(ev.train(s, None, ck))
    victim, auxdir = ev.dirs[28]
    x, y = data.read("t10k")
    images = torch.from_numpy(x[:TEST_IMAGES].astype("float32") / 255).unsqueeze(1)
    labels = torch.from_numpy(y[:TEST_IMAGES].astype("int64"))
    vdir = os.path.join(wd, "victim-images")
    data.as_dataset(vdir, "t10k", images)
    for f in os.listdir(victim):
        if f.startswith("train-"):
            os.symlink(os.path.join(victim, f), os.path.join(vdir, f))
    na = AUX_LIMIT["lenet"]
    ax, _ = ev.aux_set(28, na)
    V = infer_record(ev, ck, vdir, os.path.join(wd, "rec-victim"), TEST_IMAGES).blinded()[:TEST_IMAGES]
    A = infer_record(ev, ck, auxdir, os.path.join(wd, "rec-aux"), na).blinded()[:na]
    res["view_shape"], res["images"] = list(V.shape[1:]), TEST_IMAGES
    res["decoder_white"] = ev.decode(A, ax, V, images, labels, 28, "slalom-white")
    log(f"slalom: white-box decoder PSNR {res['decoder_white']['psnr']:.2f}")
    res["floor_blank"] = ev.scores(torch.zeros_like(images), images, 28, labels)
    res["floor_mean"] = ev.scores(ax.mean(0, keepdim=True).expand_as(images), images, 28, labels)
    res["originals"] = {"judge": dec.accuracy(ev.judge(28), images, labels)}
    res["seconds"] = round(time.time() - t0, 1)
    with open(path, "w") as f:
        json.dump(res, f, indent=1)
    shutil.rmtree(wd, ignore_errors=True)


def run_updates(ev, B):
    """Short runs (10 steps of the base recipe) for the weight-update attacks."""
    path = os.path.join(ev.work, "results", f"updates-{B}.json")
    if os.path.exists(path):
        return
    s = dict(settings.BASE, batch=B, name=f"updates batch {B}")
    wd = os.path.join(ev.work, "runs", f"updates-{B}")
    shutil.rmtree(wd, ignore_errors=True)
    os.makedirs(wd)
    ck, rec, tdir, wdir = (os.path.join(wd, x) for x in ("ck", "rec", "truth", "weights"))
    os.makedirs(tdir), os.makedirs(wdir)
    n, steps = 10 * B, 10
    ev.train(s, None, ck, rec, epochs=1, n=n, extra=["--save-every", 1, "--keep", 100])
    victim, _ = ev.dirs[28]
    sh([ev.a.tool, "truth", victim, n, B, SEED, 1, 6, tdir, ck, 4], "truth")
    sh([ev.a.tool, "weights", os.path.join(ck, f"ckpt-{steps:010d}.amck"), wdir], "weights")
    meta, y, img = truth.load(tdir)
    X = truth.inputs(tdir)
    v = View(rec)
    W = v.by_step("conv-forward", "weights")
    lr = settings.lr_for(B)
    g = up.gradients(W, lambda t: up.lr_at(t, lr, steps), 0.9, 5e-4)
    R, G = v.by_step("conv-forward", "residual"), v.by_step("conv-backward-filter", "output-gradient")
    res = {"batch": B, "steps": []}
    last = 6 if B <= 8 else 3
    for st in range(1, last + 1):
        M = up.recover(g[st], R[st], G[st], v.conv(), prior=B > 4)
        err, cos = up.score(M, R[st], X[st - 1])
        res["steps"].append({"step": st, "rel_err": err, "cos_min": float(cos.min()), "cos_mean": float(cos.mean())})
    res["rel_err"] = sum(x["rel_err"] for x in res["steps"]) / last
    res["cos_mean"] = sum(x["cos_mean"] for x in res["steps"]) / last
    res["method"] = "least squares" if B <= 4 else "least squares, basis read off the residual"
    res["residual_only_cos"] = float(up.score(torch.zeros_like(R[1]).double(), R[1], X[0])[1].mean())
    # The image from the recovered input M + R: a decoder the white-box
    # attacker trains on the whole layer inputs of the run's final model on
    # its auxiliary set (open mode), applied to step 3's M + R.
    _, auxdir = ev.dirs[28]
    ax, _ = ev.aux_set(28, 5000)
    av = ev.eval_record(os.path.join(ck, f"ckpt-{steps:010d}.amck"), auxdir, os.path.join(wd, "open-aux"),
                        min(B, 100), 5000, mode="open")
    M3 = up.recover(g[3], R[3], G[3], v.conv(), prior=B > 4)
    res["decoder_m"] = ev.decode(av.all_of("conv-forward", "activation", 4)[:5000], ax, (M3 + R[3].double()).float(),
                                 img[2], y[2], 28, f"updates-{B}-m")
    log(f"updates batch {B}: decoder on M + R: PSNR {res['decoder_m']['psnr']:.2f}")
    log(f"updates batch {B}: relative error {res['rel_err']:.2e}, cosine {res['cos_mean']:.4f}")
    if B in (1, 4, 16, 64):
        net = lenet_model.lenet()
        mean, std = lenet_model.load(wdir, net)
        st = 3
        x, loss = inversion.invert(net, lenet_model.SPLIT, W[st], g[st], y[st - 1], (1, 28, 28), mean, std,
                                   iters=ev.a.inversion_iters)
        res["inversion"] = ev.scores(x, img[st - 1], 28, y[st - 1])
        res["inversion"]["loss"] = loss
        res["inversion_floor"] = ev.scores(torch.zeros_like(x), img[st - 1], 28)
        torch.save({"orig": img[st - 1][:16], "rec": x[:16]}, os.path.join(ev.work, "samples", f"inversion-{B}.pt"))
        log(f"inversion batch {B}: PSNR {res['inversion']['psnr']:.2f}")
    with open(path, "w") as f:
        json.dump(res, f, indent=1)
    shutil.rmtree(wd, ignore_errors=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--asymml", required=True)
    p.add_argument("--tool", required=True)
    p.add_argument("--work", required=True)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--vgg-train", type=int, default=10000)
    p.add_argument("--vgg-epochs", type=int, default=1)
    p.add_argument("--decoder-epochs", type=int, default=5)
    p.add_argument("--inversion-iters", type=int, default=1000)
    p.add_argument("--only", default="")
    a = p.parse_args()
    a.limit_test = {"vgg11": 2000}
    a.host_only = {"base", "shared basis", "sigma 1", "vgg11 base"}
    torch.set_num_threads(2)
    ev = Eval(a)
    only = set(filter(None, a.only.split(",")))
    for s in settings.lenet():
        if not only or s["name"] in only:
            run_setting(ev, s)
    if not only or "slalom" in only:
        run_slalom(ev)
    for B in (1, 4, 8, 16, 32, 64):
        if not only or f"updates {B}" in only:
            run_updates(ev, B)
    epochs = a.epochs
    a.epochs = a.vgg_epochs
    for s in settings.vgg11():
        if not only or s["name"] in only:
            run_setting(ev, s)
    a.epochs = epochs


if __name__ == "__main__":
    main()
