"""``sgi2v evaluate``: folders in, report out (JSON, Markdown table, path pictures)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .common import EvaluationError, WeightsError
from .data import discover, load_targets, read_frames

__all__ = ["evaluate_folders", "draw_paths", "markdown_table"]

logger = logging.getLogger(__name__)

PALETTE = [(255, 64, 64), (64, 200, 255), (255, 200, 40), (120, 255, 120), (255, 110, 220), (170, 130, 255)]


def draw_paths(video: np.ndarray, targets: np.ndarray, tracks: np.ndarray, valid: np.ndarray) -> Image.Image:
    """First, middle and last frame side by side; on each the target paths (thick, coloured) and the
    tracked paths (thin, white), with a dot at that frame's target (coloured) and tracked (white) point;
    tracked positions the tracker marked lost are drawn as crosses."""
    frames = video.shape[0]
    picks = sorted({0, frames // 2, frames - 1})
    height, width = video.shape[1:3]
    canvas = Image.new("RGB", (width * len(picks), height))
    line = max(1, round(min(height, width) / 160))
    r = line * 2
    for column, f in enumerate(picks):
        tile = Image.fromarray(video[f])
        draw = ImageDraw.Draw(tile)
        for n in range(len(targets)):
            color = PALETTE[n % len(PALETTE)]
            draw.line([tuple(p) for p in targets[n]], fill=color, width=line * 2)
            draw.line([tuple(p) for p in tracks[n]], fill=(255, 255, 255), width=line)
            x, y = targets[n, f]
            draw.ellipse([x - r, y - r, x + r, y + r], fill=color)
            x, y = tracks[n, f]
            if valid[n, f]:
                draw.ellipse([x - r, y - r, x + r, y + r], outline=(255, 255, 255), width=line)
            else:
                draw.line([x - r, y - r, x + r, y + r], fill=(255, 255, 255), width=line)
                draw.line([x - r, y + r, x + r, y - r], fill=(255, 255, 255), width=line)
        draw.text((4, 2), f"frame {f}", fill=(255, 255, 255))
        canvas.paste(tile, (column * width, 0))
    return canvas


def _cell(metric: dict) -> str:
    if metric.get("value") is None:
        return "n/a"
    text = f"{metric['value']:.2f}"
    return text + " (random weights)" if metric.get("random_weights") else text


def markdown_table(report: dict) -> str:
    """The paper's table (one row) and notes on how each number was obtained."""
    m = report["metrics"]
    lines = ["| Method | FID ↓ | FVD ↓ | ObjMC ↓ |", "| --- | ---: | ---: | ---: |",
             f"| {report['name']} | {_cell(m['fid'])} | {_cell(m['fvd'])} | {_cell(m['objmc'])} |", ""]
    lines.append(f"{report['num_videos']} videos. ObjMC: mean distance in pixels over all objects, frames (frame 0 "
                 f"included) and videos, tracker {m['objmc']['tracker']}; {100 * m['objmc']['lost_fraction']:.1f}% of "
                 "tracked positions failed the tracker's check.")
    for key, label in (("fid", "FID"), ("fvd", "FVD")):
        if m[key].get("value") is None:
            lines.append(f"{label}: not computed ({m[key]['skipped']}).")
        else:
            lines.append(f"{label}: {m[key]['samples']} generated and {m[key]['samples']} reference samples, weights {m[key]['weights']}.")
    return "\n".join(lines) + "\n"


def _extractor(kind: str, args, device):
    from .features import I3DFeatures, InceptionFeatures

    if kind == "fid":
        return InceptionFeatures(args.fid_weights, device=device, batch_size=args.batch_size)
    return I3DFeatures(args.fvd_weights, device=device)


