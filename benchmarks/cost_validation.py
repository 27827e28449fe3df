"""Predicted vs measured peak memory of the full-size SVD architecture, phase by phase, on the CPU.

Builds SVD's UNet, VAE and CLIP encoder from the bundled configs with random weights (float32, about
9 GB), runs a short real SG-I2V call at each size (2 denoising steps, one optimised with one
iteration: every phase once) under the live-bytes tracker, and compares each phase's measured peak
(weights included) with what ``sgi2v estimate`` predicts for the same settings without any weights.

    python benchmarks/cost_validation.py --sizes 64x64 64x128 128x128 --json benchmarks/results/cost-validation-cpu.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time

import numpy as np
import torch


def full_size_pipeline(num_frames: int):
    from diffusers import AutoencoderKLTemporalDecoder, UNetSpatioTemporalConditionModel
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from sgi2v import SGI2VPipeline
    from sgi2v.configs import svd_config
    from sgi2v.testing import CLIPImageProcessor, svd_scheduler

    torch.manual_seed(0)
    strip = lambda c: {k: v for k, v in c.items() if not k.startswith("_")}  # noqa: E731
    unet = UNetSpatioTemporalConditionModel.from_config(strip(svd_config("unet", num_frames)))
    vae = AutoencoderKLTemporalDecoder.from_config(strip(svd_config("vae")))
    encoder = {k: v for k, v in svd_config("image_encoder").items() if k not in ("architectures", "model_type")}
    image_encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(**encoder))
    pipe = SGI2VPipeline(unet=unet.eval(), vae=vae.eval(), image_encoder=image_encoder.eval(), scheduler=svd_scheduler(),
                         feature_extractor=CLIPImageProcessor(crop_size=224, size={"shortest_edge": 224}))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def main() -> int:
    from sgi2v import SGI2VConfig
    from sgi2v.cost.graph import PHASES, example_boxes
    from sgi2v.cost.measure import measure_call
    from sgi2v.cost.plan import estimate

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["64x64", "64x128", "128x128"], help="HxW")
    parser.add_argument("--frames", type=int, default=14)
    parser.add_argument("--json")
    args = parser.parse_args()
    model = "stabilityai/stable-video-diffusion-img2vid"
    t0 = time.perf_counter()
    pipe = full_size_pipeline(args.frames)
    build_s = time.perf_counter() - t0
    config = SGI2VConfig(optimize_timesteps=(2,), iterations=1)
    rows = []
    for size in args.sizes:
        height, width = (int(v) for v in size.split("x"))
        from PIL import Image

        image = Image.fromarray((np.random.RandomState(0).rand(height, width, 3) * 255).astype(np.uint8))
        t = time.perf_counter()
        measured = measure_call(pipe, "cpu", image=image, boxes=example_boxes(args.frames, height, width),
                                config=config, height=height, width=width, num_frames=args.frames, num_inference_steps=2,
                                generator=torch.Generator().manual_seed(0), output_type="np", gradient_checkpointing=False)
        run_s = time.perf_counter() - t
        t = time.perf_counter()
        plan = estimate(model, device="cpu", dtype=torch.float32, height=height, width=width, num_frames=args.frames,
                        num_inference_steps=2, config=config)
        estimate_s = time.perf_counter() - t
        predicted = plan["modes"]["none"]
        row = {"height": height, "width": width, "frames": args.frames, "run_s": round(run_s, 1), "estimate_s": round(estimate_s, 1),
               "measured_peak_bytes": measured["peak_bytes"], "predicted_peak_bytes": predicted["peak_bytes"],
               "ratio": round(predicted["peak_bytes"] / measured["peak_bytes"], 4), "phases": {}}
        for phase in PHASES:
            m, p = measured["phases"][phase], predicted["phases"][phase]["peak_bytes"]
            weights = plan["weights_bytes"]["total"]
            row["phases"][phase] = {"measured_bytes": m, "predicted_bytes": p, "ratio": round(p / m, 4),
                                    "measured_activation_bytes": m - weights, "predicted_activation_bytes": p - weights,
                                    "activation_ratio": round((p - weights) / (m - weights), 4)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    result = {"machine": {"platform": platform.platform(), "processor": platform.processor(), "python": sys.version.split()[0],
                          "torch": torch.__version__, "threads": torch.get_num_threads()},
              "date": time.strftime("%Y-%m-%d"), "model": "SVD img2vid architecture, random weights, float32, CPU",
              "build_s": round(build_s, 1), "rows": rows}
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=1)
    worst = max(abs(r["phases"][p]["ratio"] - 1) for r in rows for p in PHASES)
    worst_act = max(abs(r["phases"][p]["activation_ratio"] - 1) for r in rows for p in PHASES)
    print(f"largest per-phase error: {100 * worst:.1f} % of the peak, {100 * worst_act:.1f} % of the tensors beside the weights")
    return 0


if __name__ == "__main__":
    sys.exit(main())
