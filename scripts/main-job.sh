#!/usr/bin/env bash
# The main job: install what is missing, build, and train the LeNet-style CNN
# on Debian's Fashion-MNIST for 3 epochs, printing the test accuracy.
# Extra arguments go to `asymml train` (see `asymml train --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" --target asymml-cli >/dev/null
exec build/asymml train --model lenet --data /usr/share/datasets/fashion-mnist --epochs 3 "$@"
