"""Point trackers for ObjMC and query points for boxes and object masks.

A tracker is any object with a ``name`` and ``track(video, queries) -> Tracks``: ``video`` uint8
``(F, H, W, 3)``, ``queries`` ``(N, 2)`` pixel positions (x, y) at frame 0. Two different things
can go wrong with a tracked point, and :class:`Tracks` keeps them apart:

* **occlusion**: the point is hidden behind something (CoTracker's visibility output); the
  position is still the tracker's estimate. Lucas-Kanade cannot tell, so it reports ``None``.
* **tracking failure**: the tracker's own result cannot be trusted - Lucas-Kanade's
  forward-backward check failed (the point then keeps its last reliable position), or the
  estimate left the frame.

A tracker may also return the older pair ``(points (N, F, 2), valid (N, F))``; ``valid == False``
then counts as a failure (see :func:`as_tracks`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from .common import EvaluationError, WeightsError, file_sha256, validate_video

__all__ = ["Tracker", "Tracks", "as_tracks", "LucasKanadeTracker", "CoTrackerTracker", "CoTrackerVariant", "COTRACKER_VARIANTS",
           "cotracker_variant", "make_tracker", "box_query_points", "mask_query_point"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Tracks:
    """Tracked points of one video.

    Attributes:
        points: ``(N, F, 2)`` positions (x, y) in pixels, ``points[:, 0]`` the queries.
        failed: ``(N, F)`` bool, True where tracking failed (check failed or the point left the frame).
        occluded: ``(N, F)`` bool, True where the point is hidden; ``None`` when the tracker cannot tell.
    """

    points: np.ndarray
    failed: np.ndarray
    occluded: np.ndarray | None = None


def as_tracks(result, num_objects: int, num_frames: int, name: str = "tracker") -> Tracks:
    """A :class:`Tracks` from what a tracker returned (a ``Tracks`` or a pair ``(points, valid)``), shapes checked."""
    if not isinstance(result, Tracks):
        points, valid = result
        result = Tracks(np.asarray(points, dtype=np.float64), ~np.asarray(valid, dtype=bool))
    points = np.asarray(result.points, dtype=np.float64)
    failed = np.asarray(result.failed, dtype=bool)
    occluded = None if result.occluded is None else np.asarray(result.occluded, dtype=bool)
    if points.shape != (num_objects, num_frames, 2) or failed.shape != points.shape[:2] or (
            occluded is not None and occluded.shape != points.shape[:2]):
        raise EvaluationError(f"{name}: the tracker returned points {points.shape}, failures {failed.shape}"
                              f"{'' if occluded is None else f', occlusion {occluded.shape}'}; expected "
                              f"({num_objects}, {num_frames}, 2) and ({num_objects}, {num_frames})")
    return Tracks(points, failed, occluded)


class Tracker(Protocol):
    """What ObjMC needs of a tracker. A tracker may also have ``describe() -> dict`` (its settings and
    checkpoint); reports record it under ``protocols.objmc.tracker``."""

    name: str

    def track(self, video: np.ndarray, queries: np.ndarray) -> Tracks:
        """Track ``queries`` ``(N, 2)`` (pixels, x y) from frame 0 through ``video`` ``(F, H, W, 3)``."""


def _outside(points: np.ndarray, height: int, width: int) -> np.ndarray:
    """``(N, F)`` True where a point ``(N, F, 2)`` lies outside the ``[0, width] x [0, height]`` frame."""
    x, y = points[..., 0], points[..., 1]
    return ~np.isfinite(points).all(axis=-1) | (x < 0) | (x > width) | (y < 0) | (y > height)


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
    by more than ``fb_threshold`` pixels (or OpenCV reports failure, or the point leaves the frame),
    tracking has failed from that frame on and the point keeps its last reliable position. It has
    no notion of occlusion (``Tracks.occluded`` is ``None``). Needs no network weights.

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

    def describe(self) -> dict:
        """The tracker's settings, for the report."""
        return {"name": self.name, "window": self.window, "levels": self.levels, "fb_threshold_px": self.fb_threshold,
                "iterations": self.iterations, "epsilon": self.epsilon, "occlusion": "not estimated",
                "failure": f"forward-backward error above {self.fb_threshold} px, or the point left the frame"}

    def track(self, video: np.ndarray, queries: np.ndarray) -> Tracks:
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
            good &= ~_outside(forward.reshape(-1, 2), height, width)
            current = np.where(good[:, None, None], forward, current)
            alive &= good
            tracks[:, f] = current.reshape(-1, 2)
            valid[:, f] = alive
        lost = int((~alive).sum())
        if lost:
            logger.info("Lucas-Kanade failed on %d of %d points (forward-backward check or left the frame)", lost, len(queries))
        return Tracks(tracks, ~valid, None)


