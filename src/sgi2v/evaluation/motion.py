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
from .tracking import Tracks, as_tracks

__all__ = ["VideoObjMC", "ObjMCResult", "objmc", "objmc_distances", "objmc_pooled"]


@dataclass(frozen=True)
class VideoObjMC:
    """ObjMC measurements of one video.

    Attributes:
        distances: ``(N, F)`` Euclidean distances in pixels between tracked and target points.
        targets: ``(N, F, 2)`` target points (x, y) in pixels.
        tracks: what the tracker found: points ``(N, F, 2)``, failures and occlusion ``(N, F)``.
    """

    distances: np.ndarray
    targets: np.ndarray
    tracks: Tracks

    @property
    def value(self) -> float:
        """ObjMC of this video: the mean of ``distances``, in pixels."""
        return float(self.distances.mean())


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
        failed_fraction: fraction of (object, frame) positions where tracking failed (the tracker's
            check failed, or the point left the frame).
        occluded_fraction: fraction of positions the tracker saw as occluded; ``None`` when the
            tracker does not estimate occlusion (Lucas-Kanade).
    """

    pooled: float
    per_video_mean: float
    per_video: tuple[float, ...]
    num_points: tuple[int, ...]
    failed_fraction: float
    occluded_fraction: float | None

    @classmethod
    def pool(cls, videos: Sequence[VideoObjMC]) -> "ObjMCResult":
        """Pool per-video measurements: the one place where ObjMC over many videos is computed."""
        if not len(videos):
            raise EvaluationError("ObjMC: no videos")
        counts = [int(v.distances.size) for v in videos]
        total = sum(float(v.distances.sum()) for v in videos)
        failed = sum(int(v.tracks.failed.sum()) for v in videos)
        known = all(v.tracks.occluded is not None for v in videos)
        occluded = sum(int(v.tracks.occluded.sum()) for v in videos) if known else None
        return cls(pooled=total / sum(counts), per_video_mean=float(np.mean([v.value for v in videos])),
                   per_video=tuple(v.value for v in videos), num_points=tuple(counts), failed_fraction=failed / sum(counts),
                   occluded_fraction=None if occluded is None else occluded / sum(counts))


def objmc_distances(video, target_points, tracker=None, name: str = "video") -> VideoObjMC:
    """Track the objects of one video and measure their distances to the targets.

    Args:
        video: uint8 array ``(F, H, W, 3)``.
        target_points: ``(N, F, 2)`` target positions ``(x, y)`` in pixels of the video, per object
            and frame; tracking starts from ``target_points[:, 0]``.
        tracker: a tracker (see :mod:`sgi2v.evaluation.tracking`); default Lucas-Kanade.
        name: prefixes error messages (e.g. the video's file name).
    """
    from .tracking import LucasKanadeTracker

    video = validate_video(video, name=f"{name} video")
    frames, height, width = video.shape[:3]
    targets = validate_points(target_points, frames, height, width, name=f"{name} target_points")
    tracker = tracker if tracker is not None else LucasKanadeTracker()
    tracks = as_tracks(tracker.track(video, targets[:, 0]), len(targets), frames, name=name)
    return VideoObjMC(np.linalg.norm(tracks.points - targets, axis=-1), targets, tracks)


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
    return objmc_distances(video, target_points, tracker).value


def objmc_pooled(videos: Sequence, target_points: Sequence, tracker=None, names: Sequence[str] | None = None) -> ObjMCResult:
    """ObjMC over many videos, pooled over all points: ``sum of all distances / number of distances``.

    Args:
        videos: uint8 arrays ``(F_i, H_i, W_i, 3)`` (lengths and sizes may differ between videos).
        target_points: per video, ``(N_i, F_i, 2)`` in pixels.
        tracker: shared by all videos; default Lucas-Kanade.
        names: per video, for error messages.
    """
    if len(videos) != len(target_points):
        raise EvaluationError(f"objmc_pooled: {len(videos)} videos but {len(target_points)} target point arrays")
    names = list(names) if names is not None else [f"video {i}" for i in range(len(videos))]
    return ObjMCResult.pool([objmc_distances(v, t, tracker, n) for v, t, n in zip(videos, target_points, names)])
