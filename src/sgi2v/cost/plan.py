"""The cost of one generation per memory mode: peak device memory and FLOPs, what fits a budget, what
``auto`` would choose.

A mode is where the weights live and whether the optimisation passes checkpoint:

- ``none``: every network on the device, full activations;
- ``checkpointing``: every network on the device, the UNet's sub-blocks recomputed during backward;
- ``offload`` and ``offload+checkpointing``: model CPU offload, only the running network on the device (and
  the image encoder while the VAE encodes).

A phase's peak is the weights on the device during it plus the peak of its other tensors, traced by
:func:`sgi2v.cost.graph.trace_phases`. The run's peak is the largest phase's. On the CPU offload does
nothing (the pipeline ignores it there), so its modes equal the others.
"""

from __future__ import annotations

import json
import re

import torch

from .graph import PHASES, architecture, meta_pipeline, trace_phases, weight_bytes

__all__ = ["MODES", "estimate", "format_plan", "parse_bytes", "FRAGMENTATION", "CUDA_CONTEXT_BYTES", "fits"]

MODES = ("none", "checkpointing", "offload", "offload+checkpointing")
#: Allowance on CUDA for the caching allocator's fragmentation and for the CUDA context (outside torch's
#: allocator): a mode fits when ``peak * (1 + FRAGMENTATION) + CUDA_CONTEXT_BYTES <= budget``. The context
#: and libraries held 0.60-0.77 GiB outside the allocator on an NVIDIA H200 (CUDA 13, torch 2.11; the GPU
#: suite's budget cases, benchmarks/results/gpu/gpu-budgets-h200.json): 0.8 GiB covers that.
FRAGMENTATION = 0.10
CUDA_CONTEXT_BYTES = int(0.8 * 2**30)
#: Memory units: K, M, G, T with or without B or iB, all binary (a "16 GB" GPU holds 16 GiB).
_UNITS = {"": 1, "B": 1, **{f"{p}{suffix}": 2 ** (10 * (i + 1)) for i, p in enumerate("KMGT") for suffix in ("", "B", "IB")}}


