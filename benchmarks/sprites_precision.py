"""How far the sprites model's half-precision UNet calls are from float32's, on the inputs of a real run.

A plain run of a held-out control case (the generation road of ``control.py``, float32, 50 steps) records every
UNet call's inputs; every seventh call and the last are replayed through float16 and bfloat16 copies of the
UNet, with the default attention kernels and with PyTorch's plain ("math") attention. Prints the relative error
of each output, ``|out - out_fp32| / |out_fp32|``, and the largest activation of each top-level block in float32
(float16 overflows above 65504). Writes JSON; no timings.

``--stages`` then makes the same plain run with the whole pipeline loaded in float16 and in bfloat16 and
compares it stage by stage with float32's: each network's outputs within the run (the first and last call,
where differences have compounded) and alone (the half-precision network on float32's recorded inputs), and the
run's own ObjMC, to tell which network a half-precision drift comes from.

    python benchmarks/sprites_precision.py --case 1                  # the CPU
    python benchmarks/sprites_precision.py --case 1 --device cuda    # where float16 runs its own kernels
    python benchmarks/sprites_precision.py --case 1 --device cuda --stages
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _cast(value, dtype):
    """A floating tensor in ``dtype``; anything else as it is."""
    import torch

    return value.to(dtype) if torch.is_tensor(value) and value.is_floating_point() else value


def _first_output(out):
    """The tensor a network's call returns: the first of a tuple, a CLIP output's ``image_embeds``."""
    return out[0] if isinstance(out, (tuple, list)) else getattr(out, "image_embeds", out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", type=int, default=1, help="held-out control case (default 1)")
    parser.add_argument("--model", default="sprites")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", default=None, help="write the figures here")
    parser.add_argument("--stages", action="store_true", help="also compare whole half-precision runs stage by stage")
    args = parser.parse_args(argv)
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel

    sys.path.insert(0, str(HERE))
    import control

    from sgi2v.loading import load_pipeline
    from sgi2v.settings import available_cores
    from sgi2v.sprites.control import make_cases

    torch.set_num_threads(args.threads or available_cores())
    pipe = load_pipeline(args.model, device=args.device, dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    case = make_cases(args.case + 1)[args.case]
    calls = []

    def keep(module, a, k):
        calls.append((tuple(x.clone() for x in a), {n: v.clone() if torch.is_tensor(v) else v for n, v in k.items()
                                                    if n != "return_dict"}))

    handle = pipe.unet.register_forward_pre_hook(keep, with_kwargs=True)
    recorded, stage_handles = _record(pipe) if args.stages else (None, [])
    result, _ = control.run_one(pipe, "plain", case, args.model)
    for h in [handle, *stage_handles]:
        h.remove()
    halves = {"float16": copy.deepcopy(pipe.unet).to(torch.float16), "bfloat16": copy.deepcopy(pipe.unet).to(torch.bfloat16)}
    peaks: dict[str, float] = {}

    def peak(name):
        def hook(module, a, out):
            out = _first_output(out)
            if torch.is_tensor(out):
                peaks[name] = max(peaks.get(name, 0.0), out.detach().abs().max().item())
        return hook

    hooks = [m.register_forward_hook(peak(n)) for n, m in pipe.unet.named_modules() if n and n.count(".") <= 1]
    rows = []
    for i in sorted(set(range(0, len(calls), 7)) | {len(calls) - 1}):
        a, k = calls[i]
        with torch.no_grad():
            reference = pipe.unet(*a, **k, return_dict=False)[0]
            row = {"call": i, "c_noise": round(float(a[1]), 4)}
            for name, unet in halves.items():
                dtype = next(unet.parameters()).dtype
                for attention, backends in (("default", None), ("math", [SDPBackend.MATH])):
                    with sdpa_kernel(backends) if backends else contextlib.nullcontext():
                        out = unet(*(_cast(x, dtype) for x in a), **{n: _cast(v, dtype) for n, v in k.items()},
                                   return_dict=False)[0].float()
                    row[f"{name} {attention}"] = round(((out - reference).norm() / reference.norm()).item(), 5)
        rows.append(row)
        print(json.dumps(row), flush=True)
    for hook in hooks:
        hook.remove()
    largest = dict(sorted(peaks.items(), key=lambda kv: -kv[1])[:8])
    print("largest float32 activations:", {n: round(v, 2) for n, v in largest.items()})
    report = {"model": args.model, "case": args.case, "device": args.device, "torch": torch.__version__,
              "plain_objmc_px": result["objmc_px"], "unet_calls": len(calls), "rows": rows,
              "largest_activations": peaks}
    if args.stages:
        report["stages"] = stages(args, case, recorded, result["objmc_px"])
    if torch.device(args.device).type == "cuda":
        report["gpu"] = torch.cuda.get_device_name(torch.device(args.device))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


STAGES = ("image_encoder", "vae.encoder", "unet", "vae.decoder")


def _record(pipe):
    """Forward hooks keeping each stage's inputs and first output, call by call: ``({stage: [(args, kwargs, out)]}, handles)``."""
    import torch

    calls: dict[str, list] = {name: [] for name in STAGES}
    copy_ = lambda v: v.detach().clone() if torch.is_tensor(v) else v  # noqa: E731

    def hook(name):
        def keep(module, a, k, out):
            out = _first_output(out)
            calls[name].append((tuple(copy_(x) for x in a), {n: copy_(v) for n, v in k.items()}, copy_(out)))
        return keep

    handles = [_module(pipe, name).register_forward_hook(hook(name), with_kwargs=True) for name in STAGES]
    return calls, handles


