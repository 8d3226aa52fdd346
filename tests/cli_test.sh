#!/usr/bin/env bash
# The asymml command's behaviour at its edges: exit codes, one-line errors,
# help on every subcommand, checkpoints that survive failures. Data files are
# made here with printf (no Python, no downloads).
# Usage: cli_test.sh PATH/TO/asymml
set -u
bin=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
pass=0 fail=0

# expect CODE DESCRIPTION -- command...: the exit code, and for failures a
# single line on stderr that starts with "asymml:".
expect() {
  local want=$1 what=$2
  shift 3
  "$@" >"$dir/out" 2>"$dir/err"
  local got=$?
  local lines
  lines=$(wc -l <"$dir/err")
  if [ "$got" -ne "$want" ]; then
    echo "FAIL: $what: exit $got, expected $want"; sed 's/^/  /' "$dir/err" | head -5; fail=$((fail + 1))
  elif [ "$want" -ne 0 ] && { [ "$lines" -ne 1 ] || ! grep -q '^asymml: ' "$dir/err"; }; then
    echo "FAIL: $what: stderr is not one 'asymml:' line:"; sed 's/^/  /' "$dir/err" | head -5; fail=$((fail + 1))
  else
    pass=$((pass + 1))
  fi
}

# A small IDX dataset: 96 train and 32 test images of 28x28, labels 0..9.
be32() { printf "\\x$(printf %02x $(($1 >> 24 & 255)))\\x$(printf %02x $(($1 >> 16 & 255)))\\x$(printf %02x $(($1 >> 8 & 255)))\\x$(printf %02x $(($1 & 255)))"; }
mkidx() { # prefix count [size [folder]]
  local f=${4:-$dir/data}/$1 n=$2 s=${3:-28}
  { printf '\x00\x00\x08\x03'; be32 "$n"; be32 "$s"; be32 "$s"; head -c $((n * s * s)) /dev/urandom; } >"$f-images-idx3-ubyte"
  { printf '\x00\x00\x08\x01'; be32 "$n"; for ((i = 0; i < n; i++)); do printf "\\x0$((i % 10))"; done; } >"$f-labels-idx1-ubyte"
}
mkdir -p "$dir/data" "$dir/bad"
mkidx train 96
mkidx t10k 32

expect 2 "no command" -- "$bin"
expect 2 "unknown command" -- "$bin" frobnicate
for c in train eval info bench analyze quantize infer precompute; do expect 0 "$c --help" -- "$bin" $c --help; done
expect 0 "--version" -- "$bin" --version
expect 2 "unknown option" -- "$bin" train --data "$dir/data" --bogus
expect 2 "zero batch" -- "$bin" train --data "$dir/data" --batch 0
expect 2 "absurd lr" -- "$bin" train --data "$dir/data" --lr 1e9
expect 2 "not a number" -- "$bin" train --data "$dir/data" --epochs 3x
expect 2 "no --data" -- "$bin" train
expect 2 "unknown dataset kind" -- "$bin" train --data "$dir/data" --dataset imagenet
expect 2 "unknown model" -- "$bin" train --data "$dir/data" --model alexnet
expect 2 "batch larger than the data" -- "$bin" train --data "$dir/data" --batch 500
expect 2 "unknown mode" -- "$bin" train --data "$dir/data" --mode gpu
expect 2 "noise without a clip" -- "$bin" train --data "$dir/data" --mode asymml --sigma 1
expect 2 "rank ratio above 1" -- "$bin" train --data "$dir/data" --mode asymml --rank-ratio 2
expect 2 "rank list with an empty entry" -- "$bin" train --data "$dir/data" --mode asymml --rank-list 4,,5
expect 2 "rank list ending in a comma" -- "$bin" train --data "$dir/data" --mode asymml --rank-list 4,
expect 2 "rank list with a word" -- "$bin" train --data "$dir/data" --mode asymml --rank-list four
expect 2 "negative rank in a list" -- "$bin" train --data "$dir/data" --mode asymml --rank-list 4,-1
expect 2 "unknown basis" -- "$bin" train --data "$dir/data" --mode asymml --basis random
expect 2 "energy threshold of 1" -- "$bin" train --data "$dir/data" --mode asymml --rank-energy 1
expect 2 "rank list of the wrong length" -- "$bin" train --data "$dir/data" --mode asymml --rank-list 4,4,4
grep -q "the rank list has 3 entries; the model has 1 conv layer after the first$" "$dir/err" || { echo "FAIL: list length error unclear"; fail=$((fail + 1)); }
expect 1 "missing data" -- "$bin" train --data "$dir/nowhere"
# A trusted-memory limit like an SGX EPC: LeNet trains in 128 MiB; VGG11 at
# batch 32 does not fit in 128 MiB, and says so instead of crashing.
expect 0 "lenet under --tee-mem 128" -- "$bin" train --data "$dir/data" --epochs 1 --batch 16 --tee-mem 128 --mode asymml
grep -q "^trusted memory: peak [0-9.]* MiB of asymml's own allocations (limit 128 MiB" "$dir/out" ||
  { echo "FAIL: no trusted-memory peak"; fail=$((fail + 1)); }
expect 1 "vgg11 over --tee-mem 128" -- "$bin" train --data "$dir/data" --model vgg11 --epochs 1 --batch 32 --tee-mem 128
grep -q "the trusted memory limit, --tee-mem 128 MiB, was reached" "$dir/err" || { echo "FAIL: limit not named"; fail=$((fail + 1)); }
expect 0 "vgg11 in asymml mode under --tee-mem 256" -- "$bin" train --data "$dir/data" --model vgg11 --epochs 1 --batch 16 \
  --tee-mem 256 --mode asymml --limit-test 16 --tee process
expect 2 "absurd --tee-mem" -- "$bin" train --data "$dir/data" --tee-mem 0
# The accelerator: cpu or cuda.
expect 2 "unknown accelerator" -- "$bin" train --data "$dir/data" --mode asymml --accel gpu
expect 2 "unknown overlap" -- "$bin" train --data "$dir/data" --mode asymml --overlap maybe
# The GPU's stack runs only in the accelerator server: in one process cuda
# is a usage error; without a GPU the server says why it cannot start it.
expect 2 "--accel cuda in one process" -- "$bin" train --data "$dir/data" --mode asymml --accel cuda
grep -q "^asymml: --accel cuda needs --tee process" "$dir/err" || { echo "FAIL: --accel cuda inproc: unclear"; fail=$((fail + 1)); }
if ! nvidia-smi -L >/dev/null 2>&1; then
  expect 1 "--accel cuda without a GPU" -- "$bin" train --data "$dir/data" --mode asymml --accel cuda --tee process
  grep -q "could not start its cuda backend: \(no usable GPU\|this build has no CUDA backend\)" "$dir/err" ||
    { echo "FAIL: --accel cuda (process): reason unclear"; sed 's/^/  /' "$dir/err"; fail=$((fail + 1)); }
