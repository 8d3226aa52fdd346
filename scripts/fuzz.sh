#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan) and runs each for
# SECONDS (default 30), starting from the committed corpus in fuzz/corpus.
# New inputs go to a temporary folder, not into the repository; a crash
# leaves its input in build-fuzz/ and fails the script.
# Usage: scripts/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-30}
scripts/deps.sh --fuzz
CC=clang cmake -S . -B build-fuzz -DASYMML_FUZZ=ON -DASYMML_CUDA=off -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
targets=(idx cifar checkpoint desc channel safetensors)
cmake --build build-fuzz -j"$(nproc)" --target "${targets[@]/#/fuzz_}" >/dev/null
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for t in "${targets[@]}"; do
  mkdir -p "$work/$t"
  echo "== fuzz_$t for ${secs}s"
  (cd build-fuzz && OMP_NUM_THREADS=1 ASAN_OPTIONS=detect_leaks=1 \
     ./fuzz/fuzz_$t -max_total_time="$secs" -rss_limit_mb=4096 -max_len=65536 -print_final_stats=1 \
     "$work/$t" "../fuzz/corpus/$t" 2>&1 | grep -E "^(stat::number_of_executed_units|stat::new_units_added)|ERROR|SUMMARY|Done" || true)
  # libFuzzer exits non-zero on a crash; grep above hides it, so check for artifacts.
  if ls build-fuzz/crash-* build-fuzz/leak-* build-fuzz/timeout-* >/dev/null 2>&1; then
    echo "fuzz_$t found a failing input:" build-fuzz/crash-* build-fuzz/leak-* build-fuzz/timeout-* 2>/dev/null
    exit 1
  fi
done
echo "fuzzing: no failure"
