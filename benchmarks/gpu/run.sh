#!/usr/bin/env bash
# The GPU suite in one call: installs the carried wheels offline when diffusers is missing, then runs suite.py.
#   bash benchmarks/gpu/run.sh [--cpu-smoke] [--out FILE.json] [--budget-s SECONDS]
# On the GPU machine the results go to $OUT/gpu-suite.json unless --out says otherwise.
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c "import diffusers" 2>/dev/null; then
    if ! ls benchmarks/gpu/wheels/*.whl >/dev/null 2>&1; then
        echo "run.sh: diffusers is not installed and benchmarks/gpu/wheels is empty: run benchmarks/gpu/fetch_wheels.sh first" >&2
        exit 2
    fi
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/sgi2v-site \
        benchmarks/gpu/wheels/*.whl
    export PYTHONPATH=/tmp/sgi2v-site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1
default_out=benchmarks/results/gpu/gpu-suite.json
[ -n "${OUT:-}" ] && default_out=$OUT/gpu-suite.json
exec "$PYTHON" benchmarks/gpu/suite.py --out "$default_out" "$@"