fi
expect 2 "unknown mode in --modes" -- "$bin" bench --models lenet --modes asymml,bogus
expect 0 "bench with two modes" -- "$bin" bench --models lenet --input 1,28,28 --batch 8 --steps 1 --warmup 0 --modes asymml,open
grep -q "^lenet  *open  *[0-9.]*  *[0-9.]*  *[0-9.]*x" "$dir/out" || { echo "FAIL: no summary row"; fail=$((fail + 1)); }
# The summary as CSV (scripts/paper-tables.sh reads it), written in the
# sandboxed trusted process too, with the modelled SGX1 column: a tiny EPC
# must swap, the default one not for LeNet.
expect 0 "bench --csv --tee process" -- "$bin" bench --models lenet --input 1,28,28 --batch 8 --steps 1 --warmup 0 \
  --modes asymml,lowrank-only --tee process --epc 1 --csv "$dir/bench.csv"
[ "$(wc -l <"$dir/bench.csv")" -eq 4 ] && head -1 "$dir/bench.csv" | grep -q "^model,mode,.*,ws_train_bytes,.*,sgx1_train_s," &&
  awk -F, 'NR > 1 && ($10 <= 0 || $14 <= 0 || $16 <= $6) { bad = 1 } END { exit bad }' "$dir/bench.csv" ||
  { echo "FAIL: bench CSV"; sed 's/^/  /' "$dir/bench.csv"; fail=$((fail + 1)); }
grep -q "modelled SGX1 (not measured: EPC 1 MiB" "$dir/out" || { echo "FAIL: no modelled SGX1 line"; fail=$((fail + 1)); }
expect 0 "bench, default EPC" -- "$bin" bench --models lenet --input 1,28,28 --batch 8 --steps 1 --warmup 0 --csv "$dir/bench.csv"
awk -F, 'NR == 2 && $14 != 0 { bad = 1 } END { exit bad }' "$dir/bench.csv" || { echo "FAIL: LeNet swaps in 93 MiB"; fail=$((fail + 1)); }
# gpu-only mode: bench's baseline, through the server's ops (the CPU backend here); train refuses it.
expect 0 "bench gpu-only --tee process" -- "$bin" bench --models lenet --input 1,28,28 --batch 8 --steps 1 --warmup 0 \
  --modes gpu-only --tee process
grep -q "^lenet  *gpu-only  *[0-9.]*  *[0-9.]*" "$dir/out" || { echo "FAIL: no gpu-only row"; fail=$((fail + 1)); }
# What the host records in gpu-only mode is everything: the batch, its labels, the weights.
expect 0 "bench gpu-only --record" -- "$bin" bench --models lenet --input 1,28,28 --batch 8 --steps 1 --warmup 0 \
  --modes gpu-only --no-baseline --tee process --record "$dir/rec-gpu"
for k in activation labels weights; do
  grep -q "\"request\": \"put\", \"input\": 0, \"kind\": \"$k\"" "$dir/rec-gpu/index.jsonl" ||
    { echo "FAIL: gpu-only's recorded view lacks its $k"; fail=$((fail + 1)); }
done
expect 0 "bench --no-baseline" -- "$bin" bench --models lenet --input 1,28,28 --batch 8 --steps 1 --warmup 0 \
  --modes gpu-only --no-baseline
grep -q "^lenet  *gpu-only  *[0-9.]*  *[0-9.]*  *-  *-" "$dir/out" && ! grep -q "^lenet .*tee-only" "$dir/out" ||
  { echo "FAIL: bench --no-baseline timed tee-only or printed speedups"; fail=$((fail + 1)); }
expect 2 "train --mode gpu-only" -- "$bin" train --data "$dir/data" --mode gpu-only
grep -q "gpu-only is bench's baseline" "$dir/err" || { echo "FAIL: train gpu-only: unclear"; fail=$((fail + 1)); }
expect 1 "bench --csv into a missing folder" -- "$bin" bench --models lenet --csv "$dir/nowhere/b.csv"
expect 2 "bench --epc 0" -- "$bin" bench --models lenet --epc 0
expect 1 "missing CIFAR data" -- "$bin" train --data "$dir/nowhere" --dataset cifar10

# Damaged data: truncated images, labels out of range, wrong kind of file.
cp "$dir/data/"* "$dir/bad/"
head -c 1000 "$dir/data/train-images-idx3-ubyte" >"$dir/bad/train-images-idx3-ubyte"
expect 1 "truncated images" -- "$bin" train --data "$dir/bad"
grep -q truncated "$dir/err" || { echo "FAIL: truncated: message does not say so"; fail=$((fail + 1)); }
cp "$dir/data/"* "$dir/bad/"
printf '\x0c' | dd of="$dir/bad/train-labels-idx1-ubyte" bs=1 seek=20 conv=notrunc status=none
expect 1 "label out of range" -- "$bin" train --data "$dir/bad"
cp "$dir/data/train-labels-idx1-ubyte" "$dir/bad/train-images-idx3-ubyte"
expect 1 "labels given as images" -- "$bin" train --data "$dir/bad"
echo "not gzip" | gzip -c | head -c 12 >"$dir/bad/t.gz"

# Checkpoint directory that cannot be used: fails before any training.
touch "$dir/afile"
expect 1 "checkpoint dir under a file" -- "$bin" train --data "$dir/data" --checkpoint-dir "$dir/afile/ck"

# Train with checkpoints, evaluate, resume.
expect 0 "train" -- "$bin" train --data "$dir/data" --epochs 2 --batch 16 --every 2 \
  --checkpoint-dir "$dir/ck" --save-every 4 --keep 2 --log "$dir/log.jsonl" --threads 1
grep -q "final test accuracy" "$dir/out" || { echo "FAIL: train printed no final accuracy"; fail=$((fail + 1)); }
n=$(ls "$dir/ck" | grep -c '^ckpt-.*\.amck$')
[ "$n" -eq 2 ] || { echo "FAIL: --keep 2 left $n checkpoints"; fail=$((fail + 1)); }
grep -q '"test_acc"' "$dir/log.jsonl" || { echo "FAIL: no test_acc in the log"; fail=$((fail + 1)); }
grep -q '^{"run":"[0-9a-f]*","from_step":0}$' "$dir/log.jsonl" || { echo "FAIL: the log does not say which run"; fail=$((fail + 1)); }
expect 0 "eval" -- "$bin" eval --checkpoint "$dir/ck" --data "$dir/data"
expect 2 "resume with options" -- "$bin" train --data "$dir/data" --resume "$dir/ck" --lr 0.1
expect 0 "resume of a finished run" -- "$bin" train --data "$dir/data" --resume "$dir/ck"
grep -qx "the run is complete (2 epochs): nothing to do (--epochs N, more than 2, extends it; asymml eval --checkpoint $dir/ck/ckpt-0000000012.amck --data $dir/data evaluates it)" "$dir/out" ||
  { echo "FAIL: a finished run resumed: $(cat "$dir/out")"; fail=$((fail + 1)); }
