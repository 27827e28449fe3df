"""Predict what a generation costs on a device before running it: peak device memory and FLOPs of each phase
(encode, one guided denoising step, one SG-I2V optimisation pass, decode), with checkpointing off and on and
with model offload, which of them fit a memory budget, and what ``auto`` would choose.

It reads the model's architecture (bundled configs for Stability's SVD models, the config files of a local
folder) and traces the pipeline on shapes only: no weights are loaded and the device need not be here, so
``--device cuda --dtype float16`` works on a machine without a GPU. Takes the same options as ``generate``."""

from __future__ import annotations

import sys

__all__ = ["add_arguments", "run", "plan_for"]


def add_arguments(parser) -> None:
    from ..cli import add_model_options, add_setting_options
    from ..paths import OUT_FILE, path_option

    parser.add_argument("--memory-budget", metavar="BYTES", help="device memory to plan for, e.g. 16GB (GB and GiB both mean "
                        "2^30 bytes, as GPUs are sold); default: the device's total memory when it is a CUDA device here, "
                        "else none")
    path_option(parser.add_argument("--json", metavar="FILE", help="also write the plan as JSON (see docs/cost.md)"), OUT_FILE,
                "plan file")
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


def run(args) -> int:
    from ..cli import UsageError, model_name, setting_values
    from pathlib import Path

    from ..generation import _check_writable
    from ..settings import resolve_settings
    from .plan import format_plan, parse_bytes, write_plan

    try:
        budget = None if args.memory_budget is None else parse_bytes(args.memory_budget)
    except ValueError as err:
        raise UsageError(f"--memory-budget: {err}") from None
    model = model_name(args)
    settings, config = resolve_settings(setting_values(args), model=model, source="")
    json_path = Path(args.json) if args.json else None
    if json_path is not None:
        _check_writable([json_path], True, "it")
    plan = plan_for(model, settings, config, budget)
    print(format_plan(plan))
    print(f"these settings would run in: {plan['chosen']}")
    if json_path is not None:
        write_plan(plan, json_path)
        print(f"wrote {json_path}", file=sys.stderr)
    return 0
