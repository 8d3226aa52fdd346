#!/usr/bin/env bash
# The evaluation's Python harness (eval/), where its tools are installed
# (scripts/deps.sh --eval; CI does not install them: skipped, 77): PSNR and
# SSIM against skimage's, and label inference on a recorded run, which must
# find what the C attack (tests/attack_hostview.c) finds on the same view.
# Usage: eval_test.sh SOURCE_DIR PATH/TO/asymml PATH/TO/attack_hostview
set -u
src=$1
bin=$2
attack=$3
py=/usr/bin/python3
data=/usr/share/datasets/fashion-mnist
"$py" -c "import torch, skimage, numpy" 2>/dev/null ||
  { echo "SKIP: no python3-torch or python3-skimage (scripts/deps.sh --eval installs them)"; exit 77; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fail=0
echo "eval_test: PSNR and SSIM against skimage"
"$py" "$src/eval/test_metrics.py" || fail=$((fail + 1))
echo "eval_test: label inference on a recorded run"
mkdir -p "$dir/truth"
"$bin" train --data "$data" --limit-train 640 --limit-test 100 --epochs 1 --batch 64 --mode asymml --seed 3 \
  --threads 2 --record "$dir/rec" >"$dir/out" 2>&1 || { echo "FAIL: recorded run: $(tail -1 "$dir/out")"; exit 1; }
"$attack" truth "$data" 640 64 3 10 "$dir/truth" || { echo "FAIL: truth"; exit 1; }
"$py" "$src/eval/attack.py" labels "$dir/rec" "$dir/truth" | tee "$dir/py"
c=$("$attack" labels "$dir/rec" "$data" 640 64 3 | sed -n 's/.* for \([0-9]*\) of .*/\1/p')
p=$(sed -n 's/^labels, nearest neighbour: \([0-9]*\) of .*/\1/p' "$dir/py")
[ -n "$c" ] && [ "$c" = "$p" ] || { echo "FAIL: nearest neighbour: python $p, C $c"; fail=$((fail + 1)); }
[ "${p:-0}" -ge 576 ] || { echo "FAIL: nearest neighbour found ${p:-?} of 640 labels (at least 90% expected)"; fail=$((fail + 1)); }
echo "eval_test: $fail failed"
[ "$fail" -eq 0 ]
