#!/usr/bin/env bash
# --tee process end to end: the enclave program trains exactly as the single
# process does; a system call outside the sandbox's list kills it and the
# host says so, leaving only whole checkpoints; an enclave killed mid-run
# leaves the last checkpoint intact and resumable; the enclave refuses to
# run by hand; a canary planted in a sealed dataset never appears in the
# host process's memory during training (while it does appear in the single
# process's, which shows the scan works).
# Usage: enclave_test.sh PATH/TO/asymml PATH/TO/memscan (asymml-enclave beside asymml)
set -u
bin=$1
memscan=$2
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { echo "FAIL: $*"; fail=$((fail + 1)); }

# A small IDX dataset (as in cli_test.sh): 96 train and 32 test images.
be32() { printf "\\x$(printf %02x $(($1 >> 24 & 255)))\\x$(printf %02x $(($1 >> 16 & 255)))\\x$(printf %02x $(($1 >> 8 & 255)))\\x$(printf %02x $(($1 & 255)))"; }
mkidx() {
  local f=$dir/data/$1 n=$2
  { printf '\x00\x00\x08\x03'; be32 "$n"; be32 28; be32 28; head -c $((n * 784)) /dev/urandom; } >"$f-images-idx3-ubyte"
  { printf '\x00\x00\x08\x01'; be32 "$n"; for ((i = 0; i < n; i++)); do printf "\\x0$((i % 10))"; done; } >"$f-labels-idx1-ubyte"
}
mkdir -p "$dir/data"
mkidx train 96
mkidx t10k 32
key=$dir/key0
"$bin" keygen "$key" >/dev/null
run=(train --data "$dir/data" --epochs 2 --batch 16 --every 1 --mode asymml --rank-ratio 0.25 --clip 1 --sigma 1 --noise-seed 7 --threads 2 --key "$key")

# 1. The same losses, accuracies and privacy statement as in one process.
"$bin" "${run[@]}" >"$dir/inproc" 2>&1 || bad "inproc run failed"
"$bin" "${run[@]}" --tee process >"$dir/process" 2>"$dir/err" || { bad "process run failed"; cat "$dir/err"; }
strip() { grep -E "^(epoch|final|privacy|plan)" "$1" | sed -E 's/ [0-9.]+ img\/s.*//; s/, epoch time .*//'; }
if [ -n "$(strip "$dir/inproc")" ] && [ "$(strip "$dir/inproc")" = "$(strip "$dir/process")" ]; then ok; else
  bad "process and inproc runs differ"; diff <(strip "$dir/inproc") <(strip "$dir/process") | head -5; fi
# The host computing while the enclave goes on (--overlap on; the default
# with the CPU backend holds requests until the enclave waits) changes no
# figure either.
"$bin" "${run[@]}" --tee process --overlap on >"$dir/overlap" 2>"$dir/err" || { bad "overlapped run failed"; cat "$dir/err"; }
[ "$(strip "$dir/inproc")" = "$(strip "$dir/overlap")" ] && ok || bad "overlapped and inproc runs differ"
grep -q "accelerator: a separate host process" "$dir/process" && ok || bad "process run does not say where the accelerator is"
grep -q "seccomp-sandboxed" "$dir/process" && ok || bad "process run does not say it is sandboxed"

# 2. A denied system call (a socket, at step 3): the sandbox kills the
# enclave, the host reports it, the checkpoint of step 2 is whole, no
# temporary file is left, and it resumes.
ASYMML_ENCLAVE_TEST_SYSCALL=3 "$bin" "${run[@]}" --tee process --checkpoint-dir "$dir/ck1" --save-every 2 \
  >"$dir/out" 2>"$dir/err"
code=$?
[ "$code" -eq 1 ] && ok || bad "sandbox kill: exit $code, expected 1"
grep -q "^asymml: the enclave was killed by its sandbox" "$dir/err" && ok || { bad "sandbox kill not reported"; cat "$dir/err"; }
[ "$(ls "$dir/ck1")" = "ckpt-0000000002.amck" ] && ok || bad "sandbox kill left: $(ls -a "$dir/ck1" | tr '\n' ' ')"
"$bin" train --data "$dir/data" --resume "$dir/ck1" --tee process --key "$key" >"$dir/out" 2>&1 && grep -q "^final test accuracy" "$dir/out" &&
  ok || bad "resume after the sandbox kill failed"

