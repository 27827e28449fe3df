"""Does SG-I2V steer? Control benchmark in the sprites world, with the paper's ablations.

Held-out scenes (seeds never used in training) with 1 or 2 controlled sprites and target paths of
four kinds (straight, curved, static, leaving through an edge) are generated with plain SVD
(``iterations=0``, same seed) and with SG-I2V, by the ``sprites`` model through the same generation
road as the command line. An exact tracker follows each sprite by its known colour and shape, which
gives ObjMC (px), the share of frames where the sprite is found, and its look (shape IoU).

Rows: plain and SG-I2V at the defaults on every case, then the ablations on a fixed subset of the
first ``--subset`` cases. Every finished (row, case) is kept in ``--out/cases.jsonl``; run the same
command again to resume. Writes ``--out/control.json``, a Markdown table ``--out/control.md``, a
plot of ObjMC against iterations and steps, and an image grid (target, plain, SG-I2V).

    python benchmarks/control.py                 # 48 cases, subset 12, all rows (hours on a 2-core CPU)
    python benchmarks/control.py --rows main     # only plain vs SG-I2V on every case
    python benchmarks/control.py --rows main --noise-seed 2000 --out benchmarks/results/control-noise2000
                                                 # the same cases from other noise
    python benchmarks/control.py --rows main --first-seed 1100000 --out validation
                                                 # other held-out cases, e.g. to choose between models
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import re
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

# name -> (method settings changed from the defaults, number of steps, on every case?)
ROWS: dict[str, tuple[dict, int, bool]] = {  # in the order they run: a stopped run has the first rows whole
    "plain": ({"iterations": 0}, 50, True),
    "sgi2v": ({}, 50, True),
    "iterations 1": ({"iterations": 1}, 50, False),
    "iterations 3": ({"iterations": 3}, 50, False),
    "iterations 10": ({"iterations": 10}, 50, False),
    "plain, 25 steps": ({"iterations": 0}, 25, False),
    "sgi2v, 25 steps": ({}, 25, False),
    "features: self-attention output": ({"feature_kind": "self_attention"}, 50, False),
    "features: spatial transformer output": ({"feature_kind": "layer_output"}, 50, False),
    "layers: up_blocks.1": ({"feature_layers": ["up_blocks.1.attentions.1", "up_blocks.1.attentions.2"]}, 50, False),
    "layers: up_blocks.3": ({"feature_layers": ["up_blocks.3.attentions.1", "up_blocks.3.attentions.2"]}, 50, False),
    "window: early (t 35-50)": ({"optimize_timesteps": list(range(35, 51))}, 50, False),
    "window: late (t 15-30)": ({"optimize_timesteps": list(range(15, 31))}, 50, False),
    "window: only t = 50": ({"optimize_timesteps": [50]}, 50, False),
    "high-frequency re-init off": ({"high_frequency_reinit": False}, 50, False),
    # the step size: AdamW's learning rate at 2x and 5x the paper's 0.21, at the paper's 5 iterations
    "learning rate 0.42": ({"learning_rate": 0.42}, 50, False),
    "learning rate 1.05": ({"learning_rate": 1.05}, 50, False),
    # classifier-free guidance off (scale 1 on every frame, instead of SVD's 1 -> 3 ramp over the frames)
    "plain, no CFG": ({"iterations": 0, "min_guidance_scale": 1.0, "max_guidance_scale": 1.0}, 50, False),
    "sgi2v, no CFG": ({"min_guidance_scale": 1.0, "max_guidance_scale": 1.0}, 50, False),
    # the paper's window in noise levels (sigma 374 -> 37 on SVD's 72 x 128 latent) moved to a 16 x 16 latent: sigma
    # scaled by the ratio of the latents' sides (16 / 96, their geometric means), sigma 62 -> 6.2, which is t 33 -> 21
    # of 50 steps (docs/sprites.md, "Where the features see the motion"); on every case. A shift only on SVD's
    # schedule: the shipped model samples on a schedule already moved to its latent (since 2026-12-06), where
    # t 21-33 is sigma 10 -> 1, later than the paper's window, and `latent` is the paper's t 30-45
    "window: shifted to a 16 x 16 latent (t 21-33)": ({"optimize_timesteps": list(range(21, 34))}, 50, True),
    # the same by --optimize-timesteps latent at 25 steps (t 11-17 of 25), beside the two 25-step rows above
    "window: latent, 25 steps": ({"optimize_timesteps": "latent"}, 25, False),
}
ITERATION_ROWS = {0: "plain", 1: "iterations 1", 3: "iterations 3", 5: "sgi2v", 10: "iterations 10"}


NOISE_SEED = 1000  # case k is generated from seed NOISE_SEED + k (its initial noise and noise augmentation)


def _settings(row: str, case, model: str, noise_seed: int = NOISE_SEED):
    from sgi2v.settings import resolve_settings

    changes, steps, _ = ROWS[row]
    values = {"num_inference_steps": steps, "seed": noise_seed + case.index, "height": case.image.shape[0],
              "width": case.image.shape[1], "num_frames": case.boxes.shape[1], **changes}
    return resolve_settings(values, model=model, source=f"row {row!r}")


def run_one(pipe, row: str, case, model: str, noise_seed: int = NOISE_SEED) -> tuple[dict, np.ndarray]:
    from PIL import Image

    from sgi2v.generation import generate, prepare_inputs
    from sgi2v.sprites.control import measure

    settings, config = _settings(row, case, model, noise_seed)
    prepared = prepare_inputs(Image.fromarray(case.image), case.trajectory(), settings, source=f"case {case.index}")
    t = time.perf_counter()
    generation = generate(prepared, settings, config, pipe, model=model)
    seconds = time.perf_counter() - t
    result = measure(generation.frames, case)
    losses = generation.record["losses"]
    first_last = [(v[0], v[-1]) for v in losses.values() if v]
    result.update(row=row, case=case.index, kind=case.kind, controlled=len(case.sprites), seed=case.seed,
                  seconds=round(seconds, 2), frames_sha256=generation.record["frames_sha256"],
                  loss_drop=float(np.mean([1 - b / a for a, b in first_last])) if first_last else None)
    return result, generation.frames


def load_kept(out: Path) -> dict:
    """The finished results kept in ``out/cases.jsonl``, by (row, case)."""
    done = {}
    if (out / "cases.jsonl").exists():
        for line in (out / "cases.jsonl").read_text().splitlines():
            r = json.loads(line)
            done[(r["row"], r["case"])] = r
    return done


def _mean(values):
    values = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(values)) if values else float("nan")


BOOTSTRAP = 10_000


def ratio_interval(pairs: list[tuple[dict, dict]], resamples: int = BOOTSTRAP, seed: int = 0) -> dict:
    """The ratio of SG-I2V's mean ObjMC to plain SVD's over the (plain, SG-I2V) results of the same cases, and its
    95 % percentile interval when the cases are drawn again with replacement (a paired bootstrap, seeded): how much
    the ratio owes to which cases happen to be in the set."""
    both = [(p["objmc_px"], s["objmc_px"]) for p, s in pairs
            if math.isfinite(p["objmc_px"]) and math.isfinite(s["objmc_px"])]
    if not both:
        return {"measured": 0, "ratio": float("nan"), "ratio_low": float("nan"), "ratio_high": float("nan")}
    plain, sgi2v = (np.array(v) for v in zip(*both))
    draws = np.random.default_rng(seed).integers(0, len(both), (resamples, len(both)))
    ratios = sgi2v[draws].mean(1) / plain[draws].mean(1)
    low, high = np.percentile(ratios, [2.5, 97.5])
    return {"measured": len(both), "ratio": float(sgi2v.mean() / plain.mean()), "ratio_low": float(low),
            "ratio_high": float(high)}


def table(results: list[dict], cases: int, subset: int) -> tuple[str, dict]:
    """Markdown table of every row, on all cases and on the subset; and the same as a dict."""
    from sgi2v.sprites.control import summarise

    by_row: dict[str, list[dict]] = {}
    for r in results:
        by_row.setdefault(r["row"], []).append(r)
    summary = {}
    lines = ["| row | cases | ObjMC px (subset) | ObjMC px (all) | median (all) | found | progress | shape IoU | loss drop "
             "| s / video |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in ROWS:
        rs = sorted(by_row.get(row, []), key=lambda r: r["case"])
        if not rs:
            continue
        sub = [r for r in rs if r["case"] < subset]
        s_all, s_sub = summarise(rs), summarise(sub)
        summary[row] = {"all": s_all, "subset": s_sub, "loss_drop": _mean([r["loss_drop"] for r in rs]),
                        "seconds": _mean([r["seconds"] for r in rs]), "cases": len(rs)}
        all_text = f"{s_all['objmc_px']:.2f} | {s_all['objmc_median_px']:.2f}" if ROWS[row][2] else "– | –"
        drop = summary[row]["loss_drop"]
        lines.append(f"| {row} | {len(rs)}{'' if len(rs) >= (cases if ROWS[row][2] else subset) else ' (incomplete)'} | "
                     f"{s_sub['objmc_px']:.2f} | {all_text} | {s_all['found']:.2f} | {s_all['progress']:.2f} | "
                     f"{s_all['shape_iou']:.2f} | "
                     f"{'–' if not math.isfinite(drop) else f'{100 * drop:.0f} %'} | {summary[row]['seconds']:.1f} |")
    by_kind = []
    if "plain" in by_row and "sgi2v" in by_row:
        by_kind = ["", "| path kind | cases | plain ObjMC px | SG-I2V ObjMC px |", "| --- | --- | --- | --- |"]
        plain = {r["case"]: r for r in by_row["plain"]}
        for kind in ("straight", "curved", "static", "leaving"):
            pairs = [(plain[r["case"]], r) for r in by_row["sgi2v"] if r["kind"] == kind and r["case"] in plain]
            by_kind.append(f"| {kind} | {len(pairs)} | {_mean([p['objmc_px'] for p, _ in pairs]):.2f} | "
                           f"{_mean([s['objmc_px'] for _, s in pairs]):.2f} |")
        pairs = [(plain[r["case"]], r) for r in by_row["sgi2v"] if r["case"] in plain]
        worse = sum(1 for p, s in pairs if math.isfinite(p["objmc_px"]) and math.isfinite(s["objmc_px"])
                    and s["objmc_px"] > p["objmc_px"])
        summary["paired"] = {"cases": len(pairs), "sgi2v_worse": worse, **ratio_interval(pairs)}
        by_kind.append(f"\nSG-I2V is worse than plain on {worse} of {len(pairs)} paired cases.")
        paired = summary["paired"]
        if math.isfinite(paired["ratio"]):
            by_kind.append(f"SG-I2V / plain ObjMC: {paired['ratio']:.2f}x over the {paired['measured']} cases measured in "
                           f"both; 95 % interval {paired['ratio_low']:.2f}-{paired['ratio_high']:.2f}x (the cases "
                           f"resampled, {BOOTSTRAP:,} times).")
    return "\n".join(lines + by_kind) + "\n", summary


def frames_name(row: str, index: int) -> str:
    """The file of a row's kept frames for a case (``plain-000.npy``, ``window-shifted-to-...-000.npy``)."""
    return f"{re.sub(r'[^a-z0-9]+', '-', row.lower()).strip('-')}-{index:03d}.npy"


