"""At which noise levels do a model's SG-I2V features know where a sprite is?

SG-I2V moves content by optimising the noisy latent so that the features inside each box match the
first frame's. That only works at noise levels where the features depend on where the content is in the
noisy latent; at higher noise the UNet can only repeat the first frame (which it gets, barely noised, as its
condition), and the gradient has nothing to pull on.

This measures it on real motion. Held-out scenes of the world (seeds never used in training) are encoded
clean with the model's VAE, noised to each sigma of the 50-step schedule with a fixed draw, and passed once
through the UNet's conditional branch; the features are the pipeline's (the configured kind and layers,
upsampled to the latent grid, exactly as the optimisation records them). For every moving sprite and every
frame after the first, frame 0's features of its box are slid over the whole grid (the loss of
:class:`sgi2v.loss.BoxLoss`, Gaussian-weighted, at each position of a box of the same size) and the best
match is taken as where the features put the sprite:

- ``error_px``: distance from the best match's centre to the sprite's true centre (8 px per cell; about
  2 px is the grid's own rounding);
- ``stay_px``: the same for a sprite that had not moved (its displacement from frame 0), for scale;
- ``located``: share of frames whose best match is within one cell (8 px) of the truth;
- ``contrast``: over the frames where the sprite is a cell or more from where it started, (loss at the
  starting place - loss at the true place) / loss at the starting place, summed over those frames. 0 when
  the features are blind to the motion, negative when they still put the sprite where the condition
  image has it, towards 1 when they see the motion plainly.

By sprite size band. Prints a table per model and writes JSON; no timings are compared.

    python benchmarks/sprites_feature_visibility.py --models sprites --json benchmarks/results/sprites-feature-visibility/shipped.json
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

BANDS = ((16, 24), (24, 32), (32, 41), (41, 65))


def moving_sprites(scene, min_move: float) -> list[int]:
    """Sprites wholly in the picture and at least 90 % visible in every frame, that end ``min_move`` px away."""
    from sgi2v.sprites.scene import sprite_area

    h, w = scene.frames.shape[1:3]
    keep = []
    for n in range(len(scene.colors)):
        boxes = scene.boxes[n]
        if (boxes[:, 0] < 0).any() or (boxes[:, 1] < 0).any() or (boxes[:, 2] > w).any() or (boxes[:, 3] > h).any():
            continue
        area = sprite_area(scene.shapes[n], float(scene.sizes[n]))
        if (scene.visible[n].reshape(len(boxes), -1).sum(1) < 0.9 * area).any():
            continue
        if np.linalg.norm(scene.centers[n, -1] - scene.centers[n, 0]) >= min_move:
            keep.append(n)
    return keep


def slide(features: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Weighted mean-square error of ``target`` (hb, wb, C) at every position of a (H, W, C) map: (H-hb+1, W-wb+1)."""
    hb, wb, channels = target.shape
    fmap = features.permute(2, 0, 1)[None]  # (1, C, H, W)
    patches = F.unfold(fmap, (hb, wb))  # (1, C*hb*wb, P)
    patches = patches.view(channels, hb * wb, -1)  # (C, cells, P)
    t = target.permute(2, 0, 1).reshape(channels, hb * wb, 1)
    error = (patches - t).square().mean(0)  # (cells, P)
    loss = (weight.reshape(-1, 1) * error).sum(0) / weight.sum()
    return loss.view(features.shape[0] - hb + 1, features.shape[1] - wb + 1)


