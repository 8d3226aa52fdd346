#!/usr/bin/env bash
# asymml against PyTorch (Debian's python3-torch, CPU, oneDNN) on this machine:
# same models, batch, input and threads, each model in its own process, run
# one after the other in this one script. Prints both times and our/their
# ratio (< 1 means asymml is faster) and both peak RSS figures.
#
# The machine's other load moves single figures by tens of percent, so the two
# programs alternate for ROUNDS rounds and each side's best median counts.
#
# Usage: bench/compare.sh [--native-blas] [MODELS] [C,H,W] [BATCH] [STEPS] [ROUNDS]
#   --native-blas  unset OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE for this run
#                  (both programs); by default they stay as the machine sets them.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--native-blas" ]; then
  unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE
  shift
fi
models=${1:-vgg16,vgg19,resnet18,resnet34}
input=${2:-3,32,32}
batch=${3:-32}
steps=${4:-5}
rounds=${5:-2}
threads=$(nproc)
scripts/deps.sh --torch
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$threads" --target asymml-cli >/dev/null
echo "threads $threads, input $input, batch $batch, best of $rounds rounds of the median of $steps steps;" \
     "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset} OPENBLAS_L2_SIZE=${OPENBLAS_L2_SIZE:-unset}"
printf "%-20s %12s %12s %7s %12s %12s %7s %9s %9s\n" model "ours train" "torch train" ratio \
  "ours infer" "torch infer" ratio "our MiB" "torch MiB"
for m in ${models//,/ }; do
  classes=10
  case "$m" in *-imagenet) classes=1000 ;; esac
  ot=1e18 oi=1e18 orss=0 tt=1e18 ti=1e18 trss=0
  for ((r = 0; r < rounds; r++)); do
    ours=$(build/asymml bench --models "$m" --input "$input" --classes "$classes" --batch "$batch" \
             --steps "$steps" --threads "$threads" | grep -v '^bench:')
    read -r a b c < <(sed -E 's/.*train +([0-9.]+) ms.*infer +([0-9.]+) ms.*peak RSS ([0-9]+) MiB.*/\1 \2 \3/' <<<"$ours")
    ot=$(awk -v x="$ot" -v y="$a" 'BEGIN{print (y < x) ? y : x}')
    oi=$(awk -v x="$oi" -v y="$b" 'BEGIN{print (y < x) ? y : x}')
    orss=$c
    read -r _ a b c < <(/usr/bin/python3 bench/torch_bench.py "$m" --input "$input" \
        --classes "$classes" --batch "$batch" --steps "$steps" --threads "$threads")
    tt=$(awk -v x="$tt" -v y="$a" 'BEGIN{print (y < x) ? y : x}')
    ti=$(awk -v x="$ti" -v y="$b" 'BEGIN{print (y < x) ? y : x}')
    trss=$c
  done
  awk -v m="$m" -v ot="$ot" -v tt="$tt" -v oi="$oi" -v ti="$ti" -v orss="$orss" -v trss="$trss" \
    'BEGIN { printf "%-20s %10.1fms %10.1fms %7.2f %10.1fms %10.1fms %7.2f %9d %9d\n",
             m, ot, tt, ot/tt, oi, ti, oi/ti, orss, trss }'
done
