#!/usr/bin/env bash
# A training step on cores shared with another busy process: asymml's
# default (waiting OpenMP threads spin briefly, then sleep: the
# GOMP_SPINCOUNT asymml sets for itself), threads that sleep at once
# (OMP_WAIT_POLICY=passive) and threads that spin (active), each idle and
# next to one process that spins on one core. The cases alternate for
# ROUNDS rounds, in this one script; each figure is the median over rounds
# of bench's median step. Prints each policy's loaded/idle ratio and its
# idle step over active's.
#
# Usage: bench/shared_cores.sh [MODEL] [ROUNDS] [STEPS]
# OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE stay as the machine sets them (said
# in the first line).
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-vgg16}
rounds=${2:-3}
steps=${3:-3}
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" --target asymml-cli >/dev/null
echo "$model, batch 32, 3x32x32, $(nproc) threads, $rounds rounds of the median of $steps steps;" \
     "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset} OPENBLAS_L2_SIZE=${OPENBLAS_L2_SIZE:-unset}"
hog=
trap '[ -n "$hog" ] && kill "$hog" 2>/dev/null; true' EXIT
step() { # policy: the training step's milliseconds
  local env=(env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT)
  [ "$1" = default ] || env+=(OMP_WAIT_POLICY="$1")
  "${env[@]}" build/asymml bench --models "$model" --batch 32 --steps "$steps" --warmup 1 |
    awk -v m="$model" '$1 == m && $6 == "train" { print $7; exit }'
}
declare -A t
for ((r = 0; r < rounds; r++)); do
  for load in idle loaded; do
    if [ "$load" = loaded ]; then
      bash -c 'while :; do :; done' &
      hog=$!
    fi
    for pol in default passive active; do t[$pol.$load]+="$(step $pol) "; done
    if [ -n "$hog" ]; then kill "$hog"; wait "$hog" 2>/dev/null || true; hog=; fi
  done
done
median() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
declare -A m
for k in "${!t[@]}"; do m[$k]=$(median "${t[$k]}"); done
printf "%-8s %10s %10s %8s\n" policy "idle ms" "loaded ms" ratio
for pol in default passive active; do
  printf "%-8s %10s %10s %7.2fx   (idle %s; loaded %s)\n" "$pol" "${m[$pol.idle]}" "${m[$pol.loaded]}" \
    "$(awk -v a="${m[$pol.loaded]}" -v b="${m[$pol.idle]}" 'BEGIN { print a / b }')" "${t[$pol.idle]}" "${t[$pol.loaded]}"
done
for pol in default passive; do
  awk -v p="${m[$pol.idle]}" -v a="${m[active.idle]}" -v n=$pol 'BEGIN { printf "idle: %s over active %.3f\n", n, p / a }'
done