# Resumed from its directory, a run goes on saving there.
newest=$(ls "$dir/ck"/ckpt-*.amck | tail -1)
rm "$newest"
expect 0 "resume from a directory" -- "$bin" train --data "$dir/data" --resume "$dir/ck"
[ -f "$newest" ] || { echo "FAIL: a run resumed from its directory saved nothing there"; fail=$((fail + 1)); }
# ... and prunes none of the run's checkpoints unless told (--keep).
expect 0 "train, every step saved" -- "$bin" train --data "$dir/data" --epochs 1 --batch 16 --checkpoint-dir "$dir/ckall" \
  --save-every 1 --keep 100 --threads 1
rm "$dir/ckall/ckpt-0000000006.amck"
expect 0 "resume, keeping all" -- "$bin" train --data "$dir/data" --resume "$dir/ckall" --threads 1
n=$(ls "$dir/ckall" | grep -c '^ckpt-.*\.amck$')
[ "$n" -eq 6 ] || { echo "FAIL: a resumed run left $n of 6 checkpoints"; fail=$((fail + 1)); }
# A checkpoint directory belongs to one run: 64 images of batch 16 are 4
# steps an epoch, saved at steps 2 and 4.
own=$dir/own
expect 0 "a run in its directory" -- "$bin" train --data "$dir/data" --epochs 1 --batch 16 --limit-train 64 \
  --save-every 2 --checkpoint-dir "$own" --threads 1
grep -qx "epoch 1/1 step 2/4 saved $own/ckpt-0000000002.amck" "$dir/out" || { echo "FAIL: a --save-every checkpoint not said"; fail=$((fail + 1)); }
expect 2 "a new run in another run's directory" -- "$bin" train --data "$dir/data" --epochs 1 --batch 16 --checkpoint-dir "$own"
grep -qx "asymml: --checkpoint-dir: $own holds 2 checkpoints of another run (the newest: ckpt-0000000004.amck): resume it (--resume $own), or give --new-run to move them aside" "$dir/err" ||
  { echo "FAIL: a new run in another's directory: $(cat "$dir/err")"; fail=$((fail + 1)); }
expect 2 "--new-run with --resume" -- "$bin" train --data "$dir/data" --resume "$own" --new-run
grep -qx "asymml: --new-run starts a new run: not with --resume" "$dir/err" || { echo "FAIL: --new-run --resume: $(cat "$dir/err")"; fail=$((fail + 1)); }
cp -r "$own" "$dir/own.first"
expect 0 "--new-run moves the old run aside" -- "$bin" train --data "$dir/data" --epochs 1 --batch 16 --limit-train 64 \
  --save-every 2 --checkpoint-dir "$own" --new-run --threads 1
grep -qx "moved 2 checkpoints of an earlier run aside, into $own/run-[0-9a-f]\{16\}/" "$dir/out" || { echo "FAIL: --new-run: $(head -1 "$dir/out")"; fail=$((fail + 1)); }
for f in ckpt-0000000002.amck ckpt-0000000004.amck; do
  cmp -s "$dir/own.first/$f" "$own"/run-*/"$f" || { echo "FAIL: --new-run did not keep $f"; fail=$((fail + 1)); }
done
[ "$(ls "$own" | grep -c '^ckpt-')" -eq 2 ] || { echo "FAIL: the new run's checkpoints: $(ls "$own")"; fail=$((fail + 1)); }
# An interrupt: the step ends, a checkpoint is saved, and the run says how
# to go on.
"$bin" train --data "$dir/data" --epochs 5000 --batch 16 --checkpoint-dir "$dir/intr" --threads 1 >/dev/null 2>"$dir/err" &
intr=$!
for _ in $(seq 300); do [ -s "$dir/intr/.asymml-lock" ] && break; sleep 0.1; done
sleep 0.5
kill -INT "$intr"
wait "$intr"
code=$?
saved=$(ls "$dir/intr" | grep '^ckpt-' | tail -1)
[ "$code" -eq 130 ] && grep -qx "asymml: interrupted at epoch [0-9]* step [0-9]*/6; saved $dir/intr/$saved: go on with: asymml train --resume $dir/intr --data $dir/data --threads 1" "$dir/err" ||
  { echo "FAIL: an interrupt: exit $code, $(cat "$dir/err")"; fail=$((fail + 1)); }
# Two runs on one directory: the second is refused, naming the first.
"$bin" train --data "$dir/data" --epochs 5000 --batch 16 --checkpoint-dir "$dir/busy" --threads 1 --mode asymml \
  --rank-ratio 0.25 --clip 1 --sigma 1 --noise-seed 2 >/dev/null 2>&1 &
busy=$!
for _ in $(seq 300); do ls "$dir/busy" 2>/dev/null | grep -q '^ckpt-' && break; sleep 0.1; done
expect 1 "a second run on a directory in use" -- "$bin" train --data "$dir/data" --epochs 1 --batch 16 --checkpoint-dir "$dir/busy"
grep -qx "asymml: --checkpoint-dir: $dir/busy is in use by another asymml run (pid $busy): a checkpoint directory holds one run" "$dir/err" ||
  { echo "FAIL: a directory in use: $(cat "$dir/err")"; fail=$((fail + 1)); }
expect 1 "a resume of a directory in use" -- "$bin" train --data "$dir/data" --resume "$dir/busy"
# ... and an evaluation on its training data gives no figure: the run is releasing.
expect 0 "eval of a run in progress" -- "$bin" eval --checkpoint "$dir/busy" --data "$dir/data" --split train
grep -qx "privacy: no differential-privacy figure: a run is training in this checkpoint's directory now, and what it releases is not known here" "$dir/out" ||
  { echo "FAIL: eval of a run in progress: $(grep privacy "$dir/out")"; fail=$((fail + 1)); }
kill "$busy"; wait "$busy" 2>/dev/null
# Resume is the same run: its limits and checkpoint interval kept; options
# given again must agree; --epochs may grow.
touch "$own/.ckpt-0000000003.amck.tmp-0badf00d" # a save that was stopped
expect 0 "extending a finished run" -- "$bin" train --data "$dir/data" --resume "$own" --epochs 2 --save-every 2
[ -e "$own/.ckpt-0000000003.amck.tmp-0badf00d" ] && { echo "FAIL: a stopped save's temporary file stays"; fail=$((fail + 1)); }
grep -q "^extending the run from 1 to 2 epochs: the learning rate goes on at 0.025 (its cosine schedule now spans 2 epochs; it was at 0)$" "$dir/out" ||
  { echo "FAIL: an extension not said: $(cat "$dir/out")"; fail=$((fail + 1)); }
