"""Predict what a generation costs on a device before running it: peak device memory and FLOPs of each phase
(encode, one guided denoising step, one SG-I2V optimisation pass, decode), with checkpointing off and on and
with model offload, which of them fit a memory budget, and what ``auto`` would choose.

It reads the model's architecture (bundled configs for Stability's SVD models, the config files of a local
folder) and traces the pipeline on shapes only: no weights are loaded and the device need not be here, so
``--device cuda --dtype float16`` works on a machine without a GPU. Takes the same options as ``generate``.

``--measure`` also predicts the run's time on the device here, from a short run of each phase with random
weights of the model's architecture (:mod:`sgi2v.cost.timing`)."""

from __future__ import annotations

import sys

__all__ = ["add_arguments", "run", "plan_for", "measure_for"]


def add_arguments(parser) -> None:
    from ..cli import add_model_options, add_setting_options
    from ..paths import OUT_FILE, path_option

    parser.add_argument("--memory-budget", metavar="BYTES", help="device memory to plan for, e.g. 16GB (GB and GiB both mean "
                        "2^30 bytes, as GPUs are sold); default: the device's total memory when it is a CUDA device here, "
                        "else none")
    path_option(parser.add_argument("--json", metavar="FILE", help="also write the plan as JSON (see docs/cost.md)"), OUT_FILE,
                "plan file")
    parser.add_argument("--measure", action="store_true",
                        help="also predict the run's seconds on this device: builds the model's architecture with random "
                             "weights here and times a short run of each phase in the mode these settings would use: about "
                             "14 UNet calls, seconds on a GPU, but on a CPU at SVD's size as long as 14 of the run's steps")
    add_model_options(parser)
    add_setting_options(parser)


def plan_for(model: str, settings, config, budget_bytes: int | None = None) -> dict:
    """The plan of one generation of ``model`` with resolved ``settings`` and ``config``; ``chosen`` is the
    mode those settings would run in."""
    import torch

    from ..loading import resolve_device, resolve_dtype
    from .plan import estimate

    device = str(resolve_device(settings.device, must_exist=False))  # the device planned for need not be here
    dtype = resolve_dtype(settings.dtype, torch.device(device), model)
    if budget_bytes is None and torch.device(device).type == "cuda" and torch.cuda.is_available():
        index = torch.device(device).index or 0
        if index < torch.cuda.device_count():
            budget_bytes = torch.cuda.get_device_properties(index).total_memory
    plan = estimate(model, device=device, dtype=dtype, height=settings.height, width=settings.width,
                    num_frames=settings.num_frames, num_inference_steps=settings.num_inference_steps,
                    max_guidance_scale=settings.max_guidance_scale, decode_chunk_size=settings.decode_chunk_size,
                    config=config, budget_bytes=budget_bytes, offload=settings.offload)
    offload = "offload+" if settings.offload and torch.device(device).type != "cpu" else ""
    choice = {"on": "checkpointing", "off": "none"}.get(settings.gradient_checkpointing)
    if choice is None:
        plan["chosen"] = plan["auto"]
    else:
        plan["chosen"] = (offload + choice) if offload and choice == "checkpointing" else ("offload" if offload else choice)
    return plan


def measure_for(model: str, settings, config, plan: dict) -> dict:
    """:func:`sgi2v.cost.timing.measure_time` for the plan's run, in the mode it would run in."""
    import torch

    from .graph import architecture
    from .timing import measure_time

    return measure_time(architecture(model), device=plan["device"], dtype=getattr(torch, plan["dtype"]), mode=plan["chosen"],
                        height=plan["height"], width=plan["width"], num_frames=plan["num_frames"],
                        num_inference_steps=plan["num_inference_steps"], optimize_passes=plan["optimize_passes"],
                        max_guidance_scale=settings.max_guidance_scale, min_guidance_scale=settings.min_guidance_scale,
                        decode_chunk_size=plan["decode_chunk_size"], config=config)


def format_measured(measured: dict, plan: dict) -> str:
    """The measured seconds as two lines, for the terminal."""
    per = measured["per_call_s"]
    run = measured["run_s"]
    return (f"measured here ({measured['device']}, {measured['dtype']}, {measured['mode']}, random weights, "
            f"{measured['measure_s']:.1f} s to measure): encode {per['encode']:.2f} s, denoise step {per['denoise_step']:.3f} s, "
            f"optimisation pass {per['optimize_pass']:.3f} s, decode {per['decode']:.2f} s\n"
            f"predicted whole run ({plan['num_inference_steps']} steps, {plan['optimize_passes']} passes; loading not "
            f"included): plain SVD {run['plain']:.1f} s, SG-I2V {run['sgi2v']:.1f} s")


def run(args) -> int:
    from ..cli import UsageError, model_name, setting_values
    from pathlib import Path

    from ..generation import _check_writable
    from ..settings import resolve_settings
    from .plan import describe_mode, format_plan, format_size, parse_bytes, shrink_hint, write_plan

    try:
        budget = None if args.memory_budget is None else parse_bytes(args.memory_budget)
    except ValueError as err:
        raise UsageError(f"--memory-budget: {err}") from None
    model = model_name(args)
    settings, config = resolve_settings(setting_values(args), model=model, source="")
    json_path = Path(args.json) if args.json else None
    if json_path is not None:
        _check_writable([json_path], True, "it")
    if args.measure:
        from ..loading import resolve_device

        resolve_device(settings.device)  # the device timed must be here
    plan = plan_for(model, settings, config, budget)
    print(format_plan(plan))
    print(f"these settings would run in: {describe_mode(plan['chosen'])}")
    if args.measure:
        chosen = plan["modes"][plan["chosen"]]
        if chosen["fits"] is False:
            raise UsageError(f"--measure: {describe_mode(plan['chosen'])} does not fit the memory budget here (predicted "
                             f"peak {format_size(chosen['peak_bytes'])}), so the run cannot be timed; {shrink_hint(plan)}")
        plan["measured"] = measure_for(model, settings, config, plan)
        print(format_measured(plan["measured"], plan))
    if json_path is not None:
        write_plan(plan, json_path)
        print(f"wrote {json_path}", file=sys.stderr)
    return 0
