#!/usr/bin/env bash
# --tee process, attacked from the host's side. The process the user runs is
# the trusted side; it starts the accelerator server, asymml-accel. Checked
# end to end, with the real programs:
#   1. it trains exactly as one process does (the sealed log shows the same
#      losses), while its standard output carries no figure of a batch;
#   2. the server runs confined: another user when root, no_new_privs, no
#      capability, only the channel's descriptors, an allow-listed
#      environment (no LD_*, no ASYMML_*: the old ASYMML_ENCLAVE override
#      starts nothing); the trusted process keeps no inherited descriptor,
#      no capability (but CAP_IPC_LOCK for its locked memory), is
#      seccomp-filtered, and refuses a preloaded library;
#   3. a hostile server (tests/evil_accel.c) can open neither the key nor
#      the data nor the trusted process's memory; its NaN is refused; its
#      tampered result is caught by --verify; silence and death end the
#      run with an error, and the checkpoints stay whole and resumable;
#   4. a canary in a sealed dataset never appears in the server's memory
#      (it does in a one-process run's: the scan works);
#   5. resuming with other data or limits is refused, as is a plain
#      checkpoint where sealed ones are expected; a sealed test set given as
#      training data, sealed apart from the training set, or plain beside
#      a sealed training set, is refused;
#   6. the recorded host view of a run, two resumptions of it (one with a
#      hostile server that answers otherwise than the first time) and an
#      evaluation on training data: no two noised releases share noise, and
#      the resumed run counts its repeated releases, those of sessions a
#      dying server cut short included.
# Usage: process_test.sh PATH/TO/asymml TESTS_DIR (memscan, hostview_check, evil-accel)
set -u
bin=$1
tools=$2
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
chmod 755 "$dir" # the evil servers, started as nobody when root, must reach their programs
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { echo "FAIL: $*"; fail=$((fail + 1)); }
root=0
[ "$(id -u)" -eq 0 ] && root=1

be32() { printf "\\x$(printf %02x $(($1 >> 24 & 255)))\\x$(printf %02x $(($1 >> 16 & 255)))\\x$(printf %02x $(($1 >> 8 & 255)))\\x$(printf %02x $(($1 & 255)))"; }
mkidx() {
  local f=$dir/data/$1 n=$2
  { printf '\x00\x00\x08\x03'; be32 "$n"; be32 28; be32 28; head -c $((n * 784)) /dev/urandom; } >"$f-images-idx3-ubyte"
  { printf '\x00\x00\x08\x01'; be32 "$n"; for ((i = 0; i < n; i++)); do printf "\\x0$((i % 10))"; done; } >"$f-labels-idx1-ubyte"
}
mkdir -p "$dir/data"
chmod 755 "$dir/data"
mkidx train 96
mkidx t10k 32
chmod 644 "$dir/data/"*
key=$dir/key
"$bin" keygen "$key" >/dev/null
run=(train --data "$dir/data" --epochs 2 --batch 16 --every 1 --mode asymml --rank-ratio 0.5 --basis per-sample
     --clip 1 --sigma 1 --noise-seed 7 --threads 2)

# 1. The same training in both topologies, seen through the logs.
echo "process_test: 1. The same training in both topologies, seen through the logs."
"$bin" "${run[@]}" --log "$dir/inproc.log" >"$dir/inproc" 2>&1 || bad "inproc run failed: $(tail -1 "$dir/inproc")"
"$bin" "${run[@]}" --log "$dir/process.log" --key "$key" --tee process >"$dir/process" 2>"$dir/err" ||
  { bad "process run failed"; cat "$dir/err"; }
"$bin" log --key "$key" "$dir/process.log" >"$dir/process.plain" 2>"$dir/err" || bad "log: $(cat "$dir/err")"
fig() { sed -E -e 's/,"(img_s|eta_s|epoch_s)":[0-9.e+-]+//g' -e '/^\{"run":/d' "$1"; }
if [ -s "$dir/inproc.log" ] && [ "$(fig "$dir/inproc.log")" = "$(fig "$dir/process.plain")" ]; then ok; else
  bad "process and inproc runs differ"; diff <(fig "$dir/inproc.log") <(fig "$dir/process.plain") | head -5; fi