grep -q "^train: 64 train / 32 test images" "$dir/out" || { echo "FAIL: a resume forgot --limit-train"; fail=$((fail + 1)); }
[ -f "$own/ckpt-0000000006.amck" ] || { echo "FAIL: a resume forgot --save-every"; fail=$((fail + 1)); }
expect 0 "the same options again" -- "$bin" train --data "$dir/data" --resume "$own" --epochs 2 --lr 0.05 --batch 16 \
  --limit-train 64 --checkpoint-dir "$own" --model lenet --tee inproc
grep -q "^the run is complete (2 epochs): nothing to do" "$dir/out" || { echo "FAIL: same options: $(cat "$dir/out")"; fail=$((fail + 1)); }
last8="in $own/ckpt-0000000008.amck"
# refused WHAT WHY -- options...: the resume of $own with them, refused
# (exit 2), saying WHY.
refused() {
  local what=$1 why=$2
  shift 3
  expect 2 "$what on resume" -- "$bin" train --data "$dir/data" --resume "$own" "$@"
  grep -qx -- "asymml: $why; a resumed run keeps the options it was started with ($last8)" "$dir/err" ||
    { echo "FAIL: $what on resume: $(cat "$dir/err")"; fail=$((fail + 1)); }
}
refused "another --lr" "--lr 0.1: not this run's setting" -- --lr 0.1
refused "another model" "--model vgg11: not this run's model" -- --model vgg11
refused "another --limit-train" "--limit-train 32: this run trains on 64 images" -- --limit-train 32
refused "another --save-every" "--save-every 3: this run saves every 2 steps" -- --save-every 3
refused "fewer epochs" "--epochs 1: this run has 2 epochs, and a resume may add epochs, not remove them" -- --epochs 1
refused "another --tee" "--tee process: this run ran in one process (--tee inproc)" -- --tee process
expect 2 "another --checkpoint-dir on resume" -- "$bin" train --data "$dir/data" --resume "$own" --checkpoint-dir "$dir/elsewhere"
grep -qx "asymml: --checkpoint-dir $dir/elsewhere: this run's checkpoints are in $own, and a resumed run goes on saving there" "$dir/err" ||
  { echo "FAIL: another --checkpoint-dir: $(cat "$dir/err")"; fail=$((fail + 1)); }
# A --tee process run resumes as one, sealed, without being told.
"$bin" keygen "$dir/key" >/dev/null
expect 0 "a --tee process run" -- "$bin" train --data "$dir/data" --epochs 1 --batch 16 --limit-train 32 --limit-test 16 \
  --mode asymml --tee process --key "$dir/key" --checkpoint-dir "$dir/ckp" --threads 1
expect 0 "its resume" -- "$bin" train --data "$dir/data" --resume "$dir/ckp" --key "$dir/key" --epochs 2
grep -q "in the accelerator server: asymml-accel" "$dir/out" || { echo "FAIL: a --tee process run resumed in one process"; fail=$((fail + 1)); }
expect 1 "its resume without the key" -- "$bin" train --data "$dir/data" --resume "$dir/ckp"
grep -qx "asymml: --resume: $dir/ckp/ckpt-[0-9]*.amck: checkpoint is sealed: give the key (--key FILE)" "$dir/err" || { echo "FAIL: no key: $(cat "$dir/err")"; fail=$((fail + 1)); }
# Labels found on their own: .gz images beside plain labels.
mkdir -p "$dir/mixed"
cp "$dir/data/"* "$dir/mixed/"
gzip "$dir/mixed/train-images-idx3-ubyte" "$dir/mixed/t10k-images-idx3-ubyte"
expect 0 ".gz images, plain labels" -- "$bin" train --data "$dir/mixed" --epochs 1 --batch 16 --limit-train 32 --threads 1
# A rank that splits nothing says so.
expect 0 "a rank that splits nothing" -- "$bin" train --data "$dir/data" --epochs 1 --batch 16 --limit-train 32 --mode asymml --rank 10000 --threads 1
grep -qx "crosses to the accelerator: nothing: no conv layer is split (a layer is split only at a rank below its input's channels, and where that saves the TEE work): this run is tee-only in effect" "$dir/out" ||
  { echo "FAIL: --rank 10000: $(grep crosses "$dir/out")"; fail=$((fail + 1)); }
# ... and nothing crosses.
expect 0 "a rank that splits nothing, recorded" -- "$bin" train --data "$dir/data" --epochs 1 --batch 16 --limit-train 32 \
  --mode asymml --rank 10000 --threads 1 --record "$dir/rec0"
[ -f "$dir/rec0/index.jsonl" ] && [ ! -s "$dir/rec0/index.jsonl" ] && [ ! -s "$dir/rec0/buffers.f32" ] ||
  { echo "FAIL: something crossed at --rank 10000: $(wc -c "$dir/rec0/"*)"; fail=$((fail + 1)); }
# Checkpoints passed over are counted: a session that saved step 12 (its
# second epoch begun) and whose checkpoints after step 6 do not read may
# have released that epoch; the resume from step 6 counts it, on top of the
# epoch the resume itself may repeat: 2 epochs + 1 resume + 1 lost = 4.
expect 0 "a noised run, saved often" -- "$bin" train --data "$dir/data" --epochs 2 --batch 16 --mode asymml \
  --rank-ratio 0.25 --clip 1 --sigma 1 --noise-seed 3 --threads 1 --checkpoint-dir "$dir/ckl" --save-every 2 --keep 10
grep -q "^privacy: (epsilon .* 2 Gaussian releases per training sample" "$dir/out" || { echo "FAIL: $(grep privacy "$dir/out")"; fail=$((fail + 1)); }
for s in 8 10 12; do head -c 300 "$dir/ckl/ckpt-00000000$(printf %02d $s).amck" >"$dir/x" && mv "$dir/x" "$dir/ckl/ckpt-00000000$(printf %02d $s).amck"; done
expect 0 "eval past unreadable checkpoints" -- "$bin" eval --checkpoint "$dir/ckl" --data "$dir/data" --split train
grep -qx "privacy: no differential-privacy figure: the run went on past this checkpoint (to $dir/ckl/ckpt-0000000012.amck), and what it released there is not known here" "$dir/out" ||
  { echo "FAIL: eval of a stale checkpoint: $(grep privacy "$dir/out")"; fail=$((fail + 1)); }
expect 0 "its resume past unreadable checkpoints" -- "$bin" train --data "$dir/data" --resume "$dir/ckl"
grep -q "^privacy: (epsilon .* 4 Gaussian releases per training sample (1 split layer x (2 epochs begun + 2 counted for resumes and lost epochs))" "$dir/out" ||
  { echo "FAIL: lost sessions not counted: $(grep privacy "$dir/out")"; fail=$((fail + 1)); }
