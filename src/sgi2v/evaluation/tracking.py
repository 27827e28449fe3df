"""Point trackers for ObjMC and query points for boxes and object masks.

A tracker is any object with ``track(video, queries) -> (tracks, valid)``: ``video`` uint8
``(F, H, W, 3)``, ``queries`` ``(N, 2)`` pixel positions (x, y) at frame 0; ``tracks`` ``(N, F, 2)``
with ``tracks[:, 0] == queries``, ``valid`` ``(N, F)`` bool (False where the tracker lost the point;
the position then holds the last reliable estimate).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Protocol

import numpy as np

from .common import EvaluationError, WeightsError, validate_video

__all__ = ["Tracker", "LucasKanadeTracker", "CoTrackerTracker", "make_tracker", "box_query_points", "mask_query_point"]

logger = logging.getLogger(__name__)


class Tracker(Protocol):
    name: str

    def track(self, video: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Track ``queries`` ``(N, 2)`` from frame 0 through ``video``; returns ``(tracks (N, F, 2), valid (N, F))``."""


def _check_queries(queries, height: int, width: int) -> np.ndarray:
    queries = np.asarray(queries, dtype=np.float64)
    if queries.ndim != 2 or queries.shape[1] != 2 or len(queries) < 1:
        raise EvaluationError(f"query points: expected shape (N, 2), got {queries.shape}")
    if not np.isfinite(queries).all():
        raise EvaluationError("query points: contain NaN or infinite coordinates")
    outside = (queries[:, 0] < 0) | (queries[:, 0] > width) | (queries[:, 1] < 0) | (queries[:, 1] > height)
    if outside.any():
        n = int(np.argmax(outside))
        raise EvaluationError(f"query points: point {n}, {queries[n].tolist()}, is outside the {width}x{height} frame")
    return queries


class LucasKanadeTracker:
    """OpenCV pyramidal Lucas-Kanade, frame to frame, with a forward-backward consistency check.

    Each point is tracked from frame ``f - 1`` to ``f`` and back; if the round trip misses the start
    by more than ``fb_threshold`` pixels (or OpenCV reports failure), the point is marked lost and
    keeps its last reliable position for the remaining frames. Needs no network weights.

    Args:
        window: side of the square search window in pixels (odd).
        levels: pyramid levels above the full-resolution image.
        fb_threshold: forward-backward error (pixels) above which a point counts as lost.
        iterations, epsilon: stopping criteria of the iterative solver.
    """

    name = "lucas-kanade"

    def __init__(self, window: int = 21, levels: int = 3, fb_threshold: float = 1.0, iterations: int = 50,
                 epsilon: float = 0.001):
        self.window, self.levels, self.fb_threshold = int(window), int(levels), float(fb_threshold)
        self.iterations, self.epsilon = int(iterations), float(epsilon)

    def track(self, video: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import cv2

        video = validate_video(video)
        frames, height, width = video.shape[:3]
        queries = _check_queries(queries, height, width)
        gray = np.ascontiguousarray(
            np.round(video.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)).clip(0, 255).astype(np.uint8))
        params = dict(winSize=(self.window, self.window), maxLevel=self.levels,
                      criteria=(cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, self.iterations, self.epsilon))
        tracks = np.empty((len(queries), frames, 2))
        valid = np.ones((len(queries), frames), dtype=bool)
        tracks[:, 0] = queries
        current = queries.astype(np.float32).reshape(-1, 1, 2)
        alive = np.ones(len(queries), dtype=bool)
        for f in range(1, frames):
            forward, ok_f, _ = cv2.calcOpticalFlowPyrLK(gray[f - 1], gray[f], current, None, **params)
            backward, ok_b, _ = cv2.calcOpticalFlowPyrLK(gray[f], gray[f - 1], forward, None, **params)
            error = np.linalg.norm((backward - current).reshape(-1, 2), axis=1)
            good = alive & ok_f.ravel().astype(bool) & ok_b.ravel().astype(bool) & (error <= self.fb_threshold)
            good &= np.isfinite(forward.reshape(-1, 2)).all(axis=1)
            current = np.where(good[:, None, None], forward, current)
            alive &= good
            tracks[:, f] = current.reshape(-1, 2)
            valid[:, f] = alive
        lost = int((~alive).sum())
        if lost:
            logger.info("Lucas-Kanade lost %d of %d points (forward-backward check)", lost, len(queries))
        return tracks, valid


