"""``sgi2v benchmark-prepare``: real videos and first-frame masks -> first frames, trajectories, manifest."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from .common import EvaluationError
from .data import FRAME_SUFFIXES

if TYPE_CHECKING:
    from .tracking import Tracker

__all__ = ["prepare_benchmark", "BenchmarkResult", "mask_objects", "object_boxes", "read_mask"]

logger = logging.getLogger(__name__)


def read_mask(path: Path) -> np.ndarray:
    """Object ids ``(H, W)`` of a mask PNG: palette / grey / integer values as they are; RGB colours packed
    into one integer. 0 (black) is background."""
    try:
        with Image.open(path) as image:
            if image.mode in ("P", "L", "I", "I;16", "1"):
                return np.asarray(image).astype(np.int64)
            rgb = np.asarray(image.convert("RGB")).astype(np.int64)
    except OSError as err:
        raise EvaluationError(f"{path}: cannot read the mask: {err}") from None
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def mask_objects(ids: np.ndarray, min_area: float, max_objects: int) -> list[np.ndarray]:
    """Binary masks of the largest objects (ids other than 0 and 255), largest first."""
    values, counts = np.unique(ids, return_counts=True)
    keep = (values != 0) & (values != 255) & (counts >= min_area * ids.size)
    order = np.argsort(-counts[keep], kind="stable")[:max_objects]
    return [ids == v for v in values[keep][order]]


def object_boxes(masks: list[np.ndarray], points: np.ndarray, width: int, height: int) -> np.ndarray:
    """Per object, a box ``(x0, y0, x1, y1)`` with the mask's bounding-box size, centred on its query point
    (shrunk evenly where it would leave the frame), so that the box centre is the tracked point."""
    boxes = []
    for mask, (x, y) in zip(masks, points):
        rows, cols = np.nonzero(mask)
        half_w = (cols.max() - cols.min() + 1) / 2
        half_h = (rows.max() - rows.min() + 1) / 2
        cx, cy = x + 0.5, y + 0.5  # pixel centre in continuous box coordinates
        half_w = max(0.5, min(half_w, cx, width - cx))
        half_h = max(0.5, min(half_h, cy, height - cy))
        boxes.append([cx - half_w, cy - half_h, cx + half_w, cy + half_h])
    return np.asarray(boxes)


def _frames_of(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in FRAME_SUFFIXES)


def _first_mask(folder: Path, first_frame: Path) -> Path:
    same = folder / f"{first_frame.stem}.png"
    if same.is_file():
        return same
    masks = sorted(folder.glob("*.png"))
    if not masks:
        raise EvaluationError(f"{folder}: no mask PNG files")
    return masks[0]


@dataclass(frozen=True)
class BenchmarkResult:
    """What :func:`prepare_benchmark` wrote.

    Attributes:
        output: the benchmark folder.
        manifest: ``output/manifest.jsonl``.
        entries: the manifest's lines: ``{"id", "image", "traj"}``, paths relative to ``output``.
        skipped: per skipped video, ``(video folder, reason)``.
        protocol: how the benchmark was made (also written to ``output/benchmark.json``).
    """

    output: Path
    manifest: Path
    entries: list[dict]
    skipped: list[tuple[str, str]]
    protocol: dict


def prepare_benchmark(root: str | os.PathLike, output: str | os.PathLike, *, frames: int = 14, stride: int = 1,
                      width: int = 1024, height: int = 576, max_objects: int = 5, min_area: float = 0.005,
                      max_videos: int | None = None, tracker: str | Tracker = "lucas-kanade", cotracker_checkpoint: str | os.PathLike | None = None,
                      device="auto", frames_subdir: str = "imgs", masks_subdir: str = "panomasks", fps: float = 7) -> BenchmarkResult:
    """Build an evaluation benchmark from real videos with first-frame object masks (the VIPSeg layout).

    Args:
        root: dataset folder with ``<frames_subdir>/<video>/<frame>.jpg`` and ``<masks_subdir>/<video>/<frame>.png``.
        output: benchmark folder: ``images/<id>.png``, ``trajectories/<id>.json``, ``reference/<id>.mp4``,
            ``manifest.jsonl`` and ``benchmark.json`` (this protocol).
        frames: frames per clip (14 for SVD, 25 for SVD-XT); stride: take every ``stride``-th real frame.
        width, height: output size in pixels; both even (the reference clips are H.264 MP4).
        max_objects: largest objects kept per video; min_area: smallest object kept, as a fraction of the frame.
        max_videos: stop after this many video folders (in name order).
        tracker: ``lucas-kanade``, ``cotracker`` (with ``cotracker_checkpoint``) or a tracker object; it
            follows each object's query point through the real clip.
        device: ``auto`` or a torch device, for CoTracker.
        fps: frame rate written into the reference MP4s.

    Bad options or folders raise :class:`~sgi2v.evaluation.EvaluationError` before any file is written.
    """
    from tqdm import tqdm

    from ..video import write_mp4
    from .tracking import as_tracks, make_tracker, mask_query_point

    root, out = Path(root), Path(output)
    frames_root, masks_root = root / frames_subdir, root / masks_subdir
    for folder, what in ((frames_root, "frames"), (masks_root, "masks")):
        if not folder.is_dir():
            raise EvaluationError(f"{folder}: {what} folder not found (expected ROOT/{folder.name}/<video>/...)")
    for option, value, least in (("frames", frames, 2), ("stride", stride, 1), ("width", width, 2), ("height", height, 2),
                                 ("max_objects", max_objects, 1)):
        if not isinstance(value, int) or value < least:
            raise EvaluationError(f"{option.replace('_', '-')}: must be a whole number of at least {least}, got {value!r}")
    for option, value in (("width", width), ("height", height)):
        if value % 2:
            raise EvaluationError(f"{option}: must be even (the reference clips are H.264 MP4), got {value}")
    if not 0 <= min_area < 1:
        raise EvaluationError(f"min-area: must be a fraction of the frame in [0, 1), got {min_area}")
    if max_videos is not None and max_videos < 1:
        raise EvaluationError(f"max-videos: must be at least 1, got {max_videos}")
    if out.exists() and not out.is_dir():
        raise EvaluationError(f"{out}: exists and is not a folder")
    videos = sorted(p for p in frames_root.iterdir() if p.is_dir())[:max_videos]
    if not videos:
        raise EvaluationError(f"{frames_root}: no video folders")
    if isinstance(tracker, str):
        tracker = make_tracker(tracker, cotracker_checkpoint, device=None if device in (None, "auto") else device)
    describe = getattr(tracker, "describe", None)
    protocol = {"sgi2v_benchmark": 1, "root": str(root.resolve()), "frames": frames, "stride": stride, "size": [width, height],
                "max_objects": max_objects, "min_area": min_area, "fps": fps,
                "frame_resize": "bicubic to the output size (aspect ratio not kept)", "mask_resize": "nearest",
                "objects": "first mask's ids other than 0 and 255, at least min-area large, the max-objects largest",
                "query_point": "the mask's interior point farthest from its edge",
                "box": "the mask's bounding-box size, centred on the query point; its centre follows the track",
                "tracker": describe() if describe else {"name": getattr(tracker, "name", type(tracker).__name__)}}
    for sub in ("images", "trajectories", "reference"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    entries, skipped = [], []
    size = (width, height)
    for folder in tqdm(videos, desc="benchmark", unit="video", disable=None):
        key = folder.name
        files = _frames_of(folder)[::stride][:frames]
        if len(files) < frames:
            skipped.append((str(folder), f"{len(files)} frames, {frames} needed (stride {stride})"))
            logger.warning("%s: skipped: %s", *skipped[-1])
            continue
        mask_folder = masks_root / key
        if not mask_folder.is_dir():
            raise EvaluationError(f"{mask_folder}: mask folder for video {key} not found")
        mask_path = _first_mask(mask_folder, files[0])
        ids = read_mask(mask_path)
        first = Image.open(files[0])
        if ids.shape != (first.height, first.width):
            raise EvaluationError(f"{mask_path}: mask is {ids.shape[1]}x{ids.shape[0]} but frame {files[0].name} is "
                                  f"{first.width}x{first.height}")
        ids = np.asarray(Image.fromarray(ids.astype(np.int32)).resize(size, Image.NEAREST)).astype(np.int64)
        masks = mask_objects(ids, min_area, max_objects)
        if not masks:
            skipped.append((str(folder), f"no object larger than min-area in {mask_path.name}"))
            logger.warning("%s: skipped: %s", *skipped[-1])
            continue
        video = np.stack([np.asarray(Image.open(p).convert("RGB").resize(size, Image.BICUBIC)) for p in files])
        queries = np.stack([mask_query_point(m) for m in masks])
        tracks = as_tracks(tracker.track(video, queries), len(queries), frames, name=str(folder))
        points = np.clip(tracks.points, 0, [width - 1, height - 1])
        boxes = object_boxes(masks, queries, width, height)
        offsets = points - points[:, :1]
        centres = (boxes[:, None, :2] + boxes[:, None, 2:]) / 2 + offsets  # (N, F, 2): box centre follows the track
        trajectory = {"num_frames": frames, "boxes": [
            {"label": f"object {n}", "box": np.round(boxes[n], 3).tolist(), "path": np.round(centres[n], 3).tolist()}
            for n in range(len(boxes))]}
        if tracks.failed.any():
            logger.info("%s: tracking failed at %d of %d positions", key, int(tracks.failed.sum()), tracks.failed.size)
        _write_atomic(out / "images" / f"{key}.png", lambda p: Image.fromarray(video[0]).save(p, format="PNG"))
        _write_atomic(out / "trajectories" / f"{key}.json", lambda p: p.write_text(json.dumps(trajectory, indent=1) + "\n"))
        _write_atomic(out / "reference" / f"{key}.mp4", lambda p: write_mp4(p, video, fps=fps))
        entries.append({"id": key, "image": f"images/{key}.png", "traj": f"trajectories/{key}.json"})
    if not entries:
        raise EvaluationError(f"{root}: no usable video (see the warnings above)")
    protocol["skipped"] = [{"video": v, "reason": r} for v, r in skipped]
    _write_atomic(out / "benchmark.json", lambda p: p.write_text(json.dumps(protocol, indent=1) + "\n"))
    _write_atomic(out / "manifest.jsonl", lambda p: p.write_text("".join(json.dumps(e) + "\n" for e in entries)))
    logger.info("wrote %d videos (%d frames, %dx%d) and %s", len(entries), frames, width, height, out / "manifest.jsonl")
    return BenchmarkResult(out, out / "manifest.jsonl", entries, skipped, protocol)


def _write_atomic(path: Path, write) -> None:
    temporary = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()
