#!/usr/bin/env bash
# asymml's gpu-only mode (every layer on the GPU: the paper's GPU-only
# baseline) against PyTorch on the same GPU: same models, batch and input,
# each timed as a median of STEPS steps after one warm-up; a training step
# copies the batch and labels in and the loss out in both. Prints both
# times and our/their ratio (the target: at most 1.3). Run by
# scripts/gpu-check.sh; needs a GPU, PyTorch with torchvision (PYTHON) and
# an asymml built with the CUDA backend (BIN: the folder of asymml).
#
# Usage: bench/gpu_compare.sh BIN [PYTHON] [MODELS] [BATCH] [STEPS]
set -uo pipefail
cd "$(dirname "$0")/.."
bin=${1:?usage: bench/gpu_compare.sh BIN [PYTHON] [MODELS] [BATCH] [STEPS]}
py=${2:-python3}
models=${3:-vgg16-imagenet,resnet18-imagenet}
batch=${4:-32}
steps=${5:-5}
printf "%-20s %12s %12s %7s %12s %12s %7s\n" model "ours train" "torch train" ratio "ours infer" "torch infer" ratio
status=0
for m in ${models//,/ }; do
  ours=$("$bin/asymml" bench --models "$m" --input 3,224,224 --classes 1000 --batch "$batch" --steps "$steps" \
           --warmup 1 --modes gpu-only --no-baseline --accel cuda --tee process | grep -E "^$m +gpu-only +[0-9]") || {
    echo "$m: asymml gpu-only failed"; status=1; continue; }
  read -r ot oi < <(awk '{print $3, $4}' <<<"$ours")
  theirs=$("$py" bench/torch_bench.py "$m" --input 3,224,224 --classes 1000 --batch "$batch" --steps "$steps" \
             --threads "$(nproc)" --device cuda) || { echo "$m: PyTorch failed"; status=1; continue; }
  read -r _ tt ti _ <<<"$theirs"
  awk -v m="$m" -v ot="$ot" -v tt="$tt" -v oi="$oi" -v ti="$ti" \
    'BEGIN { printf "%-20s %10.1fms %10.1fms %7.2f %10.1fms %10.1fms %7.2f\n", m, ot, tt, ot/tt, oi, ti, oi/ti }'
done
exit "$status"
