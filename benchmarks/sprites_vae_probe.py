"""Does the sprites VAE get sharper with more training? Continue training the shipped model's VAE (float16
weights taken to float32) on the same training scenes and loss as ``train-sprites``, at a constant learning
rate, and report held-out reconstruction (``vae_report``) every ``--every`` steps.

    python benchmarks/sprites_vae_probe.py --steps 2000 --lr 2e-4 --out benchmarks/results/sprites-vae-probe
    python benchmarks/sprites_vae_probe.py --decoder-only --steps 1500 --out benchmarks/results/sprites-vae-decoder
    python benchmarks/sprites_vae_probe.py --steps 2000 --lr 3e-4 --cosine --colour-weight 2 --threads 2 \
        --out benchmarks/results/sprites-vae-probe-colour
    python benchmarks/sprites_vae_probe.py --steps 2000 --lr 3e-4 --cosine --crop 128 --clips 1 --ema 0.999 \
        --threads 2 --out benchmarks/results/sprites-vae-probe-fullframe
    python benchmarks/sprites_vae_probe.py --vae outputs/sprites-v2/vae.pt --decoder-only --steps 1000 --lr 3e-5 \
        --scenes 16 --threads 2 --out outputs/decoder-probe

``--vae`` starts from another VAE: a model (name or folder) or a ``train-sprites`` checkpoint (``vae.pt``), whose
step count then starts the ``total_vae_steps`` column.

Writes ``probe.jsonl`` (one line per report) in ``--out``; resumable (``vae.pt`` there).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


def main() -> int:
    from sgi2v.sprites.config import TRAIN_SEED_LIMIT, TrainConfig
    from sgi2v.sprites.train import (_ema_update, _load_parameters, _lr, _parameters, _render_data, _save, _step_generator,
                                     load_vae, vae_report, vae_train_step)

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--every", type=int, default=250)
    parser.add_argument("--cosine", action="store_true", help="decay the learning rate to a tenth over the steps (cosine)")
    parser.add_argument("--scenes", type=int, default=8, help="held-out scenes per report")
    parser.add_argument("--out", default="benchmarks/results/sprites-vae-probe")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--colour-weight", type=float, default=0.0, help="TrainConfig.vae_colour_weight: weight of the "
                        "sprites' colour term (4 x 4 patch means inside sprites); 0, the shipped recipe, leaves it out")
    parser.add_argument("--crop", type=int, default=TrainConfig.vae_crop, help="TrainConfig.vae_crop: the side of the "
                        "training crops in pixels, a multiple of 8 (default 96, the shipped recipe; 128 trains on whole "
                        "frames, as the VAE is used)")
    parser.add_argument("--clips", type=int, default=TrainConfig.vae_batch_videos, help="TrainConfig.vae_batch_videos: "
                        "clips of 4 frames a step (default 2)")
    parser.add_argument("--latent-noise", type=float, default=TrainConfig.vae_latent_noise, help="TrainConfig."
                        "vae_latent_noise: the Gaussian noise added to the latents the decoder trains on (default 0.05, "
                        "the shipped recipe)")
    parser.add_argument("--ema", type=float, default=0.0, help="also keep an exponential moving average of the weights "
                        "at this decay (as the UNet's training does) and report it beside them (ema_* fields); 0: none")
    parser.add_argument("--vae", default="sprites", help="the VAE to start from: a model (name or folder) or a "
                        "train-sprites checkpoint vae.pt (default: the shipped model's)")
    parser.add_argument("--decoder-only", action="store_true", help="train the decoder alone: the encoder, so the latents "
                        "the UNet was trained on, stay as they are")
    parser.add_argument("--bf16", action="store_true", help="train under bfloat16 autocast (train.bfloat16_autocast): "
                        "about 1.5x faster a step on CPUs with AMX, emulated (slow) on CPUs without bfloat16 instructions")
    parser.add_argument("--first-scene", type=int, default=TRAIN_SEED_LIMIT, help="the first held-out scene seed of the "
                        f"reports (default {TRAIN_SEED_LIMIT}, the first of train-sprites' report); choose settings on "
                        "other held-out scenes than the ones a result is then reported on")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    config = TrainConfig(vae_colour_weight=args.colour_weight, vae_crop=args.crop, vae_batch_videos=args.clips,
                         vae_latent_noise=args.latent_noise, vae_bf16=args.bf16)
    vae = load_vae(args.vae).train()
    if args.vae.endswith(".pt"):
        base_steps = torch.load(args.vae, map_location="cpu", weights_only=True)["step"]
    else:
        base_steps = config.vae_steps if args.vae == "sprites" else 0
    if args.decoder_only:
        vae.encoder.requires_grad_(False)
        vae.quant_conv.requires_grad_(False)
    opt = torch.optim.AdamW([p for p in vae.parameters() if p.requires_grad], lr=args.lr, weight_decay=0.0)
    ckpt, start = out / "vae.pt", 0
    ema = _parameters(vae) if args.ema else None
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=True)
        vae.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start = state["step"]
        if args.ema and "ema" not in state:
            parser.error(f"--ema: {ckpt} was trained without an average; resume it without --ema, or give another --out")
        if args.ema:
            ema = state["ema"]
    frames, masks = _render_data(config, range(config.videos))
    seeds = range(args.first_scene, args.first_scene + args.scenes)
    log = out / "probe.jsonl"

    def report(step: int, seconds: float) -> None:
        vae.eval()
        with torch.no_grad():
            r = vae_report(vae, seeds=seeds)
            if args.ema:  # the averaged weights in place for their report, then the trained ones back
                trained = _parameters(vae)
                _load_parameters(vae, ema)
                r.update({"ema_" + k: v for k, v in vae_report(vae, seeds=seeds).items() if k != "scenes"})
                _load_parameters(vae, trained)
        vae.train()
        line = {"vae": args.vae, "extra_steps": step, "total_vae_steps": base_steps + step, "lr": args.lr, "cosine": args.cosine,
                "decoder_only": args.decoder_only, "colour_weight": args.colour_weight,
                "crop": args.crop, "clips": args.clips, "ema": args.ema,
                "latent_noise": args.latent_noise, "bf16": args.bf16, "first_scene": args.first_scene,
                "seconds": round(seconds, 1), **r}
        print(json.dumps(line), flush=True)
        with log.open("a") as fh:
            fh.write(json.dumps(line) + "\n")

    if start == 0:
        report(0, 0.0)
    vae.train()
    t0 = time.perf_counter()
    for step in range(start, args.steps):
        g = _step_generator(config.seed + 7, 1, step)  # draws of their own, not the first training's
        lr = _lr(step, args.steps, args.lr, 0) if args.cosine else args.lr
        vae_train_step(vae, opt, frames, masks, config, g, "cpu", lr)
        if args.ema:
            _ema_update(ema, vae, min(args.ema, (1 + step) / (10 + step)))
        if (step + 1) % args.every == 0:
            _save(ckpt, {"model": vae.state_dict(), "optimizer": opt.state_dict(), "step": step + 1,
                         **({"ema": ema} if args.ema else {})})
            report(step + 1, time.perf_counter() - t0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
