"""Activation memory of one SG-I2V optimisation pass (forward to the feature layers + backward to the latent)
of the full-size SVD UNet with random weights, on the CPU in float32, with and without checkpointing.

Measured as growth of the process's peak RSS over a plain no-grad forward of the same size; each
configuration should run in a fresh process:

  python benchmarks/memory.py --height 128 --width 256 --frames 14 [--checkpointing]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchmark import full_size_components  # noqa: E402

from sgi2v import SGI2VConfig, SGI2VPipeline  # noqa: E402
from sgi2v.attention import FeatureRecorder, record_features  # noqa: E402
from sgi2v.boxes import latent_boxes  # noqa: E402
from sgi2v.loss import BoxLoss  # noqa: E402
from sgi2v.memory import checkpoint_sub_blocks  # noqa: E402
from sgi2v.pipeline import _frozen_parameters  # noqa: E402


def rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--frames", type=int, default=14)
    parser.add_argument("--checkpointing", action="store_true")
    parser.add_argument("--json", help="append the result to this JSON-lines file")
    args = parser.parse_args()
    torch.manual_seed(0)
    pipe = SGI2VPipeline(**full_size_components(args.frames))
    unet = pipe.unet
    pipe.scheduler.set_timesteps(50)
    t = pipe.scheduler.timesteps[10]
    h, w, frames = args.height // 8, args.width // 8, args.frames
    latent = torch.randn(1, frames, 4, h, w) * 10
    cond = torch.randn(1, frames, 4, h, w)
    embedding, time_ids = torch.randn(1, 1, 1024), torch.tensor([[6.0, 127.0, 0.02]])
    f = np.arange(frames)[:, None] / (frames - 1)
    W, H = args.width, args.height
    boxes = np.concatenate([W * (0.1 + 0.3 * f), np.full_like(f, H * 0.2), W * (0.4 + 0.3 * f), np.full_like(f, H * 0.6)], axis=1)[None]
    loss_fn = BoxLoss(latent_boxes(boxes, 8), (h, w), 0.4)
    recorder = FeatureRecorder(SGI2VConfig().feature_layers, frames, (h, w))
    with torch.no_grad():
        unet(torch.cat([latent, cond], 2), t, encoder_hidden_states=embedding, added_time_ids=time_ids)
    base = rss_gb()
    checkpointing = checkpoint_sub_blocks(unet) if args.checkpointing else contextlib.nullcontext()
    with record_features(unet, recorder), _frozen_parameters(unet), checkpointing:
        features = pipe._features_fn(recorder, t, cond, embedding, time_ids, None)
        z = latent.clone().requires_grad_(True)
        start = time.perf_counter()
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(loss_fn(features(z)), [z])
        seconds = time.perf_counter() - start
    result = {"height": H, "width": W, "frames": frames, "checkpointing": args.checkpointing,
              "baseline_rss_gb": round(base, 3), "extra_gb": round(rss_gb() - base, 3), "seconds": round(seconds, 2),
              "bytes_per_cell_frame": (rss_gb() - base) * 2**30 / (frames * h * w)}
    print(json.dumps(result))
    if args.json:
        with open(args.json, "a") as fh:
            fh.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
