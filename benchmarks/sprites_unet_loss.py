"""Where is a trained sprites UNet wrong? Its v-prediction loss at fixed noise levels, on training scenes and on
held-out scenes, for one or more model folders, with the same scenes and the same noise for every model.

    python benchmarks/sprites_unet_loss.py outputs/sprites-3500/model outputs/sprites-6000/model \
        --json benchmarks/results/sprites-unet-loss.json

A loss that is much lower on training scenes than on held-out ones says the model memorises (more data);
the same on both and still falling in training says it is short of steps or size. SG-I2V optimises the
latent at ln sigma 3.6 to 5.9 (the first steps of 50), where the motion is decided. Prints a table and
writes JSON; no timings.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch


def losses(folder: str, seeds: np.ndarray, log_sigmas: list[float], batch: int) -> dict:
    """Mean v-loss per noise level of the model in ``folder`` on the scenes ``seeds`` (forward in time, with the
    image condition), and its spread over scenes."""
    from diffusers import StableVideoDiffusionPipeline

    from sgi2v.sprites.config import TrainConfig
    from sgi2v.sprites.train import _render_data, encode_dataset, v_loss

    pipe = StableVideoDiffusionPipeline.from_pretrained(folder, torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    config = TrainConfig(videos=len(seeds))
    frames, _ = _render_data(config, seeds)
    with torch.no_grad():
        data = encode_dataset(pipe, frames, config, "cpu")
        scaling = pipe.vae.config.scaling_factor
        out = {}
        for k, log_sigma in enumerate(log_sigmas):
            values = []
            for i in range(0, len(seeds), batch):
                x0 = data["latents"][i:i + batch] * scaling
                g = torch.Generator().manual_seed(1000 * k + i)  # the same noise for every model
                noise = torch.randn(x0.shape, generator=g)
                values.append(v_loss(pipe.unet, x0, data["cond"][i:i + batch, 0], data["clip"][i:i + batch, 0],
                                     torch.full((len(x0),), float(log_sigma)), noise, "cpu", reduction="none"))
            values = torch.cat(values).numpy()
            out[str(log_sigma)] = {"mean": round(float(values.mean()), 4), "std": round(float(values.std()), 4)}
    return out


def main() -> int:
    from sgi2v.sprites.config import TRAIN_SEED_LIMIT

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="diffusers model folders (e.g. a train-sprites FOLDER/model)")
    parser.add_argument("--scenes", type=int, default=32, help="training scenes and held-out scenes, each (default 32)")
    parser.add_argument("--log-sigmas", default="-2,-1,0,1,2,3,4,5,6", help="ln sigma values (comma-separated)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", default=None, help="write the figures here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    for folder in args.models:
        if not (Path(folder) / "model_index.json").exists():
            parser.error(f"{folder}: not a diffusers model folder (no model_index.json)")
    log_sigmas = [float(v) for v in args.log_sigmas.split(",")]
    sets = {"train": np.arange(args.scenes), "held_out": TRAIN_SEED_LIMIT + 2000 + np.arange(args.scenes)}
    started = time.perf_counter()
    results = {folder: {name: losses(folder, seeds, log_sigmas, args.batch) for name, seeds in sets.items()}
               for folder in args.models}
    header = "| ln sigma | " + " | ".join(f"{Path(f).parent.name or f} train | held-out" for f in args.models) + " |"
    print(header)
    print("|" + " --- |" * (1 + 2 * len(args.models)))
    for s in log_sigmas:
        cells = [f"{results[f][n][str(s)]['mean']:.4f}" for f in args.models for n in sets]
        print(f"| {s:g} | " + " | ".join(cells) + " |")
    if args.json:
        record = {"scenes": args.scenes, "seeds": {k: [int(v[0]), int(v[-1])] for k, v in sets.items()},
                  "log_sigmas": log_sigmas, "threads": torch.get_num_threads(), "torch": torch.__version__,
                  "seconds": round(time.perf_counter() - started, 1), "models": results}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(record, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
