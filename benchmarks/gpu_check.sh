#!/usr/bin/env bash
# radiodiff's GPU check on a bare GPU machine (benchmarks/gpu_check.py says what it measures and
# how to download the wheels it needs into wheels/):
#   bash benchmarks/gpu_check.sh [gpu_check.py args]      # writes $OUT/gpu_check.json
# The library runs from this checkout (PYTHONPATH, no build). Of the carried wheels (wheels/*.whl),
# those whose package the image lacks go into a scratch folder on PYTHONPATH; the image's own
# packages are used as they are and left unchanged.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
py="${PYTHON:-python3}"
site="${RADIODIFF_GPU_SITE:-/tmp/radiodiff-gpu-site}"
path="$PWD"
if compgen -G "wheels/*.whl" >/dev/null; then
  missing=$("$py" - wheels/*.whl <<'PY'
import importlib.metadata, sys
from pathlib import Path
for wheel in sys.argv[1:]:
    try:
        importlib.metadata.version(Path(wheel).name.split("-")[0])
    except importlib.metadata.PackageNotFoundError:
        print(wheel)
PY
  )
  if [ -n "$missing" ]; then
    echo "gpu_check.sh: installing into $site:" $missing >&2
    # shellcheck disable=SC2086  # one wheel per word
    "$py" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" $missing
    path="$path:$site"
  fi
fi
export PYTHONPATH="$path${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
exec "$py" benchmarks/gpu_check.py "$@"
