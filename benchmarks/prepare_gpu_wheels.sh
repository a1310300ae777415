#!/usr/bin/env bash
# Downloads, where pip works, the pure-Python wheels gpu_check.sh installs on a GPU host
# that has Python 3.12, JAX (CUDA), numpy, pillow, scikit-learn and absl-py but no index.
# TensorFlow is not needed there (and its wheels are too large to carry).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-.whl}"
mkdir -p "$out"
plat=(--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64
      --platform manylinux2014_x86_64 --platform manylinux_2_27_x86_64)
dl() { python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
         --implementation cp "${plat[@]}" -d "$out" "$@"; }
dl keras==3.15.1 namex optree h5py rich markdown-it-py mdurl pygments packaging
# The project itself, as a wheel (no dependencies: they are above or on the host).
python3 -m pip wheel -q --no-deps -w "$out" .
ls -la "$out"
du -sh "$out"