# 3. The enclave killed (SIGKILL) mid-run: the host reports it and exits 1;
# the newest checkpoint is intact and the run resumes to the end.
"$bin" "${run[@]}" --epochs 40 --tee process --checkpoint-dir "$dir/ck2" --save-every 2 >"$dir/out" 2>"$dir/err" &
host=$!
for _ in $(seq 1 300); do [ -n "$(ls "$dir/ck2" 2>/dev/null)" ] && break; sleep 0.1; done
enclave=$(pgrep -P "$host" asymml-enclave)
if [ -n "$enclave" ]; then kill -9 "$enclave"; else bad "no enclave process under the host"; fi
wait "$host"
code=$?
[ "$code" -eq 1 ] && ok || bad "killed enclave: host exit $code, expected 1"
grep -q "^asymml: the enclave was killed by signal 9" "$dir/err" && ok || { bad "kill not reported"; cat "$dir/err"; }
"$bin" train --data "$dir/data" --resume "$dir/ck2" --tee process --key "$key" --every 1000 >"$dir/out" 2>&1 &&
  grep -q "^final test accuracy" "$dir/out" && ok || { bad "resume after the kill failed"; tail -3 "$dir/out"; }

# 5. Sealed data and the canary. Image 0 of the training set carries a
# random string; the files are sealed and the plain ones removed.
canary="ASYMML-CANARY-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
mkdir -p "$dir/sealed"
cp "$dir/data/"* "$dir/sealed/"
printf '%s' "$canary" | dd of="$dir/sealed/train-images-idx3-ubyte" bs=1 seek=100 conv=notrunc status=none
"$bin" keygen "$dir/key" >/dev/null && ok || bad "keygen failed"
"$bin" keygen "$dir/key" >/dev/null 2>&1 && bad "keygen overwrote a key" || ok
"$bin" seal --key "$dir/key" "$dir/sealed/"*-ubyte >/dev/null && ok || bad "seal failed"
rm "$dir/sealed/"*-ubyte
grep -rqF "$canary" "$dir/sealed" && bad "canary readable in the sealed files" || ok
"$bin" train --data "$dir/sealed" --epochs 1 --batch 16 >"$dir/out" 2>"$dir/err"
[ $? -eq 1 ] && grep -q "is sealed: give the key" "$dir/err" && ok || bad "sealed data opened without a key"
"$bin" keygen "$dir/key2" >/dev/null
"$bin" train --data "$dir/sealed" --epochs 1 --batch 16 --key "$dir/key2" >"$dir/out" 2>"$dir/err"
[ $? -eq 1 ] && grep -q "wrong key, or the file was altered" "$dir/err" && ok || bad "sealed data opened with another key"
# scan_during PIDFILE-less: start a run, scan its top process while it trains.
scan_during() { # expect-found(0|1) args...
  local want=$1
  shift
  "$bin" "$@" >"$dir/scan.out" 2>&1 &
  local pid=$! got=0 i
  for i in $(seq 1 200); do grep -q "step" "$dir/scan.out" && break; sleep 0.05; done
  for i in 1 2 3; do
    "$memscan" "$pid" "$canary" 2>>"$dir/scan.log"
    [ $? -eq 1 ] && got=1
    sleep 0.2
  done
  wait "$pid" || bad "scanned run failed: $(tail -1 "$dir/scan.out")"
  [ "$got" -eq "$want" ] && ok || bad "canary found=$got in $* (expected $want)"
}
long=(train --data "$dir/sealed" --key "$dir/key" --epochs 100 --batch 16 --every 1 --mode asymml --rank-ratio 0.25 --threads 2)
scan_during 1 "${long[@]}"
scan_during 0 "${long[@]}" --tee process --shm-mib 512 --checkpoint-dir "$dir/ck3"
# Checkpoints written by the enclave are sealed; eval opens them with the key.
f=$(ls "$dir/ck3" | head -1)
[ "$(head -c 6 "$dir/ck3/$f")" = "AMSEAL" ] && ok || bad "enclave checkpoint not sealed"
"$bin" eval --checkpoint "$dir/ck3" --data "$dir/sealed" --key "$dir/key" >/dev/null 2>&1 && ok || bad "sealed checkpoint does not open"
"$bin" eval --checkpoint "$dir/ck3" --data "$dir/sealed" --key "$dir/key2" >/dev/null 2>&1 && bad "sealed checkpoint opened with another key" || ok
"$bin" train --data "$dir/sealed" --key "$dir/key" --tee process --checkpoint-dir "$dir/ck4" >"$dir/out" 2>"$dir/err"
"$bin" train --data "$dir/sealed" --tee process --checkpoint-dir "$dir/ck4" >"$dir/out" 2>"$dir/err"
[ $? -eq 2 ] && grep -q "writes sealed checkpoints: give --key" "$dir/err" && ok || bad "enclave checkpoints without a key"

# 4. Usage: an unknown --tee, and the enclave program started by hand.
"$bin" train --data "$dir/data" --tee vm >"$dir/out" 2>"$dir/err"
[ $? -eq 2 ] && grep -q "^asymml: --tee: 'vm' is not inproc or process" "$dir/err" && ok || bad "--tee vm accepted"
"$(dirname "$bin")/asymml-enclave" train --data "$dir/data" >"$dir/out" 2>"$dir/err"
[ $? -eq 2 ] && grep -q "^asymml-enclave: this program is started by" "$dir/err" && ok || bad "enclave ran by hand"

cat "$dir/scan.log"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
