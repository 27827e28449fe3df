"""How long a generation takes on the device here, predicted from one short run of each phase.

Time, unlike memory, cannot be read from the graph: it depends on the device, its kernels and its
driver. But it does not depend on the weights' values, so the model's architecture is built with random
weights on the device (nothing is downloaded or read but its configurations), and a short generation is
run in the memory mode the settings would use: three denoising steps, the first with four SG-I2V
optimisation passes. Each phase's seconds per call (the median of its calls), multiplied by the calls of
the whole run, give its time:

    run = encode + steps x denoise step + passes x optimisation pass + decode

The encode and the decode run once in both the short run and the whole one, at the same size. A short
run is made first to warm the device up (kernel selection, lazy initialisation); with model offload the
first UNet call of a run also moves the UNet to the device, and that extra time is counted once.
Model loading is not included: it depends on the disk and the format, not on the settings.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from .graph import Architecture, example_boxes, random_pipeline
from .measure import PhaseTimeline, _phase_hooks

__all__ = ["measure_time", "MEASURE_STEPS", "MEASURE_PASSES"]

#: The short run: denoising steps, and optimisation passes at its first step.
MEASURE_STEPS = 3
MEASURE_PASSES = 4


class _CallTimes(PhaseTimeline):
    """A :class:`PhaseTimeline` (live bytes not tracked) that keeps every stretch's seconds, in order."""

    def __init__(self, device: str | None = None):
        super().__init__(device)
        self.stretches: dict[str, list[float]] = {}

    def _close(self) -> None:
        phase, before = self.phase, self.phase_seconds.get(self.phase, 0.0) if self.phase else 0.0
        super()._close()
        if phase is not None:
            self.stretches.setdefault(phase, []).append(self.phase_seconds[phase] - before)


def _short_run(pipe, *, height: int, width: int, num_frames: int, max_guidance_scale: float, min_guidance_scale: float,
               decode_chunk_size: int, checkpointing: bool, config, device_type: str) -> dict[str, list[float]]:
    from PIL import Image

    image = Image.fromarray((np.random.RandomState(0).rand(height, width, 3) * 255).astype(np.uint8))
    short = config.replace(optimize_timesteps=(MEASURE_STEPS,), iterations=MEASURE_PASSES)
    timeline = _CallTimes(device_type)
    if timeline.cuda:
        torch.cuda.synchronize()
    with _phase_hooks(pipe, timeline):
        timeline.mark("encode")
        pipe(image, example_boxes(num_frames, height, width), config=short, height=height, width=width,
             num_frames=num_frames, num_inference_steps=MEASURE_STEPS, max_guidance_scale=max_guidance_scale,
             min_guidance_scale=min(min_guidance_scale, max_guidance_scale), decode_chunk_size=decode_chunk_size,
             output_type="np", generator=torch.Generator("cpu").manual_seed(0), gradient_checkpointing=checkpointing)
        timeline.finish()
    return timeline.stretches


def measure_time(arch: Architecture, *, device: str, dtype: torch.dtype, mode: str, height: int, width: int,
                 num_frames: int, num_inference_steps: int, optimize_passes: int, max_guidance_scale: float = 3.0,
                 min_guidance_scale: float = 1.0, decode_chunk_size: int = 8, config=None, pipe=None) -> dict:
    """Seconds of each phase on ``device`` (which must be here) for a model of ``arch`` in ``mode`` (one of
    :data:`sgi2v.cost.plan.MODES`), and of the whole run: ``{"mode", "device", "dtype", "per_call_s": {PHASE: s},
    "first_unet_extra_s", "run_s": {"plain", "sgi2v"}, "calls": {PHASE: calls in the short run}, "measure_s"}``.
    ``encode`` and ``decode`` are the phases' whole seconds (they run once a generation). ``pipe``: a pipeline of
    ``arch`` already on the device, set up for ``mode``, to time instead of building one."""
    from ..config import SGI2VConfig

    start = time.perf_counter()
    config = SGI2VConfig() if config is None else config
    device_type = torch.device(device).type
    offload = mode.startswith("offload") and device_type != "cpu"
    if pipe is None:
        pipe = random_pipeline(arch, dtype, device="cpu" if offload else device)
        if offload:
            pipe.enable_model_cpu_offload(device=device)
    pipe.set_progress_bar_config(disable=True)
    run = dict(height=height, width=width, num_frames=num_frames, max_guidance_scale=max_guidance_scale,
               min_guidance_scale=min_guidance_scale, decode_chunk_size=decode_chunk_size,
               checkpointing="checkpointing" in mode, config=config, device_type=device_type)
    _short_run(pipe, **run)  # warm-up
    calls = _short_run(pipe, **run)
    step = float(np.median(calls["denoise_step"]))
    passes = calls["optimize_pass"]
    per_pass = float(np.median(passes[1:]))
    # the first UNet call of a run (an optimisation pass here) carries what happens once a run: with offload, the move
    first_extra = max(passes[0] - per_pass, 0.0)
    encode, decode = sum(calls["encode"]), sum(calls["decode"])
    plain = encode + num_inference_steps * step + first_extra + decode
    return {"mode": mode, "device": str(device), "dtype": str(dtype).replace("torch.", ""),
            "per_call_s": {"encode": encode, "denoise_step": step, "optimize_pass": per_pass, "decode": decode},
            "first_unet_extra_s": first_extra,
            "run_s": {"plain": plain, "sgi2v": plain + optimize_passes * per_pass},
            "calls": {phase: len(times) for phase, times in calls.items()},
            "measure_s": time.perf_counter() - start}
