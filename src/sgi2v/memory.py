"""Memory of the optimisation passes: activation checkpointing of the UNet's sub-blocks, and when to use it.

Backpropagating through the SVD UNet up to the feature layers keeps every intermediate activation of
the pass. Checkpointing each sub-block (every resnet, spatio-temporal transformer, down- and
upsampler) keeps only their inputs and recomputes the inside during backward: about one more
forward pass of time for a large cut in memory. The numbers are the same.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Callable, Iterator

import torch
from torch.utils.checkpoint import checkpoint

__all__ = ["checkpoint_sub_blocks", "should_checkpoint"]

def _sub_blocks(unet: torch.nn.Module) -> list[torch.nn.Module]:
    blocks = [*getattr(unet, "down_blocks", []), getattr(unet, "mid_block", None), *getattr(unet, "up_blocks", [])]
    out = []
    for block in filter(None, blocks):
        for name in ("resnets", "attentions", "downsamplers", "upsamplers"):
            out.extend(getattr(block, name, None) or [])
    return out


@contextlib.contextmanager
def checkpoint_sub_blocks(unet: torch.nn.Module, recompute_context: Callable[[], contextlib.AbstractContextManager] | None = None
                          ) -> Iterator[None]:
    """Within the block, every sub-block of the UNet runs under non-reentrant activation checkpointing
    when gradients are enabled. Module hooks still run once per call (around the checkpointed
    forward); the recomputation during backward calls the plain forward, inside ``recompute_context()``
    when one is given (the cost model's simulated autocast). Restored on exit."""
    extra = {} if recompute_context is None else {"context_fn": lambda: (contextlib.nullcontext(), recompute_context())}
    patched = []
    try:
        for module in _sub_blocks(unet):
            if "forward" in vars(module):  # already wrapped by someone else (e.g. an offload hook): leave it
                continue
            original = module.forward

            @functools.wraps(original)
            def forward(*args, _original=original, **kwargs):
                if torch.is_grad_enabled():
                    return checkpoint(_original, *args, use_reentrant=False, **extra, **kwargs)
                return _original(*args, **kwargs)

            module.forward = forward
            patched.append(module)
        yield
    finally:
        for module in patched:
            del module.forward


def should_checkpoint(device: torch.device, num_frames: int, latent_size: tuple[int, int], dtype: torch.dtype, pipe,
                      config) -> bool:
    """Checkpoint only where memory demands it: on CUDA when the activations of an unchecked optimisation
    pass, as :mod:`sgi2v.cost` predicts them from ``pipe``'s architecture, do not fit in the free memory
    (with a 20 % margin); never on other devices (their memory is not measurable the same way, and the
    CPU has plenty)."""
    if device.type != "cuda":
        return False
    from .cost.graph import optimize_pass_bytes

    free, _ = torch.cuda.mem_get_info(device)
    free += torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)  # cached by torch, reusable
    need = optimize_pass_bytes(pipe, num_frames, latent_size, dtype, device.type, config)
    return need * 1.2 > free
