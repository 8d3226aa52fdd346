#!/usr/bin/env bash
# The evaluation's Python harness (eval/), where its tools are installed
# (scripts/deps.sh --eval; .ci/run installs them; without them: skipped, 77):
# the fast part of scripts/privacy-eval.sh, each attack on a small recorded
# run of the base setting (LeNet, asymml, rank 1/8, per-sample basis):
#   - PSNR and SSIM equal skimage's;
#   - label inference finds what the C attack (tests/attack_hostview.c) finds;
#   - the trusted part from the weight updates: exact at batch 4 (least
#     squares), and at batch 16 too with the basis read off the residual;
#   - a decoder trained on a model's residuals of the attacker's own images
#     reconstructs the victim's images well above the mean-image floor;
#   - slalom's recorded first-layer inputs read as the evaluation reads
#     them: the batch's shape, spread as uniform values are.
# Usage: eval_test.sh SOURCE_DIR PATH/TO/asymml PATH/TO/attack_hostview
set -u
src=$1
bin=$2
attack=$3
py=/usr/bin/python3
data=/usr/share/datasets/fashion-mnist
"$py" -c "import torch, skimage, numpy" 2>/dev/null ||
  { echo "SKIP: eval_test: no python3-torch or python3-skimage (scripts/deps.sh --eval installs them)"; exit 77; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fail=0
bad() { echo "FAIL: $*"; fail=$((fail + 1)); }
base=(--mode asymml --rank-ratio 0.125 --basis per-sample --seed 3 --threads 2)
echo "eval_test: PSNR and SSIM against skimage"
"$py" "$src/eval/test_metrics.py" || bad "metrics"

echo "eval_test: label inference on a recorded run"
mkdir -p "$dir/truth"
"$bin" train --data "$data" --limit-train 640 --limit-test 100 --epochs 1 --batch 64 "${base[@]}" \
  --checkpoint-dir "$dir/ck" --record "$dir/rec" >"$dir/out" 2>&1 || { echo "FAIL: recorded run: $(tail -1 "$dir/out")"; exit 1; }
"$attack" truth "$data" 640 64 3 0 10 "$dir/truth" || { echo "FAIL: truth"; exit 1; }
"$py" "$src/eval/attack.py" labels "$dir/rec" "$dir/truth" | tee "$dir/py"
c=$("$attack" labels "$dir/rec" "$data" 640 64 3 | sed -n 's/.* for \([0-9]*\) of .*/\1/p')
p=$(sed -n 's/^labels, nearest neighbour: \([0-9]*\) of .*/\1/p' "$dir/py")
[ -n "$c" ] && [ "$c" = "$p" ] || bad "nearest neighbour: python $p, C $c"
[ "${p:-0}" -ge 576 ] || bad "nearest neighbour found ${p:-?} of 640 labels (at least 90% expected)"

echo "eval_test: the trusted part from the weight updates"
for B in 4 16; do
  "$bin" train --data "$data" --limit-train $((10 * B)) --limit-test 10 --epochs 1 --batch $B "${base[@]}" \
    --checkpoint-dir "$dir/ck$B" --save-every 1 --keep 100 --record "$dir/rec$B" >"$dir/out" 2>&1 ||
    bad "recorded run at batch $B: $(tail -1 "$dir/out")"
  mkdir -p "$dir/t$B"
  "$attack" truth "$data" $((10 * B)) $B 3 1 2 "$dir/t$B" "$dir/ck$B" 4 || bad "truth at batch $B"
  "$py" "$src/eval/attack.py" updates "$dir/rec$B" "$dir/t$B" 0.05 10 | tee "$dir/up$B"
done
# Batch 4: least squares to float rounding; batch 16: the basis read off the residual.
worst() { grep "$1" "$2" | sed 's/.*relative error \([^,]*\),.*/\1/' | sort -g | tail -1; }
e4=$(worst "least squares" "$dir/up4")
e16=$(worst "basis from" "$dir/up16")
awk -v e="${e4:-9}" 'BEGIN { exit !(e < 1e-3) }' || bad "batch 4: M not recovered by least squares (${e4:-?})"
awk -v e="${e16:-9}" 'BEGIN { exit !(e < 1e-2) }' || bad "batch 16: M not recovered with the basis of the residual (${e16:-?})"

echo "eval_test: a decoder from residuals to images"
"$py" -c "
import sys; sys.path.insert(0, '$src/eval'); import data
x, y = data.read('train')
data.write('$dir/aux', 't10k', x[50000:52000], y[50000:52000])"
"$bin" eval --checkpoint "$dir/ck" --data "$dir/aux" --batch 64 --threads 2 --record "$dir/auxrec" >"$dir/out" 2>&1 ||
  bad "eval on the auxiliary set: $(tail -1 "$dir/out")"
"$py" "$src/eval/attack.py" decoder "$dir/auxrec" "$dir/aux" "$dir/rec" "$dir/truth" 3 | tee "$dir/dec"
d=$(sed -n 's/^decoder: PSNR \([0-9.]*\) dB.*/\1/p' "$dir/dec")
m=$(sed -n 's/^floor: the auxiliary mean image: PSNR \([0-9.]*\) dB.*/\1/p' "$dir/dec")
awk -v d="${d:-0}" -v m="${m:-99}" 'BEGIN { exit !(d > m + 3) }' ||
  bad "decoder: PSNR ${d:-?} dB, not 3 dB above the mean image's ${m:-?}"
echo "eval_test: slalom's blinded inputs as the evaluation reads them"
"$bin" infer --mode slalom --checkpoint "$dir/ck" --data "$data" --limit 128 --batch 64 --calib 128 --threads 2 \
  --record "$dir/slrec" >"$dir/out" 2>&1 || bad "slalom run: $(tail -1 "$dir/out")"
"$py" -c "
import sys; sys.path.insert(0, '$src/eval'); from view import View
v = View('$dir/slrec').blinded()
assert tuple(v.shape) == (128, 1, 28, 28), v.shape
assert float(v.abs().max()) <= 0.5 and abs(float(v.mean())) < 0.02 and abs(float(v.std()) - 12 ** -0.5) < 0.01, \
    (float(v.mean()), float(v.std()))
print('slalom view: 128 images of 1x28x28 residues, mean %.4f, std %.4f (uniform: 0, 0.2887)' % (v.mean(), v.std()))
" || bad "slalom's view"
echo "eval_test: $fail failed"
[ "$fail" -eq 0 ]
