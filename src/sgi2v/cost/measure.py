"""Measure a real pipeline call: peak live tensor bytes of the whole run and of each phase.

The phases are told apart by hooks on the networks: the call starts in ``encode``; each UNet call
starts ``optimize_pass`` when gradients are on (an SG-I2V pass, whose backward follows) or
``denoise_step`` when not; the VAE decoder starts ``decode``. A phase's peak is the largest figure in
any of its stretches, weights included, as :func:`sgi2v.cost.plan.estimate` predicts them.
"""

from __future__ import annotations

import contextlib
import time

import torch

from .tracker import LiveTensorBytes

__all__ = ["PhaseTimeline", "measure_call"]


class PhaseTimeline(LiveTensorBytes):
    """:class:`LiveTensorBytes` that also keeps, for each named phase (see :meth:`mark`), its peak, its
    wall time and how many stretches it had; on CUDA also the allocator's peak during it
    (``torch.cuda.max_memory_allocated``, reset at each mark). A CUDA or MPS device is synchronised at each mark."""

    def __init__(self, device: str | None = None):
        super().__init__(device)
        self.phase: str | None = None
        self.phase_peaks: dict[str, int] = {}
        self.phase_seconds: dict[str, float] = {}
        self.phase_calls: dict[str, int] = {}
        self.allocator_peaks: dict[str, int] = {}
        self.reserved_peaks: dict[str, int] = {}
        self.cuda = device == "cuda" and torch.cuda.is_available()
        self.mps = device == "mps"
        self._since = 0
        self._start = 0.0

    def mark(self, phase: str) -> None:
        """From now on the figures belong to ``phase``."""
        self._close()
        self.phase = phase
        self._since = self.live_bytes()
        self.phase_calls[phase] = self.phase_calls.get(phase, 0) + 1
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
        self._start = time.perf_counter()

    def _close(self) -> None:
        if self.phase is not None:
            if self.mps:  # its kernels run asynchronously too: a phase's time is its work's only once they are done
                torch.mps.synchronize()
            if self.cuda:
                torch.cuda.synchronize()
                self.allocator_peaks[self.phase] = max(self.allocator_peaks.get(self.phase, 0), torch.cuda.max_memory_allocated())
                self.reserved_peaks[self.phase] = max(self.reserved_peaks.get(self.phase, 0), torch.cuda.max_memory_reserved())
            self.phase_seconds[self.phase] = self.phase_seconds.get(self.phase, 0.0) + time.perf_counter() - self._start
            self.phase_peaks[self.phase] = max(self.phase_peaks.get(self.phase, 0), self._since)

    def _watermark(self) -> int:
        return self._since if self.phase is not None else self.peak

    def _observe(self) -> None:
        super()._observe()
        if self.current > self._since:
            self._since = self.current

    def finish(self) -> dict[str, int]:
        self._close()
        self.phase = None
        return dict(self.phase_peaks)


@contextlib.contextmanager
def _phase_hooks(pipe, timeline: PhaseTimeline):
    handles = [
        pipe.unet.register_forward_pre_hook(
            lambda *_: timeline.mark("optimize_pass" if torch.is_grad_enabled() else "denoise_step")),
        pipe.vae.decoder.register_forward_pre_hook(lambda *_: timeline.mark("decode")),
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def measure_call(pipe, device_type: str, track: bool = True, **call_kwargs) -> dict:
    """Run ``pipe(**call_kwargs)`` under a :class:`PhaseTimeline` on ``device_type`` with the pipeline's
    weights counted from the start: ``{"peak_bytes", "phases": {PHASE: peak_bytes}, "seconds": {PHASE: s},
    "calls": {PHASE: n}, "wall_s", "output"}``; on CUDA also ``allocator_phases`` (the allocator's peak per
    phase), ``max_memory_allocated`` and ``max_memory_reserved`` over the call. ``track=False`` skips the
    live-bytes tracking (its per-call overhead) and keeps the phase times and the allocator's figures."""
    timeline = PhaseTimeline(device_type)
    cuda = timeline.cuda
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    with _phase_hooks(pipe, timeline), (timeline if track else contextlib.nullcontext()):
        if track:
            timeline.track(pipe.unet, pipe.vae, pipe.image_encoder)
        timeline.mark("encode")
        output = pipe(**call_kwargs)
        timeline.finish()
    result = {"peak_bytes": timeline.peak if track else None, "phases": dict(timeline.phase_peaks) if track else None,
              "seconds": dict(timeline.phase_seconds), "calls": dict(timeline.phase_calls),
              "wall_s": time.perf_counter() - start, "output": output}
    if cuda:
        result["allocator_phases"] = dict(timeline.allocator_peaks)
        result["max_memory_allocated"] = max(timeline.allocator_peaks.values(), default=0)
        result["max_memory_reserved"] = max(timeline.reserved_peaks.values(), default=0)
    return result
