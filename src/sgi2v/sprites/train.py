"""Training the ``sprites`` model from scratch: VAE, then UNet, with a frozen random CLIP encoder.

The recipe follows how diffusers' ``StableVideoDiffusionPipeline`` samples (see docs/sprites.md):

* VAE (:class:`~diffusers.AutoencoderKLTemporalDecoder`, scale factor 8, 4 latent channels): L1 + MSE
  on 96 x 96 crops of 4 consecutive frames, sprite pixels weighted up so their colours and edges
  survive. The pipeline only uses the posterior's mode, so it is trained as an autoencoder on the
  mean plus a little Gaussian noise, with a small penalty on the latents' size instead of a KL term
  (sampling at the untrained posterior's unit variance drowned the signal). ``scaling_factor`` is
  1 / std of the training latents. The temporal layers start as the identity (see
  ``_temporal_layers_start_as_identity``).
* UNet (:class:`~diffusers.UNetSpatioTemporalConditionModel`, SVD's 4-level layout,
  ``layers_per_block=2``): EDM noise ``ln sigma ~ N(p_mean, p_std)`` clamped to the scheduler's
  range, input ``cat([z / sqrt(sigma^2 + 1), image_latent], dim=2)`` with the *unscaled*
  noise-augmented frame-0 latent, timestep ``0.25 ln sigma``, added time ids ``[fps - 1, motion
  bucket, noise_aug_strength]``, v-prediction with an MSE loss, and condition dropout (CLIP
  embedding and image latent zeroed together) so that the pipeline's zero-negative guidance means
  something. Videos are also used reversed in time (the encoder is per frame, so that is exact),
  except those in which a sprite leaves the picture: played backwards, a sprite would come in, and
  in the world none does.

Every random draw of step ``k`` comes from a generator seeded by ``(seed, phase, k)``, and the
state (weights, EMA, optimiser, step) is saved every ``checkpoint_every`` steps, so a resumed run
ends with the same weights as an uninterrupted one (same device and thread count).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..config import SVD_SIGMA_MAX, SVD_SIGMA_MIN, SVD_VAE_FACTOR, latent_side_ratio
from ..generation import file_sha256
from .config import ADDED_TIME_IDS, TRAIN_SEED_LIMIT, TrainConfig
from .scene import has_leaving_sprite, past_edge, render_scene, sprite_area

logger = logging.getLogger(__name__)

__all__ = ["TrainConfig", "train_sprites", "build_components", "sprites_scheduler", "vae_report", "vae_sprite_errors", "vae_step_loss", "vae_train_step", "bfloat16_autocast", "unet_step_loss", "v_loss",
           "vae_weights_file", "load_vae", "train_vae", "train_unet", "encode_dataset", "TRAIN_SEED_LIMIT"]

def build_components(config: TrainConfig, seed: int | None = None) -> dict:
    """Freshly initialised (seeded) components of the sprites model, in float32 on the CPU."""
    from diffusers import AutoencoderKLTemporalDecoder, UNetSpatioTemporalConditionModel
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from ..testing import CLIPImageProcessor

    seed = config.seed if seed is None else seed
    torch.manual_seed(seed)
    vae = AutoencoderKLTemporalDecoder(
        block_out_channels=config.vae_channels, down_block_types=("DownEncoderBlock2D",) * len(config.vae_channels),
        latent_channels=4, layers_per_block=1, sample_size=config.height,
    )
    _temporal_layers_start_as_identity(vae)
    torch.manual_seed(seed + 1)
    unet = UNetSpatioTemporalConditionModel(
        block_out_channels=config.unet_channels,
        down_block_types=("CrossAttnDownBlockSpatioTemporal",) * 3 + ("DownBlockSpatioTemporal",),
        up_block_types=("UpBlockSpatioTemporal",) + ("CrossAttnUpBlockSpatioTemporal",) * 3,
        cross_attention_dim=config.clip_width, num_attention_heads=config.unet_heads, layers_per_block=2,
        sample_size=config.height // 8, in_channels=8, out_channels=4,
        addition_time_embed_dim=32, projection_class_embeddings_input_dim=96, num_frames=config.num_frames,
    )
    torch.manual_seed(seed + 2)
    image_encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=config.clip_width, projection_dim=config.clip_width, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=4 * config.clip_width, image_size=224, patch_size=16, num_channels=3,
    ))
    feature_extractor = CLIPImageProcessor(crop_size=224, size={"shortest_edge": 224})
    return dict(unet=unet, vae=vae, image_encoder=image_encoder, scheduler=sprites_scheduler(config.height, config.width),
                feature_extractor=feature_extractor)


def sprites_scheduler(height: int, width: int):
    """The sampler the model ships with: SVD's (Euler, Karras sigmas, v-prediction), its noise range moved to the
    latent of ``height x width``.

    SVD's sigma 700 -> 0.002 was set for its 72 x 128 latent; a given noise level hides an object of a smaller latent
    more, since the noise averages out over fewer cells. Both ends are scaled by the ratio of the latents' sides
    (1/6 at 128 x 128: sigma 116.7 -> 0.00033), the rule of ``--optimize-timesteps latent``, so that each of the
    paper's steps (t 30-45 of 50) falls at the noise level it has in SVD at its native size. Training is not
    changed: its noise levels cover both ranges.
    """
    from diffusers import EulerDiscreteScheduler

    from ..testing import SVD_SCHEDULER_CONFIG

    shrink = 1 / latent_side_ratio((height // SVD_VAE_FACTOR, width // SVD_VAE_FACTOR))  # 6.0 at 128 x 128: 700 / 6
    return EulerDiscreteScheduler(**{**SVD_SCHEDULER_CONFIG, "sigma_max": SVD_SIGMA_MAX / shrink,
                                     "sigma_min": SVD_SIGMA_MIN / shrink})


def _temporal_layers_start_as_identity(vae) -> None:
    """Start the temporal decoder as a per-frame one: every spatial/temporal blend almost all spatial
    (sigmoid(4) = 0.98) and the last temporal convolution the identity. Randomly initialised temporal
    layers otherwise scramble the frames, and the decoder learns several times slower."""
    from diffusers.models.resnet import AlphaBlender

    with torch.no_grad():
        for module in vae.decoder.modules():
            if isinstance(module, AlphaBlender) and isinstance(module.mix_factor, torch.nn.Parameter):
                module.mix_factor.fill_(4.0)
        conv = vae.decoder.time_conv_out
        conv.weight.zero_()
        for c in range(conv.weight.shape[0]):
            conv.weight[c, c, conv.weight.shape[2] // 2] = 1.0
        conv.bias.zero_()


def _step_generator(seed: int, phase: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(((seed * 1_000_003 + phase) * 10_000_019 + step) % (2**63))


def _lr(step: int, total: int, peak: float, warmup: int) -> float:
    """Linear warm-up, then cosine decay to a tenth of the peak."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


