"""``sgi2v benchmark-prepare``: real videos and first-frame masks -> first frames, trajectories, manifest."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
from PIL import Image

from .common import EvaluationError
from .data import FRAME_SUFFIXES

__all__ = ["prepare_benchmark", "mask_objects", "object_boxes", "read_mask"]

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


def prepare_benchmark(args) -> list[dict]:
    """Write the benchmark the command line describes; returns the manifest entries."""
    from tqdm import tqdm

    from ..video import write_mp4
    from .tracking import make_tracker, mask_query_point

    root = Path(args.root)
    frames_root, masks_root = root / args.frames_subdir, root / args.masks_subdir
    for folder, what in ((frames_root, "frames"), (masks_root, "masks")):
        if not folder.is_dir():
            raise EvaluationError(f"{folder}: {what} folder not found (expected ROOT/{folder.name}/<video>/...)")
    for name in ("frames", "stride", "width", "height", "max_objects"):
        if getattr(args, name) < (2 if name == "frames" else 1):
            raise EvaluationError(f"--{name.replace('_', '-')} is too small: {getattr(args, name)}")
    videos = sorted(p for p in frames_root.iterdir() if p.is_dir())
    if args.max_videos is not None:
        videos = videos[: args.max_videos]
    if not videos:
        raise EvaluationError(f"{frames_root}: no video folders")
    device = None if args.device == "auto" else args.device
    tracker = make_tracker(args.tracker, args.cotracker_checkpoint, device=device)
    out = Path(args.output)
    for sub in ("images", "trajectories", "reference"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    entries = []
    size = (args.width, args.height)
    for folder in tqdm(videos, desc="benchmark", unit="video", disable=None):
        key = folder.name
        files = _frames_of(folder)[:: args.stride][: args.frames]
        if len(files) < args.frames:
            logger.warning("%s: skipped: %d frames, %d needed (stride %d)", folder, len(files), args.frames, args.stride)
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
        masks = mask_objects(ids, args.min_area, args.max_objects)
        if not masks:
            logger.warning("%s: skipped: no object larger than --min-area in %s", folder, mask_path.name)
            continue
        video = np.stack([np.asarray(Image.open(p).convert("RGB").resize(size, Image.BICUBIC)) for p in files])
        queries = np.stack([mask_query_point(m) for m in masks])
        tracks, valid = tracker.track(video, queries)
        tracks = np.clip(tracks, 0, [args.width - 1, args.height - 1])
        boxes = object_boxes(masks, queries, args.width, args.height)
        offsets = tracks - tracks[:, :1]
        centres = (boxes[:, None, :2] + boxes[:, None, 2:]) / 2 + offsets  # (N, F, 2): box centre follows the track
        trajectory = {"num_frames": args.frames, "boxes": [
            {"label": f"object {n}", "box": np.round(boxes[n], 3).tolist(), "path": np.round(centres[n], 3).tolist()}
            for n in range(len(boxes))]}
        if (~valid).any():
            logger.info("%s: the tracker lost %d of %d positions; they hold the last reliable position", key,
                        int((~valid).sum()), valid.size)
        _write_atomic(out / "images" / f"{key}.png", lambda p: Image.fromarray(video[0]).save(p, format="PNG"))
        _write_atomic(out / "trajectories" / f"{key}.json", lambda p: p.write_text(json.dumps(trajectory, indent=1) + "\n"))
        _write_atomic(out / "reference" / f"{key}.mp4", lambda p: write_mp4(p, video, fps=7))
        entries.append({"id": key, "image": f"images/{key}.png", "traj": f"trajectories/{key}.json"})
    if not entries:
        raise EvaluationError(f"{root}: no usable video (see the warnings above)")
    _write_atomic(out / "manifest.jsonl", lambda p: p.write_text("".join(json.dumps(e) + "\n" for e in entries)))
    print(f"wrote {len(entries)} videos ({args.frames} frames, {args.width}x{args.height}) and {out / 'manifest.jsonl'}")
    return entries


def _write_atomic(path: Path, write) -> None:
    temporary = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()
