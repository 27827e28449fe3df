"""ObjMC: how closely objects in a generated video follow the paths they were asked to follow.

For each object a query point (the centre of its frame-0 box, or the interior point of its mask
farthest from the edge) is tracked through the generated video from frame 0. ObjMC is the
Euclidean distance in pixels between the tracked point and the target point, averaged over all
objects and all frames, frame 0 included (where it is 0 by construction) - the protocol of
DragAnything, which SG-I2V follows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .common import EvaluationError, validate_points, validate_video

__all__ = ["ObjMCResult", "objmc", "objmc_distances", "objmc_pooled"]


@dataclass(frozen=True)
class ObjMCResult:
    """ObjMC over many videos.

    Attributes:
        pooled: mean distance over every (video, object, frame) triple: the sum of all distances
            divided by their number, so videos with more objects weigh more. This is the number
            reported in the table.
        per_video_mean: the mean of the per-video ObjMC values (each video weighs the same), for reference.
        per_video: ObjMC of each video.
        num_points: how many (object, frame) distances each video contributed.
        lost_fraction: fraction of (object, frame) positions the tracker flagged as unreliable.
    """

    pooled: float
    per_video_mean: float
    per_video: tuple[float, ...]
    num_points: tuple[int, ...]
    lost_fraction: float


def _track_and_measure(video, target_points, tracker, name: str):
    from .tracking import LucasKanadeTracker

    video = validate_video(video, name=f"{name} video")
    frames, height, width = video.shape[:3]
    targets = validate_points(target_points, frames, height, width, name=f"{name} target_points")
    tracker = tracker if tracker is not None else LucasKanadeTracker()
    tracks, valid = tracker.track(video, targets[:, 0])
    tracks = np.asarray(tracks, dtype=np.float64)
    if tracks.shape != targets.shape:
        raise EvaluationError(f"{name}: the tracker returned tracks of shape {tracks.shape}, expected {targets.shape}")
    return np.linalg.norm(tracks - targets, axis=-1), tracks, np.asarray(valid, dtype=bool)


def objmc_distances(video, target_points, tracker=None, name: str = "video") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distances ``(N, F)`` between tracked and target points, the tracks ``(N, F, 2)`` and their validity ``(N, F)``.

    Arguments as :func:`objmc`; ``name`` prefixes error messages (e.g. the video's file name).
    """
    return _track_and_measure(video, target_points, tracker, name)


def objmc(video, target_points, tracker=None) -> float:
    """ObjMC of one video, in pixels.

    Args:
        video: uint8 array ``(F, H, W, 3)``.
        target_points: ``(N, F, 2)`` target positions ``(x, y)`` in pixels of the video, per object
            and frame; tracking starts from ``target_points[:, 0]``.
        tracker: a tracker (see :mod:`sgi2v.evaluation.tracking`); default Lucas-Kanade.

    Returns:
        The mean Euclidean distance between tracked and target points over all objects and all
        frames, frame 0 included.
    """
    distances, _, _ = _track_and_measure(video, target_points, tracker, "video")
    return float(distances.mean())


def objmc_pooled(videos: Sequence, target_points: Sequence, tracker=None, names: Sequence[str] | None = None) -> ObjMCResult:
    """ObjMC over many videos, pooled over all points: ``sum of all distances / number of distances``.

    Args:
        videos: uint8 arrays ``(F_i, H_i, W_i, 3)`` (lengths and sizes may differ between videos).
        target_points: per video, ``(N_i, F_i, 2)``.
        tracker: shared by all videos; default Lucas-Kanade.
        names: per video, for error messages.
    """
    if len(videos) != len(target_points):
        raise EvaluationError(f"objmc_pooled: {len(videos)} videos but {len(target_points)} target point arrays")
    if not len(videos):
        raise EvaluationError("objmc_pooled: no videos")
    names = list(names) if names is not None else [f"video {i}" for i in range(len(videos))]
    per_video, counts, totals, lost = [], [], 0.0, 0
    for video, targets, name in zip(videos, target_points, names):
        distances, _, valid = _track_and_measure(video, targets, tracker, name)
        per_video.append(float(distances.mean()))
        counts.append(int(distances.size))
        totals += float(distances.sum())
        lost += int((~valid).sum())
    return ObjMCResult(pooled=totals / sum(counts), per_video_mean=float(np.mean(per_video)), per_video=tuple(per_video),
                       num_points=tuple(counts), lost_fraction=lost / sum(counts))