class CoTrackerTracker:
    """CoTracker (``cotracker`` package, installed by the user) with a local checkpoint; never downloads.

    Args:
        checkpoint: path of a CoTracker checkpoint (``.pth``), e.g. ``scaled_offline.pth`` of CoTracker3
            or ``cotracker2.pth``.
        device: torch device to run on (default: CUDA if present, else CPU).
        offline: for CoTracker3 checkpoints, the offline model (whole video at once) versus the online one.
    """

    name = "cotracker"

    def __init__(self, checkpoint: str | os.PathLike, device=None, offline: bool = True):
        path = Path(checkpoint)
        if not path.is_file():
            raise WeightsError(f"{path}: CoTracker checkpoint not found (download it yourself and give its path)")
        try:
            from cotracker.predictor import CoTrackerPredictor
        except ImportError:
            raise EvaluationError("the CoTracker tracker needs the 'cotracker' package: install it from "
                                  "https://github.com/facebookresearch/co-tracker, or use --tracker lucas-kanade") from None
        import torch

        self.device = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        try:
            try:
                model = CoTrackerPredictor(checkpoint=str(path), offline=offline)
            except TypeError:  # CoTracker 2 has no offline/online switch
                model = CoTrackerPredictor(checkpoint=str(path))
        except (RuntimeError, KeyError, OSError) as err:
            raise WeightsError(f"{path}: not a CoTracker checkpoint this cotracker package can load: {err}") from None
        self.model = model.to(self.device).eval()

    def track(self, video: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import torch

        video = validate_video(video)
        queries = _check_queries(queries, *video.shape[1:3])
        clip = torch.from_numpy(video).to(self.device).permute(0, 3, 1, 2)[None].float()  # (1, F, 3, H, W), 0..255
        q = torch.cat([torch.zeros(len(queries), 1), torch.from_numpy(queries).float()], dim=1)[None].to(self.device)
        with torch.no_grad():
            tracks, visible = self.model(clip, queries=q)
        tracks = tracks[0].permute(1, 0, 2).double().cpu().numpy()  # (N, F, 2)
        tracks[:, 0] = queries
        return tracks, visible[0].permute(1, 0).bool().cpu().numpy()


def make_tracker(name: str = "lucas-kanade", checkpoint: str | os.PathLike | None = None, device=None) -> Tracker:
    """A tracker by name: ``lucas-kanade`` (default, no weights) or ``cotracker`` (needs ``checkpoint``)."""
    if name in ("lucas-kanade", "lk"):
        return LucasKanadeTracker()
    if name == "cotracker":
        if checkpoint is None:
            raise WeightsError("the cotracker tracker needs a local checkpoint: give --cotracker-checkpoint FILE.pth")
        return CoTrackerTracker(checkpoint, device=device)
    raise EvaluationError(f"unknown tracker {name!r}: use lucas-kanade or cotracker")


def box_query_points(boxes) -> np.ndarray:
    """Centres ``(N, 2)`` of boxes ``(N, 4)`` ``(x0, y0, x1, y1)``."""
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise EvaluationError(f"boxes: expected shape (N, 4), got {boxes.shape}")
    return (boxes[:, :2] + boxes[:, 2:]) / 2


def mask_query_point(mask) -> np.ndarray:
    """The interior point of a binary mask ``(H, W)`` farthest from the mask's edge, as ``(x, y)`` pixel centres.

    Uses the exact Euclidean distance transform (pixels outside the image count as outside the mask);
    ties go to the first pixel in row-major order.
    """
    from scipy.ndimage import distance_transform_edt

    mask = np.asarray(mask).astype(bool)
    if mask.ndim != 2:
        raise EvaluationError(f"mask: expected a 2-D array (H, W), got shape {mask.shape}")
    if not mask.any():
        raise EvaluationError("mask: is empty (no object pixels)")
    distance = distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(distance)), mask.shape)
    return np.array([float(x), float(y)])
