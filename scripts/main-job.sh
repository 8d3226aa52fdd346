#!/usr/bin/env bash
# The main job: install what is missing, build, and train the LeNet-style CNN
# on Debian's Fashion-MNIST for 3 epochs in asymml mode: its second conv is
# split at rank 8 of 16 per sample (the low-rank part stays on the trusted
# side), and each residual, clipped to L2 norm 0.25 and noised with
# multiplier 2, goes to the accelerator. The process this starts is the
# trusted side (non-dumpable, memory-locked, sandboxed); it starts the
# accelerator server, asymml-accel, confined (another user when root,
# Landlock). It prints what crosses to the accelerator and what is known to
# leak from it, each epoch's test accuracy, and at the end (epsilon, delta)
# for the residual releases alone, with the signal-to-noise statement that
# says why that figure is no guarantee for the run.
# Its checkpoints go, sealed, to runs/main (the key: runs/main.key, made on
# the first run; one every 100 steps too); a new main job moves the last
# one's aside (--new-run), and `scripts/main-job.sh --resume` goes on with it
# after an interruption (Ctrl-C saves one first). Extra arguments go to
# `asymml train` (see `asymml train --help`); with --resume, the run's own
# options come from its checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" --target asymml-cli asymml-accel >/dev/null
mkdir -p runs
chmod 700 runs
[ -f runs/main.key ] || build/asymml keygen runs/main.key >/dev/null
if [ "${1:-}" = --resume ]; then
  shift
  run=(--resume runs/main)
else
  run=(--checkpoint-dir runs/main --save-every 100 --new-run)
fi
exec build/asymml train --model lenet --data /usr/share/datasets/fashion-mnist --epochs 3 \
  --mode asymml --basis per-sample --rank-ratio 0.5 --clip 0.25 --sigma 2 --tee process --key runs/main.key \
  "${run[@]}" "$@"
