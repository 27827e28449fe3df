"""torch.compile of the UNet (``--compile``) against eager, on this machine: compile time, run time and the
largest difference of the frames.

    python benchmarks/compile.py --model sprites --json benchmarks/results/compile-cpu.json

Runs the same generation three times: eager, compiled (first call, which compiles), compiled again.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time

import numpy as np
import torch


def main() -> int:
    from sgi2v import SGI2VConfig
    from sgi2v.loading import load_pipeline, resolve_device
    from sgi2v.sprites.control import make_case

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="sprites")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--backend", default="inductor")
    parser.add_argument("--json")
    args = parser.parse_args()
    device = resolve_device(args.device)
    case = make_case(0, "straight", 1)
    from PIL import Image

    image = Image.fromarray(case.scene.frames[0])
    config = SGI2VConfig().scaled_to_steps(args.steps)

    def run(pipe):
        start = time.perf_counter()
        out = pipe(image, case.boxes, config=config, height=128, width=128, num_frames=14, num_inference_steps=args.steps,
                   generator=torch.Generator().manual_seed(0), output_type="np")
        return out.frames, time.perf_counter() - start

    eager_pipe = load_pipeline(args.model, device=device)
    eager_pipe.set_progress_bar_config(disable=True)
    eager, eager_s = run(eager_pipe)
    pipe = load_pipeline(args.model, device=device)
    pipe.set_progress_bar_config(disable=True)
    pipe.compile_unet(backend=args.backend)
    first, first_s = run(pipe)
    second, second_s = run(pipe)
    result = {"date": time.strftime("%Y-%m-%d"), "machine": platform.platform(), "processor": platform.processor(),
              "torch": torch.__version__, "threads": torch.get_num_threads(), "model": args.model, "device": str(device),
              "backend": args.backend, "steps": args.steps, "size": "128x128, 14 frames",
              "eager_s": round(eager_s, 2), "compiled_first_s": round(first_s, 2), "compiled_s": round(second_s, 2),
              "compile_overhead_s": round(first_s - second_s, 2), "speedup": round(eager_s / second_s, 3),
              "max_abs_diff_first": float(np.abs(first - eager).max()), "max_abs_diff": float(np.abs(second - eager).max())}
    print(json.dumps(result, indent=1))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
