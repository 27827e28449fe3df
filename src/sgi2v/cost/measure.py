"""Measure a real pipeline call: peak live tensor bytes of the whole run and of each phase.

The phases are told apart by hooks on the networks: the CLIP encoder starts ``encode``; each UNet call
starts ``optimize_pass`` when gradients are on (an SG-I2V pass, whose backward follows) or
``denoise_step`` when not; the VAE decoder starts ``decode``. A phase's peak is the largest figure in
any of its stretches, weights included, as :func:`sgi2v.cost.plan.estimate` predicts them.
"""

from __future__ import annotations

import contextlib

import torch

from .tracker import LiveTensorBytes

__all__ = ["PhaseTimeline", "measure_call"]


class PhaseTimeline(LiveTensorBytes):
    """:class:`LiveTensorBytes` that also keeps the peak of each named phase (see :meth:`mark`)."""

    def __init__(self, device: str | None = None):
        super().__init__(device)
        self.phase: str | None = None
        self.phase_peaks: dict[str, int] = {}
        self._since = 0

    def mark(self, phase: str) -> None:
        """From now on the figures belong to ``phase``."""
        self._close()
        self.phase = phase
        self._since = self.live_bytes()

    def _close(self) -> None:
        if self.phase is not None:
            self.phase_peaks[self.phase] = max(self.phase_peaks.get(self.phase, 0), self._since)

    def _add(self, tensors) -> None:
        super()._add(tensors)
        if self.current > self._since:
            self._since = self.current

    def finish(self) -> dict[str, int]:
        self._close()
        self.phase = None
        return dict(self.phase_peaks)


@contextlib.contextmanager
def _phase_hooks(pipe, timeline: PhaseTimeline):
    handles = [
        pipe.image_encoder.register_forward_pre_hook(lambda *_: timeline.mark("encode")),
        pipe.unet.register_forward_pre_hook(
            lambda *_: timeline.mark("optimize_pass" if torch.is_grad_enabled() else "denoise_step")),
        pipe.vae.decoder.register_forward_pre_hook(lambda *_: timeline.mark("decode")),
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def measure_call(pipe, device_type: str, **call_kwargs) -> dict:
    """Run ``pipe(**call_kwargs)`` under a :class:`PhaseTimeline` on ``device_type`` with the pipeline's
    weights counted from the start: ``{"peak_bytes", "phases": {PHASE: peak_bytes}, "output"}``; on CUDA
    also ``torch.cuda.max_memory_allocated`` and ``max_memory_reserved`` over the call."""
    timeline = PhaseTimeline(device_type)
    cuda = device_type == "cuda" and torch.cuda.is_available()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    with _phase_hooks(pipe, timeline), timeline:
        timeline.track(pipe.unet, pipe.vae, pipe.image_encoder)
        timeline.mark("encode")
        output = pipe(**call_kwargs)
    phases = timeline.finish()
    result = {"peak_bytes": timeline.peak, "phases": phases, "output": output}
    if cuda:
        torch.cuda.synchronize()
        result["max_memory_allocated"] = torch.cuda.max_memory_allocated()
        result["max_memory_reserved"] = torch.cuda.max_memory_reserved()
    return result
