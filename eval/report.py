#!/usr/bin/python3
"""Writes the evaluation's report from eval/run.py's results:
OUT/evaluation.md, OUT/eval-frontier.png and OUT/eval-grid-*.png.

Usage: eval/report.py WORK OUT [SECONDS]"""
import glob
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import settings  # noqa: E402


def load(work):
    res = {}
    for p in glob.glob(os.path.join(work, "results", "*.json")):
        with open(p) as f:
            r = json.load(f)
        res[r.get("name", os.path.basename(p)[:-5])] = r  # the updates' files have no name
    return res


def f(x, fmt="{:.2f}"):
    return "-" if x is None else fmt.format(x)


def pct(x):
    return "-" if x is None else f"{100 * x:.1f}%"


def rank_words(r):
    return settings.RANK_WORDS.get(r, f"{r:g}")


def snr(r):
    if not r.get("sigma") or not r.get("view_shape"):
        return None
    d = 1
    for k in r["view_shape"]:
        d *= k
    return 1 / (r["sigma"] * d ** 0.5)


def header(*cols):
    """A Markdown table's first two lines."""
    return ["| " + " | ".join(cols) + " |", "|" + " --- |" * len(cols)]


def accuracy_table(res, names):
    out = header("setting", "model", "mode", "rank", "basis", "gradients", "sigma (clip)", "batch", "test accuracy",
                 "residual share", "epsilon, residual releases only", "SNR in norm")
    for n in names:
        r = res.get(n)
        if not r:
            continue
        split = r["mode"] in ("asymml", "lowrank-only")
        out.append(f"| {n} | {r['model']} | {r['mode']} | {rank_words(r['rank']) if split else '-'} | "
                   f"{r['basis'] if split else '-'} | {'protected' if r['protect'] else ('clear' if r['mode'] == 'asymml' else '-')} | "
                   f"{f(r['sigma'], '{:g}') + ' (' + f(r['clip'], '{:g}') + ')' if r['sigma'] else '-'} | {r['batch']} | "
                   f"{pct(r['accuracy'])} | {f(r.get('residual_share'), '{:.4f}') if r['mode'] == 'asymml' else '-'} | "
                   f"{f(r.get('epsilon'), '{:.2f}')} | {f(snr(r), '{:.4f}')} |")
    return "\n".join(out)


def dec_cells(d):
    if not d:
        return "- | - | -"
    return f"{d['psnr']:.2f} | {d['ssim']:.3f} | {pct(d.get('judge'))}"


def attack_table(res, names):
    out = header("setting", "labels: nearest neighbour", "labels: k-means purity", "white-box decoder PSNR (dB)", "SSIM",
                 "judge's accuracy", "host-only decoder PSNR (dB)", "SSIM", "judge's accuracy")
    for n in names:
        r = res.get(n)
        if not r or r["mode"] != "asymml":
            continue
        km = pct(r.get("labels_kmeans")) if r["batch"] > 10 else "- (batch not above the classes)"
        out.append(f"| {n} | {pct(r.get('labels_nn'))} | {km} | "
                   f"{dec_cells(r.get('decoder_white'))} | {dec_cells(r.get('decoder_host'))} |")
    for n in ("base", "vgg11 base"):
        r = res.get(n)
        if not r or "ceiling" not in r:
            continue
        m = r["model"]
        out.append(f"| *{m} ceiling: the whole layer input (open mode)* | - | - | {dec_cells(r['ceiling'])} | - | - | - |")
        out.append(f"| *{m} floor: a blank image* | - | - | {dec_cells(r['floor_blank'])} | - | - | - |")
        out.append(f"| *{m} floor: the auxiliary set's mean image* | - | - | {dec_cells(r['floor_mean'])} | - | - | - |")
        out.append(f"| *{m}: the judge on the originals* | - | - | - | - | {pct(r['originals']['judge'])} | - | - | - |")
    return "\n".join(out)


def slalom_table(res):
    r = res.get("slalom")
    if not r:
        return "Not run (eval/run.py --only slalom)."
    out = [f"The victim's model ({r['model']}, trained in the TEE: test accuracy {pct(r.get('accuracy'))}) ran the "
           f"first {r.get('images')} images of the test split in slalom mode; the host recorded every blinded input "
           f"(the first layer's: {'x'.join(map(str, r.get('view_shape', [])))} residues mod p per image). The "
           "white-box decoder was trained on the auxiliary set run the same way, each image next to what crossed "
           "for it.", "",
           *header("", "decoder PSNR (dB)", "SSIM", "judge's accuracy"),
           f"| white-box decoder on slalom's blinded first-layer inputs | {dec_cells(r.get('decoder_white'))} |",
           f"| *floor: a blank image* | {dec_cells(r.get('floor_blank'))} |",
           f"| *floor: the auxiliary set's mean image* | {dec_cells(r.get('floor_mean'))} |",
           f"| *the judge on the originals* | - | - | {pct(r['originals']['judge'])} |"]
    return "\n".join(out)


