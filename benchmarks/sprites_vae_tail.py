"""How a sprites VAE's errors are spread over many held-out sprites, not only their largest on 16 scenes.

``train-sprites``'s report gives the mean and the largest colour and centroid error over the sprites of 16 held-out
scenes, and the targets (colour within 25, centroid within 1 px) are about the largest. With 25-40 sprites in 16
scenes the largest is a noisy figure. This script measures every sprite of ``--scenes`` held-out scenes
(``vae_sprite_errors``, the report's own measure) and prints the distribution: percentiles, the share of sprites
over each target, and the colour error by the sprite's size and the number of sprites in its scene.

    python benchmarks/sprites_vae_tail.py "sprites;outputs/vae-long/vae.pt" --scenes 100 --threads 2 \\
        --json benchmarks/results/sprites-vae-tail.json

Each source is a model (name or folder) or a ``train-sprites`` checkpoint (``vae.pt``).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

COLOUR_TARGET, CENTROID_TARGET_PX = 25.0, 1.0
SIZE_BINS = (16, 22, 28, 34, 40.01)


def distribution(sprites: list[dict]) -> dict:
    """Percentiles and shares over the targets of the sprites' colour and centroid errors, and the colour error by
    size and by the number of sprites in the scene."""
    colour = np.array([s["color_error"] for s in sprites if s["color_error"] is not None])
    centroid = np.array([s["centroid_error_px"] for s in sprites if s["centroid_error_px"] is not None])

    def spread(values: np.ndarray, target: float) -> dict:
        p50, p90, p99 = np.percentile(values, [50, 90, 99])
        return {"count": int(len(values)), "mean": round(float(values.mean()), 2), "p50": round(float(p50), 2),
                "p90": round(float(p90), 2), "p99": round(float(p99), 2), "max": round(float(values.max()), 2),
                "share_over_target": round(float((values > target).mean()), 3)}

    def by(key, groups) -> dict:
        out = {}
        for name, keep in groups:
            values = np.array([s["color_error"] for s in sprites if s["color_error"] is not None and keep(s[key])])
            if len(values):
                out[name] = {"count": int(len(values)), "mean": round(float(values.mean()), 2),
                             "share_over_target": round(float((values > COLOUR_TARGET).mean()), 3)}
        return out

    sizes = [(f"{lo:g}-{hi:.0f} px", lambda v, lo=lo, hi=hi: lo <= v < hi) for lo, hi in zip(SIZE_BINS, SIZE_BINS[1:])]
    counts = [(f"{n} in scene", lambda v, n=n: v == n) for n in (1, 2, 3)]
    return {"color_error": spread(colour, COLOUR_TARGET), "centroid_error_px": spread(centroid, CENTROID_TARGET_PX),
            "sprites_lost": int(sum(s["lost"] for s in sprites)),
            "color_error_by_size": by("size", sizes), "color_error_by_sprites": by("sprites", counts)}


def main(argv=None) -> int:
    from sgi2v.sprites.config import TRAIN_SEED_LIMIT
    from sgi2v.sprites.train import load_vae, vae_sprite_errors

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sources", help="';'-separated VAEs: models (names or folders) or train-sprites vae.pt files")
    parser.add_argument("--scenes", type=int, default=100)
    parser.add_argument("--first-scene", type=int, default=TRAIN_SEED_LIMIT + 200_000, help="first held-out scene seed "
                        "(default 1,200,000: not the 16 scenes of train-sprites' report)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    seeds = range(args.first_scene, args.first_scene + args.scenes)
    results = {}
    for source in [s for s in args.sources.split(";") if s]:
        vae = load_vae(source)
        t0 = time.perf_counter()
        psnr, sprites = vae_sprite_errors(vae, seeds)
        result = {"psnr_db": round(psnr, 2), **distribution(sprites),
                  "seconds": round(time.perf_counter() - t0, 1)}
        results[source] = result
        c, p = result["color_error"], result["centroid_error_px"]
        print(f"{source}: {result['psnr_db']} dB over {args.scenes} scenes; colour error over {c['count']} sprites: mean "
              f"{c['mean']}, median {c['p50']}, 90th percentile {c['p90']}, 99th {c['p99']}, max {c['max']}; "
              f"{100 * c['share_over_target']:.1f} % over {COLOUR_TARGET:g}. Centroid error px: median {p['p50']}, "
              f"max {p['max']}; {100 * p['share_over_target']:.1f} % over {CENTROID_TARGET_PX:g} px. "
              f"Lost: {result['sprites_lost']}", flush=True)
        for name, row in {**result["color_error_by_size"], **result["color_error_by_sprites"]}.items():
            print(f"    {name:>12}: {row['count']:4d} sprites, colour error mean {row['mean']:5.1f}, "
                  f"{100 * row['share_over_target']:4.1f} % over {COLOUR_TARGET:g}")
    if args.json:
        record = {"scenes": args.scenes, "first_scene": args.first_scene, "results": results,
                  "machine": {"platform": platform.platform(), "torch": torch.__version__, "threads": args.threads}}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