# Progress on a terminal (script(1) gives one): bench per step, eval per batch.
if command -v script >/dev/null; then
  script -qc "$bin bench --models lenet --input 1,28,28 --batch 4 --steps 2 --warmup 1" /dev/null >"$dir/tty" 2>&1
  grep -q "lenet train: step 3/3" "$dir/tty" || { echo "FAIL: bench shows no progress on a terminal"; fail=$((fail + 1)); }
  script -qc "$bin eval --checkpoint $own --data $dir/data --batch 16" /dev/null >"$dir/tty" 2>&1
  grep -q "eval: 16/32 images" "$dir/tty" || { echo "FAIL: eval shows no progress on a terminal"; fail=$((fail + 1)); }
fi
# seal creates its output directory.
expect 0 "seal into a new directory" -- "$bin" seal --key "$dir/key" --out-dir "$dir/sealed/deeper" "$dir/data/train-labels-idx1-ubyte"
[ -f "$dir/sealed/deeper/train-labels-idx1-ubyte.sealed" ] || { echo "FAIL: seal --out-dir: $(ls -R "$dir/sealed")"; fail=$((fail + 1)); }
# Errors name the place once, and no source file.
grep -q '\.c:[0-9]' "$dir/err" && { echo "FAIL: an error names a source file"; fail=$((fail + 1)); }
# A checkpoint that cannot be written (the file size limit): said, and what
# is still there said only when something is.
expect 1 "a first checkpoint that cannot be written" -- bash -c "trap '' XFSZ; ulimit -f 64; exec \"\$0\" \"\$@\"" \
  "$bin" train --data "$dir/data" --epochs 1 --batch 16 --checkpoint-dir "$dir/full" --threads 1
grep -qx "asymml: checkpoint: $dir/full/ckpt-0000000006.amck: write failed (File too large)" "$dir/err" ||
  { echo "FAIL: a failed first checkpoint: $(cat "$dir/err")"; fail=$((fail + 1)); }
expect 1 "a later checkpoint that cannot be written" -- bash -c "trap '' XFSZ; ulimit -f 64; exec \"\$0\" \"\$@\"" \
  "$bin" train --data "$dir/data" --resume "$own" --epochs 3
grep -qx "asymml: checkpoint: $own/ckpt-0000000010.amck: write failed (File too large); the 3 checkpoints already there are untouched" "$dir/err" ||
  { echo "FAIL: a failed later checkpoint: $(cat "$dir/err")"; fail=$((fail + 1)); }
# Options that would do nothing in the mode asked for.
expect 2 "noise outside asymml mode" -- "$bin" train --data "$dir/data" --sigma 1 --clip 1
expect 2 "record with nothing to record" -- "$bin" train --data "$dir/data" --record "$dir/rec" --mode lowrank-only
expect 2 "a record window without a recording" -- "$bin" train --data "$dir/data" --mode asymml --record-steps 1-2
grep -qx "asymml: --record-steps: needs --record DIR" "$dir/err" || { echo "FAIL: window alone: $(cat "$dir/err")"; fail=$((fail + 1)); }
expect 2 "a record window backwards" -- "$bin" train --data "$dir/data" --mode asymml --record "$dir/rec" --record-steps 3-2
expect 2 "a record window of words" -- "$bin" train --data "$dir/data" --mode asymml --record "$dir/rec" --record-steps 1-x
expect 1 "a missing data folder" -- "$bin" train --data "$dir/nodata"
grep -q "nodata: cannot open (No such file or directory)" "$dir/err" || { echo "FAIL: missing folder: $(cat "$dir/err")"; fail=$((fail + 1)); }
latest=$(ls "$dir/ck"/ckpt-*.amck | tail -1)
cp "$latest" "$dir/keep.amck"
head -c 500 "$latest" >"$dir/ck/ckpt-0999999999.amck"
# A damaged newest checkpoint is passed over, and said, naming the one used.
expect 0 "resume past a truncated checkpoint" -- "$bin" train --data "$dir/data" --resume "$dir/ck"
grep -qx "asymml: warning: skipped what does not read: $dir/ck/ckpt-0999999999.amck: checkpoint truncated: header says [0-9]* payload bytes, file has [0-9]*; resuming from $latest instead" "$dir/err" ||
  { echo "FAIL: a damaged newest checkpoint: $(cat "$dir/err")"; fail=$((fail + 1)); }
expect 0 "eval past a truncated checkpoint" -- "$bin" eval --checkpoint "$dir/ck" --data "$dir/data"
grep -q "; evaluating $latest instead$" "$dir/err" || { echo "FAIL: eval of a damaged newest: $(cat "$dir/err")"; fail=$((fail + 1)); }
expect 1 "eval of a truncated checkpoint" -- "$bin" eval --checkpoint "$dir/ck/ckpt-0999999999.amck" --data "$dir/data"
cmp -s "$latest" "$dir/keep.amck" || { echo "FAIL: a failed resume changed $latest"; fail=$((fail + 1)); }
expect 1 "not a checkpoint" -- "$bin" eval --checkpoint "$dir/data/train-labels-idx1-ubyte" --data "$dir/data"
# asymml mode with noise: the privacy statement, and evaluation in a mode.
expect 0 "asymml train" -- "$bin" train --data "$dir/data" --epochs 1 --batch 16 --mode asymml --rank-ratio 0.25 \
  --clip 1 --sigma 1 --threads 1 --checkpoint-dir "$dir/cka"
grep -q "privacy: (epsilon" "$dir/out" || { echo "FAIL: asymml train printed no epsilon"; fail=$((fail + 1)); }
grep -q "^noise: keyed by a random secret key" "$dir/out" || { echo "FAIL: noise without --noise-seed is not secretly keyed"; fail=$((fail + 1)); }
grep -q "residual energy share" "$dir/out" || { echo "FAIL: asymml train printed no residual share"; fail=$((fail + 1)); }
expect 0 "protected gradients" -- "$bin" train --data "$dir/data" --epochs 1 --batch 16 --mode asymml \
  --rank-ratio 0.25 --clip 1 --sigma 1 --protect-grads --basis per-sample --threads 1 --lr 0.01 --noise-seed 1
grep -q "its output gradient's residual (clipped and noised likewise)" "$dir/out" || { echo "FAIL: protected run does not say so"; fail=$((fail + 1)); }
grep -q "sqrt(16)" "$dir/out" || { echo "FAIL: protected run is not batch-coupled"; fail=$((fail + 1)); }
grep -q "^privacy: an evaluation on the training data (asymml eval --split train) releases their residuals again, noised as it is told or not at all; no such evaluation is counted in the figure above$" "$dir/out" ||
  { echo "FAIL: the figure does not say evaluations on training data are not counted"; fail=$((fail + 1)); }
