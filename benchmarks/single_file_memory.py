"""Peak CPU memory of loading a full-size single-file SVD checkpoint, against the size of its weights.

Writes a checkpoint with SVD img2vid's exact tensor names and shapes (Stability's layout, as ComfyUI's model
classes give them: ``tests/data/comfyui/svd_keys.json``, the CLIP encoder in OpenCLIP's layout, plus the unused
tensors Stability's files carry) in float16, with constant values (memory does not depend on them), then loads
it in a fresh process with ``sgi2v.single_file.load_components`` in float16 and in float32, sampling the
process's memory every 20 ms:

- ``anon``: the process's own memory (RssAnon: tensors, Python), what loading costs the machine;
- ``rss``: all resident pages, the memory-mapped file's included (page cache the kernel can drop).

    python benchmarks/single_file_memory.py               # about 4.3 GB of disk in a temporary folder
    python benchmarks/single_file_memory.py --keep FILE   # write (or reuse) the checkpoint at FILE
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

_MEASURE = r"""
import json, sys, threading, time
import torch
peaks = {"anon": 0, "rss": 0}
def status():
    out = {}
    for line in open("/proc/self/status"):
        if line.startswith(("RssAnon:", "VmRSS:")):
            out["anon" if line.startswith("RssAnon") else "rss"] = int(line.split()[1]) * 1024
    return out
def sample(stop):
    while not stop.is_set():
        for k, v in status().items():
            peaks[k] = max(peaks[k], v)
        time.sleep(0.02)
from sgi2v.single_file import load_components
base = status()
stop = threading.Event(); thread = threading.Thread(target=sample, args=(stop,)); thread.start()
start = time.perf_counter()
parts = load_components(sys.argv[1], dtype=getattr(torch, sys.argv[2]))
seconds = time.perf_counter() - start
stop.set(); thread.join()
weights = sum(p.numel() * p.element_size() for name in ("unet", "vae", "image_encoder") for p in parts[name].state_dict().values())
print(json.dumps({"seconds": round(seconds, 1), "weights_bytes": weights, "baseline": base, "peak": peaks}))
"""


def write_checkpoint(path: Path) -> int:
    import torch
    from safetensors.torch import save_file

    keys = json.loads((ROOT / "tests" / "data" / "comfyui" / "svd_keys.json").read_text())
    shapes = {**keys["unet"], **keys["vae"], **keys["clip_openclip"]}
    shapes.update({"conditioner.embedders.0.open_clip.model.logit_scale": [],
                   "conditioner.embedders.0.open_clip.model.positional_embedding": [77, 1024]})
    tensors = {k: torch.full(v, 0.01, dtype=torch.float16) for k, v in shapes.items()}
    save_file(tensors, str(path))
    return len(tensors)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", type=Path, help="write the checkpoint here (reused when it exists)")
    parser.add_argument("-o", "--output", type=Path, default=HERE / "results" / "single-file-memory.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.keep or Path(tmp) / "svd_full_size.safetensors"
        if not path.exists():
            started = time.perf_counter()
            count = write_checkpoint(path)
            print(f"wrote {path}: {count} tensors, {path.stat().st_size / 2**30:.2f} GiB in {time.perf_counter() - started:.0f} s")
        file_bytes = path.stat().st_size
        runs = {}
        for dtype in ("float16", "float32"):
            out = subprocess.run([sys.executable, "-c", _MEASURE, str(path), dtype], capture_output=True, text=True,
                                 check=True, env=dict(os.environ, HF_HUB_OFFLINE="1"))
            run = json.loads(out.stdout.strip().splitlines()[-1])
            added = run["peak"]["anon"] - run["baseline"]["anon"]
            run["anon_added_bytes"] = added
            run["anon_added_over_weights"] = round(added / run["weights_bytes"], 3)
            runs[dtype] = run
            print(f"{dtype}: weights {run['weights_bytes'] / 2**30:.2f} GiB; process memory added at peak (RssAnon) "
                  f"{added / 2**30:.2f} GiB = {run['anon_added_over_weights']:.2f} x the weights; peak RSS with the mapped "
                  f"file {run['peak']['rss'] / 2**30:.2f} GiB; {run['seconds']} s")
    result = {"file_bytes": file_bytes, "runs": runs, "machine": f"{platform.machine()}, {os.cpu_count()} cores",
              "python": platform.python_version(), "date": time.strftime("%Y-%m-%d")}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
