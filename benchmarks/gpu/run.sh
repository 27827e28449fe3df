#!/usr/bin/env bash
# The GPU suite in one call: installs the carried wheels offline when diffusers is missing, then runs suite.py.
#   bash benchmarks/gpu/run.sh [--cpu-smoke] [--out FILE.json] [--budget-s SECONDS]
# On the GPU machine the results go to $OUT/gpu-suite.json unless --out says otherwise.
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python3}
source benchmarks/gpu/env.sh
default_out=benchmarks/results/gpu/gpu-suite.json
[ -n "${OUT:-}" ] && default_out=$OUT/gpu-suite.json
exec "$PYTHON" benchmarks/gpu/suite.py --out "$default_out" "$@"
