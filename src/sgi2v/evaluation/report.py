"""The report of an evaluation: ``report.json``, ``report.md`` (the paper's table) and path pictures."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .common import EvaluationError

__all__ = ["write_report", "check_output", "draw_paths", "markdown_table"]

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
    """The paper's table (one row) and notes on how each number was obtained, from ``report.json``'s content."""
    m, p = report["metrics"], report["protocols"]
    lines = ["| Method | FID ↓ | FVD ↓ | ObjMC ↓ |", "| --- | ---: | ---: | ---: |",
             f"| {report['name']} | {_cell(m['fid'])} | {_cell(m['fvd'])} | {_cell(m['objmc'])} |", ""]
    tracker = p["objmc"]["tracker"]
    occluded = m["objmc"]["occluded_fraction"]
    lines.append(f"{report['num_videos']} videos. ObjMC: mean distance in pixels over all objects, frames (frame 0 "
                 f"included) and videos; tracker {tracker.get('variant', tracker['name'])}; tracking failed at "
                 f"{100 * m['objmc']['failed_fraction']:.1f}% of positions"
                 + ("" if occluded is None else f", {100 * occluded:.1f}% were occluded") + ".")
    for key, label in (("fid", "FID"), ("fvd", "FVD")):
        if m[key].get("value") is None:
            lines.append(f"{label}: not computed ({m[key]['skipped']}).")
        else:
            sha = p[key]["weights_sha256"]
            lines.append(f"{label}: {m[key]['samples']['generated']} generated and {m[key]['samples']['reference']} reference "
                         f"{m[key]['unit']}; {p[key]['preprocessing']}; weights {p[key]['weights']}"
                         + (f" (SHA-256 {sha})" if sha else "") + ".")
    lines += [f"Warning: {w}" for w in report["warnings"]]
    return "\n".join(lines) + "\n"


def check_output(out: str | os.PathLike) -> Path:
    """Check the report folder can be written (before any work): it must be a folder or not exist yet."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise EvaluationError(f"{out}: exists and is not a folder")
    return out


def write_report(result, out: str | os.PathLike) -> Path:
    """Write an :class:`~sgi2v.evaluation.api.EvaluationResult` into the folder ``out``: ``report.json``,
    ``report.md`` and ``paths/<id>.png``. Everything is written into a temporary folder first, then
    moved in (``report.json`` last), so a failure leaves no partial report. Returns ``out/report.json``."""
    out = check_output(out)
    _write(out, result.to_json(), result.pictures)
    return out / "report.json"


def _write(out: Path, report: dict, pictures: dict) -> None:
    """Everything goes into a temporary folder first, then is moved into ``out`` (report.json last)."""
    out.parent.mkdir(parents=True, exist_ok=True)
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