@dataclass(frozen=True)
class CoTrackerVariant:
    """One released kind of CoTracker checkpoint and how to run it.

    Attributes:
        name: ``cotracker3-offline``, ``cotracker3-online``, ``cotracker2`` or ``cotracker2.1``.
        v2: built as ``CoTracker2`` (True) or a CoTracker3 model (False).
        online: run with ``CoTrackerOnlinePredictor`` in chunks of ``window`` frames, moving by ``window // 2``.
        window: the model's window length in frames (the length of its ``time_emb`` buffer).
        files: the release's file names of this kind.
    """

    name: str
    v2: bool
    online: bool
    window: int
    files: tuple[str, ...]


COTRACKER_VARIANTS = (
    CoTrackerVariant("cotracker3-offline", v2=False, online=False, window=60, files=("scaled_offline.pth", "baseline_offline.pth")),
    CoTrackerVariant("cotracker3-online", v2=False, online=True, window=16, files=("scaled_online.pth", "baseline_online.pth")),
    CoTrackerVariant("cotracker2", v2=True, online=False, window=8, files=("cotracker2.pth",)),
    CoTrackerVariant("cotracker2.1", v2=True, online=False, window=16, files=("cotracker2v1.pth",)),
)


def _cotracker_state_dict(path: Path) -> dict:
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle, zip and version errors all mean: not a usable file
        raise WeightsError(f"{path}: not a readable CoTracker checkpoint: {' '.join(str(err).split())[:200]}") from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict) or not isinstance(state.get("time_emb"), torch.Tensor) or state["time_emb"].ndim != 3:
        raise WeightsError(f"{path}: not a CoTracker checkpoint (no 'time_emb' buffer (1, window, dims))")
    return {k.removeprefix("module."): v for k, v in state.items()}


def cotracker_variant(state: dict, path: str | os.PathLike = "checkpoint") -> CoTrackerVariant:
    """Which :data:`COTRACKER_VARIANTS` entry a CoTracker state dict is, from its keys and the ``time_emb`` shape.

    CoTracker2 and CoTracker3 differ in their parameter names (CoTracker3 has ``corr_mlp``);
    the window length is the length of ``time_emb`` ``(1, window, dims)``: 8 for ``cotracker2.pth``,
    16 for ``cotracker2v1.pth`` and CoTracker3 online, 60 for CoTracker3 offline.
    """
    v2 = not any(key.startswith("corr_mlp.") for key in state)
    window = int(state["time_emb"].shape[1])
    for variant in COTRACKER_VARIANTS:
        if variant.v2 == v2 and variant.window == window:
            return variant
    known = ", ".join(f"{v.name} ({v.window})" for v in COTRACKER_VARIANTS)
    raise WeightsError(f"{path}: a {'CoTracker2' if v2 else 'CoTracker3'} checkpoint with window {window}, which is "
                       f"none of the released kinds: {known}")