class _Log:
    def __init__(self, path: Path):
        self.path = path

    def write(self, **record) -> None:
        with self.path.open("a") as fh:
            fh.write(json.dumps(record) + "\n")


def _render_data(config: TrainConfig, seeds) -> tuple[np.ndarray, np.ndarray]:
    """(V, F, H, W, 3) uint8 frames and (V, F, H, W) bool 'any sprite here' masks."""
    frames = np.empty((len(seeds), config.num_frames, config.height, config.width, 3), np.uint8)
    masks = np.empty((len(seeds), config.num_frames, config.height, config.width), bool)
    for i, s in enumerate(seeds):
        scene = render_scene(int(s), config.height, config.width, config.num_frames, sprite_sizes=config.sprite_sizes,
                             leaving=config.leaving)
        frames[i] = scene.frames
        masks[i] = scene.visible.any(axis=0)
    return frames, masks


def _to_pixels(frames: np.ndarray) -> torch.Tensor:
    """uint8 (..., H, W, 3) -> float (..., 3, H, W) in [-1, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).float().div(127.5).sub(1)
    return x.movedim(-1, -3)


def _save(path: Path, state: dict) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def _resume(ckpt: Path, model, opt, device, name: str) -> tuple[int, dict]:
    """Load a phase's checkpoint into ``model`` and ``opt``, if there is one: ``(step, state)``, else ``(0, {})``."""
    if not ckpt.exists():
        return 0, {}
    state = torch.load(ckpt, map_location=device, weights_only=True)
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    logger.info("%s: resuming at step %d", name, state["step"])
    return state["step"], state


def _checkpoint_step(ckpt: Path) -> int:
    """The step a phase's checkpoint was saved at (0 when there is none)."""
    return torch.load(ckpt, map_location="cpu", weights_only=True)["step"] if ckpt.exists() else 0


def _load_encoded(cache: Path, digest: str) -> dict | None:
    """The encoded training data kept by an earlier call, if the VAE checkpoint that encoded them has SHA-256 ``digest``."""
    if not cache.exists():
        return None
    data = torch.load(cache, map_location="cpu", weights_only=True)
    if data.get("vae_digest") != digest:
        logger.info("%s: encoded by another VAE; encoding again", cache)
        return None
    return data