# Protected gradients clipped but not noised: said as they are.
expect 0 "protected gradients, no noise" -- "$bin" train --data "$dir/data" --epochs 1 --batch 16 --mode asymml \
  --rank-ratio 0.25 --clip 0.5 --protect-grads --threads 1 --lr 0.01
grep -q "its output gradient's residual (clipped to norm 0.5, NOT noised); after each epoch, in the evaluation on the test images: its weights as they then stand and each test image's residual (clipped to norm 0.5, NOT noised)$" "$dir/out" ||
  { echo "FAIL: unnoised protected run: $(grep '^crosses' "$dir/out")"; fail=$((fail + 1)); }
# Ranks and bases decided on the first batch, with noise: per-sample bases on
# LeNet (no BatchNorm), so the per-sample sensitivity holds; the plan resumes.
expect 0 "entropy ranks, auto basis" -- "$bin" train --data "$dir/data" --epochs 2 --batch 16 --mode asymml \
  --rank-entropy --basis auto --clip 1 --sigma 1 --noise-seed 5 --threads 1 --checkpoint-dir "$dir/ckb" --save-every 3 --keep 10
grep -q "^noise: follows from the seed 5 alone" "$dir/out" || { echo "FAIL: a seeded noise is not flagged"; fail=$((fail + 1)); }
grep -q "^plan: - [0-9]*p " "$dir/out" || { echo "FAIL: auto basis with noise is not per-sample"; fail=$((fail + 1)); }
grep -q "sensitivity 2 x clip (each residual depends on its own sample only)" "$dir/out" || { echo "FAIL: auto basis run is coupled"; fail=$((fail + 1)); }
plan=$(grep "^plan:" "$dir/out")
expect 2 "resume from a file that is not its run's newest" -- "$bin" train --data "$dir/data" --resume "$dir/ckb/ckpt-0000000003.amck"
grep -qx "asymml: --resume $dir/ckb/ckpt-0000000003.amck: this run has newer checkpoints (the newest: $dir/ckb/ckpt-0000000012.amck): resume its directory (--resume $dir/ckb), which takes the newest that reads" "$dir/err" ||
  { echo "FAIL: an older checkpoint resumed: $(cat "$dir/err")"; fail=$((fail + 1)); }
rm "$dir/ckb/ckpt-0000000006.amck" "$dir/ckb/ckpt-0000000009.amck" "$dir/ckb/ckpt-0000000012.amck"
expect 0 "resume a decided plan" -- "$bin" train --data "$dir/data" --resume "$dir/ckb/ckpt-0000000003.amck"
[ "$(grep "^plan:" "$dir/out")" = "$plan" ] || { echo "FAIL: resumed plan differs"; fail=$((fail + 1)); }
expect 0 "asymml eval" -- "$bin" eval --checkpoint "$dir/cka" --data "$dir/data" --mode asymml
# Without mode options, in its run's mode: split, clipped and noised.
expect 0 "eval in the run's mode" -- "$bin" eval --checkpoint "$dir/cka" --data "$dir/data"
grep -q "^crosses to the accelerator: .*clipped to norm 1 and noised with std 1" "$dir/out" || { echo "FAIL: eval left its run's mode: $(cat "$dir/out")"; fail=$((fail + 1)); }
# A run that sent its images in the clear leaves no figure to its evaluation.
expect 0 "open train" -- "$bin" train --data "$dir/data" --epochs 1 --batch 16 --mode open --threads 1 --checkpoint-dir "$dir/cko"
expect 0 "eval of an open run" -- "$bin" eval --checkpoint "$dir/cko" --data "$dir/data" --split train --mode asymml \
  --clip 1 --sigma 1 --basis per-sample
grep -q "^privacy: no differential-privacy figure: the training run sent these images' conv inputs in the clear" "$dir/out" ||
  { echo "FAIL: an open run's evaluation claims a figure: $(grep privacy "$dir/out")"; fail=$((fail + 1)); }
expect 0 "eval made tee-only" -- "$bin" eval --checkpoint "$dir/cka" --data "$dir/data" --mode tee-only
grep -q "^crosses" "$dir/out" && { echo "FAIL: a tee-only eval says something crosses"; fail=$((fail + 1)); }
expect 0 "analyze" -- "$bin" analyze --data "$dir/data" --checkpoint "$dir/cka" --samples 8
expect 0 "bench asymml" -- "$bin" bench --models lenet --input 1,28,28 --batch 4 --steps 1 --warmup 0 --mode asymml --layers

# A checkpoint of another model shape: CIFAR-shaped model on 28x28 data.
mkdir -p "$dir/c10/cifar-10-batches-bin"
for i in 1 2 3 4 5; do head -c $((3073 * 8)) /dev/zero >"$dir/c10/cifar-10-batches-bin/data_batch_$i.bin"; done
head -c $((3073 * 8)) /dev/zero >"$dir/c10/cifar-10-batches-bin/test_batch.bin"
expect 0 "cifar10 train" -- "$bin" train --data "$dir/c10" --dataset cifar10 --epochs 1 --batch 8 \
  --checkpoint-dir "$dir/ck10" --threads 1
expect 1 "checkpoint of another model" -- "$bin" eval --checkpoint "$dir/ck10" --data "$dir/data"
expect 1 "resume on other data" -- "$bin" train --data "$dir/data" --resume "$dir/ck10"

# asymml import: a LeNet saved from PyTorch at 1x12x12 (tests/gen_fixtures.py)
# into a checkpoint that eval reads; nothing written when it fails.
st=$(cd "$(dirname "$0")" && pwd)/fixtures/import_lenet.safetensors
mkdir -p "$dir/d12"
mkidx train 32 12 "$dir/d12"
mkidx t10k 16 12 "$dir/d12"
imp() { "$bin" import --safetensors "$st" --model lenet --input 1,12,12 "$@"; }
expect 0 "import --help" -- "$bin" import --help
expect 0 "import a LeNet" -- imp --norm mnist --out "$dir/imp.amck"
grep -qx "import: lenet (1x12x12, 10 classes) from $st: 8 tensors, 51530 parameters; normalization mean 0.1307 std 0.3081 (--norm mnist); wrote $dir/imp.amck" "$dir/out" ||
  { echo "FAIL: import's summary: $(cat "$dir/out")"; fail=$((fail + 1)); }
expect 0 "eval of an imported model" -- "$bin" eval --checkpoint "$dir/imp.amck" --data "$dir/d12"
grep -q "^$dir/imp.amck: test accuracy [0-9.]* loss [0-9.]* (16 images, step 0, tee-only mode)$" "$dir/out" ||
  { echo "FAIL: eval of an imported model: $(cat "$dir/out")"; fail=$((fail + 1)); }
