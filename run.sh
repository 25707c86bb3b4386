#!/usr/bin/env bash
# radiodiff's two set-up commands (README):
#   ./run.sh pipeline [snakemake args]   create .venv if missing, then `snakemake --cores all`
#   ./run.sh test [pytest args]          create .venv if missing, then run the test suite
# The environment is installed from requirements.lock (exact versions) plus radiodiff itself.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

ensure_env() {
  if [ -x .venv/bin/radiodiff ] && [ .venv/.installed -nt requirements.lock ]; then
    return
  fi
  local py="${PYTHON:-}"
  if [ -z "$py" ]; then
    for cand in python3.11 python3; do
      if command -v "$cand" >/dev/null && "$cand" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
        py="$cand"; break
      fi
    done
  fi
  [ -n "$py" ] || { echo "run.sh: Python 3.11 is required (set PYTHON=/path/to/python3.11)" >&2; exit 1; }
  echo "run.sh: creating .venv with $py and installing requirements.lock (a few minutes, once)" >&2
  [ -d .venv ] || "$py" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
  .venv/bin/python -m pip install --quiet -r requirements.lock 2>&1 | grep -v '^WARNING: Location' || true
  .venv/bin/python -m pip install --quiet --no-deps -e . 2>&1 | grep -v '^WARNING: Location' || true
  .venv/bin/python -c 'import radiodiff, torch, torchvision, timm, accelerate, jsonschema, xxhash, lpips, snakemake, dvc' \
    || { echo "run.sh: the environment did not install cleanly" >&2; exit 1; }
  touch .venv/.installed
}

cmd="${1:-}"
shift || true
case "$cmd" in
  pipeline)
    ensure_env
    export PATH="$PWD/.venv/bin:$PATH"
    exec snakemake --cores all "$@"
    ;;
  test)
    ensure_env
    export PATH="$PWD/.venv/bin:$PATH"
    exec pytest "$@"
    ;;
  env)
    ensure_env
    ;;
  *)
    echo "usage: ./run.sh pipeline [snakemake args] | ./run.sh test [pytest args] | ./run.sh env" >&2
    exit 2
    ;;
esac
