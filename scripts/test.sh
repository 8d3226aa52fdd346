#!/usr/bin/env bash
# Installs what is missing, builds asymml and runs its tests.
# Usage: scripts/test.sh [BUILD_DIR] [extra cmake options...]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
dir=${1:-build}
shift || true
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
cmake --build "$dir" -j"$(nproc)"
status=0
ctest --test-dir "$dir" --output-on-failure -j1 || status=$?
# Skipped tests (exit 77) say why on their first line; CTest only counts them.
grep -h "^SKIP: " "$dir/Testing/Temporary/LastTest.log" 2>/dev/null || true
exit "$status"