def grid(results: list[dict], cases, out: Path, count: int = 6) -> None:
    """Rows of cases: the condition with its target path, then frames of plain and SG-I2V with tracks, and of every
    other row run on every case whose frames were kept for all the cases shown."""
    from PIL import Image, ImageDraw

    frames_dir = out / "frames"
    shown = cases[:count]
    extra = [row for row, (_, _, every) in ROWS.items() if every and row not in ("plain", "sgi2v")
             and all((frames_dir / frames_name(row, c.index)).exists() for c in shown)]
    columns = ("target", "plain", "sgi2v", *extra)
    rows = []
    for case in shown:
        tiles = []
        for row in columns:
            if row == "target":
                video = np.stack([case.image] * case.boxes.shape[1])
            else:
                path = frames_dir / frames_name(row, case.index)
                if not path.exists():
                    break
                video = np.load(path)
            picks = (0, video.shape[0] // 2, video.shape[0] - 1)
            for f in picks:
                img = Image.fromarray(video[f]).resize((video.shape[2] * 2, video.shape[1] * 2), Image.NEAREST)
                draw = ImageDraw.Draw(img)
                for n in range(case.boxes.shape[0]):
                    x0, y0, x1, y1 = (2 * v for v in case.boxes[n, f])
                    draw.rectangle([x0, y0, x1, y1], outline=(255, 255, 255), width=2)
                    centres = (case.boxes[n, :, :2] + case.boxes[n, :, 2:])  # doubled centres
                    draw.line([tuple(c) for c in centres], fill=(255, 255, 255), width=1)
                tiles.append(img)
        if len(tiles) == 3 * len(columns):
            rows.append(tiles)
    if not rows:
        return
    w, h = rows[0][0].size
    gap = 6
    tiles_across = 3 * len(columns)
    sheet = Image.new("RGB", (tiles_across * w + (tiles_across - 1) * gap + (len(columns) - 1) * gap, len(rows) * (h + gap)),
                      (255, 255, 255))
    for r, tiles in enumerate(rows):
        for c, tile in enumerate(tiles):
            sheet.paste(tile, (c * (w + gap) + (c // 3) * gap, r * (h + gap)))
    sheet.save(out / "control_grid.png")


def plot(summary: dict, out: Path) -> None:
    """ObjMC (subset) against iterations and against steps, as a small PNG drawn with Pillow."""
    from PIL import Image, ImageDraw

    series = [("iterations", [(k, summary[v]["subset"]["objmc_px"]) for k, v in ITERATION_ROWS.items() if v in summary])]
    steps = []
    for n, (p, s) in {25: ("plain, 25 steps", "sgi2v, 25 steps"), 50: ("plain", "sgi2v")}.items():
        if p in summary and s in summary:
            steps.append((n, summary[p]["subset"]["objmc_px"], summary[s]["subset"]["objmc_px"]))
    width, height, margin = 720, 300, 40
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    values = [v for _, pts in series for _, v in pts] + [v for _, a, b in steps for v in (a, b)]
    values = [v for v in values if math.isfinite(v)]
    if not values:
        return
    top = max(values) * 1.15

    def panel(x0, title, xs, ys_list, colours, labels):
        pw = width // 2 - margin - 10
        draw.text((x0, 5), title, fill="black")
        draw.line([(x0, height - margin), (x0 + pw, height - margin)], fill="black")
        draw.line([(x0, margin), (x0, height - margin)], fill="black")
        draw.text((x0 - 35, margin - 5), f"{top:.0f}px", fill="black")
        draw.text((x0 - 20, height - margin - 5), "0", fill="black")
        lo, hi = min(xs), max(xs)
        def px(x, y):
            return (x0 + (pw * (x - lo) / (hi - lo) if hi > lo else pw / 2), height - margin - (height - 2 * margin) * y / top)
        for x in xs:
            draw.text((px(x, 0)[0] - 4, height - margin + 4), str(x), fill="black")
        for ys, colour, label in zip(ys_list, colours, labels):
            points = [px(x, y) for x, y in zip(xs, ys) if math.isfinite(y)]
            if len(points) > 1:
                draw.line(points, fill=colour, width=2)
            for p in points:
                draw.ellipse([p[0] - 3, p[1] - 3, p[0] + 3, p[1] + 3], fill=colour)
            draw.text((x0 + 10, margin + 12 * labels.index(label)), label, fill=colour)

    pts = series[0][1]
    if pts:
        panel(margin + 10, "ObjMC (px) vs iterations per step, 50 steps", [k for k, _ in pts], [[v for _, v in pts]],
              [(200, 40, 40)], ["SG-I2V"])
    if steps:
        panel(width // 2 + margin, "ObjMC (px) vs denoising steps", [n for n, _, _ in steps],
              [[a for _, a, _ in steps], [b for _, _, b in steps]], [(90, 90, 90), (200, 40, 40)], ["plain", "SG-I2V"])
    img.save(out / "control_plot.png")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="sprites", help="the model (default: the shipped sprites model)")
    parser.add_argument("--cases", type=int, default=48, help="held-out cases (default 48)")
    parser.add_argument("--subset", type=int, default=12, help="cases of the ablation rows (default 12, the first ones)")
    parser.add_argument("--rows", default="all", help="all, main (plain and sgi2v only), or row names joined by ';'")
    parser.add_argument("--out", default=str(HERE / "results" / "control"), help="folder of the results (resumable)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: every core)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or mps")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16"),
                        help="the weights' precision (default float32)")
    parser.add_argument("--sprite-sizes", default=None, metavar="MIN,MAX",
                        help="the held-out scenes' sprite size range in px (default: the world's, 16-40; for a model "
                        "trained with train-sprites --sprite-sizes)")
    parser.add_argument("--first-seed", type=int, default=None, metavar="SEED",
                        help="draw the cases from held-out scene seeds SEED on (default: the benchmark's own, "
                        "1,001,000); another set of held-out cases, e.g. to choose between models without "
                        "looking at the benchmark's")
    parser.add_argument("--noise-seed", type=int, default=NOISE_SEED, metavar="SEED",
                        help=f"generate case k from seed SEED + k (default {NOISE_SEED}): other noise for the same "
                        "cases, to see how much of a result is the noise drawn")
    parser.add_argument("--until", type=float, default=None, help="stop starting new cases after this many minutes "
                        "(the summary is written from what is done; run again to resume)")
    args = parser.parse_args(argv)
    import torch

    from sgi2v.loading import DTYPES, load_pipeline, model_sha256
    from sgi2v.settings import available_cores
    from sgi2v.sprites.config import TRAIN_SEED_LIMIT, parse_sprite_sizes
    from sgi2v.sprites.control import CASES_FIRST_SEED, make_cases, update_kept

    torch.set_num_threads(args.threads or available_cores())
    rows = list(ROWS) if args.rows == "all" else ["plain", "sgi2v"] if args.rows == "main" else args.rows.split(";")
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        parser.error(f"unknown rows {unknown}; known: {list(ROWS)}")
    if args.noise_seed < 0:
        parser.error(f"--noise-seed: expected a seed of 0 or more, got {args.noise_seed}")
    first_seed = CASES_FIRST_SEED if args.first_seed is None else args.first_seed
    if first_seed < TRAIN_SEED_LIMIT:
        parser.error(f"--first-seed: {first_seed} is a training scene's seed (those are below {TRAIN_SEED_LIMIT:,}); "
                     "held-out seeds start there")
    try:
        sizes = parse_sprite_sizes(args.sprite_sizes) if args.sprite_sizes else None
        cases = make_cases(args.cases, sprite_sizes=sizes, first_seed=first_seed)
    except ValueError as err:
        parser.error(f"--sprite-sizes: {str(err).removeprefix('sprite_sizes: ')}" if args.sprite_sizes else str(err))
    out = Path(args.out)
    (out / "frames").mkdir(parents=True, exist_ok=True)
    done_path = out / "cases.jsonl"
    done = load_kept(out)
    # The main rows case by case, then the ablations row by row: a stopped run has plain and SG-I2V on the
    # same cases, and whole ablation rows.
    order = [(row, c) for c in cases for row in rows if ROWS[row][2]]
    order += [(row, c) for row in rows if not ROWS[row][2] for c in cases[:args.subset]]
    todo = [(row, case) for row, case in order if (row, case.index) not in done]
    sha = model_sha256(args.model)
    previous = json.loads((out / "control.json").read_text()) if (out / "control.json").exists() else {}
    earlier = previous.get("model_sha256")
    if todo and sha and earlier and sha != earlier:
        parser.error(f"{out}: its results were made by a model with SHA-256 {earlier[:12]}..., not {args.model!r} "
                     f"({sha[:12]}...); give another --out")
    # Kept results made from other cases or other noise are not what was asked for, finished or not (a finished folder
    # is measured again against the cases asked for)
    if previous and previous.get("sprite_sizes") != (list(sizes) if sizes else None):
        parser.error(f"{out}: its cases come from scenes with sprite sizes {previous.get('sprite_sizes') or 'of the world'}, "
                     f"not {args.sprite_sizes or 'of the world'}; give another --out")
    if previous and previous.get("first_seed", CASES_FIRST_SEED) != first_seed:
        parser.error(f"{out}: its cases come from held-out seeds {previous.get('first_seed', CASES_FIRST_SEED):,} on, "
                     f"not {first_seed:,}; give another --out")
    if previous and previous.get("noise_seed", NOISE_SEED) != args.noise_seed:
        parser.error(f"{out}: its videos were generated from seeds {previous.get('noise_seed', NOISE_SEED)} + case, "
                     f"not {args.noise_seed} + case; give another --out")
    if todo:  # a finished folder is only tabulated again: no model needed
        pipe = load_pipeline(args.model, device=args.device, dtype=DTYPES[args.dtype])
        pipe.set_progress_bar_config(disable=True)
    else:
        sha = earlier
    started = time.perf_counter()
    if args.until:
        deadline = time.time() + 60 * args.until
    for row, case in todo:
        if args.until and time.time() > deadline:
            print(f"stopping: --until {args.until} min reached; run again to resume", flush=True)
            break
        result, frames = run_one(pipe, row, case, args.model, args.noise_seed)
        if ROWS[row][2] and case.index < 12:  # rows run on every case: frames of the first 12 for the grid
            np.save(out / "frames" / frames_name(row, case.index), frames)
        done[(row, case.index)] = result
        with done_path.open("a") as fh:
            fh.write(json.dumps(result) + "\n")
        print(f"{row:38s} case {case.index:2d} {case.kind:8s} ObjMC {result['objmc_px']:6.2f} px "
              f"found {np.mean([s['found'] for s in result['sprites']]):.2f} {result['seconds']:.1f} s", flush=True)
    results = list(done.values())
    update_kept(results, {c.index: c for c in cases})
    text, summary = table(results, args.cases, args.subset)
    machine = {"platform": platform.platform(), "processor": platform.processor(), "python": sys.version.split()[0],
               "torch": torch.__version__, "threads": torch.get_num_threads(), "cores": available_cores(),
               "device": args.device, "dtype": args.dtype}
    if torch.device(args.device).type == "cuda":
        machine["gpu"] = torch.cuda.get_device_name(torch.device(args.device))
    if not todo and previous:  # tabulated again: the machine and time are those of the run that made the results
        machine, this_run = previous.get("machine"), previous.get("seconds_this_run")
    else:
        this_run = round(time.perf_counter() - started, 1)
    report = {"model": previous.get("model", args.model) if not todo else args.model, "model_sha256": sha,
              "cases": args.cases, "subset": args.subset, "sprite_sizes": sizes, "first_seed": first_seed,
              "noise_seed": args.noise_seed,
              "machine": machine,
              "seconds_this_run": this_run,
              "seconds_of_generation": round(sum(r["seconds"] for r in results), 1), "summary": summary}
    (out / "control.json").write_text(json.dumps(report, indent=1))
    (out / "control.md").write_text(text)
    grid(results, cases, out)
    plot(summary, out)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