def _parameters(model: torch.nn.Module) -> dict:
    """A copy of ``model``'s parameters by name (the start of a moving average, or weights to put back later)."""
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def _load_parameters(model: torch.nn.Module, params: dict) -> None:
    """Put ``params`` (by name, as :func:`_parameters` gives) into ``model`` in place, on its device."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(params[name].to(p.device))


def _ema_update(ema: dict, model: torch.nn.Module, decay: float) -> None:
    with torch.no_grad():
        for name, p in model.named_parameters():
            ema[name].mul_(decay).add_(p.detach(), alpha=1 - decay)


def _float32_forward(forward):
    """``forward`` run in float32, with autocast off, whenever autocast is on."""
    def run(x, *args, **kwargs):
        if not torch.is_autocast_enabled(x.device.type):
            return forward(x, *args, **kwargs)
        with torch.autocast(x.device.type, enabled=False):
            return forward(x.float(), *args, **kwargs)
    return run


@contextlib.contextmanager
def bfloat16_autocast(model: torch.nn.Module, device):
    """The forward passes inside run under bfloat16 autocast, except ``model``'s ``Conv3d`` and ``GroupNorm`` layers,
    which stay in float32: on CPUs with bfloat16 matrix units (AMX) the 2D convolutions run several times faster, while
    the backward pass of a bfloat16 ``Conv3d`` has no fast CPU kernel in torch 2.13 (a VAE step took minutes) and a
    bfloat16 ``GroupNorm`` backward is slower than a float32 one. The weights (and so what the optimiser updates) stay
    float32. CPUs without bfloat16 instructions emulate them, slowly."""
    device_type = torch.device(device).type
    kept = {m: vars(m).get("forward") for m in model.modules() if isinstance(m, (torch.nn.Conv3d, torch.nn.GroupNorm))}
    for m in kept:
        m.forward = _float32_forward(m.forward)
    try:
        with torch.autocast(device_type, dtype=torch.bfloat16):
            yield
    finally:
        for m, own in kept.items():  # each layer's forward as it was (its class's, or one set on it before)
            if own is None:
                del m.forward
            else:
                m.forward = own


VAE_CLIP_FRAMES = 4


def vae_batch(frames: np.ndarray, masks: np.ndarray, config: TrainConfig, g: torch.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The VAE batch drawn with ``g`` (the first draws of :func:`vae_step_loss`): ``vae_batch_videos`` clips of 4
    consecutive frames, cropped to ``vae_crop`` on the latent grid, and their sprite masks; (B, 4, c, c[, 3])."""
    crop, clip_len, num_videos = config.vae_crop, VAE_CLIP_FRAMES, len(frames)
    vid = torch.randint(0, num_videos, (config.vae_batch_videos,), generator=g).tolist()
    f0 = torch.randint(0, config.num_frames - clip_len + 1, (config.vae_batch_videos,), generator=g).tolist()
    ys = (torch.randint(0, (config.height - crop) // 8 + 1, (config.vae_batch_videos,), generator=g) * 8).tolist()
    xs = (torch.randint(0, (config.width - crop) // 8 + 1, (config.vae_batch_videos,), generator=g) * 8).tolist()
    clip = np.stack([frames[v, f:f + clip_len, y:y + crop, x:x + crop] for v, f, y, x in zip(vid, f0, ys, xs)])
    mask = np.stack([masks[v, f:f + clip_len, y:y + crop, x:x + crop] for v, f, y, x in zip(vid, f0, ys, xs)])
    return clip, mask


def vae_step_loss(vae, frames: np.ndarray, masks: np.ndarray, config: TrainConfig, g: torch.Generator, device):
    """One VAE batch drawn with ``g`` (:func:`vae_batch`): ``(loss, reconstruction error)``; its forward passes under
    :func:`bfloat16_autocast` when ``config.vae_bf16``."""
    clip_len = VAE_CLIP_FRAMES
    clip, mask = vae_batch(frames, masks, config, g)
    x = _to_pixels(clip).flatten(0, 1).to(device)  # (B*4, 3, c, c)
    w = 1 + (config.vae_sprite_weight - 1) * torch.from_numpy(mask).float().flatten(0, 1)[:, None].to(device)
    with bfloat16_autocast(vae, device) if config.vae_bf16 else contextlib.nullcontext():
        mean = vae.encode(x).latent_dist.mean  # the pipeline only ever uses the mode
        z = mean + config.vae_latent_noise * torch.randn(mean.shape, generator=g).to(device)
        recon = vae.decode(z, num_frames=clip_len).sample
    err = recon - x
    rec_loss = (w * (err.abs() + err.square())).mean()
    loss = rec_loss + config.vae_latent_weight * mean.square().mean()
    if config.vae_colour_weight:
        loss = loss + config.vae_colour_weight * sprite_colour_error(err, mask)
    return loss, err


def vae_train_step(vae, opt, frames: np.ndarray, masks: np.ndarray, config: TrainConfig, g: torch.Generator, device,
                   lr: float):
    """One optimiser step of the VAE at rate ``lr`` on the batch drawn with ``g`` (:func:`vae_step_loss`), its gradient
    clipped to norm 1: ``(loss, reconstruction error)``."""
    for group in opt.param_groups:
        group["lr"] = lr
    loss, err = vae_step_loss(vae, frames, masks, config, g, device)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
    opt.step()
    return loss, err


def sprite_colour_error(err: torch.Tensor, mask: np.ndarray, patch: int = 4) -> torch.Tensor:
    """Mean L1 size of ``err``'s (B, 3, H, W) ``patch`` x ``patch`` means over the patches wholly inside sprites (``mask``,
    (..., H, W) bool): a reconstruction's colour shift inside sprites, apart from its blur at their edges (0 when no
    patch is inside one)."""
    inside = torch.from_numpy(np.ascontiguousarray(mask)).float().flatten(0, -3)[:, None].to(err.device)
    inside = F.avg_pool2d(inside, patch) > 0.999
    shift = F.avg_pool2d(err, patch).abs() * inside
    return shift.sum() / (3 * inside.sum()).clamp(min=1)


def train_vae(vae, frames: np.ndarray, masks: np.ndarray, config: TrainConfig, folder: Path, device, log: _Log,
              until: int | None = None) -> None:
    """Train the VAE in place (resuming from ``folder/vae.pt``), up to step ``until`` (default: all). With
    ``config.vae_ema`` the weights left in ``vae`` when it has trained all its steps are their moving average."""
    ckpt = folder / "vae.pt"
    vae.to(device).train()
    opt = torch.optim.AdamW(vae.parameters(), lr=config.vae_lr, weight_decay=0.0)
    ema = _parameters(vae) if config.vae_ema else None
    start, state = _resume(ckpt, vae, opt, device, "VAE")
    if state and ema is not None:
        ema = state["ema"]
    end = config.vae_steps if until is None else min(until, config.vae_steps)
    t0 = time.perf_counter()
    for step in range(start, end):
        g = _step_generator(config.seed, 1, step)
        loss, err = vae_train_step(vae, opt, frames, masks, config, g, device,
                                   _lr(step, config.vae_steps, config.vae_lr, config.warmup))
        if ema is not None:
            _ema_update(ema, vae, min(config.vae_ema, (1 + step) / (10 + step)))
        if step % 20 == 0 or step == config.vae_steps - 1:
            psnr = (10 * torch.log10(4 / err.detach().square().mean())).item()
            log.write(phase="vae", step=step, loss=loss.item(), psnr_db=round(psnr, 2), seconds=round(time.perf_counter() - t0, 1))
        if (step + 1) % config.checkpoint_every == 0 or step + 1 == end:
            _save(ckpt, {"model": vae.state_dict(), "optimizer": opt.state_dict(), "step": step + 1,
                         **({"ema": ema} if ema is not None else {})})
    if ema is not None and max(start, end) >= config.vae_steps:  # finished (now or before): the average is the VAE
        _load_parameters(vae, ema)
    vae.eval()


@torch.no_grad()
def encode_dataset(pipe, frames: np.ndarray, config: TrainConfig, device, batch: int = 28) -> dict:
    """Latents (mode) of every frame, and the pipeline's conditioning of the first and last frame.

    The conditioning is computed the way the pipeline computes it: the image plus
    ``noise_aug_strength`` Gaussian noise through the VAE (mode, unscaled), and the CLIP embedding
    of the clean image through the pipeline's own ``_encode_image``.
    """
    from PIL import Image

    vae = pipe.vae
    num_videos = len(frames)
    flat = frames.reshape(-1, config.height, config.width, 3)
    latents = []
    for i in range(0, len(flat), batch):
        latents.append(vae.encode(_to_pixels(flat[i:i + batch]).to(device)).latent_dist.mode().cpu())
    latents = torch.cat(latents).view(num_videos, config.num_frames, 4, config.height // 8, config.width // 8)
    ends = np.stack([frames[:, 0], frames[:, -1]], axis=1)  # (V, 2, H, W, 3): forward and reversed first frames
    g = torch.Generator().manual_seed(config.seed * 7919 + 3)
    cond, clip = [], []
    for i in range(0, num_videos * 2, batch):
        chunk = ends.reshape(-1, config.height, config.width, 3)[i:i + batch]
        pixels = _to_pixels(chunk)
        noisy = pixels + ADDED_TIME_IDS[2] * torch.randn(pixels.shape, generator=g)
        cond.append(vae.encode(noisy.to(device)).latent_dist.mode().cpu())
        images = [Image.fromarray(a) for a in chunk]
        clip.append(pipe._encode_image(images, device, 1, False).cpu())
    cond = torch.cat(cond).view(num_videos, 2, 4, config.height // 8, config.width // 8)
    clip = torch.cat(clip).view(num_videos, 2, 1, -1)
    return {"latents": latents, "cond": cond, "clip": clip}


def unet_step_loss(unet, data: dict, scaling_factor: float, config: TrainConfig, g: torch.Generator, device) -> torch.Tensor:
    """The v-prediction MSE of one UNet batch drawn with ``g`` (videos, time direction, condition
    dropout, noise level and noise), fed as the SVD pipeline feeds the UNet."""
    latents, cond, clip = data["latents"], data["cond"], data["clip"]
    num_videos, batch = len(latents), config.unet_batch
    sigma_lo, sigma_hi = math.log(SVD_SIGMA_MIN), math.log(SVD_SIGMA_MAX)  # the scheduler's range
    vid = torch.randint(0, num_videos, (batch,), generator=g)
    reverse = torch.rand(batch, generator=g) < 0.5
    if "forward_only" in data:  # scenes with a sprite leaving: backwards, it would come in
        reverse &= ~data["forward_only"][vid]
    x0 = latents[vid].clone()
    x0[reverse] = x0[reverse].flip(1)
    end = reverse.long()
    image_latent = cond[vid, end]  # (B, 4, h, w), unscaled
    embedding = clip[vid, end]  # (B, 1, D)
    drop = (torch.rand(batch, generator=g) < config.cond_dropout).float()
    image_latent = image_latent * (1 - drop)[:, None, None, None]
    embedding = embedding * (1 - drop)[:, None, None]
    log_sigma = (config.p_mean + config.p_std * torch.randn(batch, generator=g)).clamp(sigma_lo, sigma_hi)
    noise = torch.randn(x0.shape, generator=g)
    return v_loss(unet, x0 * scaling_factor, image_latent, embedding, log_sigma, noise, device)


def v_loss(unet, x0: torch.Tensor, image_latent: torch.Tensor, embedding: torch.Tensor, log_sigma: torch.Tensor,
           noise: torch.Tensor, device, reduction: str = "mean") -> torch.Tensor:
    """The v-prediction MSE of clean scaled latents ``x0`` (B, F, 4, h, w) noised to ``log_sigma`` (B,) with
    ``noise``, given the unscaled image latent (B, 4, h, w) and CLIP embedding (B, 1, D), fed as the SVD pipeline
    feeds the UNet. ``reduction="none"`` gives one value per video."""
    batch = len(x0)
    time_ids = torch.tensor([ADDED_TIME_IDS] * batch, device=device)
    x0 = x0.to(device)
    sigma = log_sigma.exp().to(device).view(batch, 1, 1, 1, 1)
    z = x0 + sigma * noise.to(device)
    c_in = 1 / (sigma**2 + 1).sqrt()
    model_in = torch.cat([z * c_in, image_latent.to(device)[:, None].expand(-1, x0.shape[1], -1, -1, -1)], dim=2)
    target = (z / (sigma**2 + 1) - x0) * (sigma**2 + 1).sqrt() / sigma
    pred = unet(model_in, (0.25 * log_sigma).to(device), embedding.to(device), added_time_ids=time_ids).sample
    if reduction == "none":
        return (pred - target).square().flatten(1).mean(1)
    return F.mse_loss(pred, target)


def train_unet(unet, data: dict, scaling_factor: float, config: TrainConfig, folder: Path, device, log: _Log,
               until: int | None = None) -> dict:
    """Train the UNet in place (resuming from ``folder/unet.pt``) up to step ``until`` (default: all);
    returns the EMA weights."""
    ckpt = folder / "unet.pt"
    unet.to(device).train()
    opt = torch.optim.AdamW(unet.parameters(), lr=config.unet_lr, weight_decay=0.01)
    ema = _parameters(unet)
    start, state = _resume(ckpt, unet, opt, device, "UNet")
    if state:
        ema = state["ema"]
    end = config.unet_steps if until is None else min(until, config.unet_steps)
    t0 = time.perf_counter()
    running = None
    for step in range(start, end):
        g = _step_generator(config.seed, 2, step)
        for group in opt.param_groups:
            group["lr"] = _lr(step, config.unet_steps, config.unet_lr, config.warmup)
        loss = unet_step_loss(unet, data, scaling_factor, config, g, device)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        _ema_update(ema, unet, min(config.ema_decay, (1 + step) / (10 + step)))
        value = loss.item()
        running = value if running is None else 0.98 * running + 0.02 * value
        if step % 20 == 0 or step == config.unet_steps - 1:
            log.write(phase="unet", step=step, loss=value, loss_avg=round(running, 5),
                      seconds=round(time.perf_counter() - t0, 1))
        if (step + 1) % config.checkpoint_every == 0 or step + 1 == end:
            _save(ckpt, {"model": unet.state_dict(), "optimizer": opt.state_dict(), "ema": ema, "step": step + 1})
    unet.eval()
    return ema


@torch.no_grad()
def vae_sprite_errors(vae, seeds, height: int = 128, width: int = 128, num_frames: int = 14, decode_chunk_size: int = 14,
                      sprite_sizes=None):
    """``(PSNR in dB over every frame of the scenes of seeds, [one dict per sprite])`` of the VAE's reconstruction
    (mode, clamped to the picture's range) of the rendered scenes. A sprite's dict has its
    ``seed``, ``index``, ``shape``, ``size``, ``color`` and ``sprites`` (in its scene); ``color_error``, the RGB
    distance between its colour and the mean reconstructed colour over its visible pixels in every frame (None if it
    is never visible); ``centroid_error_px``, the largest distance over the frames where it is wholly in view and
    found in both between its tracked centroid in the original and in the reconstruction (None if there are none);
    and ``lost``, whether the tracker finds it wholly in view in the original but in no such frame of the
    reconstruction."""
    from .track import track_sprite

    device = next(vae.parameters()).device
    dtype = next(vae.parameters()).dtype
    squared, sprites = [], []
    for seed in seeds:
        scene = render_scene(int(seed), height, width, num_frames, sprite_sizes=sprite_sizes)
        x = _to_pixels(scene.frames).to(device, dtype)
        z = vae.encode(x).latent_dist.mode()
        chunks = [vae.decode(z[i:i + decode_chunk_size], num_frames=len(z[i:i + decode_chunk_size])).sample
                  for i in range(0, len(z), decode_chunk_size)]
        recon = torch.cat(chunks).float().clamp(-1, 1)
        squared.append((recon - x.float()).square().mean().item())
        frames = ((recon + 1) * 127.5).round().clamp(0, 255).byte().movedim(1, -1).cpu().numpy()
        for i, shape in enumerate(scene.shapes):
            size = float(scene.sizes[i])
            record = {"seed": int(seed), "index": i, "shape": shape, "size": size, "color": scene.colors[i].tolist(),
                      "sprites": len(scene.shapes), "color_error": None, "centroid_error_px": None, "lost": False}
            sprites.append(record)
            inside = scene.visible[i]
            if inside.sum() == 0:
                continue
            mean = frames[inside].astype(np.float64).mean(0)
            record["color_error"] = float(np.linalg.norm(mean - scene.colors[i].astype(np.float64)))
            a = track_sprite(scene.frames, scene.colors[i], size, shape)
            b = track_sprite(frames, scene.colors[i], size, shape)
            whole = ~past_edge(scene.boxes[i], height, width) & \
                    (scene.visible[i].sum((1, 2)) >= 0.95 * sprite_area(shape, size))
            if not (whole & a.found).any():
                continue
            ok = whole & a.found & b.found
            record["lost"] = not ok.any()
            if ok.any():
                record["centroid_error_px"] = float(np.linalg.norm(a.centers[ok] - b.centers[ok], axis=-1).max())
    return float(10 * np.log10(4 / np.mean(squared))), sprites


def vae_report(vae, seeds=range(TRAIN_SEED_LIMIT, TRAIN_SEED_LIMIT + 16), height: int = 128, width: int = 128,
               num_frames: int = 14, decode_chunk_size: int = 14, sprite_sizes=None) -> dict:
    """How well the VAE reconstructs held-out scenes: PSNR (dB) over all frames, and over the sprites the mean and
    largest of their colour and centroid errors (:func:`vae_sprite_errors`); ``sprites_lost`` counts sprites the
    tracker finds in the original but in no frame of the reconstruction."""
    psnr, sprites = vae_sprite_errors(vae, seeds, height, width, num_frames, decode_chunk_size, sprite_sizes)
    colour_errors = [s["color_error"] for s in sprites if s["color_error"] is not None]
    centroid_errors = [s["centroid_error_px"] for s in sprites if s["centroid_error_px"] is not None]
    lost = sum(s["lost"] for s in sprites)

    def stat(values, how, digits):
        return round(float(how(values)), digits) if values else None

    return {"scenes": len(list(seeds)), "psnr_db": round(psnr, 2),
            "color_error_mean": stat(colour_errors, np.mean, 2), "color_error_max": stat(colour_errors, np.max, 2),
            "centroid_error_px_mean": stat(centroid_errors, np.mean, 3),
            "centroid_error_px_max": stat(centroid_errors, np.max, 3), "sprites_lost": lost}


def vae_weights_file(model: str) -> Path:
    """The VAE weights of a trained sprites-style model (``sprites``, or a local diffusers folder), for ``vae_from``."""
    from ..paths import NAMED_MODELS, model_folder

    if model in NAMED_MODELS and model != "sprites":
        raise ValueError(f"vae_from: {model}: has no trained VAE; give sprites or a trained model folder")
    folder = model_folder(model)
    path = folder / "vae" / "diffusion_pytorch_model.safetensors"
    if not path.is_file():
        raise ValueError(f"vae_from: {model}: no VAE weights at {path}; give sprites or a model folder "
                         "written by train-sprites (its model/)")
    return path


def _load_vae_from(vae, model: str) -> Path:
    """Load the VAE of ``model`` into ``vae`` (float32); returns its weights file."""
    from safetensors.torch import load_file

    path = vae_weights_file(model)
    state = {k: v.float() for k, v in load_file(str(path)).items()}
    try:
        vae.load_state_dict(state)
    except RuntimeError:
        raise ValueError(f"vae_from: {model}: its VAE is not this run's architecture (vae_channels "
                         f"{','.join(map(str, vae.config.block_out_channels))})") from None
    return path


def load_vae(source: str | Path):
    """A trained sprites VAE in float32 on the CPU, for reports and experiments: ``source`` is a model (``sprites`` or a
    model folder) or a ``train-sprites`` checkpoint (``vae.pt``; its layout from the ``train_config.json`` beside it)."""
    import dataclasses

    from diffusers import AutoencoderKLTemporalDecoder

    source = str(source)
    if not source.endswith(".pt"):
        path = vae_weights_file(source)
        return AutoencoderKLTemporalDecoder.from_pretrained(path.parent, torch_dtype=torch.float32).eval()
    stored = Path(source).parent / "train_config.json"
    config, vae_steps = TrainConfig(), None
    if stored.exists():
        settings = json.loads(stored.read_text())
        config = dataclasses.replace(config, vae_channels=tuple(settings["vae_channels"]))
        vae_steps = settings["vae_steps"]
    vae = build_components(config)["vae"]
    state = torch.load(source, map_location="cpu", weights_only=True)
    vae.load_state_dict(state["model"])
    if "ema" in state and vae_steps is not None and state["step"] >= vae_steps:  # finished, averaged: the VAE it kept
        _load_parameters(vae, state["ema"])
    return vae.eval()


def _changed_settings(previous: dict, wanted: dict) -> list[str]:
    """Settings that differ between a stored run and this call (a setting the stored run predates counts as its default)."""
    defaults = json.loads(json.dumps(TrainConfig().to_dict()))
    return sorted(k for k in set(previous) | set(wanted) if previous.get(k, defaults.get(k)) != wanted.get(k, defaults.get(k)))


def _check_extension(config_path: Path, previous: dict, wanted: dict) -> None:
    """Accept a stored run's settings changing only by more UNet steps (the run is extended), else raise."""
    changed = _changed_settings(previous, wanted)
    if changed != ["unet_steps"]:
        listed = ", ".join(f"{k} {previous.get(k)} there, {wanted.get(k)} asked" for k in changed)
        raise ValueError(f"{config_path}: the folder holds a run with other settings ({listed}); use another folder, or "
                         "only more UNet steps to extend it")
    if wanted["unet_steps"] < previous["unet_steps"]:
        raise ValueError(f"{config_path}: unet_steps: the run has {previous['unet_steps']}; it can be extended, not "
                         f"shortened, got {wanted['unet_steps']}")


def train_sprites(folder: str | Path, config: TrainConfig = TrainConfig(), device: str | torch.device = "cpu",
                  half: bool = True, report_scenes: int = 16) -> Path:
    """Train every component and write a diffusers model folder to ``folder/model``; returns its path.

    ``folder`` keeps the checkpoints (``vae.pt``, ``unet.pt``), the log (``train_log.jsonl``) and the
    encoded training data (``encoded.pt``, used again while the VAE checkpoint is the same, so a
    resumed UNet phase renders and encodes nothing); calling again with the same folder and config
    resumes where it stopped.
    Calling it with more ``unet_steps`` extends the run: the UNet continues from its last
    checkpoint, its learning rate following the cosine of the new total from that step on (a warm
    restart), and the log records the extension. Any other change of settings is refused.
    ``half`` saves the weights in float16 (the shipped model's form). ``report_scenes`` is how many
    held-out scenes the VAE's report (``report.json``) is measured on; it does not change the weights.
    """
    from diffusers import StableVideoDiffusionPipeline

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    device = torch.device(device)
    config_path = folder / "train_config.json"
    log = _Log(folder / "train_log.jsonl")
    wanted = json.loads(json.dumps(config.to_dict()))
    if config_path.exists():
        previous = json.loads(config_path.read_text())
        if _changed_settings(previous, wanted):
            _check_extension(config_path, previous, wanted)
            log.write(phase="extended", unet_steps_from=previous["unet_steps"], unet_steps_to=config.unet_steps)
        if previous != wanted:
            config_path.write_text(json.dumps(wanted, indent=1))
    else:
        config_path.write_text(json.dumps(wanted, indent=1))
    started = time.perf_counter()
    components = build_components(config)
    seeds = np.arange(config.videos)
    cache = folder / "encoded.pt"
    frames = masks = None
    t = time.perf_counter()
    if config.vae_from:
        vae_file = _load_vae_from(components["vae"], config.vae_from)
        digest = file_sha256(vae_file)
        components["vae"].to(device).eval()
        log.write(phase="vae_from", model=config.vae_from, sha256=digest)
    else:
        if not (_checkpoint_step(folder / "vae.pt") >= config.vae_steps and cache.exists()):
            logger.info("rendering %d training scenes", len(seeds))
            frames, masks = _render_data(config, seeds)
        train_vae(components["vae"], frames, masks, config, folder, device, log)  # a finished VAE is only loaded
        digest = file_sha256(folder / "vae.pt")  # the finished VAE's checkpoint, whose weights were just loaded
    vae_seconds = time.perf_counter() - t
    vae = vae_report(components["vae"], seeds=range(TRAIN_SEED_LIMIT, TRAIN_SEED_LIMIT + report_scenes), height=config.height,
                     width=config.width, num_frames=config.num_frames, sprite_sizes=config.sprite_sizes)
    log.write(phase="vae_done", seconds=round(vae_seconds, 1), **vae)
    data = _load_encoded(cache, digest)
    if data is None:
        if frames is None:
            frames, _ = _render_data(config, seeds)
        pipe = StableVideoDiffusionPipeline(**components).to(device)
        data = encode_dataset(pipe, frames, config, device)
        _save(cache, {**data, "vae_digest": digest})
    del frames, masks
    if config.leaving:
        data["forward_only"] = torch.tensor([has_leaving_sprite(int(s), config.leaving) for s in seeds])
    scaling_factor = float(1 / data["latents"].std())
    components["vae"].register_to_config(scaling_factor=scaling_factor)
    log.write(phase="encoded", scaling_factor=scaling_factor, cached="vae_digest" in data,
              seconds=round(time.perf_counter() - started, 1))
    t = time.perf_counter()
    ema = train_unet(components["unet"], data, scaling_factor, config, folder, device, log)
    unet_seconds = time.perf_counter() - t
    log.write(phase="unet_done", seconds=round(unet_seconds, 1))
    unet = components["unet"]
    _load_parameters(unet, ema)
    out = folder / "model"
    pipe = StableVideoDiffusionPipeline(**components)
    if half:
        pipe.to(dtype=torch.float16)
    pipe.to("cpu").save_pretrained(out)
    seconds = time.perf_counter() - started
    losses = [json.loads(line) for line in (folder / "train_log.jsonl").read_text().splitlines()]
    unet_loss = [r["loss_avg"] for r in losses if r.get("phase") == "unet"]
    report = {"seconds": round(seconds, 1), "vae_seconds": round(vae_seconds, 1), "unet_seconds": round(unet_seconds, 1),
              "device": str(device), "threads": torch.get_num_threads(), "scaling_factor": scaling_factor,
              "unet_loss": unet_loss[-1] if unet_loss else None, "vae": vae, "config": config.to_dict(),
              "extended": [[r["unet_steps_from"], r["unet_steps_to"]] for r in losses if r.get("phase") == "extended"],
              "note": "seconds of this call only; a resumed run's earlier time is in train_log.jsonl"}
    (folder / "report.json").write_text(json.dumps(report, indent=1))
    log.write(phase="done", seconds=round(seconds, 1))
    return out
