"""Train the ``sprites`` model from scratch on the sprites world: VAE, then UNet (CLIP encoder frozen, random).

Seeded and resumable: run the same command again with the same folder to continue after a stop.
Writes FOLDER/model (a diffusers SVD folder that `--model FOLDER/model` and
`SGI2VPipeline.from_pretrained` load), FOLDER/train_log.jsonl (losses), FOLDER/report.json (time,
final losses, the VAE's held-out reconstruction) and the checkpoints FOLDER/vae.pt, FOLDER/unet.pt.
"""

from __future__ import annotations

import argparse
import dataclasses
import json

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from .config import TrainConfig
    from ..paths import MODEL, OUT_FOLDER, path_option

    defaults = TrainConfig()
    path_option(parser.add_argument("-o", "--output", required=True, metavar="FOLDER", help="training folder (created; reused to "
                                    "resume)"), OUT_FOLDER, "training folder")
    parser.add_argument("--seed", type=int, default=defaults.seed, help=f"seed of the whole run (default {defaults.seed})")
    parser.add_argument("--videos", type=int, default=defaults.videos, help=f"training scenes (default {defaults.videos})")
    parser.add_argument("--sprite-sizes", default=None, metavar="MIN,MAX",
                        help="the range of the scenes' sprite sizes in px (default "
                        f"{','.join(f'{v:g}' for v in defaults.sprite_sizes)}, the world the shipped model knows; "
                        "other ranges are for experiments)")
    parser.add_argument("--leaving", type=float, default=defaults.leaving, metavar="SHARE",
                        help="the share of training scenes in which one sprite leaves through an edge instead of "
                        f"bouncing (default {defaults.leaving:g}: none, the world the shipped model knows)")
    parser.add_argument("--vae-steps", type=int, default=None, help=f"VAE steps (default {defaults.vae_steps})")
    path_option(parser.add_argument("--vae-from", default=None, metavar="MODEL", help="use the VAE of this trained model "
                                    "(sprites, or the model folder of an earlier run) as it is, instead of training one; "
                                    "its latents are then the ones that model's UNet was trained on"), MODEL, "model")
    parser.add_argument("--vae-channels", default=None, metavar="C0,C1,C2,C3",
                        help="the VAE's channels per level, multiples of 32 (default "
                        f"{','.join(map(str, defaults.vae_channels))}, or those of --vae-from's VAE); C0 is the width "
                        "of the decoder's last, full-resolution block")
    parser.add_argument("--vae-colour-weight", type=float, default=defaults.vae_colour_weight, metavar="W",
                        help="weight of a colour term in the VAE's loss: the error of 4 x 4 patch means inside sprites "
                        f"(default {defaults.vae_colour_weight:g}: none, as the shipped model was trained)")
    parser.add_argument("--vae-crop", type=int, default=defaults.vae_crop, metavar="PX",
                        help=f"side of the VAE's training clips in px, a multiple of 8 (default {defaults.vae_crop}; "
                        f"{defaults.height} trains on whole frames, as the pipeline uses the VAE)")
    parser.add_argument("--vae-clips", type=int, default=defaults.vae_batch_videos, metavar="N",
                        help=f"clips of 4 frames in each VAE step (default {defaults.vae_batch_videos})")
    parser.add_argument("--vae-ema", type=float, default=defaults.vae_ema, metavar="DECAY",
                        help="keep a moving average of the VAE's weights at this decay and ship it, as the UNet's is "
                        f"(default {defaults.vae_ema:g}: none, as the shipped model was trained)")
    parser.add_argument("--vae-bf16", action="store_true",
                        help="train the VAE under bfloat16 autocast (weights in float32): about 1.5x faster a step on "
                        "CPUs with AMX, emulated (slow) on CPUs without bfloat16 instructions (default: float32, as the "
                        "shipped model was trained)")
    parser.add_argument("--unet-steps", type=int, default=defaults.unet_steps, help=f"UNet steps (default {defaults.unet_steps}); "
                        "more than the run already in -o had extends that run from its last checkpoint")
    parser.add_argument("--unet-channels", default=",".join(map(str, defaults.unet_channels)), metavar="C0,C1,C2,C3",
                        help="the UNet's channels per level, multiples of 32 (default "
                        f"{','.join(map(str, defaults.unet_channels))}); one attention head per 16 channels")
    parser.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads of torch (default: every core)")
    parser.add_argument("--full-precision", action="store_true", help="save float32 weights (default: float16, as shipped)")


