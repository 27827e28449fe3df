"""Memory of the optimisation passes: activation checkpointing of the UNet's sub-blocks, and when to use it.

Backpropagating through the SVD UNet up to the feature layers keeps every intermediate activation of
the pass. Checkpointing each sub-block (every resnet, spatio-temporal transformer, down- and
upsampler) keeps only their inputs and recomputes the inside during backward: about one more
forward pass of time for a large cut in memory. The numbers are the same.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Iterator

import torch
from torch.utils.checkpoint import checkpoint

__all__ = ["checkpoint_sub_blocks", "estimated_activation_bytes", "should_checkpoint"]

# Activation memory of one optimisation pass (forward + backward, weights frozen) of the full-size SVD
# UNet, per latent cell per frame, measured as process peak-RSS growth on the CPU in float32 at
# 64x128 and 128x256 pixels with 14 frames (benchmarks/memory.py, benchmarks/RESULTS.md); half precision halves it.
BYTES_PER_CELL_FRAME_FP32 = {False: 0.6e6, True: 0.15e6}  # keyed by checkpointing on/off


def _sub_blocks(unet: torch.nn.Module) -> list[torch.nn.Module]:
    blocks = [*getattr(unet, "down_blocks", []), getattr(unet, "mid_block", None), *getattr(unet, "up_blocks", [])]
    out = []
    for block in filter(None, blocks):
        for name in ("resnets", "attentions", "downsamplers", "upsamplers"):
            out.extend(getattr(block, name, None) or [])
    return out


@contextlib.contextmanager
def checkpoint_sub_blocks(unet: torch.nn.Module) -> Iterator[None]:
    """Within the block, every sub-block of the UNet runs under non-reentrant activation checkpointing
    when gradients are enabled. Module hooks still run once per call (around the checkpointed
    forward); the recomputation during backward calls the plain forward. Restored on exit."""
    patched = []
    try:
        for module in _sub_blocks(unet):
            if "forward" in vars(module):  # already wrapped by someone else (e.g. an offload hook): leave it
                continue
            original = module.forward

            @functools.wraps(original)
            def forward(*args, _original=original, **kwargs):
                if torch.is_grad_enabled():
                    return checkpoint(_original, *args, use_reentrant=False, **kwargs)
                return _original(*args, **kwargs)

            module.forward = forward
            patched.append(module)
        yield
    finally:
        for module in patched:
            del module.forward


def estimated_activation_bytes(num_frames: int, latent_size: tuple[int, int], dtype: torch.dtype, checkpointing: bool) -> float:
    """Rough activation memory of one optimisation pass of the full-size SVD UNet (see the constants)."""
    scale = 0.5 if dtype in (torch.float16, torch.bfloat16) else 1.0
    return BYTES_PER_CELL_FRAME_FP32[checkpointing] * scale * num_frames * latent_size[0] * latent_size[1]


def should_checkpoint(device: torch.device, num_frames: int, latent_size: tuple[int, int], dtype: torch.dtype) -> bool:
    """Checkpoint only where memory demands it: on CUDA when the estimated activations of a pass do not
    fit in the free memory (with a 20 % margin); never on other devices (their memory is not measurable
    the same way, and the CPU has plenty)."""
    if device.type != "cuda":
        return False
    free, _ = torch.cuda.mem_get_info(device)
    free += torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)  # cached by torch, reusable
    return estimated_activation_bytes(num_frames, latent_size, dtype, checkpointing=False) * 1.2 > free
