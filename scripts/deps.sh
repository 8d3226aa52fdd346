#!/usr/bin/env bash
# Installs, with apt-get, the Debian packages asymml needs that are missing.
# Usage: scripts/deps.sh [--torch] [--fuzz] [--eval] [--tables]
# Debian's Fashion-MNIST (/usr/share/datasets/fashion-mnist) is always
# installed: the main job trains on it and a test checks accuracy on it.
#   --torch  also python3-torch and python3-torchvision (fixture generator, bench/)
#   --fuzz   also clang and libFuzzer (scripts/fuzz.sh)
#   --eval   also python3-torch, python3-skimage, python3-matplotlib (eval/: the attacks)
#   --tables also python3-matplotlib (scripts/paper-tables.sh: the chart)
set -euo pipefail
pkgs=(cmake make gcc pkg-config libopenblas-openmp-dev liblapacke-dev zlib1g-dev
      libcmocka-dev libsodium-dev libseccomp-dev dataset-fashion-mnist)
for a in "$@"; do
  case "$a" in
    --torch) pkgs+=(python3-torch python3-torchvision) ;;
    --fuzz) pkgs+=(clang libclang-rt-14-dev libomp-14-dev) ;;
    --eval) pkgs+=(python3-torch python3-torchvision python3-skimage python3-matplotlib python3-numpy) ;;
    --tables) pkgs+=(python3-matplotlib) ;;
    *) echo "deps.sh: unknown option $a" >&2; exit 2 ;;
  esac
done
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "deps.sh: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
