#!/usr/bin/env bash
# --tee process end to end: the enclave program trains exactly as the single
# process does; a system call outside the sandbox's list kills it and the
# host says so, leaving only whole checkpoints; an enclave killed mid-run
# leaves the last checkpoint intact and resumable; the enclave refuses to
# run by hand. Usage: enclave_test.sh PATH/TO/asymml (asymml-enclave beside it)
set -u
bin=$1
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
run=(train --data "$dir/data" --epochs 2 --batch 16 --every 1 --mode asymml --rank-ratio 0.25 --clip 1 --sigma 1 --threads 2)

# 1. The same losses, accuracies and privacy statement as in one process.
"$bin" "${run[@]}" >"$dir/inproc" 2>&1 || bad "inproc run failed"
"$bin" "${run[@]}" --tee process >"$dir/process" 2>"$dir/err" || { bad "process run failed"; cat "$dir/err"; }
strip() { grep -E "^(epoch|final|privacy|plan)" "$1" | sed -E 's/ [0-9.]+ img\/s.*//; s/, epoch time .*//'; }
if [ -n "$(strip "$dir/inproc")" ] && [ "$(strip "$dir/inproc")" = "$(strip "$dir/process")" ]; then ok; else
  bad "process and inproc runs differ"; diff <(strip "$dir/inproc") <(strip "$dir/process") | head -5; fi
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
"$bin" train --data "$dir/data" --resume "$dir/ck1" --tee process >"$dir/out" 2>&1 && grep -q "^final test accuracy" "$dir/out" &&
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
"$bin" train --data "$dir/data" --resume "$dir/ck2" --tee process --every 1000 >"$dir/out" 2>&1 &&
  grep -q "^final test accuracy" "$dir/out" && ok || { bad "resume after the kill failed"; tail -3 "$dir/out"; }

# 4. Usage: an unknown --tee, and the enclave program started by hand.
"$bin" train --data "$dir/data" --tee vm >"$dir/out" 2>"$dir/err"
[ $? -eq 2 ] && grep -q "^asymml: --tee: 'vm' is not inproc or process" "$dir/err" && ok || bad "--tee vm accepted"
"$(dirname "$bin")/asymml-enclave" train --data "$dir/data" >"$dir/out" 2>"$dir/err"
[ $? -eq 2 ] && grep -q "^asymml-enclave: this program is started by" "$dir/err" && ok || bad "enclave ran by hand"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
