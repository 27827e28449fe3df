"""The GPU suite: plain SVD vs SG-I2V at 576x1024 in float16 on CUDA with the full-size architecture and
random weights (speed and memory do not depend on the weights' values), every memory mode, 25 frames and
torch.compile, each measured peak compared with ``sgi2v estimate``'s prediction. One JSON.

Cases, in order (each skipped when too little of ``--budget-s`` is left, the JSON rewritten after each):

- ``plain`` and ``sgi2v``: whole 50-step runs at 14 frames, no checkpointing: time per phase, the allocator's
  peak per phase (``torch.cuda.max_memory_allocated``) and ``max_memory_reserved``;
- ``mode:*``: short runs (3 steps, 2 optimised with 2 iterations) in each mode at 14 frames and the
  unchecked and checked modes at 25 frames, with the live-bytes tracker too: every phase's peak vs the
  prediction;
- ``compile``: ``torch.compile`` of the UNet on one guided denoising step (first call, steady state, the
  eager step for comparison, and the largest difference of its output from eager's).

Named with ``--cases`` (not run by default):

- ``budget:NGiB:MODE:Ff``: the short run in one mode with the allocator capped so that it and the CUDA context
  together hold N GiB, as on a card of that size, beside ``sgi2v estimate``'s verdict for that budget: whether
  the run fits, and whether the estimate said so;
- ``sgi2v:compiled``: the whole paper-settings run with ``compile=True`` (the denoising steps compiled), twice:
  the first call waits for the compiler, the second is the steady state.

``--cpu-smoke`` runs the same cases on the CPU with the tiny model at 64x64 and 4 frames (compile with the
``eager`` backend), so the suite is known to work before any GPU time is spent.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

GiB = 2**30


@dataclasses.dataclass(frozen=True)
class Setup:
    device: str
    dtype: torch.dtype
    model: str  # the architecture's name for sgi2v estimate
    height: int
    width: int
    frames: tuple[int, ...]  # the unchecked/checked cases also at the second count
    full_steps: int
    compile_backend: str


GPU = Setup("cuda", torch.float16, "stabilityai/stable-video-diffusion-img2vid", 576, 1024, (14, 25), 50, "inductor")
SMOKE = Setup("cpu", torch.float32, "tiny-random", 64, 64, (4, 6), 4, "eager")


def build_pipeline(setup: Setup, num_frames: int):
    """The pipeline on ``setup.device`` in ``setup.dtype`` with random weights, built where it runs."""
    from diffusers import AutoencoderKLTemporalDecoder, UNetSpatioTemporalConditionModel
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from sgi2v import SGI2VPipeline
    from sgi2v.configs import svd_config
    from sgi2v.testing import CLIPImageProcessor, svd_scheduler, tiny_pipeline

    if setup.model == "tiny-random":
        pipe = tiny_pipeline(num_frames=num_frames, dtype=setup.dtype)
        return pipe.to(setup.device)
    strip = lambda c: {k: v for k, v in c.items() if not k.startswith("_")}  # noqa: E731
    torch.manual_seed(0)
    with torch.device(setup.device):
        unet = UNetSpatioTemporalConditionModel.from_config(strip(svd_config("unet", num_frames)))
        vae = AutoencoderKLTemporalDecoder.from_config(strip(svd_config("vae")))
        encoder = {k: v for k, v in svd_config("image_encoder").items() if k not in ("architectures", "model_type")}
        image_encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(**encoder))
    for module in (unet, vae, image_encoder):
        # .to(device) too: diffusers makes the blend factors (time_mixer.mix_factor) with the legacy
        # torch.Tensor constructor, which ignores the default device, so they were left on the CPU
        module.to(device=setup.device, dtype=setup.dtype).eval()
    pipe = SGI2VPipeline(unet=unet, vae=vae, image_encoder=image_encoder, scheduler=svd_scheduler(),
                         feature_extractor=CLIPImageProcessor(crop_size=224, size={"shortest_edge": 224}))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _image(setup: Setup):
    from PIL import Image

    return Image.fromarray((np.random.RandomState(0).rand(setup.height, setup.width, 3) * 255).astype(np.uint8))


def _free(device: str) -> None:
    import gc

    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


class Suite:
    def __init__(self, setup: Setup, out: Path, budget_s: float):
        self.setup, self.out, self.deadline = setup, out, time.perf_counter() + budget_s
        self.result = {"machine": _machine(setup.device), "setup": {**dataclasses.asdict(setup), "dtype": str(setup.dtype)},
                       "date": time.strftime("%Y-%m-%d %H:%M"), "cases": [], "skipped": []}
        self._plans: dict = {}
        self._pipes: dict = {}

    def left(self) -> float:
        return self.deadline - time.perf_counter()

    def save(self) -> None:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.result, indent=1, default=str))
        tmp.replace(self.out)

    def pipe(self, frames: int, offload: bool = False):
        key = (frames, offload)
        if key not in self._pipes:
            for other in list(self._pipes):
                del self._pipes[other]
            _free(self.setup.device)
            t = time.perf_counter()
            pipe = build_pipeline(self.setup, frames)
            if offload and self.setup.device != "cpu":
                pipe.to("cpu")
                pipe.enable_model_cpu_offload(device=self.setup.device)
            self._pipes[key] = pipe
            self.result.setdefault("build_s", {})[f"{frames}f{'-offload' if offload else ''}"] = round(time.perf_counter() - t, 2)
        return self._pipes[key]

    def plan(self, frames: int, steps: int, config):
        from sgi2v.cost.plan import estimate

        key = (frames, steps, dataclasses.replace(config, iterations=1))  # the peaks do not depend on iterations
        if key not in self._plans:
            t = time.perf_counter()
            self._plans[key] = estimate(self.setup.model, device=self.setup.device, dtype=self.setup.dtype,
                                        height=self.setup.height, width=self.setup.width, num_frames=frames,
                                        num_inference_steps=steps, config=config)
            self._plans[key]["estimate_s"] = round(time.perf_counter() - t, 2)
        return self._plans[key]

    def case(self, name: str, need_s: float, fn) -> None:
        if self.left() < need_s:
            self.result["skipped"].append({"case": name, "reason": f"{self.left():.0f} s left, needs about {need_s:.0f}"})
            print(f"suite: skipped {name} ({self.left():.0f} s left)", flush=True)
            self.save()
            return
        t = time.perf_counter()
        try:
            entry = {"case": name, **fn()}
        except Exception as err:  # one failing case must not lose the others
            entry = {"case": name, "error": f"{type(err).__name__}: {err}"[:2000]}
        entry["case_s"] = round(time.perf_counter() - t, 2)
        self.result["cases"].append(entry)
        print(json.dumps({k: v for k, v in entry.items() if k in ("case", "error", "case_s", "wall_s", "peak_gib", "ratios")},
                         default=str), flush=True)
        self.save()

    def run_case(self, *, frames: int, steps: int, config, mode: str, track: bool) -> dict:
        from sgi2v.cost.graph import PHASES, example_boxes
        from sgi2v.cost.measure import measure_call

        s = self.setup
        offload = mode.startswith("offload")
        pipe = self.pipe(frames, offload=offload)
        _free(s.device)
        measured = measure_call(pipe, s.device, track=track, image=_image(s), boxes=example_boxes(frames, s.height, s.width),
                                config=config, height=s.height, width=s.width, num_frames=frames, num_inference_steps=steps,
                                generator=torch.Generator().manual_seed(0), output_type="np",
                                gradient_checkpointing="checkpointing" in mode)
        frames_out = measured.pop("output").frames
        plan = self.plan(frames, steps, config)
        predicted = plan["modes"][mode]  # (its "flops" and "optimize_passes" are for one iteration per step)
        predicted_peak = predicted_peak_bytes(predicted, config)
        entry = {"mode": mode, "frames": frames, "steps": steps, "iterations": config.iterations,
                 "optimized_steps": len(config.optimize_timesteps) if config.enabled else 0,
                 "finite": bool(np.isfinite(frames_out).all()), "wall_s": round(measured["wall_s"], 3),
                 "phase_seconds": {k: round(v, 4) for k, v in measured["seconds"].items()}, "phase_calls": measured["calls"],
                 "predicted_phase_bytes": {p: predicted["phases"][p]["peak_bytes"] for p in PHASES},
                 "predicted_peak_bytes": predicted_peak, "estimate_s": plan["estimate_s"],
                 "flops": {p: predicted["phases"][p]["flops"] for p in PHASES}}
        ratios = {}
        if measured.get("phases"):
            entry["tracked_phase_bytes"] = measured["phases"]
            entry["tracked_peak_bytes"] = measured["peak_bytes"]
            ratios["tracked"] = {p: round(entry["predicted_phase_bytes"][p] / v, 4) for p, v in measured["phases"].items()
                                 if v and p in entry["predicted_phase_bytes"]}
        if "allocator_phases" in measured:
            entry["allocator_phase_bytes"] = measured["allocator_phases"]
            entry["max_memory_allocated"] = measured["max_memory_allocated"]
            entry["max_memory_reserved"] = measured["max_memory_reserved"]
            entry["peak_gib"] = round(measured["max_memory_allocated"] / GiB, 3)
            ratios["allocator"] = {p: round(entry["predicted_phase_bytes"][p] / v, 4) for p, v in measured["allocator_phases"].items()
                                   if v and p in entry["predicted_phase_bytes"]}
            ratios["allocator_peak"] = round(predicted_peak / max(1, measured["max_memory_allocated"]), 4)
        achieved = {}
        for p in PHASES:
            calls, secs = measured["calls"].get(p, 0), measured["seconds"].get(p, 0.0)
            if calls and secs:
                achieved[p] = round(entry["flops"][p] * calls / secs / 1e12, 1)
        entry["achieved_tflops"] = achieved
        entry["ratios"] = ratios
        return entry

    def time_case(self, *, frames: int, steps: int, config) -> dict:
        """``sgi2v estimate --measure``'s prediction of the whole runs, against the ``plain`` and ``sgi2v`` cases'
        measured walls when they ran before it."""
        from sgi2v.cost.graph import architecture
        from sgi2v.cost.timing import measure_time

        s = self.setup
        passes = config.optimization_passes(steps)
        measured = measure_time(architecture(s.model), device=s.device, dtype=s.dtype, mode="none", height=s.height,
                                width=s.width, num_frames=frames, num_inference_steps=steps, optimize_passes=passes,
                                config=config, pipe=self.pipe(frames))
        walls = {c["case"]: c["wall_s"] for c in self.result["cases"] if "wall_s" in c}
        ratios = {run: round(measured["run_s"][run] / walls[run], 4) for run in ("plain", "sgi2v") if walls.get(run)}
        return {"frames": frames, "steps": steps, "passes": passes, "predicted_s": measured["run_s"],
                "per_call_s": measured["per_call_s"], "first_unet_extra_s": measured["first_unet_extra_s"],
                "measure_s": round(measured["measure_s"], 2), "ratios": {"predicted_over_measured": ratios}}

    def budget_case(self, *, budget_gib: float, frames: int, steps: int, config, mode: str) -> dict:
        from sgi2v.cost.plan import fits

        s = self.setup
        budget = int(budget_gib * GiB)
        predicted = predicted_peak_bytes(self.plan(frames, steps, config)["modes"][mode], config)
        verdict = fits(predicted, budget, s.device)
        self.pipe(frames, offload=mode.startswith("offload"))  # weights in place before the context is read
        _free(s.device)
        free, total = torch.cuda.mem_get_info()
        outside = total - free - torch.cuda.memory_reserved()
        torch.cuda.set_per_process_memory_fraction(allocator_fraction(budget, total, outside))
        entry = {"budget_gib": budget_gib, "outside_allocator_bytes": outside, "estimate_fits": verdict}
        try:
            entry.update(self.run_case(frames=frames, steps=steps, config=config, mode=mode, track=False))
            entry["ran"] = True
        except torch.cuda.OutOfMemoryError as err:
            entry.update(mode=mode, frames=frames, predicted_peak_bytes=predicted, ran=False,
                         out_of_memory=str(err).splitlines()[0][:300])
        finally:
            torch.cuda.set_per_process_memory_fraction(1.0)
            _free(s.device)
        entry["estimate_right"] = verdict == entry["ran"]
        return entry

    def compiled_run(self, *, frames: int, steps: int, config) -> dict:
        pipe = self.pipe(frames)
        pipe.compile_unet(backend=self.setup.compile_backend)
        try:
            first = self.run_case(frames=frames, steps=steps, config=config, mode="none", track=False)
            steady = self.run_case(frames=frames, steps=steps, config=config, mode="none", track=False)
        finally:
            pipe._compiled_unet = None
        return {"backend": self.setup.compile_backend, "first_wall_s": first["wall_s"],
                "first_phase_seconds": first["phase_seconds"], **steady}

    def compile_case(self) -> dict:
        s = self.setup
        frames = s.frames[0]
        pipe = self.pipe(frames)
        unet = pipe.unet
        h, w = s.height // 8, s.width // 8
        g = torch.Generator().manual_seed(0)
        x = torch.randn(2, frames, 8, h, w, generator=g).to(s.device, s.dtype)
        emb = torch.randn(2, 1, unet.config.cross_attention_dim, generator=g).to(s.device, s.dtype)
        ids = torch.tensor([[6.0, 127.0, 0.02]] * 2).to(s.device, s.dtype)
        t = torch.tensor(10.0, device=s.device)

        def step(model):
            with torch.no_grad():
                out = model(x, t, encoder_hidden_states=emb, added_time_ids=ids, return_dict=False)[0]
            if s.device == "cuda":
                torch.cuda.synchronize()
            return out

        def timed(model, n):
            start = time.perf_counter()
            for _ in range(n):
                out = step(model)
            return (time.perf_counter() - start) / n, out

        step(unet)
        eager_s, eager = timed(unet, 3)
        compiled = torch.compile(unet, backend=s.compile_backend)
        first_s, _ = timed(compiled, 1)
        steady_s, out = timed(compiled, 3)
        diff = (out.float() - eager.float()).abs().max().item()
        return {"backend": s.compile_backend, "frames": frames, "first_call_s": round(first_s, 3),
                "eager_step_s": round(eager_s, 4), "compiled_step_s": round(steady_s, 4),
                "speedup": round(eager_s / steady_s, 3), "max_abs_diff": diff,
                "eager_max_abs": eager.float().abs().max().item()}


def predicted_peak_bytes(mode_plan: dict, config) -> int:
    """The predicted peak of a run in one mode of a plan: a plain run (``config.enabled`` false) has no
    optimisation pass, so its peak is that of its other phases."""
    return max(v["peak_bytes"] for p, v in mode_plan["phases"].items() if config.enabled or p != "optimize_pass")


def allocator_fraction(budget_bytes: int, total_bytes: int, outside_bytes: int) -> float:
    """The ``torch.cuda.set_per_process_memory_fraction`` that leaves torch's allocator what a card of
    ``budget_bytes`` would: the budget less what is held outside the allocator (the CUDA context)."""
    if budget_bytes - outside_bytes <= 0 or budget_bytes > total_bytes:
        raise ValueError(f"a budget of {budget_bytes} bytes cannot be modelled on {total_bytes} bytes "
                         f"with {outside_bytes} held outside the allocator")
    return (budget_bytes - outside_bytes) / total_bytes


BUDGET_CASES = (  # (GiB, mode, frames index): each mode near the edge of a common card size, on both sides
    (16, "checkpointing", 0), (12, "checkpointing", 0), (16, "offload+checkpointing", 0),
    (12, "offload+checkpointing", 0), (16, "checkpointing", 1), (24, "checkpointing", 1))


def _machine(device: str) -> dict:
    info = {"platform": platform.platform(), "python": sys.version.split()[0], "torch": torch.__version__,
            "cpu_count": os.cpu_count()}
    try:
        import diffusers

        info["diffusers"] = diffusers.__version__
    except ImportError:
        pass
    if device == "cuda" and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, gpu_memory_bytes=props.total_memory, cuda=torch.version.cuda,
                    capability=f"{props.major}.{props.minor}", sdpa_flash=torch.backends.cuda.flash_sdp_enabled())
    return info


def main() -> int:
    from sgi2v import SGI2VConfig

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu-smoke", action="store_true", help="the same cases on the CPU, tiny model, tiny size")
    parser.add_argument("--out", default="benchmarks/results/gpu/gpu-suite.json")
    parser.add_argument("--budget-s", type=float, default=None, help="wall time for all cases (default 460 on a GPU, "
                        "unlimited for the smoke run)")
    parser.add_argument("--skip", nargs="*", default=[], help="case names to leave out")
    parser.add_argument("--cases", nargs="*", default=None, help="run these cases (by name, in this order) instead "
                        "of the default ones; budget:* and sgi2v:compiled are only run when named")
    args = parser.parse_args()
    setup = SMOKE if args.cpu_smoke else GPU
    if setup.device == "cuda" and not torch.cuda.is_available():
        print("suite: no CUDA device here; use --cpu-smoke to check the suite on the CPU", file=sys.stderr)
        return 2
    budget = args.budget_s if args.budget_s is not None else (1e9 if args.cpu_smoke else 460.0)
    suite = Suite(setup, Path(args.out), budget)
    full = setup.full_steps
    paper = SGI2VConfig().scaled_to_steps(full)
    plain = dataclasses.replace(paper, iterations=0)
    short = SGI2VConfig(optimize_timesteps=(3, 2), iterations=2)
    gpu = not args.cpu_smoke
    cases = [
        ("plain", 40 if gpu else 0, lambda: suite.run_case(frames=setup.frames[0], steps=full, config=plain, mode="none", track=False)),
        ("sgi2v", 90 if gpu else 0, lambda: suite.run_case(frames=setup.frames[0], steps=full, config=paper, mode="none", track=False)),
        ("time", 20 if gpu else 0, lambda: suite.time_case(frames=setup.frames[0], steps=full, config=paper)),
    ]
    for mode in ("none", "checkpointing", "offload", "offload+checkpointing"):
        cases.append((f"mode:{mode}:{setup.frames[0]}f", 40 if gpu else 0,
                      lambda mode=mode: suite.run_case(frames=setup.frames[0], steps=3, config=short, mode=mode, track=True)))
    for mode in ("none", "checkpointing"):
        cases.append((f"mode:{mode}:{setup.frames[1]}f", 50 if gpu else 0,
                      lambda mode=mode: suite.run_case(frames=setup.frames[1], steps=3, config=short, mode=mode, track=True)))
    cases.append(("compile", 150 if gpu else 0, suite.compile_case))
    named = {name: (need, fn) for name, need, fn in cases}
    if gpu:
        for gib, mode, index in BUDGET_CASES:
            frames = setup.frames[index]
            named[f"budget:{gib}GiB:{mode}:{frames}f"] = (40, lambda gib=gib, mode=mode, frames=frames: suite.budget_case(
                budget_gib=gib, frames=frames, steps=3, config=short, mode=mode))
    named["sgi2v:compiled"] = (240 if gpu else 0, lambda: suite.compiled_run(frames=setup.frames[0], steps=full, config=paper))
    wanted = args.cases if args.cases is not None else [name for name, _, _ in cases]
    unknown = [name for name in wanted if name not in named]
    if unknown:
        print(f"suite: unknown case {unknown[0]!r}; known: {', '.join(named)}", file=sys.stderr)
        return 2
    for name in wanted:
        if name not in args.skip:
            suite.case(name, *named[name])
    errors = [c for c in suite.result["cases"] if "error" in c]
    print(f"suite: wrote {suite.out}: {len(suite.result['cases'])} cases, {len(errors)} failed, "
          f"{len(suite.result['skipped'])} skipped", flush=True)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
