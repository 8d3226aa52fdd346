#!/usr/bin/env bash
# The GPU check: on a machine with an NVIDIA GPU, run the CUDA backend's
# tests, then time VGG16, VGG19, ResNet18 and ResNet34 (ImageNet-style) at
# batch 32 on 3x224x224: training and inference steps in tee-only (all in
# the TEE, on the CPU), asymml, lowrank-only, open and gpu-only modes with
# the CUDA backend, and inference in slalom mode (blinded; its factors
# precomputed first, timed apart), each mode's speedup over tee-only, the
# table last;
# their CSV goes to PAPER_TABLES (default build-gpu/paper-tables) for
# scripts/paper-tables.sh. Then gpu-only mode against PyTorch on the same
# GPU (bench/gpu_compare.sh). Open mode (no privacy) sends every conv whole
# to the GPU, the other layers (BatchNorm, ReLU, pooling, the classifier,
# SGD) staying on the CPU; gpu-only mode (no privacy) runs every layer and
# SGD on the GPU: the paper's GPU-only column.
#
# Usage: scripts/gpu-check.sh [BUNDLE]
#   BUNDLE: a folder made by scripts/gpu-bundle.sh (default build-gpu/bundle):
#   the programs and the libraries a machine without Debian's packages
#   lacks. Without one, this builds into build-gpu (needs those packages).
# Time: 93-117 s on one H100 with 16 cores before VGG19 and ResNet34 joined
# (2026-11-26); each step has a timeout, 14 minutes in all at most.
set -uo pipefail
cd "$(dirname "$0")/.."
b=${1:-build-gpu/bundle}
pt=${PAPER_TABLES:-build-gpu/paper-tables}
t0=$SECONDS
say() { echo "== $* (at $((SECONDS - t0)) s)"; }
if [ -x "$b/asymml" ]; then
  bin=$b test=$b/test_cuda
  export LD_LIBRARY_PATH="$b/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
else
  say "no bundle at $b: building build-gpu"
  cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DASYMML_CUDA=on >/dev/null &&
    cmake --build build-gpu -j"$(nproc)" --target asymml-cli asymml-accel test_cuda >/dev/null || {
    echo "gpu-check: build failed (without a bundle this needs OpenBLAS, LAPACKE, libsodium, libseccomp, cmocka)"
    exit 1
  }
  bin=build-gpu test=build-gpu/tests/test_cuda
fi
# cuDNN: the system's, or PyTorch's wheel's. The accelerator server gets no
# LD_LIBRARY_PATH: a wheel's cuDNN is linked into the bundle's lib/, which its
# RPATH names and its sandbox lets it read.
if ! ldconfig -p 2>/dev/null | grep -q libcudnn.so.9; then
  for py in python3 /opt/torch/.venv/bin/python3; do
    d=$($py -c 'import os, nvidia.cudnn as m; print(os.path.join(list(m.__path__)[0], "lib"))' 2>/dev/null) &&
      [ -d "$d" ] && export LD_LIBRARY_PATH="$d:$LD_LIBRARY_PATH" && break
  done
  if [ -n "${d:-}" ] && [ -d "$b/lib" ]; then
    for f in "$d"/libcudnn*.so*; do cp -f "$f" "$b/lib/" 2>/dev/null; done
  fi
fi
# OpenBLAS picks its kernels from the processor's model number; a virtual
# machine that hides the model ("Intel(R) Xeon(R) Processor") can leave it on
# generic ones several times slower, which would make the tee-only baseline
# (all GEMMs) look slower than it is. Name the kernels the flags allow.
if [ -z "${OPENBLAS_CORETYPE:-}" ]; then
  f=" $(grep -m1 '^flags' /proc/cpuinfo) "
  if [[ $f == *" avx512f "* && $f == *" avx512bw "* && $f == *" avx512vl "* && $f == *" avx512dq "* ]]; then
    export OPENBLAS_CORETYPE=SkylakeX
  elif [[ $f == *" avx2 "* && $f == *" fma "* ]]; then
    export OPENBLAS_CORETYPE=Haswell
  fi
fi
echo "cpu: $(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2-), $(nproc) cores, OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | sed 's/^/gpu: /'
missing=$(ldd "$bin/asymml" | grep "not found")
[ -n "$missing" ] && { echo "gpu-check: missing libraries:"; echo "$missing"; exit 1; }

status=0
say "CUDA backend tests"
timeout 150 "$test" || status=1

say "--tee process with the accelerator server on the GPU (ResNet18, 3x32x32, batch 32)"
timeout 60 "$bin/asymml" bench --models resnet18 --batch 32 --steps 2 --warmup 1 --mode asymml --tee process \
  --accel cuda | tail -2 || status=1

say "VGG16, VGG19, ResNet18 and ResNet34 (ImageNet), 3x224x224, batch 32: the paper's tables (CSV in $pt)"
mkdir -p "$pt"
echo "$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1) + $(nproc)-core CPU" >"$pt/gpu-224.label"
timeout 420 "$bin/asymml" bench --models resnet18-imagenet,vgg16-imagenet,vgg19-imagenet,resnet34-imagenet \
  --input 3,224,224 --classes 1000 --batch 32 --steps 2 --warmup 1 --modes asymml,lowrank-only,open,gpu-only,slalom --accel cuda \
  --tee process --layers --csv "$pt/gpu-224.csv" || status=1
say "gpu-only mode against PyTorch on this GPU (VGG16 and ResNet18, ImageNet, batch 32)"
tpy=
for p in python3 /opt/torch/.venv/bin/python3; do
  "$p" -c 'import torch, torchvision; assert torch.cuda.is_available()' 2>/dev/null && tpy=$p && break
done
if [ -n "$tpy" ]; then
  timeout 180 bench/gpu_compare.sh "$bin" "$tpy" || status=1
else
  echo "no PyTorch with torchvision and CUDA here: comparison skipped"
fi
say "done, status $status"
exit "$status"