def updates_table(res):
    out = header("batch", "solve", "relative error of M", "cosine of M + R with the layer input (mean)",
                 "cosine of R alone (no attack)", "decoder on M + R: PSNR (dB)", "SSIM", "judge's accuracy",
                 "gradient inversion PSNR (dB)", "SSIM", "judge's accuracy", "blank-image floor PSNR")
    for B in (1, 4, 8, 16, 32, 64):
        r = res.get(f"updates-{B}")
        if not r:
            continue
        inv = r.get("inversion")
        out.append(f"| {B} | {r['method']} | {r['rel_err']:.2e} | {r['cos_mean']:.4f} | {r['residual_only_cos']:.4f} | "
                   f"{dec_cells(r.get('decoder_m'))} | "
                   f"{dec_cells(inv) if inv else '- | - | -'} | {f(r.get('inversion_floor', {}).get('psnr'))} |")
    return "\n".join(out)


def frontier(res, path):
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colors = {"asymml": "tab:red", "lowrank-only": "tab:green", "tee-only": "tab:blue"}
    floor = res.get("base", {}).get("floor_mean", {}).get("psnr")
    for n, r in res.items():
        if r.get("model") != "lenet" or "mode" not in r or r.get("accuracy") is None:
            continue
        if r["mode"] == "asymml" and r.get("decoder_white"):
            x = r["decoder_white"]["psnr"]
        elif r["mode"] in ("lowrank-only", "tee-only") and floor is not None:
            x = floor  # nothing crosses: the attacker is left with its prior
        else:
            continue
        ax.scatter(x, 100 * r["accuracy"], color=colors[r["mode"]], label=r["mode"])
        ax.annotate(n, (x, 100 * r["accuracy"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    h, lab = ax.get_legend_handles_labels()
    uniq = dict(zip(lab, h))
    ax.legend(uniq.values(), uniq.keys(), fontsize=8)
    ax.set_xlabel("attack PSNR of the white-box decoder (dB; nothing crosses: the mean-image floor)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("LeNet on Fashion-MNIST: privacy against utility")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def grid(work, tags, path, title, n=8):
    """Rows of reconstructions, each under the originals it reconstructs."""
    rows, last = [], None
    for label, tag in tags:
        p = os.path.join(work, "samples", f"{tag}.pt")
        if not os.path.exists(p):
            continue
        d = torch.load(p)
        if last is None or d["orig"].shape != last.shape or not torch.equal(d["orig"], last):
            rows.append(("originals", d["orig"]))
            last = d["orig"]
        rows.append((label, d["rec"]))
    if not rows:
        return False
    fig, axes = plt.subplots(len(rows), n, figsize=(n * 0.9, len(rows) * 1.0), squeeze=False)
    for i, (label, im) in enumerate(rows):
        for j in range(min(n, len(im))):
            axes[i, j].imshow(im[j, 0].clamp(0, 1), cmap="gray", vmin=0, vmax=1)
        axes[i, 0].set_title(label, fontsize=7, loc="left")
    for ax in axes.flat:
        ax.axis("off")
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def findings(res):
    """The report's statements, each from the figures above it."""
    out = []
    b, lo, tee = res.get("base"), res.get("lowrank-only"), res.get("tee-only")
    if b and b.get("decoder_white") and b.get("floor_mean"):
        w, fl = b["decoder_white"], b["floor_mean"]
        out.append(f"- asymml at the base setting: the white-box decoder reconstructs the victim's training images "
                   f"from the residuals alone at {w['psnr']:.1f} dB PSNR and SSIM {w['ssim']:.2f}, against "
                   f"{fl['psnr']:.1f} dB and {fl['ssim']:.2f} for the auxiliary mean image; an independent classifier "
                   f"labels {pct(w.get('judge'))} of the reconstructions correctly "
                   f"({pct(b['originals']['judge'])} of the originals).")
        if b.get("decoder_host"):
            h = b["decoder_host"]
            out.append(f"- Host-only (a surrogate model the host trains itself on public data): {h['psnr']:.1f} dB, "
                       f"SSIM {h['ssim']:.2f}, the classifier right on {pct(h.get('judge'))}.")
        if b.get("labels_nn") is not None:
            out.append(f"- The clear output gradients give the labels away: the nearest neighbour in the batch shares "
                       f"a sample's label for {pct(b['labels_nn'])} of samples (chance about 10%).")
    ups = [res[f"updates-{B}"] for B in (1, 4, 8, 16, 32, 64) if f"updates-{B}" in res]
    if ups:
        out.append("- Weight updates: the host solves for the trusted part M with relative error " + ", ".join(
            f"{u['rel_err']:.1e} at batch {u['batch']}" for u in ups) + " (least squares up to batch 4, then with "
            "the trusted basis read off the residual); the whole layer input M + R then has cosine " + ", ".join(
            f"{u['cos_mean']:.4f}" for u in ups) + " with the true one.")
        inv = [u for u in ups if u.get("inversion")]
        if inv:
            out.append("- White-box gradient inversion from the same updates: " + ", ".join(
                f"{u['inversion']['psnr']:.1f} dB at batch {u['batch']}" for u in inv) +
                f" (a blank image: {inv[0]['inversion_floor']['psnr']:.1f} dB): weaker than the algebra above, "
                "which needs no model.")
    pairs = [(n, res.get(n), res.get("lowrank-only " + n if n != "base" else "lowrank-only"))
             for n in ("rank 1/16", "base", "rank 1/4", "rank 1/2")]
    cells = [f"rank {settings.RANK_WORDS[a['rank']]}: {pct(a['accuracy'])} against {pct(lo_['accuracy'])}"
             for n, a, lo_ in pairs if a and lo_]
    if cells:
        out.append("- The paper's comparison, asymml (low rank plus the residual) against lowrank-only: " +
                   "; ".join(cells) + ".")
    pg = res.get("protected gradients")
    if pg and pg.get("labels_nn") is not None:
        out.append(f"- Protected gradients: the labels from the gradients' residuals: {pct(pg['labels_nn'])} by "
                   f"nearest neighbour; the residual decoder is unchanged ({pg['decoder_white']['psnr']:.1f} dB).")
    vb = res.get("vgg11 base")
    if vb and vb.get("decoder_white") and vb.get("floor_mean"):
        out.append(f"- VGG11 (32x32): white-box decoder {vb['decoder_white']['psnr']:.1f} dB, SSIM "
                   f"{vb['decoder_white']['ssim']:.2f} (the mean image: {vb['floor_mean']['psnr']:.1f} dB; the whole "
                   f"input: {vb['ceiling']['psnr']:.1f} dB).")
    if b and lo and lo.get("accuracy") is not None:
        out.append(f"- Accuracy at rank 1/8: asymml {pct(b['accuracy'])}, lowrank-only {pct(lo['accuracy'])}, "
                   f"tee-only {pct(tee['accuracy']) if tee else '-'}.")
    for sg in ("sigma 0.5", "sigma 1", "sigma 2"):
        r = res.get(sg)
        if r and lo and r.get("accuracy") is not None:
            d, h = r.get("decoder_white", {}), r.get("decoder_host")
            fl = b["floor_mean"]["psnr"] if b and b.get("floor_mean") else None
            out.append(f"- {sg} (clip {r['clip']:g}; epsilon {f(r.get('epsilon'))} for the residual releases alone): "
                       f"accuracy {pct(r['accuracy'])} against lowrank-only's {pct(lo['accuracy'])} at the same rank, "
                       f"which sends nothing; white-box decoder {f(d.get('psnr'), '{:.1f}')} dB" +
                       (f", host-only {h['psnr']:.1f} dB" if h else "") +
                       f" (the mean image: {f(fl, '{:.1f}')} dB).")
    return "\n".join(out)


def main():
    work, out = sys.argv[1], sys.argv[2]
    seconds = float(sys.argv[3]) if len(sys.argv) > 3 else None
    os.makedirs(out, exist_ok=True)
    res = load(work)
    lenet = [s["name"] for s in settings.lenet()]
    vgg = [s["name"] for s in settings.vgg11()]
    frontier(res, os.path.join(out, "eval-frontier.png"))
    grids = []
    if grid(work, [("white-box decoder on the residual", "base-white"), ("host-only decoder", "base-host"),
                   ("ceiling: decoder on the whole input", "base-ceiling"), ("sigma 1: white-box", "sigma-1-white"),
                   ("rank 1/2: white-box", "rank-1-2-white")],
            os.path.join(out, "eval-grid-lenet.png"), "LeNet, asymml: the victim's training images and reconstructions"):
        grids.append("eval-grid-lenet.png")
    if grid(work, [("gradient inversion, batch 1", "inversion-1"), ("decoder on the recovered M + R", "updates-1-m"),
                   ("gradient inversion, batch 4", "inversion-4"), ("decoder on M + R", "updates-4-m"),
                   ("gradient inversion, batch 16", "inversion-16"), ("decoder on M + R", "updates-16-m"),
                   ("gradient inversion, batch 64", "inversion-64"), ("decoder on M + R", "updates-64-m")],
            os.path.join(out, "eval-grid-inversion.png"), "From the weight updates: gradient inversion (white-box) "
            "and the decoder on the recovered layer input"):
        grids.append("eval-grid-inversion.png")
    if grid(work, [("white-box decoder", "vgg11-base-white"), ("host-only decoder", "vgg11-base-host"),
                   ("ceiling", "vgg11-base-ceiling")],
            os.path.join(out, "eval-grid-vgg11.png"), "VGG11 (Fashion-MNIST padded to 32x32), asymml"):
        grids.append("eval-grid-vgg11.png")
    doc = TEMPLATE.format(
        minutes=f"{seconds / 60:.0f} minutes" if seconds else "its time",
        findings=findings(res), accuracy=accuracy_table(res, lenet + vgg), attacks=attack_table(res, lenet + vgg),
        updates=updates_table(res), slalom=slalom_table(res),
        grids="\n".join(f"![{g}]({g})" for g in grids))
    with open(os.path.join(out, "evaluation.md"), "w") as fh:
        fh.write(doc)


TEMPLATE = """# What the host learns, and what privacy costs: the evaluation

Written by `scripts/privacy-eval.sh` (eval/run.py, eval/report.py); its
runs and attacks took {minutes} on 2 cores. Every figure below is from that run; the
attacks read only the host's view as the accelerator recorded it
(`--record`), never the trusted side's memory.

**Data.** Fashion-MNIST from Debian's dataset-fashion-mnist. The victim
trains on the first 50,000 training images (VGG11: the first 10,000, padded
to 32x32, one epoch) and is tested on the test split. The attacker's
auxiliary set is the other 10,000 training images: the same kind of data,
disjoint from the victim's. Decoders are scored on the victim's last 640
training images as their residuals crossed during the run's last steps.

**Attackers.** *Host-only*: what crossed, plus public knowledge (the
architecture, the optimizer's settings, asymml itself, public data): its
decoder learns from a surrogate model it trains itself, the same way, on
its auxiliary set. *White-box*: also the trained model's trusted weights, as
if the model were published after training: its decoder learns from the
victim's final model run on the auxiliary set. The *judge* is a classifier
trained on the auxiliary set alone; its accuracy on reconstructions says
how much of each image's class survives.

**Settings.** One factor at a time around the base: LeNet, asymml, rank 1/8
of the split layer's channels, per-sample basis, batch 64 (learning rate
0.05, scaled by sqrt(batch/64) below 64), output gradients in the clear, no
noise, 3 epochs, seed 1. Noise settings clip each residual to norm 0.25
first, as the main job does (this layer's residuals have norms of about 6
to 23 unclipped); the epsilon is the one asymml prints, for the residual
releases alone, and
the SNR is the README's (Privacy) 1 / (sigma sqrt(d)), d the residual's size.

## Findings

{findings}

## Accuracy

{accuracy}

## Attacks on what crossed

{attacks}

## Private inference by blinding (slalom)

{slalom}

## The trusted part from the weight updates, and gradient inversion

Short runs of the base recipe (10 steps, batch B, the same seed), steps 1
to 6 (1 to 3 above batch 8). The host undoes SGD (momentum 0.9, weight decay 5e-4, the cosine
schedule), subtracts its own residual gradient, and solves for M
(eval/updates.py). Above batch 4 it reads each sample's trusted basis off
its residual (the residual is orthogonal to it) and solves for the rest.
The white-box attacker turns step 3's M + R into images with a decoder it
trains on the whole layer inputs of the run's final model on its auxiliary
set (5,000 images). Gradient inversion (eval/inversion.py) is white-box: the run's final model,
the split layer's weights of the step (which the host saw), its gradient,
the labels given; step 3.

{updates}

## Figures

![privacy against utility](eval-frontier.png)

{grids}
"""

if __name__ == "__main__":
    main()
