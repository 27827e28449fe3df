#!/usr/bin/env bash
# Download the wheels the GPU machine lacks for the suite (it has torch, transformers, accelerate, numpy,
# Pillow, safetensors, huggingface-hub, regex, requests): diffusers at the version installed here, and
# importlib_metadata, which diffusers names. For CPython 3.12 on manylinux x86_64, into benchmarks/gpu/wheels
# (ignored by git; a few MB, under the 64 MiB a device call may carry).
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
version=$("$PYTHON" -c "import diffusers; print(diffusers.__version__)")
rm -rf wheels && mkdir -p wheels
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any \
    -d wheels "diffusers==$version" "importlib_metadata"
du -sh wheels && ls wheels
