"""Control at a larger scale: the held-out control cases enlarged, to see whether SG-I2V's pull depends on
how many latent cells a sprite covers.

Each case of ``control.py`` is enlarged ``--scale`` times (the condition image resized bicubically,
the target boxes multiplied), and generated at that size by the same model, plain and with SG-I2V at
the paper's settings, through the same road as ``control.py``. A sprite of 24 px then covers 6 x 6
latent cells instead of 3 x 3, with the same path in proportion to the picture. The model was trained
at 128 x 128 only, so this asks it for more than it learnt; what counts is SG-I2V against plain at the
same size. ObjMC is reported in pixels of the original 128 x 128 cases (divided by the scale) so that
it compares with ``control.py``'s rows; ``progress`` (share of the target displacement travelled) has
no unit. Keeps each finished (row, case) in ``--out/cases.jsonl`` and resumes; writes ``--out/scale.json``.

    python benchmarks/control_scale.py --scale 2 --cases 12
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def enlarged(case, scale: int):
    """``case`` ``scale`` times larger: its scene's frames (bicubic), boxes and masks."""
    from PIL import Image

    scene = case.scene
    h, w = scene.frames.shape[1:3]
    frames = np.stack([np.asarray(Image.fromarray(f).resize((w * scale, h * scale), Image.BICUBIC)) for f in scene.frames])
    bigger = dataclasses.replace(scene, frames=frames, boxes=scene.boxes * scale,
                                 visible=scene.visible.repeat(scale, axis=2).repeat(scale, axis=3), pan=scene.pan * scale)
    return dataclasses.replace(case, scene=bigger, boxes=case.boxes * scale)


def grid(cases, out: Path) -> None:
    """``scale_grid.png``: for each case with kept frames, frames 0, middle and last of plain and of SG-I2V,
    with the target boxes."""
    from PIL import Image, ImageDraw

    rows = []
    for case in cases:
        paths = [out / "frames" / f"{row}-{case.index:03d}.npy" for row in ("plain", "sgi2v")]
        if not all(p.exists() for p in paths):
            continue
        tiles = []
        for path in paths:
            video = np.load(path)
            for f in (0, video.shape[0] // 2, video.shape[0] - 1):
                img = Image.fromarray(video[f])
                draw = ImageDraw.Draw(img)
                for n in range(case.boxes.shape[0]):
                    draw.rectangle([float(v) for v in case.boxes[n, f]], outline=(255, 255, 255), width=2)
                tiles.append(img)
        rows.append(tiles)
    if not rows:
        return
    w, h = rows[0][0].size
    gap = 4
    sheet = Image.new("RGB", (6 * w + 6 * gap, len(rows) * (h + gap) - gap), (255, 255, 255))
    for r, tiles in enumerate(rows):
        for c, tile in enumerate(tiles):
            sheet.paste(tile, (c * (w + gap) + (c // 3) * gap, r * (h + gap)))
    sheet.quantize(256).save(out / "scale_grid.png", optimize=True)  # a palette keeps the kept file small


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="sprites", help="the model (default: the shipped sprites model)")
    parser.add_argument("--scale", type=int, default=2, help="how many times larger (default 2: 256 x 256)")
    parser.add_argument("--cases", type=int, default=12, help="the first N control cases (default 12, the ablation subset)")
    parser.add_argument("--rows", default="plain;sgi2v", help="control.py rows joined by ';' (default plain;sgi2v)")
    parser.add_argument("--out", default=None, help="results folder (default results/control-scale<scale>)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: every core)")
    args = parser.parse_args(argv)
    if args.scale < 1:
        parser.error(f"--scale: expected a whole number >= 1, got {args.scale}")
    sys.path.insert(0, str(HERE))
    import control

    rows = args.rows.split(";")
    unknown = [r for r in rows if r not in control.ROWS]
    if unknown:
        parser.error(f"--rows: unknown rows {unknown}; known: {list(control.ROWS)}")
    import torch

    from sgi2v.loading import load_pipeline, model_sha256
    from sgi2v.settings import available_cores
    from sgi2v.sprites.control import make_cases, summarise

    torch.set_num_threads(args.threads or available_cores())
    out = Path(args.out or HERE / "results" / f"control-scale{args.scale}")
    out.mkdir(parents=True, exist_ok=True)
    done_path = out / "cases.jsonl"
    done = control.load_kept(out)
    cases = [enlarged(c, args.scale) for c in make_cases(args.cases)]
    todo = [(row, c) for c in cases for row in rows if (row, c.index) not in done]
    started = time.perf_counter()
    if todo:
        pipe = load_pipeline(args.model, device="cpu", dtype=torch.float32)
        pipe.set_progress_bar_config(disable=True)
    for row, case in todo:
        result, frames = control.run_one(pipe, row, case, args.model)
        result["scale"] = args.scale
        if case.index < 3:  # a few videos to look at (ignored by git: results/*/frames)
            (out / "frames").mkdir(exist_ok=True)
            np.save(out / "frames" / f"{row}-{case.index:03d}.npy", frames)
        done[(row, case.index)] = result
        with done_path.open("a") as fh:
            fh.write(json.dumps(result) + "\n")
        print(f"{row:10s} case {case.index:2d} {case.kind:8s} ObjMC {result['objmc_px'] / args.scale:6.2f} px (at 1x) "
              f"{result['seconds']:.1f} s", flush=True)
    summary = {}
    for row in rows:
        rs = [done[(row, c.index)] for c in cases if (row, c.index) in done]
        s = summarise(rs)
        s["objmc_px_at_1x"] = s["objmc_px"] / args.scale if math.isfinite(s["objmc_px"]) else float("nan")
        s["seconds"] = float(np.mean([r["seconds"] for r in rs])) if rs else float("nan")
        summary[row] = s
        print(f"{row:10s} {s['cases']:2d} cases: ObjMC {s['objmc_px_at_1x']:.2f} px (at 1x), progress {s['progress']:.2f}, "
              f"found {s['found']:.2f}, shape IoU {s['shape_iou']:.2f}, {s['seconds']:.1f} s a video")
    previous = json.loads((out / "scale.json").read_text()) if (out / "scale.json").exists() else {}
    report = {"model": args.model, "model_sha256": model_sha256(args.model), "scale": args.scale, "cases": args.cases,
              "size": list(cases[0].image.shape[:2]), "summary": summary,
              "machine": {"platform": platform.platform(), "torch": torch.__version__, "threads": torch.get_num_threads()},
              "seconds_this_run": round(time.perf_counter() - started, 1),
              "seconds_of_generation": round(sum(r["seconds"] for r in done.values()), 1)}
    if not todo and previous:  # summarised again: the model, machine and time are those of the run that made the results
        report.update(model=previous["model"], model_sha256=previous["model_sha256"], machine=previous["machine"],
                      seconds_this_run=previous["seconds_this_run"])
    (out / "scale.json").write_text(json.dumps(report, indent=1) + "\n")
    grid(cases, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
