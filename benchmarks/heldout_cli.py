"""A held-out check through the command line, as a user would run it.

For scenes from a seed range no test or benchmark uses (default: drawn at random above 2,000,000),
writes the first frame as a PNG and a trajectory JSON, runs

    sgi2v generate IMG --traj T --model sprites --height 128 --width 128 -o sgi2v.mp4
    sgi2v generate IMG --traj T --model sprites --height 128 --width 128 -o plain.mp4 --iterations 0

reads both MP4s back and tracks the sprites by colour against the record's boxes. Prints ObjMC per
case and the means, and writes a JSON.

    python benchmarks/heldout_cli.py --cases 4 --out benchmarks/results/heldout-cli.json
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=4)
    parser.add_argument("--first-seed", type=int, default=None, help="default: random, above 2,000,000")
    parser.add_argument("--steps", type=int, default=None, help="--num-inference-steps (default: the CLI's, 50)")
    parser.add_argument("--out", default=None, help="JSON file of the results")
    args = parser.parse_args(argv)
    from PIL import Image

    from sgi2v.sprites.control import KINDS, make_case, measure_boxes
    from sgi2v.video import read_video

    first = args.first_seed if args.first_seed is not None else random.SystemRandom().randrange(2_000_000, 9_000_000)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for k in range(args.cases):
            case = make_case(k, KINDS[k % 4], 1 + (k // 4) % 2 if args.cases > 4 else 1 + k % 2, first_seed=first)
            image, traj = tmp / f"{k}.png", tmp / f"{k}.json"
            Image.fromarray(case.image).save(image)
            traj.write_text(json.dumps(case.trajectory()))
            scene, idx = case.scene, list(case.sprites)
            row = {"case": k, "seed": case.seed, "kind": case.kind, "sprites": len(idx)}
            for name, extra in (("sgi2v", []), ("plain", ["--iterations", "0"])):
                out = tmp / f"{k}-{name}.mp4"
                command = [sys.executable, "-m", "sgi2v", "generate", str(image), "--traj", str(traj), "--model", "sprites",
                           "--height", "128", "--width", "128", "-o", str(out), *extra]
                if args.steps:
                    command += ["--num-inference-steps", str(args.steps)]
                t = time.perf_counter()
                subprocess.run(command, check=True, capture_output=True, text=True)
                boxes = np.asarray(json.loads(out.with_suffix(".json").read_text())["boxes"])
                result = measure_boxes(read_video(out), boxes, scene.colors[idx], [scene.shapes[i] for i in idx],
                                       scene.sizes[idx])
                row[name] = round(result["objmc_px"], 2)
                row[f"{name}_found"] = round(float(np.nanmean([s["found"] for s in result["sprites"]])), 2)
                row[f"{name}_seconds"] = round(time.perf_counter() - t, 1)
            rows.append(row)
            print(json.dumps(row), flush=True)
    mean = {name: float(np.nanmean([r[name] for r in rows])) for name in ("plain", "sgi2v")}
    summary = {"first_seed": first, "cases": rows, "mean_objmc_px": mean,
               "sgi2v_over_plain": mean["sgi2v"] / mean["plain"] if mean["plain"] else None}
    print(f"mean ObjMC: plain {mean['plain']:.2f} px, SG-I2V {mean['sgi2v']:.2f} px "
          f"(ratio {summary['sgi2v_over_plain']:.2f}) over {len(rows)} cases from seed {first}")
    if args.out:
        Path(args.out).write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