def _as_option(err: ValueError) -> ValueError:
    """A training setting's error (``unet_channels: ...``) as the error of its option (``--unet-channels: ...``)."""
    name, _, rest = str(err).partition(":")
    option = {"vae_batch_videos": "vae_clips"}.get(name, name)
    return ValueError(f"--{option.replace('_', '-')}:{rest}")


def _channels(text: str, option: str) -> tuple[int, ...]:
    """``--unet-channels`` / ``--vae-channels`` as a tuple of ints (their multiples of 32 are checked by TrainConfig)."""
    try:
        return tuple(int(c) for c in text.split(","))
    except ValueError:
        raise ValueError(f"{option}: expected 4 comma-separated multiples of 32, got {text!r}") from None


def run(args: argparse.Namespace) -> int:
    from ..settings import available_cores
    from .config import TrainConfig, parse_sprite_sizes

    if args.vae_from is not None and args.vae_steps is not None:
        raise ValueError(f"--vae-steps: a run with --vae-from trains no VAE; leave it out, got {args.vae_steps}")
    vae_steps = 0 if args.vae_from is not None else TrainConfig.vae_steps if args.vae_steps is None else args.vae_steps
    channels = _channels(args.unet_channels, "--unet-channels")
    vae_channels = TrainConfig.vae_channels if args.vae_channels is None else _channels(args.vae_channels, "--vae-channels")
    try:
        sizes = TrainConfig.sprite_sizes if args.sprite_sizes is None else parse_sprite_sizes(args.sprite_sizes)
    except ValueError as err:
        raise ValueError(f"--sprite-sizes: {err}") from None
    for name in ("videos", "vae_steps", "unet_steps"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')}: expected at least 1, got {getattr(args, name)}")
    if args.seed < 0:
        raise ValueError(f"--seed: expected a non-negative integer, got {args.seed}")
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads: expected at least 1, got {args.threads}")
    try:
        config = dataclasses.replace(TrainConfig(), seed=args.seed, videos=args.videos, vae_steps=vae_steps,
                                     unet_steps=args.unet_steps, vae_from=args.vae_from, unet_channels=channels,
                                     vae_colour_weight=args.vae_colour_weight, vae_channels=vae_channels,
                                     vae_crop=args.vae_crop, vae_batch_videos=args.vae_clips, vae_ema=args.vae_ema,
                                     vae_bf16=args.vae_bf16,
                                     sprite_sizes=sizes, leaving=args.leaving,
                                     unet_heads=tuple(c // 16 for c in channels))
    except ValueError as err:
        raise _as_option(err) from None
    import torch

    from ..loading import resolve_device
    from .train import train_sprites, vae_weights_file

    if config.vae_from is not None:
        try:
            weights = vae_weights_file(config.vae_from)
        except ValueError as err:
            raise _as_option(err) from None
        source = tuple(json.loads((weights.parent / "config.json").read_text())["block_out_channels"])
        if args.vae_channels is not None and vae_channels != source:
            raise ValueError(f"--vae-channels: the VAE of {config.vae_from} has channels {','.join(map(str, source))}; "
                             f"leave it out, got {args.vae_channels}")
        config = dataclasses.replace(config, vae_channels=source)  # the source's own layout
    device = resolve_device(args.device)
    torch.set_num_threads(args.threads or available_cores())
    vae_text = f"the VAE of {config.vae_from}" if config.vae_from else f"VAE {config.vae_steps} steps"
    print(f"train-sprites: {config.videos} scenes, {vae_text}, UNet {config.unet_steps} steps (channels "
          f"{','.join(map(str, config.unet_channels))}) on {device} ({torch.get_num_threads()} threads); "
          f"log in {args.output}/train_log.jsonl")
    out = train_sprites(args.output, config, device=device, half=not args.full_precision)
    report = json.loads((out.parent / "report.json").read_text())
    vae = report["vae"]
    print(f"train-sprites: wrote {out} in {report['seconds'] / 60:.1f} min; UNet loss {report['unet_loss']:.4f}; VAE on "
          f"{vae['scenes']} held-out scenes: PSNR {vae['psnr_db']:.1f} dB, largest sprite colour error {vae['color_error_max']}, "
          f"largest centroid error {vae['centroid_error_px_max']} px, sprites lost {vae['sprites_lost']}")
    return 0
