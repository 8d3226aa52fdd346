#!/usr/bin/env python3
"""The paper's two tables (training and inference seconds per step) next to
ours, from the CSV files that `asymml bench --csv` writes: Markdown and a
PNG bar chart. Called by scripts/paper-tables.sh.

Usage: bench/paper_tables.py --md OUT.md --png OUT.png LABEL=FILE.csv ...
  LABEL names where and how a CSV was measured (e.g. "2-core CPU, 3x32x32,
  batch 32"); one table pair per CSV, in the order given.

Columns: the paper's figures (ImageNet 224x224, batch 32, SGX1 Xeon + RTX
5000, as the project's specification quotes them), then ours per mode,
measured (slalom and quantized: inference only; slalom's precomputation of
its unblinding factors, per batch, apart, as Slalom reports it); the trusted
working set per step; and a *modelled* SGX1 time: the step measured here
plus the page swaps of an LRU enclave page cache (bench --epc), with its
low-high band. Our baseline is a plain process: no enclave paging, which
SGX2 with a large enough EPC, TDX and SEV-SNP avoid too (their memory
encryption is not modelled); the paper's SGX-only paged its enclave (SGX1)."""
import argparse
import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# model: (GPU-only, AsymML, SGX-only) training; (GPU-only, AsymML, Slalom, SGX-only) inference
PAPER_TRAIN = {"vgg16": (0.073, 1.11, 8.28), "vgg19": (0.086, 1.36, 10.28),
               "resnet18": (0.064, 1.01, 5.85), "resnet34": (0.096, 1.63, 9.38)}
PAPER_INFER = {"vgg16": (0.032, 0.37, 0.36, 2.85), "vgg19": (0.044, 0.43, 0.42, 4.8),
               "resnet18": (0.031, 0.39, 0.36, 2.26), "resnet34": (0.041, 0.59, 0.50, 4.24)}
MODES = ["gpu-only", "open", "asymml", "slalom", "quantized", "lowrank-only", "tee-only"]
INFER_ONLY = {"slalom", "quantized"}  # no training step


def base_name(model):
    return model.replace("-imagenet", "")


def load(path):
    rows = {}
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            rows.setdefault(r["model"], {})[r["mode"]] = r
    if not rows:
        sys.exit(f"paper_tables: {path} has no rows")
    return rows


def fmt(x, digits=3):
    return "—" if x is None else f"{x:.{digits}g}"


def ratio(a, b):
    return "—" if a is None or b is None or b <= 0 else f"{a / b:.1f}x"


def get(rows, model, mode, key):
    r = rows.get(model, {}).get(mode)
    v = float(r[key]) if r and r.get(key) not in (None, "") else None
    return None if v is None or v != v else v


