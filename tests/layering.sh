#!/usr/bin/env bash
# The trust boundary in the tree (ARCHITECTURE.md): the untrusted side
# includes nothing from the trusted side or the enclave; the trusted side
# and the enclave include nothing from the untrusted side; only cli/ prints.
# Usage: layering.sh SOURCE_DIR
set -u
cd "$1" || exit 1
fail=0
check() { # folder forbidden-pattern what
  local hits
  hits=$(grep -rnE --include='*.[ch]' --include='*.cu' "#include \"($2)/" src/"$1" 2>/dev/null)
  if [ -n "$hits" ]; then echo "FAIL: src/$1 includes $3:"; echo "$hits"; fail=1; fi
}
check untrusted "trusted|enclave" "trusted or enclave headers"
check trusted "untrusted|enclave" "untrusted or enclave headers"
check enclave "untrusted" "untrusted headers"
check boundary "trusted|enclave" "trusted or enclave headers"
prints=$(grep -rnE --include='*.c' --include='*.cu' "\b(printf|puts|fputs|perror)\(|fprintf\((stdout|stderr)" src |
         grep -v "snprintf\|vsnprintf")
if [ -n "$prints" ]; then echo "FAIL: library code prints:"; echo "$prints"; fail=1; fi
[ "$fail" -eq 0 ] && echo "layering: ok"
exit "$fail"
