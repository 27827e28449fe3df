"""Is the decoder's last GroupNorm what holds the sprites' colours back? A diagnostic, not a recipe.

``AutoencoderKLTemporalDecoder`` ends its decoder in ``GroupNorm(32 groups)`` over ``block_out_channels[0]``
channels, then SiLU and a 3 x 3 convolution to RGB. At 32 channels each group is one channel, normalised alone over
the frame: a channel that is flat on the background and flat on a sprite comes out as +-sqrt((1 - a) / a) on the
sprite (a: the sprite's share of the frame), whatever the two levels were, so a sprite's colour can reach the
output only through how the channels vary across the picture, and depends on the rest of the frame.

This script continues a trained VAE's decoder alone (the encoder, and so the latents, stay as they are) on the
``train-sprites`` loss and scenes, once per group count given, with that layer's groups replaced (its per-channel
scale and shift kept) and everything else the same: the same start, the same batches and noise in every arm. It
reports held-out reconstruction (``vae_report``) every ``--every`` steps. A decoder with another group count is not
SVD's architecture (diffusers fixes 32), so nothing trained here can be shipped: it tests the cause.

    python benchmarks/sprites_vae_norm.py --vae outputs/vae-long/vae.pt --groups 32,1 --steps 1000 --bf16 \\
        --threads 2 --out benchmarks/results/sprites-vae-norm

Writes ``norm.jsonl`` (one line per report) in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


def main() -> int:
    from sgi2v.sprites.config import TRAIN_SEED_LIMIT, TrainConfig
    from sgi2v.sprites.train import _lr, _render_data, _step_generator, load_vae, vae_report, vae_train_step

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vae", default="sprites", help="the VAE to start from: a model (name or folder) or a "
                        "train-sprites checkpoint vae.pt")
    parser.add_argument("--groups", default="32,1", help="comma-separated group counts of the decoder's last "
                        "GroupNorm, one arm each (32: SVD's)")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--lr", type=float, default=1e-4, help="peak rate, decayed to a tenth (cosine)")
    parser.add_argument("--every", type=int, default=250)
    parser.add_argument("--scenes", type=int, default=16)
    parser.add_argument("--first-scene", type=int, default=TRAIN_SEED_LIMIT + 200_000, help="first held-out scene "
                        "seed of the reports (default 1,200,000: not the scenes of train-sprites' own report)")
    parser.add_argument("--bf16", action="store_true", help="train under bfloat16 autocast (train.bfloat16_autocast)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="benchmarks/results/sprites-vae-norm")
    args = parser.parse_args()
    groups = [int(g) for g in args.groups.split(",") if g]
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    config = TrainConfig(vae_bf16=args.bf16)
    frames, masks = _render_data(config, range(config.videos))
    seeds = range(args.first_scene, args.first_scene + args.scenes)
    log = out / "norm.jsonl"

    for count in groups:
        vae = load_vae(args.vae)
        norm = vae.decoder.conv_norm_out
        if norm.num_channels % count:
            parser.error(f"--groups: {count} does not divide the decoder's {norm.num_channels} channels")
        replaced = torch.nn.GroupNorm(count, norm.num_channels, eps=norm.eps)
        replaced.load_state_dict(norm.state_dict())  # the same per-channel scale and shift
        vae.decoder.conv_norm_out = replaced
        vae.encoder.requires_grad_(False)
        vae.quant_conv.requires_grad_(False)
        opt = torch.optim.AdamW([p for p in vae.parameters() if p.requires_grad], lr=args.lr, weight_decay=0.0)

        def report(step: int, seconds: float) -> None:
            vae.eval()
            r = vae_report(vae, seeds=seeds)
            vae.train()
            line = {"vae": args.vae, "groups": count, "steps": step, "lr": args.lr, "bf16": args.bf16,
                    "first_scene": args.first_scene, "seconds": round(seconds, 1), **r}
            print(json.dumps(line), flush=True)
            with log.open("a") as fh:
                fh.write(json.dumps(line) + "\n")

        report(0, 0.0)
        vae.train()
        t0 = time.perf_counter()
        for step in range(args.steps):
            g = _step_generator(config.seed + 11, 1, step)  # the same draws in every arm, not the first training's
            vae_train_step(vae, opt, frames, masks, config, g, "cpu",
                           _lr(step, args.steps, args.lr, 0))
            if (step + 1) % args.every == 0:
                report(step + 1, time.perf_counter() - t0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