def _module(pipe, name: str):
    """``vae.decoder`` -> ``pipe.vae.decoder``."""
    first, _, rest = name.partition(".")
    return getattr(pipe, first).get_submodule(rest) if rest else getattr(pipe, first)


def stages(args, case, ref: dict, objmc32: float) -> dict:
    """Whole plain runs in float16 and bfloat16 beside float32's (``ref``, recorded by :func:`_record` during
    main's float32 run), stage by stage (see the module's docstring)."""
    import torch

    import control  # main put this folder on the path

    from sgi2v.loading import load_pipeline

    rel = lambda a, b: round(((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-12)).item(), 5)  # noqa: E731
    out = {"float32": {"objmc_px": objmc32}}
    for dtype_name, dtype in (("float16", torch.float16), ("bfloat16", torch.bfloat16)):
        pipe = load_pipeline(args.model, device=args.device, dtype=dtype)
        pipe.set_progress_bar_config(disable=True)
        got, handles = _record(pipe)
        result, _ = control.run_one(pipe, "plain", case, args.model)
        for h in handles:
            h.remove()
        row = {"objmc_px": result["objmc_px"]}
        (a32, k32, _), (a, k, _) = ref["unet"][0], got["unet"][0]
        half = a32[0].shape[2] // 2  # the noisy latent's channels, then the frame-0 conditioning's
        row["unet_first_inputs"] = {"noisy_latent": rel(a[0][:, :, :half], a32[0][:, :, :half]),
                                    "conditioning_latent": rel(a[0][:, :, half:], a32[0][:, :, half:]),
                                    "timestep": rel(torch.as_tensor(a[1]), torch.as_tensor(a32[1])),
                                    **{n: rel(v, k32[n]) for n, v in k.items() if torch.is_tensor(v)}}
        for name in STAGES:
            module = _module(pipe, name)
            first, last = 0, len(ref[name]) - 1
            row[name] = {"calls": len(ref[name]),
                         "in_run_first": rel(got[name][first][2], ref[name][first][2]),
                         "in_run_last": rel(got[name][last][2], ref[name][last][2])}
            for label, i in (("alone_first", first), ("alone_last", last)):
                a, k, reference = ref[name][i]
                with torch.no_grad():
                    o = module(*(_cast(x, dtype) for x in a), **{n: _cast(v, dtype) for n, v in k.items()})
                row[name][label] = rel(_first_output(o), reference)
        out[dtype_name] = row
        print(json.dumps({dtype_name: row}), flush=True)
        del pipe
    return out


if __name__ == "__main__":
    sys.exit(main())
