#!/usr/bin/env bash
# The evaluation (issue 14): what the host learns in each mode and what
# privacy costs, measured with attacks on its recorded view. Installs what
# is missing (scripts/deps.sh --eval), builds, trains every setting of
# eval/settings.py with the host's view recorded, attacks each view
# (eval/run.py) and writes docs/evaluation.md with its figures
# (eval/report.py). About 60 to 90 minutes on 2 cores; a rerun goes on
# where a stopped one ended (its results stay in WORK).
# Usage: scripts/privacy-eval.sh [WORK (default build/eval-work)] [eval/run.py options]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh --eval
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" --target asymml-cli asymml-accel attack_hostview >/dev/null
work=${1:-build/eval-work}
[ $# -gt 0 ] && shift
start=$(date +%s)
/usr/bin/python3 eval/run.py --asymml build/asymml --tool build/tests/attack_hostview --work "$work" "$@"
/usr/bin/python3 eval/report.py "$work" docs "$(($(date +%s) - start))"
echo "privacy-eval: wrote docs/evaluation.md"
