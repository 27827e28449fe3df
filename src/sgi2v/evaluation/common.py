"""Input checks shared by the metrics: one clear message naming the input and the problem."""

from __future__ import annotations

import numpy as np

from ..generation import file_sha256  # one file hash for run records and evaluation reports

__all__ = ["EvaluationError", "WeightsError", "validate_video", "validate_points", "file_sha256"]


class EvaluationError(ValueError):
    """Bad input to an evaluation: the message names the input (a file, where known) and the problem."""


class WeightsError(FileNotFoundError):
    """Network weights that are missing or unreadable; the message names the file and what to do."""

    def __str__(self) -> str:  # FileNotFoundError would otherwise print "[Errno None] ..."
        return str(self.args[0]) if self.args else "weights not found"


def validate_video(video, name: str = "video") -> np.ndarray:
    """Check a video is a uint8 array ``(F, H, W, 3)`` with at least one frame; returns it as an ndarray."""
    video = np.asarray(video)
    if video.ndim != 4 or video.shape[-1] != 3:
        raise EvaluationError(f"{name}: expected a video array (F, H, W, 3), got shape {video.shape}")
    if video.dtype != np.uint8:
        raise EvaluationError(f"{name}: expected uint8 frames, got {video.dtype}")
    if min(video.shape[:3]) < 1:
        raise EvaluationError(f"{name}: empty video, shape {video.shape}")
    return video


def validate_points(points, num_frames: int, height: int, width: int, name: str = "target_points") -> np.ndarray:
    """Check target points ``(N, F, 2)`` (x, y) in pixels lie inside a ``width`` x ``height`` frame.

    Coordinates are continuous: the frame spans ``[0, width] x [0, height]``.
    """
    try:
        points = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError):
        raise EvaluationError(f"{name}: expected numbers in an array (N, F, 2)") from None
    if points.ndim != 3 or points.shape[2] != 2 or points.shape[0] < 1:
        raise EvaluationError(f"{name}: expected shape (N, F, 2) with N >= 1 objects, got {points.shape}")
    if points.shape[1] != num_frames:
        raise EvaluationError(f"{name}: has {points.shape[1]} frames per path but the video has {num_frames}")
    if not np.isfinite(points).all():
        raise EvaluationError(f"{name}: contains NaN or infinite coordinates")
    outside = (points[..., 0] < 0) | (points[..., 0] > width) | (points[..., 1] < 0) | (points[..., 1] > height)
    if outside.any():
        n, f = (int(v) for v in np.argwhere(outside)[0])
        raise EvaluationError(f"{name}: point of object {n} at frame {f}, {np.round(points[n, f], 2).tolist()}, "
                              f"is outside the {width}x{height} frame ({int(outside.sum())} such points)")
    return points