expect 0 "eval of an imported model in asymml mode" -- "$bin" eval --checkpoint "$dir/imp.amck" --data "$dir/d12" --mode asymml
mkdir -p "$dir/impck"
cp "$dir/imp.amck" "$dir/impck/ckpt-0000000000.amck"
expect 1 "resume of an imported model" -- "$bin" train --data "$dir/d12" --resume "$dir/impck"
grep -q "the training data differ from the run's" "$dir/err" || { echo "FAIL: resume of an import: $(cat "$dir/err")"; fail=$((fail + 1)); }
expect 1 "import over an existing file" -- imp --out "$dir/imp.amck"
expect 2 "import without --out" -- imp
expect 2 "import of an unknown model" -- "$bin" import --safetensors "$st" --model alexnet --out "$dir/x.amck"
expect 2 "import with a preset of other channels" -- imp --norm imagenet --out "$dir/x.amck"
expect 2 "import with an unknown preset" -- imp --norm bogus --out "$dir/x.amck"
expect 2 "import with one mean too many" -- imp --mean 0.1,0.2 --out "$dir/x.amck"
expect 2 "import with a zero std" -- imp --std 0 --out "$dir/x.amck"
expect 2 "import with a mean list ending in a comma" -- imp --mean 0.1, --out "$dir/x.amck"
expect 1 "import at another input size" -- "$bin" import --safetensors "$st" --model lenet --out "$dir/x.amck"
grep -qx "asymml: $st: tensor 'fc1.weight' has shape 128x288, the model expects 128x1568" "$dir/err" ||
  { echo "FAIL: a misshapen tensor: $(cat "$dir/err")"; fail=$((fail + 1)); }
head -c 2000 "$st" >"$dir/cut.safetensors"
expect 1 "import of a truncated file" -- "$bin" import --safetensors "$dir/cut.safetensors" --model lenet --input 1,12,12 --out "$dir/x.amck"
grep -q "^asymml: $dir/cut.safetensors: safetensors: tensor '.*' has data_offsets .*: the file is truncated" "$dir/err" ||
  { echo "FAIL: a truncated file: $(cat "$dir/err")"; fail=$((fail + 1)); }
expect 1 "import of a missing file" -- "$bin" import --safetensors "$dir/none.safetensors" --model lenet --out "$dir/x.amck"
[ -e "$dir/x.amck" ] || ls -a "$dir" | grep -q 'x.amck' && { echo "FAIL: a failed import left $(ls -a "$dir" | grep x.amck)"; fail=$((fail + 1)); }
# Sealed under a key, as train's checkpoints are.
expect 0 "import, sealed" -- imp --mean 0.5 --std 0.25 --key "$dir/key" --out "$dir/imps.amck"
grep -q "normalization mean 0.5 std 0.25; wrote $dir/imps.amck (sealed)$" "$dir/out" || { echo "FAIL: sealed import: $(cat "$dir/out")"; fail=$((fail + 1)); }
expect 1 "eval of a sealed import without the key" -- "$bin" eval --checkpoint "$dir/imps.amck" --data "$dir/d12"
expect 0 "eval of a sealed import" -- "$bin" eval --checkpoint "$dir/imps.amck" --data "$dir/d12" --key "$dir/key"

# asymml quantize: the imported LeNet in fixed point, its accuracy next to
# the float model's; inference only everywhere else.
expect 0 "quantize --help" -- "$bin" quantize --help
expect 0 "quantize" -- "$bin" quantize --checkpoint "$dir/imp.amck" --data "$dir/d12" --batch 8 --calib 16
grep -qx "$dir/imp.amck: test accuracy float [0-9.]*, quantized [0-9.]* ([-+][0-9.]* points; 16 images)" "$dir/out" ||
  { echo "FAIL: quantize's accuracies: $(cat "$dir/out")"; fail=$((fail + 1)); }
grep -qx "quantized: 0 BatchNorm layers folded; weights 8-bit, a scale per output channel; activations 8-bit, a scale per layer from 16 training images" "$dir/out" ||
  { echo "FAIL: quantize's settings: $(cat "$dir/out")"; fail=$((fail + 1)); }
grep -qx "privacy: nothing is sent to an accelerator (quantize runs every layer in this process)" "$dir/out" ||
  { echo "FAIL: quantize's privacy line: $(cat "$dir/out")"; fail=$((fail + 1)); }
expect 0 "quantize a sealed checkpoint" -- "$bin" quantize --checkpoint "$dir/imps.amck" --data "$dir/d12" --batch 8 --key "$dir/key"
expect 1 "quantize a sealed checkpoint without the key" -- "$bin" quantize --checkpoint "$dir/imps.amck" --data "$dir/d12"
expect 2 "quantize at 1 bit" -- "$bin" quantize --checkpoint "$dir/imp.amck" --data "$dir/d12" --act-bits 1
expect 2 "quantize at 17 bits" -- "$bin" quantize --checkpoint "$dir/imp.amck" --data "$dir/d12" --act-bits 17
expect 2 "quantize without --data" -- "$bin" quantize --checkpoint "$dir/imp.amck"
expect 2 "quantize with less than a batch to calibrate" -- "$bin" quantize --checkpoint "$dir/imp.amck" --data "$dir/d12" --batch 8 --calib 4
head -c 500 "$dir/imp.amck" >"$dir/cutq.amck"
expect 1 "quantize a truncated checkpoint" -- "$bin" quantize --checkpoint "$dir/cutq.amck" --data "$dir/d12"
expect 2 "train in quantized mode" -- "$bin" train --data "$dir/data" --mode quantized
grep -q "inference only" "$dir/err" || { echo "FAIL: train --mode quantized: $(cat "$dir/err")"; fail=$((fail + 1)); }
expect 0 "bench in slalom mode" -- "$bin" bench --models lenet --input 1,28,28 --batch 8 --steps 1 --warmup 0 --mode slalom
grep -q "^lenet *slalom *infer .*precompute .* ms a batch" "$dir/out" || { echo "FAIL: bench slalom: $(cat "$dir/out")"; fail=$((fail + 1)); }
expect 2 "train in slalom mode" -- "$bin" train --data "$dir/data" --mode slalom
expect 2 "eval in slalom mode" -- "$bin" eval --checkpoint "$dir/imp.amck" --data "$dir/d12" --mode slalom

