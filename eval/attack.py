#!/usr/bin/python3
"""The evaluation's attacks on the host's recorded view (asymml ... --record),
one entry point. The attacker reads only the recording; the scoring reads
the evaluator's truth (eval/truth.py), which the host never sees.

Usage:
    eval/attack.py labels REC TRUTH   label inference from the clear output
                                      gradients (eval/labels.py)
Prints one line per attack: what it recovered, against chance.
"""
import os
import sys

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
sys.path.insert(0, os.path.join(here, "..", "scripts"))

import torch  # noqa: E402

import labels as lab  # noqa: E402
import truth  # noqa: E402
from hostview import records  # noqa: E402


def output_gradients(rec):
    """The clear output gradients of each step's first split layer, by step."""
    by_step = {}
    for r in records(rec):
        if r["request"] == "conv-backward-filter" and r["kind"] == "output-gradient" and r["step"] not in by_step:
            by_step[r["step"]] = torch.as_tensor(r["values"]).reshape(r["shape"])
    return by_step


def cmd_labels(rec, truth_dir):
    meta, y, _ = truth.load(truth_dir)
    grads = output_gradients(rec)
    steps = [s for s in sorted(grads) if s < meta["steps"]]
    if not steps:
        sys.exit("attack.py: no clear output gradient in the recording (protected gradients, or not asymml mode)")
    nn = [lab.nearest_neighbour(grads[s], y[s]) for s in steps]
    km = [lab.kmeans(grads[s], y[s], meta["classes"], seed=s) for s in steps]
    for name, res in (("nearest neighbour", nn), ("k-means purity", km)):
        hit, total = sum(h for h, _ in res), sum(t for _, t in res)
        print(f"labels, {name}: {hit} of {total} samples ({hit / total:.3f}; chance about "
              f"{1 / meta['classes']:.2f}), {len(steps)} steps of batch {meta['batch']}")


def main(argv):
    if len(argv) == 4 and argv[1] == "labels":
        return cmd_labels(argv[2], argv[3])
    sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
