"""Time and memory of one generation, split into phases, for SG-I2V and for plain SVD on the same inputs.

Modes:
  tiny-cpu   the tiny random test model (sgi2v.testing) on the CPU
  full-cpu   the full-size SVD architecture (diffusers' default UNetSpatioTemporalConditionModel config,
             SVD's VAE and CLIP ViT-H/14 image encoder) with random weights, at low resolution, on the CPU
  gpu        the full-size architecture at 576x1024 on CUDA in fp16 (random weights unless --model names
             real ones: speed and memory do not depend on the weight values)

Each variant (plain SVD, SG-I2V) runs in its own process, so peak memory (CUDA max allocated on GPU,
process peak RSS on CPU) belongs to that variant alone. Prints a table and writes JSON.

  python benchmarks/benchmark.py --mode tiny-cpu --json benchmarks/results/tiny-cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

MODES = {
    "tiny-cpu": dict(height=128, width=256, frames=14, steps=50, device="cpu", dtype="fp32"),
    "full-cpu": dict(height=64, width=128, frames=14, steps=50, device="cpu", dtype="fp32"),
    "gpu": dict(height=576, width=1024, frames=14, steps=50, device="cuda", dtype="fp16"),
}


def full_size_components(num_frames: int, seed: int = 0) -> dict:
    """SVD's architecture with random weights (configs as published with the model)."""
    import torch
    from diffusers import AutoencoderKLTemporalDecoder, UNetSpatioTemporalConditionModel
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from sgi2v.testing import CLIPImageProcessor, svd_scheduler

    torch.manual_seed(seed)
    unet = UNetSpatioTemporalConditionModel(num_frames=num_frames)  # defaults are SVD's
    vae = AutoencoderKLTemporalDecoder(
        block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
        layers_per_block=2, latent_channels=4, sample_size=768, scaling_factor=0.18215,
    )
    image_encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=1280, intermediate_size=5120, num_attention_heads=16, num_hidden_layers=32,
        patch_size=14, image_size=224, projection_dim=1024, hidden_act="gelu",
    ))
    for m in (unet, vae, image_encoder):
        m.eval()
    return dict(unet=unet, vae=vae, image_encoder=image_encoder, scheduler=svd_scheduler(),
                feature_extractor=CLIPImageProcessor(crop_size=224, size={"shortest_edge": 224}))


