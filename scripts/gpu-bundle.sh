#!/usr/bin/env bash
# Builds asymml with the CUDA backend into build-gpu/ and copies the shared
# libraries it needs that a GPU machine may lack (OpenBLAS, LAPACKE,
# libsodium, libseccomp, zlib, cmocka, libgomp, libgfortran) into
# build-gpu/bundle/lib, so that scripts/gpu-check.sh can run it on a machine with
# CUDA and cuDNN (say through PyTorch) but no Debian packages. glibc,
# libstdc++ and cuDNN are the GPU machine's own; the CUDA runtime is linked
# statically. The programs find bundle/lib through their RPATH ($ORIGIN/lib):
# the accelerator server gets no LD_LIBRARY_PATH (its environment holds
# nothing that loads code), and gpu-check.sh links cuDNN into bundle/lib.
# Carry build-gpu/bundle along with the working tree.
# Usage: scripts/gpu-bundle.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
dir=${1:-build-gpu}
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release -DASYMML_CUDA=on '-DCMAKE_BUILD_RPATH=$ORIGIN/lib' >/dev/null
cmake --build "$dir" -j"$(nproc)" --target asymml-cli asymml-accel test_cuda >/dev/null
# The bundle: only what the GPU check runs.
b=$dir/bundle
rm -rf "$b"
mkdir -p "$b/lib"
cp "$dir/asymml" "$dir/asymml-accel" "$dir/tests/test_cuda" "$b/"
ldd "$b/asymml" "$b/asymml-accel" "$b/test_cuda" | awk '/=> \//{print $1, $3}' | sort -u |
  while read -r name path; do
    case "$name" in
    libc.so* | libm.so* | libdl.so* | libpthread.so* | librt.so* | ld-linux* | libgcc_s.so* | libstdc++.so* | libcudnn*) ;;
    *) cp -L "$path" "$b/lib/$name" ;;
    esac
  done
echo "bundle: $b, $(du -sh "$b" | cut -f1); carry it and run scripts/gpu-check.sh $b"