def evaluate_folders(args) -> dict:
    """Run the evaluation the command line describes; returns the report."""
    from tqdm import tqdm

    from .features import default_device
    from .frechet import fid_from_features, fvd_from_features
    from .motion import objmc_distances
    from .tracking import make_tracker

    import torch

    if args.batch_size < 1:
        raise EvaluationError(f"--batch-size must be at least 1, got {args.batch_size}")
    device = default_device() if args.device == "auto" else torch.device(args.device)
    want = {"fid": not args.skip_fid, "fvd": not args.skip_fvd}
    weights = {"fid": args.fid_weights, "fvd": args.fvd_weights}
    skipped = {}
    for key in want:
        if not want[key]:
            skipped[key] = f"--skip-{key}"
        elif weights[key] is None:
            skipped[key] = f"no --{key}-weights given"
        elif args.reference is None:
            skipped[key] = "no --reference folder given"
    active = [k for k in want if k not in skipped]
    for key in active:  # fail early, before any work, on a missing or unreadable weight file
        if not Path(weights[key]).expanduser().is_file():
            raise WeightsError(f"{weights[key]}: {key.upper()} weight file not found (see docs/evaluation.md)")

    samples = discover(Path(args.generated), Path(args.reference) if args.reference and active else None,
                       Path(args.trajectories) if args.trajectories else None)
    tracker = make_tracker(args.tracker, args.cotracker_checkpoint, device=device)
    extractors = {key: _extractor(key, args, device) for key in active}
    features = {key: ([], []) for key in active}
    per_video, pictures = [], {}
    shape = None
    total, count, lost = 0.0, 0, 0
    for sample in tqdm(samples, desc="evaluate", unit="video", disable=None):
        video = read_frames(sample.generated)
        if shape is None:
            shape = video.shape
        elif "fvd" in active and video.shape[0] != shape[0]:
            raise EvaluationError(f"{sample.generated}: has {video.shape[0]} frames but {samples[0].generated.name} has "
                                  f"{shape[0]}: FVD needs videos of one length")
        targets = load_targets(sample, *video.shape[:3])
        distances, tracks, valid = objmc_distances(video, targets, tracker, name=str(sample.generated))
        total, count, lost = total + float(distances.sum()), count + distances.size, lost + int((~valid).sum())
        per_video.append({"id": sample.id, "objmc": float(distances.mean()), "objects": int(len(targets)),
                          "frames": int(video.shape[0]), "size": [int(video.shape[2]), int(video.shape[1])],
                          "per_object": distances.mean(axis=1).tolist(), "lost_fraction": float((~valid).mean()),
                          "target_points": targets.tolist(), "tracked_points": tracks.tolist()})
        if not args.no_pictures:
            pictures[sample.id] = draw_paths(video, targets, tracks, valid)
        if active:
            ref = read_frames(sample.reference)
            if ref.shape != video.shape:
                raise EvaluationError(f"{sample.reference}: {ref.shape[2]}x{ref.shape[1]}, {ref.shape[0]} frames, but the generated "
                                      f"{sample.generated.name} is {video.shape[2]}x{video.shape[1]}, {video.shape[0]} frames: "
                                      "references must match in size and length (sgi2v benchmark-prepare makes them so)")
            if "fid" in active:
                features["fid"][0].append(extractors["fid"](video))
                features["fid"][1].append(extractors["fid"](ref))
            if "fvd" in active:
                features["fvd"][0].append(extractors["fvd"](video))
                features["fvd"][1].append(extractors["fvd"](ref))
    metrics = {"objmc": {"value": total / count, "unit": "pixels", "tracker": tracker.name, "points": count,
                         "lost_fraction": lost / count,
                         "per_video_mean": float(np.mean([v["objmc"] for v in per_video])),
                         "pooling": "sum of distances over all videos, objects and frames / their number"}}
    for key in ("fid", "fvd"):
        if key in skipped:
            metrics[key] = {"value": None, "skipped": skipped[key]}
            continue
        gen = np.concatenate(features[key][0]) if key == "fid" else np.stack(features[key][0])
        ref = np.concatenate(features[key][1]) if key == "fid" else np.stack(features[key][1])
        if len(gen) < 2:
            metrics[key] = {"value": None, "skipped": f"{len(gen)} sample: at least 2 are needed"}
            continue
        value = fid_from_features(gen, ref) if key == "fid" else fvd_from_features(gen, ref)
        metrics[key] = {"value": value, "samples": int(len(gen)), "weights": extractors[key].source,
                        "random_weights": not extractors[key].real_weights,
                        "unit": "frames (Inception-v3 pool, 2048-d)" if key == "fid" else "videos (I3D logits, 400-d)"}
    report = {"sgi2v_evaluation": 1, "name": args.name, "num_videos": len(samples), "metrics": metrics,
              "folders": {"generated": str(Path(args.generated).resolve()),
                          "reference": str(Path(args.reference).resolve()) if args.reference else None,
                          "trajectories": str(Path(args.trajectories).resolve()) if args.trajectories else None},
              "device": str(device), "videos": per_video}
    _write(Path(args.output), report, pictures)
    m = metrics
    print(f"{args.name}: FID {_cell(m['fid'])}, FVD {_cell(m['fvd'])}, ObjMC {m['objmc']['value']:.2f} px "
          f"({len(samples)} videos) -> {Path(args.output) / 'report.md'}")
    return report


def _write(out: Path, report: dict, pictures: dict) -> None:
    """Everything goes into a temporary folder first, then is moved into ``out`` (report.json last)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists() and not out.is_dir():
        raise EvaluationError(f"{out}: exists and is not a folder")
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp", dir=out.parent))
    try:
        (staging / "paths").mkdir()
        for key, image in pictures.items():
            image.save(staging / "paths" / f"{key}.png")
        (staging / "report.md").write_text(markdown_table(report), encoding="utf-8")
        (staging / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        (out / "paths").mkdir(parents=True, exist_ok=True)
        for key in pictures:
            os.replace(staging / "paths" / f"{key}.png", out / "paths" / f"{key}.png")
        os.replace(staging / "report.md", out / "report.md")
        os.replace(staging / "report.json", out / "report.json")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
