#!/usr/bin/python3
"""The evaluation's attacks on the host's recorded view (asymml ... --record),
one entry point. The attacker reads only recordings and what it owns (its
auxiliary set, a published model); the scoring reads the evaluator's truth
(eval/truth.py), which the host never sees. eval/run.py runs them all over
the settings; these commands run one, for tests and for a look.

Usage:
    eval/attack.py labels REC TRUTH
        label inference from the clear output gradients (eval/labels.py)
    eval/attack.py updates REC TRUTH LR STEPS [MOMENTUM WD]
        the trusted part M from the weight updates (eval/updates.py), for
        the steps TRUTH holds (its inputs.f32): least squares, and with the
        basis read off the residual; LR and STEPS give the cosine schedule
    eval/attack.py decoder AUXREC AUXDIR REC TRUTH [EPOCHS]
        the learned decoder (eval/decoder.py), trained on the residuals of
        a model run on the auxiliary set (AUXREC: `asymml eval --record` of
        AUXDIR's test split) and scored on the victim's residuals in REC
Prints one line per attack: what it recovered, against its floor.
"""
import os
import sys

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)

import numpy as np  # noqa: E402
import torch  # noqa: E402

import data  # noqa: E402
import decoder as dec  # noqa: E402
import labels as lab  # noqa: E402
import metrics  # noqa: E402
import truth  # noqa: E402
import updates as up  # noqa: E402
from view import View  # noqa: E402


def window(meta):
    return set(range(meta.get("first", 0), meta.get("first", 0) + meta["steps"]))


def cmd_labels(rec, truth_dir):
    meta, y, _ = truth.load(truth_dir)
    first = meta.get("first", 0)
    grads = View(rec).by_step("conv-backward-filter", "output-gradient", steps=window(meta))
    if not grads:
        sys.exit("attack.py: no clear output gradient in the recording (protected gradients, or not asymml mode)")
    nn, km = lab.over_steps(grads, y, first, meta["classes"])
    for name, (hit, total) in (("nearest neighbour", nn), ("k-means purity", km)):
        print(f"labels, {name}: {hit} of {total} samples ({hit / total:.3f}; chance about "
              f"{1 / meta['classes']:.2f}), {len(grads)} steps of batch {meta['batch']}")


def cmd_updates(rec, truth_dir, lr, steps, momentum=0.9, wd=5e-4):
    meta, _, _ = truth.load(truth_dir)
    X = truth.inputs(truth_dir)
    v = View(rec)
    g = up.gradients(v.by_step("conv-forward", "weights"), lambda t: up.lr_at(t, lr, steps), momentum, wd)
    R, G = v.by_step("conv-forward", "residual"), v.by_step("conv-backward-filter", "output-gradient")
    for s in sorted(window(meta)):
        if s not in g or s not in G:
            continue
        for prior in (False, True):
            M = up.recover(g[s], R[s], G[s], v.conv(), prior)
            err, cos = up.score(M, R[s], X[s - meta["first"]])
            print(f"updates, {'basis from the residual' if prior else 'least squares'}: step {s}, batch "
                  f"{meta['batch']}: relative error {err:.2e}, cosine of M + R with the input: mean {cos.mean():.4f}, "
                  f"worst {cos.min():.4f}")


def cmd_decoder(aux_rec, aux_dir, rec, truth_dir, epochs=5):
    meta, y, img = truth.load(truth_dir)
    v, av = View(rec), View(aux_rec)
    R = v.stacked("conv-forward", "residual", steps=window(meta))
    ax, ay = data.read("t10k", aux_dir)
    ax = torch.from_numpy(ax.astype(np.float32) / 255).unsqueeze(1)
    AR = av.all_of("conv-forward", "residual")[:len(ax)]
    d, scale = dec.train(AR, ax, epochs=epochs)
    images = img.flatten(0, 1)
    out = dec.reconstruct(d, scale, R)
    mean = ax.mean(0, keepdim=True).expand_as(images)
    for name, x in (("decoder", out), ("floor: the auxiliary mean image", mean),
                    ("floor: a blank image", torch.zeros_like(images))):
        print(f"{name}: PSNR {metrics.psnr(x, images).mean():.2f} dB, SSIM {metrics.ssim(x, images).mean():.3f} "
              f"({len(images)} images)")


def main(argv):
    torch.set_num_threads(2)
    if len(argv) == 4 and argv[1] == "labels":
        return cmd_labels(argv[2], argv[3])
    if len(argv) in (6, 8) and argv[1] == "updates":
        return cmd_updates(argv[2], argv[3], float(argv[4]), int(argv[5]), *map(float, argv[6:]))
    if len(argv) in (6, 7) and argv[1] == "decoder":
        return cmd_decoder(*argv[2:6], *map(int, argv[6:]))
    sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
