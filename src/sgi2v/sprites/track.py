"""An exact tracker for the sprites world: it follows a sprite by its known colour and shape.

A pixel belongs to the sprite when its RGB distance to the sprite's colour is below
``tolerance``. The sprite's position in a frame is the centroid of those pixels near their
median (so stray pixels elsewhere in the picture do not pull it), and the sprite counts as found
when at least ``min_fraction`` of its area matches. No learning, no optical flow: what it reports
is what is in the pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .scene import sprite_area, sprite_coverage

__all__ = ["SpriteTrack", "track_sprite", "objmc_px", "progress_along"]


@dataclass(frozen=True)
class SpriteTrack:
    """Per-frame result of :func:`track_sprite`.

    ``centers``: (F, 2) ``(x, y)`` pixels, NaN where not found. ``found``: (F,) bool.
    ``area_ratio``: (F,) matched pixels / the sprite's area (NaN where not found).
    ``shape_iou``: (F,) IoU of the matched pixels with the ideal shape drawn at the tracked
    centre (1 = the same disc or square; NaN where not found).
    """

    centers: np.ndarray
    found: np.ndarray
    area_ratio: np.ndarray
    shape_iou: np.ndarray


def track_sprite(frames: np.ndarray, color, size: float, shape: str = "square", tolerance: float = 60.0,
                 min_fraction: float = 0.25) -> SpriteTrack:
    """Follow a sprite of known ``color`` (RGB), ``size`` (px) and ``shape`` through ``frames`` (F, H, W, 3) uint8."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must have shape (F, H, W, 3), got {frames.shape}")
    num_frames, height, width, _ = frames.shape
    colour = np.asarray(color, dtype=np.float32).reshape(1, 1, 3)
    area = sprite_area(shape, size)
    radius = size  # search window around the median of the matching pixels
    ys, xs = np.mgrid[0:height, 0:width]
    centers = np.full((num_frames, 2), np.nan)
    found = np.zeros(num_frames, bool)
    area_ratio = np.full(num_frames, np.nan)
    shape_iou = np.full(num_frames, np.nan)
    for f in range(num_frames):
        match = np.sqrt(((frames[f].astype(np.float32) - colour) ** 2).sum(-1)) < tolerance
        if match.sum() < min_fraction * area:
            continue
        my, mx = np.median(ys[match]), np.median(xs[match])
        near = match & (np.abs(ys - my) <= radius) & (np.abs(xs - mx) <= radius)
        count = int(near.sum())
        if count < min_fraction * area:
            continue
        cx, cy = float(xs[near].mean()) + 0.5, float(ys[near].mean()) + 0.5
        centers[f] = cx, cy
        found[f] = True
        area_ratio[f] = count / area
        ideal = sprite_coverage(shape, np.array([cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2]),
                                height, width) > 0.5
        union = int((ideal | near).sum())
        shape_iou[f] = (ideal & near).sum() / union if union else np.nan
    return SpriteTrack(centers=centers, found=found, area_ratio=area_ratio, shape_iou=shape_iou)


def objmc_px(tracked: np.ndarray, target: np.ndarray, valid: np.ndarray | None = None) -> float:
    """Mean Euclidean distance (px) between tracked and target centres (F, 2) over frames 1.. that are
    found (not NaN) and ``valid``; NaN when no frame counts."""
    tracked, target = np.asarray(tracked, float), np.asarray(target, float)
    ok = np.isfinite(tracked).all(-1)
    if valid is not None:
        ok &= np.asarray(valid, bool)
    ok[0] = False  # frame 0 is the condition image itself
    if not ok.any():
        return float("nan")
    return float(np.linalg.norm(tracked[ok] - target[ok], axis=-1).mean())


def progress_along(tracked: np.ndarray, target: np.ndarray, valid: np.ndarray | None = None,
                   min_distance: float = 5.0) -> float:
    """How far along its target path a sprite went: its tracked displacement from frame 0, projected on
    the target's, as a share of the target's (1: all the way, 0: it stayed put, negative: the other way).

    Taken at the last frame that is found (not NaN), ``valid`` and at least ``min_distance`` px from
    the target's start; NaN when there is none (a static target, or a sprite lost early) or when frame
    0 is not found. ObjMC says how far off a sprite is; this says whether it lags or strays.
    """
    tracked, target = np.asarray(tracked, float), np.asarray(target, float)
    ok = np.isfinite(tracked).all(-1)
    if valid is not None:
        ok &= np.asarray(valid, bool)
    want = target - target[0]
    ok &= np.linalg.norm(want, axis=-1) >= min_distance
    ok[0] = False
    if not ok.any() or not np.isfinite(tracked[0]).all():
        return float("nan")
    f = int(np.flatnonzero(ok)[-1])
    return float((tracked[f] - tracked[0]) @ want[f] / (want[f] @ want[f]))