class CoTrackerTracker:
    """CoTracker (the ``cotracker`` package, installed by the user) with a local checkpoint; never downloads.

    The kind of model is read from the checkpoint (:func:`cotracker_variant`): CoTracker3 offline
    (``scaled_offline.pth``, ``CoTrackerPredictor``, window 60), CoTracker3 online (``scaled_online.pth``,
    ``CoTrackerOnlinePredictor`` called on chunks of 16 frames moving by 8), CoTracker2
    (``cotracker2.pth``, window 8) and CoTracker 2.1 (``cotracker2v1.pth``, window 16).

    CoTracker's visibility output is reported as occlusion (``Tracks.occluded``); a tracking failure
    is an estimate outside the frame (``Tracks.failed``).

    Args:
        checkpoint: path of a CoTracker checkpoint (``.pth``).
        device: torch device to run on (default: CUDA, then Apple MPS, then CPU).
        resolution: ``(height, width)`` in pixels the video is resized to for the network; default
            the model's own (384, 512). Smaller is faster and less accurate.
    """

    name = "cotracker"

    def __init__(self, checkpoint: str | os.PathLike, device=None, resolution: tuple[int, int] | None = None):
        path = Path(checkpoint).expanduser()
        if not path.is_file():
            raise WeightsError(f"{path}: CoTracker checkpoint not found (download it yourself and give its path)")
        try:
            from cotracker.predictor import CoTrackerOnlinePredictor, CoTrackerPredictor
        except ImportError:
            raise EvaluationError("the CoTracker tracker needs the 'cotracker' package: install it from "
                                  "https://github.com/facebookresearch/co-tracker, or use --tracker lucas-kanade") from None
        import torch

        from .features import default_device

        state = _cotracker_state_dict(path)
        self.variant = cotracker_variant(state, path)
        self.checkpoint, self.sha256 = path.resolve(), file_sha256(path)
        predictor = CoTrackerOnlinePredictor if self.variant.online else CoTrackerPredictor
        model = predictor(checkpoint=None, v2=self.variant.v2, window_len=self.variant.window)
        try:
            model.model.load_state_dict(state)
        except RuntimeError as err:
            raise WeightsError(f"{path}: does not fit the {self.variant.name} model of this cotracker package: "
                               f"{' '.join(str(err).split())[:300]}") from None
        if resolution is not None:
            height, width = (int(v) for v in resolution)
            if height % 4 or width % 4 or min(height, width) < 16:
                raise EvaluationError(f"CoTracker resolution: expected (height, width) multiples of 4, at least 16, got {resolution}")
            model.interp_shape = (height, width)
        self.device = torch.device(device) if device is not None else default_device()
        self.model = model.to(self.device).eval()

    def describe(self) -> dict:
        """The tracker, its variant and its checkpoint, for the report."""
        return {"name": self.name, "variant": self.variant.name, "window": self.variant.window,
                "predictor": "CoTrackerOnlinePredictor" if self.variant.online else "CoTrackerPredictor",
                "resolution": list(self.model.interp_shape), "checkpoint": str(self.checkpoint), "checkpoint_sha256": self.sha256,
                "occlusion": "CoTracker visibility", "failure": "the estimate left the frame"}

    def track(self, video: np.ndarray, queries: np.ndarray) -> Tracks:
        import torch

        video = validate_video(video)
        frames, height, width = video.shape[:3]
        queries = _check_queries(queries, height, width)
        clip = torch.from_numpy(video).to(self.device).permute(0, 3, 1, 2)[None].float()  # (1, F, 3, H, W), 0..255
        q = torch.cat([torch.zeros(len(queries), 1), torch.from_numpy(queries).float()], dim=1)[None].to(self.device)  # (1, N, 3): t, x, y
        with torch.no_grad():
            if self.variant.online:
                step = self.model.step
                self.model(clip, is_first_step=True, queries=q)
                for start in range(0, max(frames - step, 1), step):
                    points, visible = self.model(clip[:, start:start + 2 * step])
            else:
                points, visible = self.model(clip, queries=q)
        points = points[0, :frames].permute(1, 0, 2).double().cpu().numpy()  # (N, F, 2)
        visible = visible[0, :frames].permute(1, 0).bool().cpu().numpy()  # (N, F)
        points[:, 0], visible[:, 0] = queries, True
        return Tracks(points, _outside(points, height, width), ~visible)


def make_tracker(name: str = "lucas-kanade", checkpoint: str | os.PathLike | None = None, device=None) -> Tracker:
    """A tracker by name: ``lucas-kanade`` (default, no weights) or ``cotracker`` (needs ``checkpoint``; the
    variant is read from it)."""
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
