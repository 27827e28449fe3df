"""How close `sgi2v estimate --measure` comes to the time of the whole run it predicts.

For each case, in separate processes as a user would run them:
  1. `sgi2v estimate ... --measure --json`: the predicted seconds of plain SVD and of SG-I2V;
  2. the whole generation, plain SVD (iterations 0) and SG-I2V at the paper's settings, each the first
     generation of a fresh process with random weights of the same architecture, timed from the pipeline
     call to its frames (loading not included, as in the prediction), --repeats times; the ratio is the
     prediction over the median.

Cases (the device is the CPU unless --device says otherwise):
  tiny      sgi2v.testing's tiny model, 128x256, 14 frames, 50 steps
  sprites   the shipped sprites model's architecture, 128x128, 14 frames, 50 steps
  full      SVD's architecture at 64x128, 14 frames, 8 steps with 2 optimised (3 passes each): the full-size
            networks on a schedule short enough for a CPU (9 minutes with 3 repeats on two cores)

  python benchmarks/time_estimate.py --cases tiny sprites --repeats 3 --json benchmarks/results/time-estimate-cpu.json

Run it on a quiet machine.
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

CASES = {
    "tiny": dict(model="tiny-random", height=128, width=256, steps=50, timesteps=None, iterations=None),
    "sprites": dict(model="sprites", height=128, width=128, steps=50, timesteps=None, iterations=None),
    "full": dict(model="stabilityai/stable-video-diffusion-img2vid", height=64, width=128, steps=8, timesteps=(8, 7),
                 iterations=3),
}


def _config(case: dict):
    from sgi2v import SGI2VConfig

    config = SGI2VConfig().scaled_to_steps(case["steps"])
    if case["timesteps"]:
        config = config.replace(optimize_timesteps=case["timesteps"], iterations=case["iterations"])
    return config


def worker(name: str, variant: str, device: str, dtype: str) -> dict:
    """One whole generation, the first of this process: seconds from the call to the frames."""
    import numpy as np
    import torch
    from PIL import Image

    from sgi2v.cost.graph import architecture, example_boxes, random_pipeline
    from sgi2v.loading import resolve_device, resolve_dtype

    case = CASES[name]
    device_ = resolve_device(device)
    dtype_ = resolve_dtype(dtype, device_)
    arch = architecture(case["model"])
    frames = arch.num_frames
    pipe = random_pipeline(arch, dtype_, str(device_))
    pipe.set_progress_bar_config(disable=True)
    config = _config(case)
    if variant == "plain":
        config = config.replace(iterations=0)
    h, w = case["height"], case["width"]
    image = Image.fromarray((np.random.RandomState(0).rand(h, w, 3) * 255).astype(np.uint8))
    sync = torch.cuda.synchronize if device_.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    out = pipe(image, example_boxes(frames, h, w), config=config, height=h, width=w, num_frames=frames,
               num_inference_steps=case["steps"], output_type="np", generator=torch.Generator("cpu").manual_seed(0))
    sync()
    return {"wall_s": time.perf_counter() - start, "finite": bool(np.isfinite(out.frames).all())}


def predict(name: str, device: str, dtype: str) -> dict:
    """`sgi2v estimate --measure` for the case, as a user runs it."""
    case = CASES[name]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "plan.json")
        command = [sys.executable, "-m", "sgi2v", "estimate", "--model", case["model"], "--device", device, "--dtype", dtype,
                   "--height", str(case["height"]), "--width", str(case["width"]), "--steps", str(case["steps"]),
                   "--measure", "--json", path]
        if case["timesteps"]:
            command += ["--optimize-timesteps", ",".join(map(str, case["timesteps"])), "--iterations", str(case["iterations"])]
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - start
        plan = json.loads(open(path).read())
    return {"command": " ".join(command[2:-2]), "process_s": wall, "optimize_passes": plan["optimize_passes"], **plan["measured"]}


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="*", default=["tiny", "sprites"], choices=sorted(CASES))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--repeats", type=int, default=3, help="whole runs of each kind (default 3)")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--worker", nargs=2, metavar=("CASE", "VARIANT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker, args.device, args.dtype)))
        return 0
    import torch

    results = {"date": time.strftime("%Y-%m-%d %H:%M"), "device": args.device,
               "machine": {"platform": platform.platform(), "processor": _cpu_name(),
                           "cpu_count": os.cpu_count(), "torch": torch.__version__, "torch_threads": torch.get_num_threads()},
               "cases": {}}
    import statistics

    print(f"{'case':<8} {'run':<6} {'predicted s':>11} {'measured s, median (range)':>28} {'ratio':>6}")
    for name in args.cases:
        prediction = predict(name, args.device, args.dtype)
        entry = {"settings": CASES[name], "prediction": prediction, "measured": {}, "ratio": {}}
        for variant in ("plain", "sgi2v"):
            walls = []
            for _ in range(args.repeats):
                out = subprocess.run([sys.executable, __file__, "--device", args.device, "--dtype", args.dtype, "--worker",
                                      name, variant], check=True, capture_output=True, text=True)
                measured = json.loads(out.stdout.strip().splitlines()[-1])
                if not measured["finite"]:
                    raise SystemExit(f"time_estimate: {name} {variant}: the frames are not finite")
                walls.append(measured["wall_s"])
            median = statistics.median(walls)
            entry["measured"][variant] = {"wall_s": walls, "median_s": median}
            entry["ratio"][variant] = prediction["run_s"][variant] / median
            spread = f"{median:.1f} ({min(walls):.1f}-{max(walls):.1f})"
            print(f"{name:<8} {variant:<6} {prediction['run_s'][variant]:>11.1f} {spread:>28} {entry['ratio'][variant]:>6.2f}",
                  flush=True)
        entry["measure_s"] = prediction["measure_s"]
        results["cases"][name] = entry
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
