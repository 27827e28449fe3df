"""The compute floor and memory of SVD and SG-I2V at 576x1024, from ``sgi2v estimate`` (no weights, no GPU).

For 14 frames (img2vid) and 25 frames (img2vid-xt), float16 on CUDA, 50 steps and the paper's 80 optimisation
passes: FLOPs per phase and per run, the time those FLOPs take at each GPU's dense half-precision peak (a floor:
no real run is faster), the predicted peak memory of every mode, and which consumer GPUs each mode fits.

    python benchmarks/cost_floor.py --json benchmarks/results/cost-floor.json --markdown benchmarks/results/cost-floor.md
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

#: Dense half-precision tensor throughput, TFLOP/s: the H100/H200 figure as measured on an H200 (bf16, 8192^3
#: matrix products); the A100 SXM's and RTX 4090's as published (A100: 312 fp16/bf16; RTX 4090: 165.2 fp16
#: with fp32 accumulation, Ada whitepaper).
PEAKS = {"H100/H200 (790, measured)": 790.0, "A100 (312)": 312.0, "RTX 4090 (165)": 165.2}
CONSUMER_GB = (8, 12, 16, 24)
MODELS = {14: "stabilityai/stable-video-diffusion-img2vid", 25: "stabilityai/stable-video-diffusion-img2vid-xt"}


def main() -> int:
    from sgi2v.cost.graph import PHASES
    from sgi2v.cost.plan import MODES, estimate, fits

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json")
    parser.add_argument("--markdown")
    args = parser.parse_args()
    plans = {}
    for frames, model in MODELS.items():
        t = time.perf_counter()
        plans[frames] = estimate(model, device="cuda", dtype=torch.float16, height=576, width=1024, num_frames=frames)
        print(f"{frames} frames: estimated in {time.perf_counter() - t:.1f} s", file=sys.stderr)

    lines = ["| frames | phase | TFLOP per call | calls (plain / SG-I2V) |", "| --- | --- | --- | --- |"]
    for frames, plan in plans.items():
        phases = plan["modes"]["none"]["phases"]
        calls = {"encode": (1, 1), "denoise_step": (50, 50), "optimize_pass": (0, plan["optimize_passes"]), "decode": (1, 1)}
        for phase in PHASES:
            lines.append(f"| {frames} | {phase} | {phases[phase]['flops'] / 1e12:.2f} | {calls[phase][0]} / {calls[phase][1]} |")
    lines += ["", "| frames | run | TFLOP | " + " | ".join(f"floor s, {name}" for name in PEAKS) + " |",
              "| --- | --- | --- | " + " | ".join("---" for _ in PEAKS) + " |"]
    for frames, plan in plans.items():
        for run, key, mode in (("plain SVD", "plain", "none"), ("SG-I2V", "sgi2v", "none"),
                               ("SG-I2V, checkpointing", "sgi2v", "checkpointing")):
            flops = plan["modes"][mode]["flops"][key]
            floors = " | ".join(f"{flops / 1e12 / peak:.1f}" for peak in PEAKS.values())
            lines.append(f"| {frames} | {run} | {flops / 1e12:.0f} | {floors} |")
    lines += ["", "| frames | mode | predicted peak GiB | encode | denoise step | optimisation pass | decode | "
              + " | ".join(f"{gb} GB" for gb in CONSUMER_GB) + " |",
              "| --- | --- | --- | --- | --- | --- | --- | " + " | ".join("---" for _ in CONSUMER_GB) + " |"]
    for frames, plan in plans.items():
        for mode in MODES:
            m = plan["modes"][mode]
            cells = " | ".join(f"{m['phases'][p]['peak_bytes'] / 2**30:.2f}" for p in PHASES)
            fit = " | ".join("fits" if fits(m["peak_bytes"], gb * 2**30, "cuda") else "–" for gb in CONSUMER_GB)
            lines.append(f"| {frames} | {mode} | {m['peak_bytes'] / 2**30:.2f} | {cells} | {fit} |")
    table = "\n".join(lines) + "\n"
    print(table)
    if args.markdown:
        with open(args.markdown, "w") as fh:
            fh.write(table)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"date": time.strftime("%Y-%m-%d"), "peaks_tflops": PEAKS, "plans": plans}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
