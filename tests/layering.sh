#!/usr/bin/env bash
# The trust boundary in the tree (ARCHITECTURE.md), checked in both
# directions: the untrusted side (src/untrusted) includes nothing from the
# trusted side (src/trusted, src/enclave); the trusted side includes nothing
# from the untrusted side; the boundary (src/boundary) and everything below
# both sides (core, ops, data, sealing, decomposition, training's files)
# include neither; the accelerator server's entry point lives on the
# untrusted side and the trusted program's in cli/; only cli/ prints; the
# README points at nothing outside the project.
# Usage: layering.sh SOURCE_DIR
set -u
cd "$1" || exit 1
fail=0
check() { # folder forbidden-pattern what
  local hits
  hits=$(grep -rnE --include='*.[ch]' --include='*.cu' "#include \"($2)/" src/"$1" 2>/dev/null)
  if [ -n "$hits" ]; then echo "FAIL: src/$1 includes $3:"; echo "$hits"; fail=1; fi
}
check untrusted "trusted|enclave" "trusted-side headers"
check trusted "untrusted" "untrusted-side headers"
check enclave "untrusted" "untrusted-side headers"
check boundary "trusted|untrusted|enclave" "either side's headers"
for below in core ops data seal decomp train; do
  check "$below" "trusted|untrusted|enclave" "either side's headers"
done
# The programs' entry points: the server's on the untrusted side, the
# trusted program's in cli/, and none elsewhere.
mains=$(grep -rlE --include='*.c' "^int main\(" src cli | sort | tr '\n' ' ')
[ "$mains" = "cli/main.c src/untrusted/accel_main.c " ] || { echo "FAIL: entry points are: $mains"; fail=1; }
prints=$(grep -rnE --include='*.c' --include='*.cu' "\b(printf|puts|fputs|perror)\(|fprintf\((stdout|stderr)" src |
         grep -v "snprintf\|vsnprintf")
if [ -n "$prints" ]; then echo "FAIL: library code prints:"; echo "$prints"; fail=1; fi
# The README is read in a clone of this repository alone: it points at
# nothing outside it.
outside=$(grep -nE '\.\./|/work/' README.md)
if [ -n "$outside" ]; then echo "FAIL: the README points outside the project:"; echo "$outside"; fail=1; fi
[ "$fail" -eq 0 ] && echo "layering: ok"
exit "$fail"