@torch.no_grad()
def measure_model(model: str, seeds: list[int], sprite_sizes, steps: list[int], min_move: float, num_steps: int) -> dict:
    from sgi2v.attention import FeatureRecorder, record_features
    from sgi2v.boxes import latent_boxes
    from sgi2v.config import SGI2VConfig
    from sgi2v.loading import load_pipeline
    from sgi2v.loss import gaussian_heatmap
    from sgi2v.sprites.config import ADDED_TIME_IDS, TrainConfig
    from sgi2v.sprites.scene import render_scene
    from sgi2v.sprites.train import encode_dataset

    pipe = load_pipeline(model, device="cpu", dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    config = SGI2VConfig()
    scheduler = pipe.scheduler
    scheduler.set_timesteps(num_steps)
    scaling = pipe.vae.config.scaling_factor
    scale = pipe.vae_scale_factor
    fps, bucket, aug = ADDED_TIME_IDS
    time_ids = torch.tensor([[fps, bucket, aug]])
    rows = {t: [] for t in steps}
    for seed in seeds:
        scene = render_scene(seed, sprite_sizes=sprite_sizes)
        sprites = moving_sprites(scene, min_move)
        if not sprites:
            continue
        num_frames, height, width = scene.frames.shape[:3]
        data = encode_dataset(pipe, scene.frames[None], TrainConfig(height=height, width=width, num_frames=num_frames,
                                                                     videos=1, seed=seed), "cpu")
        x0 = data["latents"] * scaling  # (1, F, 4, h, w)
        cond = data["cond"][:, 0:1].expand(-1, num_frames, -1, -1, -1)  # frame 0's noise-augmented latent, unscaled
        clip = data["clip"][:, 0]  # (1, 1, D)
        grid = tuple(x0.shape[-2:])
        noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed))
        cells = latent_boxes(scene.boxes, scale)
        recorder = FeatureRecorder(config.feature_layers, num_frames, grid, config.feature_kind)
        for t in steps:
            i = num_steps - t  # the paper's t counts down from num_steps
            sigma = float(scheduler.sigmas[i])
            model_input = torch.cat([(x0 + sigma * noise) / math.sqrt(sigma**2 + 1), cond], dim=2)
            with record_features(pipe.unet, recorder):
                phi = recorder.capture(lambda: pipe.unet(model_input, scheduler.timesteps[i], encoder_hidden_states=clip,
                                                         added_time_ids=time_ids, return_dict=False))  # (F, h, w, C)
            for n in sprites:
                r0, c0, r1, c1 = (int(v) for v in cells[n, 0])
                target = phi[0, r0:r1, c0:c1]
                weight = gaussian_heatmap(r1 - r0, c1 - c0, config.heatmap_sigma)
                hb, wb = r1 - r0, c1 - c0
                errors, stays, at_true, at_start = [], [], [], []
                for f in range(1, num_frames):
                    loss = slide(phi[f], target, weight)
                    best = int(loss.argmin())
                    br, bc = divmod(best, loss.shape[1])
                    found = np.array([bc + wb / 2, br + hb / 2]) * scale  # (x, y) px
                    truth = scene.centers[n, f]
                    errors.append(float(np.linalg.norm(found - truth)))
                    stays.append(float(np.linalg.norm(scene.centers[n, 0] - truth)))
                    if stays[-1] >= scale:  # the loss where the box truly is and where it started, once a cell apart
                        tr = int(np.clip(round(truth[1] / scale - hb / 2), 0, loss.shape[0] - 1))
                        tc = int(np.clip(round(truth[0] / scale - wb / 2), 0, loss.shape[1] - 1))
                        at_true.append(float(loss[tr, tc]))
                        at_start.append(float(loss[r0, c0]))
                contrast = (sum(at_start) - sum(at_true)) / max(sum(at_start), 1e-12) if at_start else float("nan")
                rows[t].append({"seed": seed, "sprite": n, "size": float(scene.sizes[n]), "error_px": float(np.mean(errors)),
                                "stay_px": float(np.mean(stays)),
                                "located": float(np.mean(np.array(errors) <= scale)), "contrast": contrast})
    sigmas = {t: float(scheduler.sigmas[num_steps - t]) for t in steps}
    return {"sigmas": sigmas, "rows": rows}


def summarise(rows: list[dict]) -> dict:
    out = {}
    for name, (lo, hi) in [("all", (0, 1e9))] + [(f"{lo}-{hi - 1} px", (lo, hi)) for lo, hi in BANDS]:
        chosen = [r for r in rows if lo <= r["size"] < hi]
        if chosen:
            out[name] = {"sprites": len(chosen), **{k: round(float(np.nanmean([r[k] for r in chosen])), 3)
                                                    for k in ("error_px", "stay_px", "located", "contrast")}}
    return out


def main(argv=None) -> int:
    from sgi2v.sprites.config import TRAIN_SEED_LIMIT, parse_sprite_sizes

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="sprites", help="models joined by ';' (a name or a diffusers folder)")
    parser.add_argument("--scenes", type=int, default=24, help="held-out scenes (default 24)")
    parser.add_argument("--sprite-sizes", default=None, help="MIN,MAX px of the scenes' sprites (default: the world's)")
    parser.add_argument("--steps", default="50,47,45,42,40,37,35,33,30,27,25,22,20,17,15,12,10,5",
                        help="the paper's t of the 50-step schedule (50 = the first, noisiest step)")
    parser.add_argument("--min-move", type=float, default=12.0, help="only sprites that end this far away (px)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    sprite_sizes = parse_sprite_sizes(args.sprite_sizes) if args.sprite_sizes else None
    steps = [int(v) for v in args.steps.split(",")]
    seeds = [TRAIN_SEED_LIMIT + 3000 + k for k in range(args.scenes)]
    started = time.perf_counter()
    record = {"scenes": [seeds[0], seeds[-1]], "sprite_sizes": args.sprite_sizes, "min_move_px": args.min_move,
              "torch": torch.__version__, "threads": torch.get_num_threads(), "models": {}}
    for model in args.models.split(";"):
        result = measure_model(model, seeds, sprite_sizes, steps, args.min_move, 50)
        summary = {t: summarise(result["rows"][t]) for t in steps}
        record["models"][model] = {"sigmas": result["sigmas"], "summary": summary, "rows": result["rows"]}
        bands = list(summary[steps[0]])
        print(f"\n{model}: moving sprites {summary[steps[0]]['all']['sprites']} "
              f"(mean displacement {summary[steps[0]]['all']['stay_px']:.1f} px)")
        print("| t | sigma | " + " | ".join(f"{b}: error px / located / contrast" for b in bands) + " |")
        print("|" + " --- |" * (2 + len(bands)))
        for t in steps:
            cells = [f"{summary[t][b]['error_px']:.1f} / {summary[t][b]['located']:.2f} / {summary[t][b]['contrast']:.2f}"
                     for b in bands]
            print(f"| {t} | {result['sigmas'][t]:.2f} | " + " | ".join(cells) + " |")
    record["seconds"] = round(time.perf_counter() - started, 1)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(record, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
