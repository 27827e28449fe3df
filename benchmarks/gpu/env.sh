# Sourced by run.sh and sprites.sh: installs the carried wheels offline into /tmp/sgi2v-site when diffusers
# is missing (the GPU machine has no registry), and puts them and src/ on PYTHONPATH. Expects PYTHON set
# and the repository root as the current folder.
if ! "$PYTHON" -c "import diffusers" 2>/dev/null; then
    if ! ls benchmarks/gpu/wheels/*.whl >/dev/null 2>&1; then
        echo "$0: diffusers is not installed and benchmarks/gpu/wheels is empty: run benchmarks/gpu/fetch_wheels.sh first" >&2
        exit 2
    fi
    if [ ! -d /tmp/sgi2v-site/diffusers ]; then
        "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/sgi2v-site \
            benchmarks/gpu/wheels/*.whl
    fi
    export PYTHONPATH=/tmp/sgi2v-site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1