def table(label, rows, kind):
    t = "train" if kind == "training" else "infer"
    paper = PAPER_TRAIN if kind == "training" else PAPER_INFER
    modes = [m for m in MODES if any(m in v for v in rows.values()) and (t == "infer" or m not in INFER_ONLY)]
    slalom = "slalom" in modes
    head = ["model", "paper GPU-only", "paper AsymML"] + (["paper Slalom"] if t == "infer" else []) + [
        "paper SGX-only", "paper SGX-only / AsymML"] + (["paper SGX-only / Slalom"] if slalom else [])
    head += [f"ours {m}" + (" (TEE share)" if m in ("asymml", "slalom") else "") for m in modes]
    head += ["ours slalom's precomputation, s a batch (before the pass)",
             "ours tee-only / slalom TEE share"] if slalom else []
    head += ["ours tee-only / asymml TEE share", "trusted working set MiB, tee-only / asymml",
             "modelled SGX1: tee-only (band)", "modelled SGX1: asymml TEE share", "modelled SGX1 ratio"]
    out = [f"### {kind.capitalize()}, seconds per step: {label}", "",
           "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for model in rows:
        p = paper.get(base_name(model))
        cells = [model] + ([fmt(v) for v in p] if p else ["—"] * len(paper["vgg16"]))
        cells.append(ratio(p[-1], p[1]) if p else "—")
        if slalom:
            cells.append(ratio(p[-1], p[2]) if p else "—")
        for m in modes:
            v = fmt(get(rows, model, m, f"{t}_s"))
            if m in ("asymml", "slalom"):
                v += f" ({fmt(get(rows, model, m, f'tee_{t}_s'))})"
            cells.append(v)
        if slalom:
            cells.append(fmt(get(rows, model, "slalom", "precompute_s")))
            cells.append(ratio(get(rows, model, "tee-only", "infer_s"), get(rows, model, "slalom", "tee_infer_s")))
        tee, share = get(rows, model, "tee-only", f"{t}_s"), get(rows, model, "asymml", f"tee_{t}_s")
        cells.append(ratio(tee, share))
        wt, wa = (get(rows, model, m, f"ws_{t}_bytes") for m in ("tee-only", "asymml"))
        cells.append(f"{fmt(wt and wt / 2**20, 4)} / {fmt(wa and wa / 2**20, 4)}")
        sg, lo, hi = (get(rows, model, "tee-only", f"sgx1_{t}{x}_s") for x in ("", "_lo", "_hi"))
        cells.append(f"{fmt(sg)} ({fmt(lo)}-{fmt(hi)})" if sg is not None else "—")
        # asymml's modelled time: its TEE share plus its own modelled swaps
        step, sa = get(rows, model, "asymml", f"{t}_s"), get(rows, model, "asymml", f"sgx1_{t}_s")
        ma = share + (sa - step) if None not in (share, step, sa) else None
        cells.append(fmt(ma))
        cells.append(ratio(sg, ma))
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def chart(sets, path):
    fig, axes = plt.subplots(1, len(sets), figsize=(6.5 * len(sets), 4.8 if len(sets) > 1 else 5.6), squeeze=False)
    for ax, (label, rows) in zip(axes[0], sets):
        models = list(rows)
        bars = [("paper GPU-only", lambda m: PAPER_TRAIN.get(base_name(m), (None,) * 3)[0], None),
                ("paper AsymML", lambda m: PAPER_TRAIN.get(base_name(m), (None,) * 3)[1], None),
                ("paper SGX-only", lambda m: PAPER_TRAIN.get(base_name(m), (None,) * 3)[2], None)]
        for mode in MODES:
            if mode not in INFER_ONLY and any(mode in v for v in rows.values()):
                bars.append((f"ours {mode}", lambda m, md=mode: get(rows, m, md, "train_s"), None))
            if mode == "asymml" and any(mode in v for v in rows.values()):
                bars.append(("ours asymml, TEE share", lambda m: get(rows, m, "asymml", "tee_train_s"), None))
        bars.append(("ours tee-only, modelled SGX1", lambda m: get(rows, m, "tee-only", "sgx1_train_s"),
                     lambda m: (get(rows, m, "tee-only", "sgx1_train_lo_s"), get(rows, m, "tee-only", "sgx1_train_hi_s"))))
        w = 0.8 / len(bars)
        for k, (name, val, band) in enumerate(bars):
            xs, ys, err = [], [], [[], []]
            for i, m in enumerate(models):
                v = val(m)
                if v is None:
                    continue
                xs.append(i + (k - len(bars) / 2 + 0.5) * w)
                ys.append(v)
                if band:
                    lo, hi = band(m)
                    err[0].append(v - lo)
                    err[1].append(hi - v)
            hatch = "//" if name.startswith("paper") else ("xx" if "modelled" in name else None)
            ax.bar(xs, ys, w, label=name, hatch=hatch, yerr=err if band else None, capsize=2)
        ax.set_yscale("log")
        ax.set_xticks(range(len(models)))
        ax.set_xticklabels(models, rotation=15)
        ax.set_ylabel("seconds per training step (log)")
        ax.set_title(label, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=5 if len(sets) > 1 else 3, fontsize=7)
    fig.suptitle("Seconds per training step: the paper's (ImageNet 224x224, batch 32, SGX1 + RTX 5000) and ours\n"
                 "hatched /: the paper's; hatched x: modelled, not measured (bar: 40k cycles a swap, line: 20k-60k)",
                 fontsize=9)
    fig.tight_layout(rect=(0, 0.1 if len(sets) > 1 else 0.17, 1, 1))
    fig.savefig(path, dpi=110)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--md", required=True)
    ap.add_argument("--png", required=True)
    ap.add_argument("--note", default="", help="a paragraph put under the title (how it was run)")
    ap.add_argument("sets", nargs="+", metavar="LABEL=FILE")
    a = ap.parse_args()
    sets = []
    for s in a.sets:
        if "=" not in s:
            sys.exit(f"paper_tables: '{s}' is not LABEL=FILE")
        label, path = s.rsplit("=", 1)
        sets.append((label, load(path)))
    md = ["# The paper's tables and ours", "", a.note, "",
          "Paper: ImageNet 224x224, batch 32, an SGX1 Xeon and an RTX 5000 (the figures the project's specification "
          "quotes). "
          "Ours: measured on the machine named in each table's title; `tee-only` is a plain process (no enclave): "
          "it pays no enclave paging, which SGX2 with a large enough EPC, TDX and SEV-SNP avoid too (their memory "
          "encryption's cost is neither measured nor modelled here), unlike the paper's paging SGX1. The *modelled SGX1* columns are a "
          "model, not a measurement: our measured step plus the page swaps of an LRU cache of 4 KiB pages over the "
          "step's trusted working set (EPC 93 MiB unless stated), at 40,000 cycles a swap (band 20,000-60,000). "
          "They show what paging this code's trusted memory through SGX1's EPC would add to each mode; they are not "
          "the paper's SGX1 measurement and do not reproduce it. In asymml mode the TEE keeps every activation that "
          "BatchNorm, ReLU and pooling read (the specification's placement: those layers stay in the TEE), so its "
          "trusted working set is close to "
          "tee-only's.", ""]
    for label, rows in sets:
        md.append(table(label, rows, "training"))
        md.append(table(label, rows, "inference"))
    with open(a.md, "w") as f:
        f.write("\n".join(md))
    chart(sets, a.png)


if __name__ == "__main__":
    main()