def _sync(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def worker(args) -> dict:
    """Run one variant in this process and return its figures."""
    import numpy as np
    import torch
    from PIL import Image

    import sgi2v.pipeline as pipeline_module
    from diffusers import StableVideoDiffusionPipeline

    from sgi2v import SGI2VConfig, SGI2VPipeline
    from sgi2v.loading import resolve_device, resolve_dtype

    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    t0 = time.perf_counter()
    # "plain" is diffusers' own StableVideoDiffusionPipeline on the same components and inputs.
    cls = StableVideoDiffusionPipeline if args.variant == "plain" else SGI2VPipeline
    if args.mode == "tiny-cpu" and not args.model:
        from sgi2v.testing import tiny_components

        pipe = cls(**tiny_components(num_frames=args.frames))
    elif args.model:
        pipe = cls.from_pretrained(args.model, torch_dtype=dtype)
    else:
        pipe = cls(**full_size_components(args.frames))
    pipe.to(device=device, dtype=dtype) if dtype != torch.float32 else pipe.to(device)
    if args.offload and device.type == "cuda":
        pipe.enable_model_cpu_offload(device=device)
    pipe.set_progress_bar_config(disable=True)
    load_s = time.perf_counter() - t0

    phases = {"encode": 0.0, "optimize": 0.0, "decode": 0.0}

    def timed(name, fn):
        def wrapper(*a, **k):
            _sync(device)
            start = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                _sync(device)
                phases[name] += time.perf_counter() - start
        return wrapper

    # Benchmark-only instrumentation of this process's pipeline instance.
    pipe._encode_image = timed("encode", pipe._encode_image)
    pipe._encode_vae_image = timed("encode", pipe._encode_vae_image)
    pipe.decode_latents = timed("decode", pipe.decode_latents)
    pipeline_module.optimize_latents = timed("optimize", pipeline_module.optimize_latents)

    rng = np.random.RandomState(0)
    image = Image.fromarray((rng.rand(args.height, args.width, 3) * 255).astype(np.uint8))
    f = np.arange(args.frames)[:, None]
    h, w = args.height, args.width
    boxes = np.stack([
        np.concatenate([w * 0.1 + w * 0.3 * f / (args.frames - 1), np.full_like(f, h * 0.2, dtype=float),
                        w * 0.35 + w * 0.3 * f / (args.frames - 1), np.full_like(f, h * 0.6, dtype=float)], axis=1),
        np.tile([w * 0.7, h * 0.5, w * 0.9, h * 0.9], (args.frames, 1)),
    ])
    config = SGI2VConfig().scaled_to_steps(args.steps)
    kwargs = dict(height=h, width=w, num_frames=args.frames, num_inference_steps=args.steps, output_type="np",
                  decode_chunk_size=args.decode_chunk_size)

    def generate(steps, timesteps=None):
        generator = torch.Generator("cpu").manual_seed(0)
        if args.variant == "plain":
            return pipe(image, generator=generator, **{**kwargs, "num_inference_steps": steps})
        cfg = config.replace(optimize_timesteps=timesteps) if timesteps else config
        return pipe(image, boxes, config=cfg, generator=generator, gradient_checkpointing=args.gradient_checkpointing,
                    **{**kwargs, "num_inference_steps": steps})

    if args.warmup:
        generate(2, (2,))
        phases.update(encode=0.0, optimize=0.0, decode=0.0)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    _sync(device)
    start = time.perf_counter()
    out = generate(args.steps)
    _sync(device)
    total = time.perf_counter() - start
    iterations = sum(len(v) for v in getattr(out, "losses", {}).values())
    result = {
        "variant": args.variant,
        "total_s": total,
        "phases_s": {"encode": phases["encode"], "denoise": total - sum(phases.values()), "optimize": phases["optimize"],
                     "decode": phases["decode"]},
        "optimization_iterations": iterations,
        "s_per_iteration": phases["optimize"] / iterations if iterations else None,
        "s_per_denoising_step": (total - sum(phases.values())) / args.steps,
        "load_s": load_s,
        "frames_finite": bool(np.isfinite(out.frames).all()),
    }
    if device.type == "cuda":
        result["peak_gpu_memory_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
    result["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return result


def machine_info(device: str) -> dict:
    import diffusers
    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__, "diffusers": diffusers.__version__,
            "platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=sorted(MODES), default="tiny-cpu")
    parser.add_argument("--height", type=int)
    parser.add_argument("--width", type=int)
    parser.add_argument("--frames", type=int)
    parser.add_argument("--steps", type=int)
    parser.add_argument("--device")
    parser.add_argument("--dtype")
    parser.add_argument("--model", help="load real weights from this hub id or folder instead of random ones")
    parser.add_argument("--offload", action="store_true", help="model CPU offload (GPU only)")
    parser.add_argument("--gradient-checkpointing", default=None, action="store_true",
                        help="force checkpointing on (default: the pipeline decides from free memory)")
    parser.add_argument("--decode-chunk-size", type=int, default=8)
    parser.add_argument("--variants", default="plain,sgi2v")
    parser.add_argument("--no-warmup", dest="warmup", action="store_false")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--variant", help=argparse.SUPPRESS)  # internal: run one variant in this process
    args = parser.parse_args()
    for key, value in MODES[args.mode].items():
        if getattr(args, key) is None:
            setattr(args, key, value)

    if args.variant:
        print(json.dumps(worker(args)))
        return 0

    results = {"mode": args.mode, "date": time.strftime("%Y-%m-%d"), "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
               "settings": {k: getattr(args, k) for k in ("height", "width", "frames", "steps", "device", "dtype", "model",
                                                          "offload", "gradient_checkpointing", "decode_chunk_size")},
               "machine": machine_info(args.device), "variants": {}}
    for variant in args.variants.split(","):
        cmd = [sys.executable, *sys.argv, "--variant", variant]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            print(proc.stderr[-3000:], file=sys.stderr)
            return proc.returncode
        results["variants"][variant] = json.loads(proc.stdout.strip().splitlines()[-1])
    if {"plain", "sgi2v"} <= set(results["variants"]):
        results["cost_ratio_sgi2v_over_plain"] = results["variants"]["sgi2v"]["total_s"] / results["variants"]["plain"]["total_s"]

    print(f"{args.mode}: {args.width}x{args.height}, {args.frames} frames, {args.steps} steps, {args.device} {args.dtype}")
    print(f"{'variant':8} {'total s':>9} {'encode':>8} {'denoise':>9} {'optimize':>9} {'decode':>8} {'it s':>7} {'peak GB':>8}")
    for name, r in results["variants"].items():
        p = r["phases_s"]
        peak = r.get("peak_gpu_memory_gb", r["peak_rss_gb"])
        it = f"{r['s_per_iteration']:.3f}" if r["s_per_iteration"] else "-"
        print(f"{name:8} {r['total_s']:9.2f} {p['encode']:8.2f} {p['denoise']:9.2f} {p['optimize']:9.2f} {p['decode']:8.2f} {it:>7} {peak:8.2f}")
    if "cost_ratio_sgi2v_over_plain" in results:
        print(f"SG-I2V / plain SVD: {results['cost_ratio_sgi2v_over_plain']:.2f}x")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
