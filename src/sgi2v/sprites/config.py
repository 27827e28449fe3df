"""What decides the trained sprites model's weights (plain Python, no torch: the command line reads it)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

__all__ = ["TrainConfig", "TRAIN_SEED_LIMIT", "ADDED_TIME_IDS", "SPRITE_SIZES", "parse_sprite_sizes"]

#: Training uses scene seeds below this; held-out evaluation uses seeds at or above it.
TRAIN_SEED_LIMIT = 1_000_000
ADDED_TIME_IDS = (6.0, 127.0, 0.02)  # [fps - 1, motion_bucket_id, noise_aug_strength]: the pipeline's defaults
#: The world's range of sprite sizes (px across): what the shipped ``sprites`` model was trained on.
SPRITE_SIZES = (16.0, 40.0)


def parse_sprite_sizes(text: str) -> tuple[float, float]:
    """``"MIN,MAX"`` as two numbers (the range itself is checked where it is used)."""
    try:
        sizes = tuple(float(v) for v in text.split(","))
    except ValueError:
        sizes = ()
    if len(sizes) != 2:
        raise ValueError(f"expected two numbers MIN,MAX, got {text!r}")
    return sizes


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides the trained weights (recorded in the output folder)."""

    seed: int = 0
    videos: int = 1200  # training scenes: seeds 0 .. videos - 1
    height: int = 128
    width: int = 128
    num_frames: int = 14
    # the range (px) of the scenes' sprite sizes: the world's 16-40 (other ranges serve experiments)
    sprite_sizes: tuple[float, float] = SPRITE_SIZES
    # the share of training scenes in which one sprite leaves through an edge instead of bouncing (0: the world of
    # the shipped model, where no sprite ever leaves)
    leaving: float = 0.0
    # VAE
    vae_channels: tuple[int, ...] = (32, 64, 128, 128)
    vae_steps: int = 1500
    vae_batch_videos: int = 2  # clips of 4 consecutive frames a step
    vae_crop: int = 96  # the clips' side in pixels (a multiple of 8; the picture's side trains on whole frames)
    vae_lr: float = 5e-4
    vae_sprite_weight: float = 4.0  # loss weight of sprite pixels relative to background
    vae_latent_noise: float = 0.05  # decoder trained on slightly noisy latents: robust to the UNet's small errors
    vae_latent_weight: float = 1e-4  # keeps the latents near unit scale (instead of a KL term)
    # weight of a colour term: the L1 error of 4 x 4 patch means wholly inside sprites (a sprite's colour, not its
    # edges or texture); 0 leaves it out
    vae_colour_weight: float = 0.0
    # decay of an exponential moving average of the VAE's weights, which are then the ones kept (as the UNet's are);
    # 0 keeps the trained weights themselves (the shipped recipe)
    vae_ema: float = 0.0
    # the VAE's forward passes under bfloat16 autocast (train.bfloat16_autocast; weights and optimiser in float32):
    # about 1.5x faster a step on CPUs with AMX; CPUs without bfloat16 instructions emulate them; False, the
    # shipped recipe, trains in float32
    vae_bf16: bool = False
    vae_from: str | None = None  # a trained model (name or folder) whose VAE is used as it is (then vae_steps is 0)
    # UNet
    unet_channels: tuple[int, ...] = (32, 32, 64, 64)
    unet_heads: tuple[int, ...] = (2, 2, 4, 4)
    unet_steps: int = 3000
    unet_batch: int = 4
    unet_lr: float = 5e-4
    p_mean: float = 1.5  # ln sigma ~ N(p_mean, p_std): shifted towards the high noise where motion is decided
    p_std: float = 1.6
    cond_dropout: float = 0.1
    ema_decay: float = 0.999
    warmup: int = 200
    # CLIP (frozen, random)
    clip_width: int = 32
    checkpoint_every: int = 100

    def __post_init__(self):
        low, high = self.sprite_sizes
        if not 4 <= low <= high or 2 * high > min(self.height, self.width):
            raise ValueError(f"sprite_sizes: expected 4 <= min <= max <= half the picture's side, got {low:g},{high:g}")
        if not 0 <= self.leaving <= 1:
            raise ValueError(f"leaving: expected a share from 0 to 1, got {self.leaving}")
        if not (self.vae_colour_weight >= 0 and math.isfinite(self.vae_colour_weight)):
            raise ValueError(f"vae_colour_weight: expected a number >= 0, got {self.vae_colour_weight}")
        if self.vae_from is not None and self.vae_colour_weight:
            raise ValueError(f"vae_colour_weight: a run with vae_from {self.vae_from} trains no VAE; expected 0, got "
                             f"{self.vae_colour_weight}")
        if not 0 <= self.vae_ema < 1:
            raise ValueError(f"vae_ema: expected a decay from 0 (none) up to but not including 1, got {self.vae_ema}")
        if self.vae_from is not None and self.vae_ema:
            raise ValueError(f"vae_ema: a run with vae_from {self.vae_from} trains no VAE; expected 0, got {self.vae_ema}")
        if self.vae_from is not None and self.vae_bf16:
            raise ValueError(f"vae_bf16: a run with vae_from {self.vae_from} trains no VAE; leave it off")
        if self.vae_crop % 8 or not 8 <= self.vae_crop <= min(self.height, self.width):
            raise ValueError(f"vae_crop: expected a multiple of 8 from 8 to the picture's side "
                             f"{min(self.height, self.width)}, got {self.vae_crop}")
        if self.vae_batch_videos < 1:
            raise ValueError(f"vae_batch_videos: expected at least 1, got {self.vae_batch_videos}")
        if self.vae_from is not None and self.vae_steps != 0:
            raise ValueError(f"vae_steps: a run with vae_from {self.vae_from} trains no VAE; expected 0, got {self.vae_steps}")
        if len(self.vae_channels) != 4 or any(c < 32 or c % 32 for c in self.vae_channels):
            raise ValueError(f"vae_channels: expected 4 multiples of 32 (the VAE's GroupNorm has 32 groups; 4 levels make "
                             f"its scale factor 8), got {','.join(map(str, self.vae_channels))}")
        if len(self.unet_channels) != 4 or any(c < 32 or c % 32 for c in self.unet_channels):
            raise ValueError(f"unet_channels: expected 4 multiples of 32 (the UNet's GroupNorm has 32 groups), got "
                             f"{','.join(map(str, self.unet_channels))}")
        if len(self.unet_heads) != 4 or any(c % h for c, h in zip(self.unet_channels, self.unet_heads)):
            raise ValueError(f"unet_heads: expected 4 head counts that divide unet_channels "
                             f"{','.join(map(str, self.unet_channels))}, got {','.join(map(str, self.unet_heads))}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


