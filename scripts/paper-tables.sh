#!/usr/bin/env bash
# The paper's two tables (seconds per training step and per inference pass)
# next to ours, as Markdown and a PNG bar chart (bench/paper_tables.py):
# VGG16, VGG19, ResNet18 and ResNet34 in tee-only, asymml, lowrank-only and
# open mode, and inference in slalom mode (blinded, with its precomputation
# per batch apart), with each mode's trusted working set per step and a *modelled*
# SGX1 column (an LRU enclave page cache of EPC MiB over the step's trusted
# memory; bench --epc). This machine is the CPU proxy: 3x32x32 at batch 32
# and 3x224x224 at batch BATCH224, with the accelerator's part on the CPU
# backend (its TEE share is the part that counts here). The GPU part,
# ImageNet-sized input at batch 32 with the CUDA backend, is written by
# scripts/gpu-check.sh where a GPU is lent (build-gpu/paper-tables/gpu-*.csv);
# copy those files into OUT and they join the tables.
#
# Usage: scripts/paper-tables.sh [OUT]     (default build/paper-tables)
#   env: BATCH224 (default 8), STEPS (default 2), EPC (MiB, default 93),
#        MODELS (default vgg16,vgg19,resnet18,resnet34), SKIP224=1
# Time: about 5 minutes on 2 cores (224x224 at batch 8 dominates).
set -euo pipefail
out=$(realpath -m "${1:-$(dirname "$0")/../build/paper-tables}")
cd "$(dirname "$0")/.."
b224=${BATCH224:-8} steps=${STEPS:-2} epc=${EPC:-93} models=${MODELS:-vgg16,vgg19,resnet18,resnet34}
scripts/deps.sh --tables
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" --target asymml-cli >/dev/null
mkdir -p "$out"
cpu="$(nproc)-core CPU ($(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'))"
blas="OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}"
bench() { # CSV INPUT CLASSES BATCH MODELS
  build/asymml bench --models "$5" --input "$2" --classes "$3" --batch "$4" --steps "$steps" --warmup 1 \
    --modes asymml,lowrank-only,open,slalom --epc "$epc" --csv "$1" | sed -n '/^summary/,$p'
}
echo "== 3x32x32, batch 32"
bench "$out/cpu-32.csv" 3,32,32 10 32 "$models"
sets=("$cpu, 3x32x32, batch 32, $blas=$out/cpu-32.csv")
if [ "${SKIP224:-0}" != 1 ]; then
  echo "== 3x224x224, batch $b224"
  m224=$(sed -E 's/([a-z0-9]+)/\1-imagenet/g' <<<"$models")
  bench "$out/cpu-224.csv" 3,224,224 1000 "$b224" "$m224"
  sets+=("$cpu, 3x224x224, batch $b224, $blas=$out/cpu-224.csv")
fi
# The GPU part: gpu-check.sh's gpu-*.csv (and .label) copied into OUT.
for f in "$out"/gpu-*.csv; do
  [ -e "$f" ] || continue
  sets+=("$(head -c 200 "${f%.csv}.label" 2>/dev/null || echo "GPU machine"), 3x224x224, batch 32=$f")
done
/usr/bin/python3 bench/paper_tables.py --md "$out/paper-tables.md" --png "$out/paper-tables.png" \
  --note "Written by scripts/paper-tables.sh on $(date -u +%Y-%m-%d); median of $steps step$([ "$steps" = 1 ] || echo s) after 1 warm-up; EPC $epc MiB." \
  "${sets[@]}"
echo "wrote $out/paper-tables.md and $out/paper-tables.png"