grep -qE "loss [0-9]|acc [0-9]|^plan:|residual energy share" "$dir/process" && bad "process stdout shows figures of batches" || ok
grep -q "^epoch 2/2 test accuracy" "$dir/process" && grep -q "^privacy: (epsilon" "$dir/process" && ok ||
  bad "process stdout lacks the epoch accuracy or epsilon"
grep -q "^signal-to-noise: " "$dir/process" && ok || bad "no signal-to-noise statement with the epsilon"
[ "$(stat -c %a "$dir/process.log")" = 600 ] && ok || bad "log mode $(stat -c %a "$dir/process.log")"
grep -q '"loss"' "$dir/process.log" && bad "the process run's log is readable without the key" || ok
"$bin" log "$dir/process.log" >/dev/null 2>&1 && bad "a sealed log printed without the key" || ok
"$bin" "${run[@]}" --tee process --log "$dir/x.log" >/dev/null 2>"$dir/err"
[ $? -eq 2 ] && grep -q "writes its log sealed: give --key" "$dir/err" && ok || bad "process log without a key"

# 2. Confinement, seen from outside while a run trains. The environment
# holds what a host would set for the server; the shell leaves a file open.
echo "process_test: 2. Confinement, seen from outside while a run trains"
touch "$dir/evil-ran"
rm "$dir/evil-ran"
printf '#!/bin/sh\ntouch %s/evil-ran\n' "$dir" >"$dir/evil.sh"
chmod 755 "$dir/evil.sh"
env ASYMML_ENCLAVE="$dir/evil.sh" ASYMML_ACCEL="$dir/evil.sh" LD_DEBUG=libs LD_DEBUG_OUTPUT="$dir/ld" \
  "$bin" "${run[@]}" --epochs 300 --tee process --key "$key" --checkpoint-dir "$dir/ck1" --save-every 2 \
  >"$dir/live" 2>&1 7>"$dir/inherited" &
trusted=$!
for _ in $(seq 1 1200); do
  srv=$(pgrep -P "$trusted" | head -1)
  [ -n "$srv" ] && ls "$dir/ck1" 2>/dev/null | grep -q '^ckpt-.*amck$' && break
  sleep 0.05