def parse_bytes(text: str) -> int:
    """``16GB``, ``16 GiB``, ``12.5G``, ``8000MB`` or a plain number of bytes; the units are binary
    (``16GB`` is 16 x 2^30 bytes, the memory of a GPU sold as 16 GB)."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", str(text))
    unit = match.group(2).upper() if match else None
    if not match or unit not in _UNITS:
        raise ValueError(f"not an amount of memory: {text!r} (e.g. 16GB, 24GiB, 8000MB)")
    value = float(match.group(1)) * _UNITS[unit]
    if value <= 0:
        raise ValueError(f"the memory budget must be positive, got {text!r}")
    return int(value)


def fits(peak_bytes: int, budget_bytes: int | None, device_type: str) -> bool | None:
    """Whether a peak fits the budget (with the CUDA allowances on CUDA); None without a budget."""
    if budget_bytes is None:
        return None
    if device_type == "cuda":
        return peak_bytes * (1 + FRAGMENTATION) + CUDA_CONTEXT_BYTES <= budget_bytes
    return peak_bytes <= budget_bytes


def estimate(model: str, *, device: str = "cuda", dtype: torch.dtype = torch.float16, height: int = 576, width: int = 1024,
             num_frames: int | None = None, num_inference_steps: int = 50, max_guidance_scale: float = 3.0,
             decode_chunk_size: int = 8, config=None, budget_bytes: int | None = None, offload: bool = False) -> dict:
    """The plan of one generation (see the module's doc). ``device`` is a device type or name
    (``cuda``, ``cuda:1``, ``cpu``, ``mps``): nothing is allocated on it, and it need not exist here.

    Returns ``{"device", "dtype", "budget_bytes", "auto", "modes": {MODE: {"peak_bytes", "fits",
    "phases": {PHASE: {"peak_bytes", "flops"}}}}, ...}`` with, besides, the weights, the activation
    peaks, the number of optimisation passes and the FLOPs of a whole run, plain SVD and SG-I2V.
    """
    from ..config import SGI2VConfig

    config = SGI2VConfig().scaled_to_steps(num_inference_steps) if config is None else config
    device_type = torch.device(device).type
    arch = architecture(model)
    num_frames = arch.num_frames if num_frames is None else num_frames
    guidance = max_guidance_scale > 1.0
    pipe = meta_pipeline(arch, dtype)
    traced = trace_phases(arch, height=height, width=width, num_frames=num_frames, dtype=dtype, device_type=device_type,
                          num_inference_steps=num_inference_steps, guidance=guidance, decode_chunk_size=decode_chunk_size,
                          config=config, pipe=pipe)
    weights = {name: weight_bytes(getattr(pipe, name)) for name in ("unet", "vae", "image_encoder")}
    vae_encode = weight_bytes(pipe.vae, traced["vae_encode_dtype"])
    total = sum(weights.values())
    on_device_offload = device_type != "cpu"

    def phase_peaks(checkpointing: bool, offloaded: bool) -> dict:
        offloaded = offloaded and on_device_offload
        enc = traced["encode"].detail
        if offloaded:
            # diffusers' model offload moves a network back to the CPU only when the next one in its sequence
            # (image encoder -> UNet -> VAE) runs, so the image encoder is still on the device while the VAE encodes
            encode = weights["image_encoder"] + max(enc["clip"], vae_encode + enc["vae"])
            resident = {"denoise_step": weights["unet"], "optimize_pass": weights["unet"], "decode": weights["vae"]}
        else:
            encode = max(total + enc["clip"], total - weights["vae"] + vae_encode + enc["vae"])
            resident = dict.fromkeys(("denoise_step", "optimize_pass", "decode"), total)
        passes = {"encode": encode,
                  "denoise_step": resident["denoise_step"] + traced["denoise_step"].activation_bytes,
                  "optimize_pass": resident["optimize_pass"] + traced["optimize_pass"][checkpointing].activation_bytes,
                  "decode": resident["decode"] + traced["decode"].activation_bytes}
        flops = {"encode": traced["encode"].flops, "denoise_step": traced["denoise_step"].flops,
                 "optimize_pass": traced["optimize_pass"][checkpointing].flops, "decode": traced["decode"].flops}
        return {phase: {"peak_bytes": int(passes[phase]), "flops": int(flops[phase])} for phase in PHASES}

    passes = config.optimization_passes(num_inference_steps)
    modes = {}
    for mode in MODES:
        phases = phase_peaks("checkpointing" in mode, mode.startswith("offload"))
        peak = max(p["peak_bytes"] for p in phases.values())
        plain = phases["encode"]["flops"] + num_inference_steps * phases["denoise_step"]["flops"] + phases["decode"]["flops"]
        modes[mode] = {"peak_bytes": peak, "fits": fits(peak, budget_bytes, device_type), "phases": phases,
                       "flops": {"plain": plain, "sgi2v": plain + passes * phases["optimize_pass"]["flops"]}}
    family = ("offload", "offload+checkpointing") if offload else ("none", "checkpointing")
    auto = family[0]
    if passes and device_type == "cuda" and modes[family[0]]["fits"] is False:
        auto = family[1]  # as the pipeline decides: checkpoint only when the unchecked passes do not fit
    return {
        "model": model, "architecture_source": arch.source, "device": str(device), "dtype": str(dtype).replace("torch.", ""),
        "height": height, "width": width, "num_frames": num_frames, "num_inference_steps": num_inference_steps,
        "guidance": guidance, "decode_chunk_size": decode_chunk_size, "optimize_passes": passes,
        "budget_bytes": budget_bytes, "auto": auto, "offload": offload,
        "weights_bytes": {**weights, "total": total},
        "activation_bytes": {"encode": traced["encode"].activation_bytes, "denoise_step": traced["denoise_step"].activation_bytes,
                             "optimize_pass": traced["optimize_pass"][False].activation_bytes,
                             "optimize_pass_checkpointing": traced["optimize_pass"][True].activation_bytes,
                             "decode": traced["decode"].activation_bytes},
        "allowance": {"fragmentation": FRAGMENTATION, "cuda_context_bytes": CUDA_CONTEXT_BYTES} if device_type == "cuda" else None,
        "modes": modes,
    }


def _memory_unit(plan: dict) -> tuple[str, int, int]:
    """The unit of a printed plan's memory figures: ``(name, bytes, decimals)``, GiB unless its largest peak is under
    1 GiB (a small model, or a small size), then MiB, so that its figures do not all read 0.00."""
    largest = max(m["peak_bytes"] for m in plan["modes"].values())
    return ("GiB", 2**30, 2) if largest >= 2**30 else ("MiB", 2**20, 1)


def _amount(n: int, unit: tuple[str, int, int]) -> str:
    """``n`` bytes in ``unit`` (:func:`_memory_unit`); a size above 0 that would round to 0 reads "<0.01" (or "<0.1")."""
    _, size, decimals = unit
    text = f"{n / size:.{decimals}f}"
    if n > 0 and float(text) == 0:
        return f"<{10 ** -decimals:.{decimals}f}"
    return text


def format_size(n: int) -> str:
    """A size in bytes for a sentence: GiB with two decimals, or MiB (or bytes) where that would read 0.00 GiB."""
    if n >= 0.01 * 2**30:
        return f"{n / 2**30:.2f} GiB"
    if n >= 0.01 * 2**20:
        return f"{n / 2**20:.2f} MiB"
    return f"{int(n)} bytes"


def describe_mode(mode: str) -> str:
    """A memory-saving mode's name for a sentence: ``none`` reads as "none (no memory saving)"."""
    return "none (no memory saving)" if mode == "none" else mode


def shrink_hint(plan: dict) -> str:
    """What to change when a plan's mode does not fit its budget (offload only where it is not on and would help)."""
    offload = "" if plan["offload"] or torch.device(plan["device"]).type == "cpu" else ", or add --offload"
    return f"lower the size, the frames or --decode-chunk-size{offload}"


def _tflop(n: int) -> str:
    return f"{n / 1e12:.2f}" if n >= 1e10 else f"{n / 1e12:.4f}"


def format_plan(plan: dict) -> str:
    """The plan as a few lines and a table, for the terminal."""
    budget = plan["budget_bytes"]
    unit = _memory_unit(plan)
    size = lambda n: _amount(n, unit)  # noqa: E731
    weights = plan["weights_bytes"]
    lines = [
        f"{plan['model']} on {plan['device']} in {plan['dtype']}: {plan['width']}x{plan['height']}, {plan['num_frames']} frames, "
        f"{plan['num_inference_steps']} steps, {plan['optimize_passes']} optimisation passes"
        f" (architecture from {plan['architecture_source']})",
        f"weights {size(weights['total'])} {unit[0]} (UNet {size(weights['unet'])}, VAE {size(weights['vae'])}, "
        f"CLIP {size(weights['image_encoder'])})",
        f"tensors beside the weights at each phase's transient peak, {unit[0]}: encode {{encode}}, denoise step "
        "{denoise_step}, optimisation pass {optimize_pass} ({optimize_pass_checkpointing} with checkpointing), decode "
        "{decode}".format(**{k: size(v) for k, v in plan["activation_bytes"].items()}),
        "",
        f"predicted peak device memory, {unit[0]} (weights + tensors); TFLOP per phase",
        f"{'mode':<22} {'peak':>7} {'encode':>7} {'step':>7} {'optim':>7} {'decode':>7}   fits",
    ]
    for mode, m in plan["modes"].items():
        p = m["phases"]
        fit = "-" if m["fits"] is None else "yes" if m["fits"] else "no"
        lines.append(f"{mode:<22} {size(m['peak_bytes']):>7} {size(p['encode']['peak_bytes']):>7} "
                     f"{size(p['denoise_step']['peak_bytes']):>7} {size(p['optimize_pass']['peak_bytes']):>7} "
                     f"{size(p['decode']['peak_bytes']):>7}   {fit}")
    p = plan["modes"]["none"]["phases"]
    lines.append(f"{'TFLOP per call':<22} {'':>7} {_tflop(p['encode']['flops']):>7} {_tflop(p['denoise_step']['flops']):>7} "
                 f"{_tflop(p['optimize_pass']['flops']):>7} {_tflop(p['decode']['flops']):>7}")
    flops = plan["modes"]["none"]["flops"]
    lines.append(f"whole run: plain SVD {_tflop(flops['plain'])} TFLOP, SG-I2V {_tflop(flops['sgi2v'])} TFLOP "
                 f"({plan['modes']['checkpointing']['flops']['sgi2v'] / 1e12:.2f} with checkpointing)")
    auto = describe_mode(plan["auto"])
    if budget is None:
        lines.append(f"auto would choose: {auto}; no --memory-budget given, so memory is assumed ample")
    else:
        allowance = " with 10 % for fragmentation and 0.8 GiB for the CUDA context" if plan["allowance"] else ""
        fitting = [mode for mode, m in plan["modes"].items() if m["fits"]]
        lines.append(f"budget {format_size(budget)}{allowance}: " + (f"fits {', '.join(fitting)}" if fitting else "no mode fits"))
        if plan["modes"][plan["auto"]]["fits"] is False:
            auto += f", which does not fit either: {shrink_hint(plan)}"
        lines.append(f"auto would choose: {auto}")
    return "\n".join(lines)


def write_plan(plan: dict, path) -> None:
    from ..generation import write_text_atomic

    write_text_atomic(path, json.dumps(plan, indent=1) + "\n")

