"""How far the sprites model's half-precision UNet calls are from float32's, on the inputs of a real run.

A plain run of a held-out control case (the generation road of ``control.py``, float32, 50 steps) records every
UNet call's inputs; every seventh call and the last are replayed through float16 and bfloat16 copies of the
UNet, with the default attention kernels and with PyTorch's plain ("math") attention. Prints the relative error
of each output, ``|out - out_fp32| / |out_fp32|``, and the largest activation of each top-level block in float32
(float16 overflows above 65504). Writes JSON; no timings.

    python benchmarks/sprites_precision.py --case 1                  # the CPU
    python benchmarks/sprites_precision.py --case 1 --device cuda    # where float16 runs its own kernels
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", type=int, default=1, help="held-out control case (default 1)")
    parser.add_argument("--model", default="sprites")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", default=None, help="write the figures here")
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
    result, _ = control.run_one(pipe, "plain", case, args.model)
    handle.remove()
    halves = {"float16": copy.deepcopy(pipe.unet).to(torch.float16), "bfloat16": copy.deepcopy(pipe.unet).to(torch.bfloat16)}
    peaks: dict[str, float] = {}

    def peak(name):
        def hook(module, a, out):
            out = out[0] if isinstance(out, tuple) else out
            if torch.is_tensor(out):
                peaks[name] = max(peaks.get(name, 0.0), out.detach().abs().max().item())
        return hook

    hooks = [m.register_forward_hook(peak(n)) for n, m in pipe.unet.named_modules() if n and n.count(".") <= 1]
    cast = lambda v, dt: v.to(dt) if torch.is_tensor(v) and v.is_floating_point() else v  # noqa: E731
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
                        out = unet(*(cast(x, dtype) for x in a), **{n: cast(v, dtype) for n, v in k.items()},
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
    if torch.device(args.device).type == "cuda":
        report["gpu"] = torch.cuda.get_device_name(torch.device(args.device))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