done
if [ -z "${srv:-}" ]; then bad "no accelerator server under the trusted process"; else
  field() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }
  [ "$(field "$srv" NoNewPrivs)" = 1 ] && ok || bad "server without no_new_privs"
  [ "$(field "$srv" CapEff)" = 0000000000000000 ] && ok || bad "server holds capabilities $(field "$srv" CapEff)"
  if [ $root -eq 1 ]; then
    [ "$(field "$srv" Uid)" = "$(id -u nobody)" ] && ok || bad "server runs as uid $(field "$srv" Uid), not nobody"
  fi
  envs=$(tr '\0' '\n' <"/proc/$srv/environ" 2>/dev/null)
  echo "$envs" | grep -qE "^(LD_|ASYMML_)" && bad "server environment: $(echo "$envs" | grep -E "^(LD_|ASYMML_)")" || ok
  echo "$envs" | grep -q "^OMP_WAIT_POLICY=passive$" && ok || bad "server environment lacks OMP_WAIT_POLICY=passive"
  # Its descriptors: /dev/null as 0 to 2, the channel (a memfd, two
  # eventfds), and the pidfd it watches its parent with; nothing else.
  for f in /proc/"$srv"/fd/*; do
    case "$(basename "$f"):$(readlink "$f")" in
    [012]:/dev/null | 3:/memfd:asymml-channel* | [45]:anon_inode:\[eventfd\] | *:anon_inode:\[pidfd\]) ;;
    *) bad "server descriptor $(basename "$f") is $(readlink "$f")" ;;
    esac
  done
  ok
  [ -e "$dir/ld.$srv" ] && bad "the loader's LD_DEBUG reached the server" || ok
  [ "$(field "$trusted" NoNewPrivs)" = 1 ] && ok || bad "trusted process without no_new_privs"
  [ "$(field "$trusted" Seccomp)" = 2 ] && ok || bad "trusted process not seccomp-filtered"
  case "$(field "$trusted" CapEff)$(field "$trusted" CapPrm)" in
  00000000000000000000000000000000 | 00000000000040000000000000004000) ok ;;
  *) bad "trusted process capabilities $(field "$trusted" CapEff)" ;;
  esac
  if [ $root -eq 1 ]; then # a non-dumpable process's descriptors are root's to list
    for f in /proc/"$trusted"/fd/*; do
      [ "$(readlink "$f")" = "$dir/inherited" ] && bad "the trusted process kept an inherited descriptor"
    done
    ok
  fi
  # The server dies (SIGKILL): the trusted process says so and exits 1;
  # the checkpoints it left are whole, and the run resumes.
  kill -9 "$srv"
fi
wait "$trusted"
code=$?
[ "$code" -eq 1 ] && ok || bad "server killed: exit $code, expected 1"
grep -q "^asymml: .*the accelerator server was killed (signal 9)" "$dir/live" && ok || { bad "server death not reported"; tail -3 "$dir/live"; }
[ -e "$dir/evil-ran" ] && bad "ASYMML_ENCLAVE or ASYMML_ACCEL started a program" || ok
ls "$dir/ck1" | grep -qv '^ckpt-[0-9]*\.amck$' && bad "left in ck1: $(ls -a "$dir/ck1" | tr '\n' ' ')" || ok
# It resumes, and goes on saving (a run of 300 epochs: stopped once it has).
before=$(ls "$dir/ck1" | grep '^ckpt-' | tail -1)
"$bin" train --data "$dir/data" --resume "$dir/ck1" --tee process --key "$key" --every 1000 >"$dir/out" 2>&1 &
resumed=$!
for _ in $(seq 1 1200); do
  [ "$(ls "$dir/ck1" | grep '^ckpt-' | tail -1)" != "$before" ] && break
  kill -0 "$resumed" 2>/dev/null || break
  sleep 0.05
done
after=$(ls "$dir/ck1" | grep '^ckpt-' | tail -1)
kill "$resumed" 2>/dev/null
wait "$resumed" 2>/dev/null
grep -q "^resuming $dir/ck1/$before at step" "$dir/out" && [ "$after" \> "$before" ] && ok ||
  { bad "resume after the server's death failed ($before, then $after)"; tail -3 "$dir/out"; }
# A preloaded library would run inside the trusted process: refused.
ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0" LD_PRELOAD=libm.so.6 \
  "$bin" "${run[@]}" --tee process >"$dir/out" 2>"$dir/err"
[ $? -eq 2 ] && grep -q "^asymml: LD_PRELOAD is set" "$dir/err" && ok || bad "LD_PRELOAD accepted: $(cat "$dir/err")"

# 3. Hostile servers: each a copy of asymml beside tests/evil_accel.c.
echo "process_test: 3. Hostile servers: each a copy of asymml beside tests/evil_accel.c."
landlock=1
grep -q "NO Landlock" "$dir/process" && landlock=0
evil() { # name: a folder with asymml and the hostile asymml-accel
  mkdir -p "$dir/$1"
  cp "$bin" "$dir/$1/asymml"
  cp "$tools/evil-accel" "$dir/$1/asymml-accel"
  chmod 755 "$dir/$1" "$dir/$1/asymml" "$dir/$1/asymml-accel"
}
short=(train --data "$dir/data" --epochs 1 --batch 16 --mode asymml --rank-ratio 0.5 --tee process --key "$key" --threads 2)
evil probe
"$dir/probe/asymml" "${short[@]}" >"$dir/out" 2>"$dir/err"
[ $? -eq 1 ] && grep -q "probe: key" "$dir/err" && ok || bad "probe did not report: $(cat "$dir/err")"
grep -qE "OPENED|ATTACHED" "$dir/err" && bad "the server reached into the trusted side: $(cat "$dir/err")" || ok
if [ $landlock -eq 1 ]; then
  grep -q "data Permission denied" "$dir/err" && ok || bad "the server could open the world-readable data: $(cat "$dir/err")"
else
  echo "note: no Landlock on this kernel: the server, as nobody, can read world-readable data (the run says so)"
fi
evil nan
"$dir/nan/asymml" "${short[@]}" >"$dir/out" 2>"$dir/err"
[ $? -eq 1 ] && grep -q "non-finite value in layer [0-9]*'s forward result" "$dir/err" && ok || bad "NaN reply accepted: $(cat "$dir/err")"
evil tamper
"$dir/tamper/asymml" "${short[@]}" >"$dir/out" 2>"$dir/err" && ok || bad "tamper without --verify failed: $(cat "$dir/err")"
"$dir/tamper/asymml" "${short[@]}" --verify >"$dir/out" 2>"$dir/err"
[ $? -eq 1 ] && grep -q "failed verification" "$dir/err" && ok || bad "--verify missed a tampered reply: $(cat "$dir/err")"
evil silent
"$dir/silent/asymml" "${short[@]}" --reply-timeout 2 >"$dir/out" 2>"$dir/err"
[ $? -eq 1 ] && grep -q "did not answer within 2 s" "$dir/err" && ok || bad "a silent server: $(cat "$dir/err")"
evil exit
"$dir/exit/asymml" "${short[@]}" --checkpoint-dir "$dir/ck-exit" >"$dir/out" 2>"$dir/err"
[ $? -eq 1 ] && grep -q "the accelerator server exited" "$dir/err" && ok || bad "a dying server: $(cat "$dir/err")"

# 4. Sealed data with a canary: never in the server's memory.
echo "process_test: 4. Sealed data with a canary: never in the server's memory."
canary="ASYMML-CANARY-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
mkdir -p "$dir/sealed" "$dir/plain"
cp "$dir/data/"* "$dir/plain/"
printf '%s' "$canary" | dd of="$dir/plain/train-images-idx3-ubyte" bs=1 seek=100 conv=notrunc status=none
"$bin" seal --key "$key" --out-dir "$dir/sealed" "$dir/plain/"* >/dev/null && ok || bad "seal failed"
rm -r "$dir/plain"
grep -rqF "$canary" "$dir/sealed" && bad "canary readable in the sealed files" || ok
scan() { # expect(0|1) which(self|child) args...
  local want=$1 which=$2 got=0 i pid target
  shift 2
  "$bin" "$@" >"$dir/scan.out" 2>&1 &
  pid=$!
  for i in $(seq 1 200); do grep -q "step" "$dir/scan.out" && break; sleep 0.05; done
  target=$pid
  [ "$which" = child ] && target=$(pgrep -P "$pid" | head -1)
  for i in 1 2 3; do
    "$tools/memscan" "$target" "$canary" 2>>"$dir/scan.log"
    [ $? -eq 1 ] && got=1
    sleep 0.2
  done
  kill "$pid" 2>/dev/null
  wait "$pid"
  [ "$got" -eq "$want" ] && ok || bad "canary found=$got in the $which of $* (expected $want)"
}
long=(train --data "$dir/sealed" --key "$key" --epochs 100 --batch 16 --every 1 --mode asymml --rank-ratio 0.25 --threads 2)
scan 1 self "${long[@]}"
scan 0 child "${long[@]}" --tee process --shm-mib 512

# 5. Resuming other data, other limits, other threads: refused, as is a
# sealed test set in the training set's place.
echo "process_test: 5. Resuming with other data, limits or threads: refused"
"$bin" "${run[@]}" --key "$key" --tee process --checkpoint-dir "$dir/ck5" --save-every 3 >/dev/null 2>&1 || bad "ck5 run"
try_resume() { # what message args...
  local what=$1 msg=$2
  shift 2
  "$bin" train --data "$dir/data" --resume "$dir/ck5" --key "$key" --tee process "$@" >"$dir/out" 2>"$dir/err"
  [ $? -eq 2 ] && grep -q "$msg" "$dir/err" && ok || bad "resume with $what: $(cat "$dir/err")"
}
try_resume "--limit-train 80" "^asymml: --limit-train 80: this run trains on 96 images" --limit-train 80
try_resume "--limit-test 16" "^asymml: --limit-test 16: this run tests on 32 images" --limit-test 16
# A plain checkpoint (anyone's: unauthenticated) where the run's are sealed.
"$bin" train --data "$dir/data" --epochs 1 --batch 16 --mode open --checkpoint-dir "$dir/plainck" >/dev/null 2>&1
cp "$(ls "$dir"/plainck/ckpt-*.amck | tail -1)" "$dir/ck5/ckpt-0999999999.amck"
"$bin" train --data "$dir/data" --resume "$dir/ck5" --key "$key" --tee process >"$dir/out" 2>"$dir/err"
[ $? -eq 0 ] && grep -q "^asymml: warning: skipped what does not read: $dir/ck5/ckpt-0999999999.amck: not sealed, while a key is set" "$dir/err" &&
  ok || bad "a plain checkpoint resumed: $(cat "$dir/err")"
rm "$dir/ck5/ckpt-0999999999.amck"
# Training and test files sealed apart (another dataset's test set).
mkdir -p "$dir/apart"
"$bin" seal --key "$key" --out-dir "$dir/apart" "$dir/data/train-"* >/dev/null
"$bin" seal --key "$key" --out-dir "$dir/apart" "$dir/data/t10k-"* >/dev/null
"$bin" train --data "$dir/apart" --key "$key" --epochs 1 --batch 16 >"$dir/out" 2>"$dir/err"
[ $? -eq 2 ] && grep -q "sealed with another dataset than the training data" "$dir/err" && ok || bad "split sealings mixed: $(cat "$dir/err")"
# A plain test set beside the sealed training set: not the run's either.
mkdir -p "$dir/mixed"
cp "$dir/apart/train-"* "$dir/mixed/"
cp "$dir/data/t10k-"* "$dir/mixed/"
"$bin" train --data "$dir/mixed" --key "$key" --epochs 1 --batch 16 >"$dir/out" 2>"$dir/err"
[ $? -eq 2 ] && grep -q "the training data are sealed and the test data are not" "$dir/err" && ok || bad "plain test data used: $(cat "$dir/err")"
mkdir -p "$dir/swap"
cp "$dir/sealed/t10k-images-idx3-ubyte.sealed" "$dir/swap/train-images-idx3-ubyte.sealed"
cp "$dir/sealed/t10k-labels-idx1-ubyte.sealed" "$dir/swap/train-labels-idx1-ubyte.sealed"
cp "$dir/sealed/t10k-"* "$dir/swap/"
"$bin" train --data "$dir/swap" --key "$key" --epochs 1 --batch 16 >"$dir/out" 2>"$dir/err"
[ $? -eq 1 ] && grep -q "sealed as test-images, but read as train-images" "$dir/err" && ok || bad "test set as training data: $(cat "$dir/err")"

# 6. The host's view, recorded: a run, its replay from a checkpoint, and an
# evaluation on training data. No two noised releases share noise; the
# replay repeats the run's releases whole.
echo "process_test: 6. The host's view, recorded: a run, its replays, an evaluation"
secret=(train --data "$dir/data" --epochs 2 --batch 16 --mode asymml --rank-ratio 0.5 --basis per-sample --clip 1
        --sigma 1 --threads 2 --tee process --key "$key")
"$bin" "${secret[@]}" --checkpoint-dir "$dir/ck6" --save-every 4 --keep 10 --record "$dir/rec-run" >"$dir/run6.out" 2>"$dir/err" ||
  bad "recorded run: $(cat "$dir/err")"
# Each epoch's evaluation sends the test images' residuals (and the weights
# as they then stand) too, and the run says so: 96 training images in 6
# batches and 32 test images in 2, for 2 epochs, one split layer: 12 output
# gradients, 12 + 4 residuals.
res=$(grep -c '"kind": "residual"' "$dir/rec-run/index.jsonl")
og=$(grep -c '"kind": "output-gradient"' "$dir/rec-run/index.jsonl")
[ "$og" -eq 12 ] && [ "$res" -eq 16 ] && ok || bad "recorded residuals $res and output gradients $og, expected 16 and 12"
grep -q "^crosses to the accelerator: .*; after each epoch, in the evaluation on the test images: its weights as they then stand and each test image's residual (clipped and noised likewise)$" "$dir/run6.out" &&
  grep -q "^privacy: the test images' residuals crossed too, in each epoch's evaluation (clipped and noised alike)" "$dir/run6.out" &&
  ok || bad "the run does not say the test images' residuals cross: $(grep -E '^(crosses|privacy)' "$dir/run6.out")"
# Copies of the run as it stood at step 4 (killed there), to resume.
at4() {
  cp -r "$dir/ck6" "$dir/$1"
  find "$dir/$1" -name 'ckpt-*.amck' ! -name ckpt-0000000004.amck -delete
}
at4 ck6r; at4 ck7; at4 ck6h
"$bin" train --data "$dir/data" --resume "$dir/ck6r/ckpt-0000000004.amck" --tee process --key "$key" \
  --record "$dir/rec-resume" >"$dir/resume.out" 2>"$dir/err" || bad "recorded resume: $(cat "$dir/err")"
# 2 epochs begun and 1 resume, which may release the rest of an epoch again.
grep -q "^privacy: (epsilon .* 3 Gaussian releases per training sample" "$dir/resume.out" && ok ||
  bad "the resumed run does not count its repeated releases: $(grep privacy "$dir/resume.out")"
# Sessions the host makes fail before their first save count too: each
# resumed session is written into its checkpoint before anything crosses.
for i in 1 2; do
  "$dir/exit/asymml" train --data "$dir/data" --resume "$dir/ck7/ckpt-0000000004.amck" --tee process --key "$key" \
    >/dev/null 2>&1 && bad "a resume into a dying server succeeded"
done
"$bin" train --data "$dir/data" --resume "$dir/ck7/ckpt-0000000004.amck" --tee process --key "$key" >"$dir/out" 2>"$dir/err"
grep -q "^privacy: (epsilon .* 5 Gaussian releases per training sample" "$dir/out" && ok ||
  bad "failed sessions not counted: $(grep privacy "$dir/out") $(cat "$dir/err")"
# A hostile server that answers the resumed run otherwise than the first
# (its replies decide the residuals of the steps after the checkpoint).
evil replay
"$dir/replay/asymml" train --data "$dir/data" --resume "$dir/ck6h/ckpt-0000000004.amck" --tee process --key "$key" \
  --record "$dir/rec-replay" >/dev/null 2>"$dir/err" || bad "recorded hostile replay: $(cat "$dir/err")"
"$bin" eval --checkpoint "$dir/ck6" --data "$dir/data" --split train --mode asymml --rank-ratio 0.5 --basis per-sample \
  --clip 1 --sigma 1 --batch 16 --tee process --key "$key" --record "$dir/rec-eval" >"$dir/eval.out" 2>"$dir/err" ||
  bad "recorded evaluation: $(cat "$dir/err")"
grep -q "^privacy: (epsilon .* 3 Gaussian releases per training sample (2 of the training run's up to this checkpoint, step [0-9]*, and 1 of this evaluation's" "$dir/eval.out" &&
  ok || bad "evaluation on training data does not count its releases: $(grep privacy "$dir/eval.out")"
# Without mode options, an evaluation runs as its run did: noised alike.
"$bin" eval --checkpoint "$dir/ck6" --data "$dir/data" --split train --batch 16 --tee process --key "$key" \
  >"$dir/eval2.out" 2>"$dir/err" || bad "evaluation in the run's mode: $(cat "$dir/err")"
grep -q "^privacy: (epsilon .* 3 Gaussian releases per training sample (2 of the training run's up to this checkpoint, step [0-9]*, and 1 of this evaluation's" "$dir/eval2.out" &&
  grep -q "noised with std 1" "$dir/eval2.out" && ok || bad "evaluation left the run's noise: $(cat "$dir/eval2.out")"
"$tools/hostview_check" 1 1 "$dir/rec-run" "$dir/rec-resume" "$dir/rec-replay" "$dir/rec-eval" >"$dir/check" 2>&1 && ok ||
  { bad "noise shared between releases"; cat "$dir/check"; }
cat "$dir/check"
# Every session draws its own noise: not even a resumed run's steps repeat.
grep -q " 0 repeated whole" "$dir/check" && ok || bad "releases repeated"
grep -q "^hostview_check: 736 releases" "$dir/check" && ok || bad "not every recording was read"
kinds=$(grep -o '"kind": "[a-z-]*"' "$dir/rec-run/index.jsonl" | sort -u | tr '\n' ' ')
[ "$kinds" = '"kind": "output-gradient" "kind": "residual" "kind": "weights" ' ] && ok || bad "recorded kinds: $kinds"
# What eval says crosses: weights and residuals, no label and no gradient.
kinds=$(grep -o '"kind": "[a-z-]*"' "$dir/rec-eval/index.jsonl" | sort -u | tr '\n' ' ')
[ "$kinds" = '"kind": "residual" "kind": "weights" ' ] && ok || bad "recorded kinds of eval: $kinds"
grep -q "no label and no gradient crosses in an evaluation" "$dir/eval.out" && ok || bad "eval's statement: $(grep known "$dir/eval.out")"

# The documented format reads in Python as it is (scripts/hostview.py).
if command -v python3 >/dev/null; then
  python3 "$(dirname "$0")/../scripts/hostview.py" "$dir/rec-run" >"$dir/py" 2>&1 &&
    grep -q "^  residual  *16 tensors" "$dir/py" && ok || { bad "hostview.py"; cat "$dir/py"; }
fi

cat "$dir/scan.log" 2>/dev/null
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
