#!/usr/bin/env bash
# The attack figures the program prints when a run starts (cli/privacy.c,
# from measured() to the end of cli_privacy_start) are the evaluation's:
# each "N.N dB" and "N.N%" there must appear in docs/evaluation.md, the
# report scripts/privacy-eval.sh wrote. A new evaluation that changes them
# fails this until the program says the new figures.
# Usage: claims.sh SOURCE_DIR
set -u
cd "$1" || exit 1
fail=0 n=0
figures=$(sed -n '/^static void measured/,/^void cli_privacy_end/p' cli/privacy.c |
          grep -oE '[0-9]+\.[0-9]+ dB|[0-9]+\.[0-9]+%' | sort -u)
for x in $(echo "$figures" | tr ' ' '_'); do
  x=${x//_/ }
  n=$((n + 1))
  grep -qF "$x" docs/evaluation.md || { echo "FAIL: cli/privacy.c says $x; docs/evaluation.md does not"; fail=1; }
done
[ "$n" -ge 5 ] || { echo "FAIL: only $n figures found in cli/privacy.c's measured statements"; fail=1; }
[ "$fail" -eq 0 ] && echo "claims: the $n figures the program prints are the evaluation's"
exit "$fail"
