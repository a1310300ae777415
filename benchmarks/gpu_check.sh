#!/usr/bin/env bash
# GPU check for a JAX + CUDA host without TensorFlow or a package index (see README.md here).
# Expects the wheels prepared by `benchmarks/prepare_gpu_wheels.sh` in .whl/ beside the repo.
set -euo pipefail
cd "$(dirname "$0")/.."
wheels="${WHEELS:-.whl}"
site="${SITE:-/tmp/illustration_tl_site}"
if ! ls "$wheels"/*.whl >/dev/null 2>&1; then
  echo "gpu_check.sh: no wheels in $wheels; run benchmarks/prepare_gpu_wheels.sh where pip works" >&2
  exit 2
fi
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target "$site" "$wheels"/*.whl
export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}" KERAS_BACKEND=jax PYTHONUNBUFFERED=1
export XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.9}"
python3 -c "import jax, keras; print('jax', jax.__version__, jax.devices(), 'keras', keras.__version__)"
exec timeout "${GPU_CHECK_TIMEOUT:-480}" python3 benchmarks/gpu_check.py "$@"
