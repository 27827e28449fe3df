"""Latent optimisation at one denoising step (SG-I2V, Alg. 1), independent of any pipeline."""

from __future__ import annotations

import contextlib
from typing import Callable

import torch

from .config import SGI2VConfig
from .frequency import butterworth_low_pass, mix_frequencies
from .loss import BoxLoss

__all__ = ["optimize_latents"]


def optimize_latents(
    latents: torch.Tensor,
    features_fn: Callable[[torch.Tensor], torch.Tensor],
    loss_fn: BoxLoss,
    config: SGI2VConfig,
    half_precision: torch.dtype | None = None,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Optimise ``latents`` ``(1, F, C, h, w)`` so the features of each box follow its path.

    A fresh ``torch.optim.AdamW`` (lr from the config, PyTorch defaults otherwise, so weight decay
    0.01) takes ``config.iterations`` steps on a float32 copy; then, if enabled, its high
    frequencies are reset to those of the input (Butterworth mix).

    Args:
        latents: the current latent; not modified.
        features_fn: maps a float32 latent (requires grad) to the feature map ``(F, h, w, C')``.
        loss_fn: the box loss for this generation.
        config: the method's settings.
        half_precision: ``torch.float16`` enables loss scaling (the UNet runs in fp16 inside
            ``features_fn``); ``None`` or another dtype runs without scaling.

    Returns:
        the new latent (dtype of ``latents``, detached) and the loss of each iteration (0-dim tensors).
    """
    if loss_fn.empty or config.iterations == 0:
        return latents, []
    original = latents.detach().float()
    z = original.clone().requires_grad_(True)
    optimizer = torch.optim.AdamW([z], lr=config.learning_rate)
    scaler = _grad_scaler(z.device) if half_precision == torch.float16 else None
    losses = []
    with torch.enable_grad():
        for _ in range(config.iterations):
            loss = loss_fn(features_fn(z))
            (grad,) = torch.autograd.grad(scaler.scale(loss) if scaler else loss, [z])
            z.grad = grad
            if scaler:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.detach())
    result = z.detach()
    if config.high_frequency_reinit:
        low_pass = butterworth_low_pass(*result.shape[-2:], config.low_pass_cutoff, config.butterworth_order, device=result.device)
        result = mix_frequencies(result, original, low_pass)
    return result.to(latents.dtype), losses


def _grad_scaler(device: torch.device):
    with contextlib.suppress(Exception):
        return torch.amp.GradScaler(device.type)
    return None