# asymml infer: slalom gives quantized mode's predictions (in one process,
# and through the server with --verify); the baselines run; bad usage.
inf() { "$bin" infer --checkpoint "$dir/imp.amck" --data "$dir/d12" --batch 8 --calib 16 "$@"; }
acc() { sed -n 's/.*: test accuracy \([0-9.]*\) (16 images).*/\1/p' "$dir/out"; }
expect 0 "infer --help" -- "$bin" infer --help
expect 0 "infer quantized" -- inf --mode quantized
q=$(acc)
expect 0 "infer slalom" -- inf --mode slalom
[ -n "$q" ] && [ "$(acc)" = "$q" ] || { echo "FAIL: slalom's accuracy $(acc), quantized's $q"; fail=$((fail + 1)); }
grep -q "^privacy: every conv and linear layer's input crosses as its fixed-point value plus a fresh one-time pad" "$dir/out" &&
  grep -qx "privacy: the pads' key was drawn in this process and is never stored" "$dir/out" ||
  { echo "FAIL: slalom's privacy lines: $(cat "$dir/out")"; fail=$((fail + 1)); }
expect 0 "infer slalom --tee process --verify" -- inf --mode slalom --tee process --verify
[ "$(acc)" = "$q" ] || { echo "FAIL: slalom through the server: $(acc), quantized's $q"; fail=$((fail + 1)); }
for m in tee-only asymml open gpu-only; do expect 0 "infer $m" -- inf --mode $m; done
grep -q "^privacy: NONE: the batch, every layer's data and the model are on the accelerator" "$dir/out" ||
  { echo "FAIL: gpu-only inference's statement: $(grep '^privacy' "$dir/out")"; fail=$((fail + 1)); }
# What it says is what the host records: the batch and the weights, no labels.
expect 0 "infer gpu-only --record" -- inf --mode gpu-only --tee process --record "$dir/rec-gi"
grep -q '"kind": "activation"' "$dir/rec-gi/index.jsonl" && grep -q '"kind": "weights"' "$dir/rec-gi/index.jsonl" &&
  ! grep -q '"kind": "labels"' "$dir/rec-gi/index.jsonl" ||
  { echo "FAIL: gpu-only inference's recorded view: $(grep -o '"kind": "[a-z-]*"' "$dir/rec-gi/index.jsonl" | sort -u | tr '\n' ' ')"; fail=$((fail + 1)); }
expect 2 "infer without --mode" -- inf
expect 2 "infer lowrank-only" -- inf --mode lowrank-only
expect 2 "infer with a bad --act-bits" -- inf --mode slalom --act-bits 40
expect 1 "infer slalom with more activation bits than the field holds" -- inf --mode slalom --act-bits 16
grep -q "does not fit the field at 16-bit activations (at most 1[0-5] bits here: --act-bits 1[0-5])$" "$dir/err" || { echo "FAIL: slalom's bits: $(cat "$dir/err")"; fail=$((fail + 1)); }
expect 2 "infer slalom with less than a batch to calibrate" -- inf --mode slalom --calib 4
expect 1 "infer of a truncated checkpoint" -- "$bin" infer --mode slalom --checkpoint "$dir/cutq.amck" --data "$dir/d12"

# asymml precompute: slalom's factors ahead of time, sealed, each set used
# once (16 images in batches of 8: two sets a run).
sinf() { "$bin" infer --checkpoint "$dir/imps.amck" --data "$dir/d12" --batch 8 --calib 16 --key "$dir/key" "$@"; }
pre() { "$bin" precompute --checkpoint "$dir/imps.amck" --batch 8 --key "$dir/key" "$@"; }
expect 0 "precompute --help" -- "$bin" precompute --help
expect 0 "precompute" -- pre --count 3 --out "$dir/fs"
grep -q "^precompute: 3 batches of 8, 4 layers, .* MiB a batch, into $dir/fs (sealed): .* s a batch$" "$dir/out" ||
  { echo "FAIL: precompute's summary: $(cat "$dir/out")"; fail=$((fail + 1)); }
expect 0 "infer quantized, sealed" -- sinf --mode quantized
q=$(acc)
expect 0 "infer slalom with factors" -- sinf --mode slalom --factors "$dir/fs"
[ -n "$q" ] && [ "$(acc)" = "$q" ] || { echo "FAIL: slalom with factors: $(acc), quantized's $q"; fail=$((fail + 1)); }
grep -q "factors from $dir/fs, 1 of 3 sets left)$" "$dir/out" || { echo "FAIL: factors left: $(cat "$dir/out")"; fail=$((fail + 1)); }
grep -q "^privacy: the pads' key was drawn by asymml precompute and is sealed in $dir/fs/store.amfs" "$dir/out" ||
  { echo "FAIL: the store's privacy line: $(cat "$dir/out")"; fail=$((fail + 1)); }
cp -r "$dir/fs" "$dir/fs-copy"
expect 1 "infer with a copy of a factor store" -- sinf --mode slalom --factors "$dir/fs-copy"
grep -q "a copy of a factor store" "$dir/err" || { echo "FAIL: a copied store: $(cat "$dir/err")"; fail=$((fail + 1)); }
expect 1 "infer with too few factor sets left" -- sinf --mode slalom --factors "$dir/fs"
grep -qx "asymml: --factors: $dir/fs has 1 factor sets left; 16 images in batches of 8 need 2 (none was used; asymml precompute makes a new store in a new folder)" "$dir/err" ||
  { echo "FAIL: too few sets: $(cat "$dir/err")"; fail=$((fail + 1)); }
expect 1 "infer with factors of another batch size" -- "$bin" infer --checkpoint "$dir/imps.amck" --data "$dir/d12" --batch 16 \
  --calib 16 --key "$dir/key" --mode slalom --factors "$dir/fs"
expect 2 "factors in quantized mode" -- sinf --mode quantized --factors "$dir/fs"
expect 2 "precompute without a key" -- "$bin" precompute --checkpoint "$dir/imp.amck" --count 1 --out "$dir/fs0"
expect 1 "precompute into an existing folder" -- pre --count 1 --out "$dir/fs"
expect 0 "infer of fewer images than a batch with factors" -- "$bin" infer --checkpoint "$dir/imps.amck" --data "$dir/d12" \
  --batch 8 --calib 16 --key "$dir/key" --mode slalom --factors "$dir/fs" --limit 5
# A model of another input size than the data: refused before calibration.
for m in slalom quantized; do
  expect 1 "infer $m of a model for other images" -- "$bin" infer --checkpoint "$dir/imp.amck" --data "$dir/data" --mode $m
  grep -qx "asymml: calibrate: the model takes 1x12x12 images; the data has 1x28x28" "$dir/err" ||
    { echo "FAIL: infer $m on other images: $(cat "$dir/err")"; fail=$((fail + 1)); }
done
expect 1 "quantize a model for other images" -- "$bin" quantize --checkpoint "$dir/imp.amck" --data "$dir/data"
expect 0 "precompute for a server run" -- pre --count 2 --out "$dir/fsp"
expect 0 "infer slalom with factors --tee process --verify" -- sinf --mode slalom --factors "$dir/fsp" --tee process --verify
[ "$(acc)" = "$q" ] || { echo "FAIL: slalom with factors through the server: $(acc), quantized's $q"; fail=$((fail + 1)); }

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
