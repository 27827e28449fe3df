"""Trajectory files: boxes and their paths, in the input image's pixels.

JSON format (all coordinates in pixels of the input image, x to the right, y down)::

    {
      "boxes": [
        {"box": [x0, y0, x1, y1], "path": [[x, y], [x, y], ...]},
        {"box": [x0, y0, x1, y1], "static": true},
        {"box": [x0, y0, x1, y1], "keyframes": {"0": [x, y], "8": [x, y]}, "interpolation": "spline"},
        {"box": [x0, y0, x1, y1], "path": [[x, y], [x, y]], "scale": 1.5}
      ],
      "camera": {"pan": "left", "amount": 0.25, "zoom": 1.2}
    }

* ``path``: positions of the box centre, the first at frame 0 and the last at the last frame, spread
  evenly in time and joined linearly (or by a Catmull-Rom spline with ``"interpolation": "spline"``).
  The box keeps its size and moves by ``path[f] - path[0]``.
* ``keyframes``: centre positions at chosen frames (frame numbers as keys); frame 0 defaults to the
  box centre; the box holds still after the last keyframe.
* ``static: true``: the box's content stays where it is.
* ``scale``: the box's size over time, relative to the drawn box: a number (the factor reached at the
  last frame, growing linearly from 1) or a list of factors spread evenly in time, like ``path``.
* ``camera``: camera motion expressed as one more, large box. ``pan`` is the camera's direction
  (``"left"``, ``"right"``, ``"up"``, ``"down"``, with ``amount`` as a fraction of the image, default
  0.25; or ``[dx, dy]`` fractions) - the scene moves the other way; ``zoom`` is the factor by which the
  scene grows by the last frame (> 1 zooms in, < 1 zooms out).

The authors' folder format (``img.png`` and ``traj.npy`` of shape ``(N, 2 + F, 2)``: the top-left and
bottom-right corners, then the centre per frame) is read by :func:`load_reference_dir`.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .images import load_image

__all__ = ["Trajectory", "TrajectoryError", "parse_trajectory", "load_trajectory", "load_reference_dir", "load_image"]

CAMERA_DIRECTIONS = {"left": (-1.0, 0.0), "right": (1.0, 0.0), "up": (0.0, -1.0), "down": (0.0, 1.0)}
DEFAULT_PAN_AMOUNT = 0.25


class TrajectoryError(ValueError):
    """A trajectory that does not match the format; the message names the offending field."""


@dataclass(frozen=True)
class Trajectory:
    """Boxes per frame, ``(N, F, 4)`` ``(x0, y0, x1, y1)``, in pixels of an image of ``size = (width, height)``."""

    boxes: np.ndarray
    size: tuple[int, int]
    labels: tuple[str, ...] = ()

    @property
    def num_frames(self) -> int:
        return self.boxes.shape[1]

    def resized(self, width: int, height: int) -> "Trajectory":
        """The same trajectory in pixels of a ``width`` x ``height`` image."""
        scale = np.array([width / self.size[0], height / self.size[1]] * 2)
        return Trajectory(self.boxes * scale, (width, height), self.labels)

    def centers(self) -> np.ndarray:
        """Box centres ``(N, F, 2)``."""
        return (self.boxes[..., :2] + self.boxes[..., 2:]) / 2


def _fail(where: str, message: str):
    raise TrajectoryError(f"{where}: {message}")


def _number(value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        _fail(where, f"expected a finite number, got {value!r}")
    return float(value)


def _point(value, where: str) -> np.ndarray:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        _fail(where, f"expected a point [x, y], got {value!r}")
    return np.array([_number(v, f"{where}[{i}]") for i, v in enumerate(value)])


def _interpolate(times: np.ndarray, values: np.ndarray, num_frames: int, kind: str) -> np.ndarray:
    """Values ``(K, D)`` at increasing ``times`` -> ``(num_frames, D)``, held constant outside the keys."""
    frames = np.arange(num_frames, dtype=np.float64)
    if len(times) == 1:
        return np.repeat(values[:1], num_frames, axis=0)
    if kind == "linear" or len(times) == 2:
        return np.stack([np.interp(frames, times, values[:, d]) for d in range(values.shape[1])], axis=1)
    # Catmull-Rom (cubic Hermite with finite-difference tangents), valid for uneven key times.
    tangents = np.empty_like(values)
    tangents[1:-1] = (values[2:] - values[:-2]) / (times[2:] - times[:-2])[:, None]
    tangents[0] = (values[1] - values[0]) / (times[1] - times[0])
    tangents[-1] = (values[-1] - values[-2]) / (times[-1] - times[-2])
    out = np.empty((num_frames, values.shape[1]))
    for f in range(num_frames):
        t = min(max(frames[f], times[0]), times[-1])
        k = min(int(np.searchsorted(times, t, side="right")) - 1, len(times) - 2)
        dt = times[k + 1] - times[k]
        s = (t - times[k]) / dt
        h00, h10, h01, h11 = 2 * s**3 - 3 * s**2 + 1, s**3 - 2 * s**2 + s, -2 * s**3 + 3 * s**2, s**3 - s**2
        out[f] = h00 * values[k] + h10 * dt * tangents[k] + h01 * values[k + 1] + h11 * dt * tangents[k + 1]
    return out


def _even_times(count: int, num_frames: int) -> np.ndarray:
    return np.linspace(0.0, num_frames - 1, count) if count > 1 else np.zeros(1)


def _box_entry(entry, where: str, num_frames: int) -> tuple[np.ndarray, str]:
    if not isinstance(entry, dict):
        _fail(where, f"expected an object with 'box' and 'path', 'keyframes' or 'static', got {entry!r}")
    allowed = {"box", "path", "keyframes", "static", "interpolation", "scale", "label"}
    unknown = sorted(set(entry) - allowed)
    if unknown:
        _fail(f"{where}.{unknown[0]}", f"unknown field (allowed: {', '.join(sorted(allowed))})")
    if "box" not in entry:
        _fail(f"{where}.box", "missing: give the box as [x0, y0, x1, y1]")
    raw = entry["box"]
    if not isinstance(raw, (list, tuple)) or len(raw) != 4:
        _fail(f"{where}.box", f"expected [x0, y0, x1, y1], got {raw!r}")
    box = np.array([_number(v, f"{where}.box[{i}]") for i, v in enumerate(raw)])
    if box[2] <= box[0] or box[3] <= box[1]:
        _fail(f"{where}.box", f"needs x1 > x0 and y1 > y0, got {raw!r}")
    kinds = [k for k in ("path", "keyframes", "static") if k in entry]
    if len(kinds) != 1:
        _fail(where, f"give exactly one of 'path', 'keyframes' or 'static', got {kinds or 'none'}")
    interpolation = entry.get("interpolation", "linear")
    if interpolation not in ("linear", "spline"):
        _fail(f"{where}.interpolation", f"expected 'linear' or 'spline', got {interpolation!r}")
    center = (box[:2] + box[2:]) / 2

    if "static" in entry:
        if entry["static"] is not True:
            _fail(f"{where}.static", f"expected true, got {entry['static']!r}")
        path = np.repeat(center[None], num_frames, axis=0)
    elif "path" in entry:
        points = entry["path"]
        if not isinstance(points, (list, tuple)) or len(points) == 0:
            _fail(f"{where}.path", f"expected a list of [x, y] points, got {points!r}")
        values = np.stack([_point(p, f"{where}.path[{i}]") for i, p in enumerate(points)])
        path = _interpolate(_even_times(len(values), num_frames), values, num_frames, interpolation)
    else:
        keys = entry["keyframes"]
        if not isinstance(keys, dict) or not keys:
            _fail(f"{where}.keyframes", f"expected an object {{frame: [x, y]}}, got {keys!r}")
        frames = {}
        for k, p in keys.items():
            try:
                frame = int(k)
            except (TypeError, ValueError):
                _fail(f"{where}.keyframes", f"frame {k!r} is not an integer")
            if not 0 <= frame < num_frames:
                _fail(f"{where}.keyframes.{k}", f"frame {frame} is outside 0..{num_frames - 1}")
            frames[frame] = _point(p, f"{where}.keyframes.{k}")
        frames.setdefault(0, center)
        times = np.array(sorted(frames), dtype=np.float64)
        path = _interpolate(times, np.stack([frames[int(t)] for t in times]), num_frames, interpolation)

    scale = entry.get("scale", 1.0)
    if isinstance(scale, (list, tuple)):
        if not scale:
            _fail(f"{where}.scale", "expected a number or a non-empty list of numbers")
        factors = np.array([_number(s, f"{where}.scale[{i}]") for i, s in enumerate(scale)])[:, None]
        factors = _interpolate(_even_times(len(factors), num_frames), factors, num_frames, interpolation)[:, 0]
    else:
        final = _number(scale, f"{where}.scale")
        factors = np.linspace(1.0, final, num_frames)
    if (factors <= 0).any():
        _fail(f"{where}.scale", f"factors must be > 0, got {scale!r}")

    label = entry.get("label", "")
    if not isinstance(label, str):
        _fail(f"{where}.label", f"expected a string, got {label!r}")
    if "scale" not in entry:
        # No zoom: translate the box exactly as the authors' tool does (box + path[f] - path[0]).
        offsets = path - path[0]
        return np.concatenate([box[:2] + offsets, box[2:] + offsets], axis=1), label
    centers = center + (path - path[0])
    half = (box[2:] - box[:2]) / 2 * factors[:, None]
    return np.concatenate([centers - half, centers + half], axis=1), label


def _camera_box(camera, where: str, num_frames: int, size: tuple[int, int]) -> np.ndarray:
    if not isinstance(camera, dict):
        _fail(where, f"expected an object like {{\"pan\": \"left\", \"zoom\": 1.2}}, got {camera!r}")
    unknown = sorted(set(camera) - {"pan", "amount", "zoom"})
    if unknown:
        _fail(f"{where}.{unknown[0]}", "unknown field (allowed: amount, pan, zoom)")
    width, height = size
    pan = camera.get("pan", [0.0, 0.0])
    if isinstance(pan, str):
        if pan not in CAMERA_DIRECTIONS:
            _fail(f"{where}.pan", f"expected one of {sorted(CAMERA_DIRECTIONS)} or [dx, dy], got {pan!r}")
        amount = _number(camera.get("amount", DEFAULT_PAN_AMOUNT), f"{where}.amount")
        if not 0 < amount < 1:
            _fail(f"{where}.amount", f"expected a fraction of the image in (0, 1), got {amount}")
        pan = np.array(CAMERA_DIRECTIONS[pan]) * amount
    else:
        if "amount" in camera:
            _fail(f"{where}.amount", "only used with a named pan direction")
        pan = _point(pan, f"{where}.pan")
        if (np.abs(pan) >= 1).any():
            _fail(f"{where}.pan", f"fractions of the image must lie in (-1, 1), got {pan.tolist()}")
    zoom = _number(camera.get("zoom", 1.0), f"{where}.zoom")
    if zoom <= 0:
        _fail(f"{where}.zoom", f"expected a factor > 0, got {zoom}")
    shift = -pan * np.array([width, height])  # the scene moves against the camera, by the last frame
    span = np.array([width, height]) - np.abs(shift)
    size0 = span / max(zoom, 1.0)  # so the box stays inside the image from first to last frame
    progress = np.linspace(0.0, 1.0, num_frames)[:, None]
    centers = np.array([width, height]) / 2 - shift / 2 + shift * progress
    half = size0 / 2 * (1 + (zoom - 1) * progress)
    return np.concatenate([centers - half, centers + half], axis=1)


def parse_trajectory(data, num_frames: int, image_size: tuple[int, int], source: str = "trajectory") -> Trajectory:
    """Parse a trajectory object (see the module docstring) into per-frame boxes in image pixels.

    Args:
        data: the decoded JSON object.
        num_frames: frames of the video to make.
        image_size: ``(width, height)`` of the input image.
        source: name used in error messages (a file name).
    """
    if num_frames < 2:
        raise TrajectoryError(f"{source}: num_frames must be at least 2, got {num_frames}")
    if not isinstance(data, dict):
        raise TrajectoryError(f"{source}: expected a JSON object with a 'boxes' list, got {type(data).__name__}")
    unknown = sorted(set(data) - {"boxes", "camera", "num_frames"})
    if unknown:
        raise TrajectoryError(f"{source}: {unknown[0]}: unknown field (allowed: boxes, camera, num_frames)")
    if "num_frames" in data and data["num_frames"] != num_frames:
        raise TrajectoryError(f"{source}: num_frames: the file is for {data['num_frames']!r} frames but {num_frames} are generated")
    entries = data.get("boxes", [])
    if not isinstance(entries, list):
        raise TrajectoryError(f"{source}: boxes: expected a list, got {type(entries).__name__}")
    if not entries and "camera" not in data:
        raise TrajectoryError(f"{source}: boxes: give at least one box (or a camera motion)")
    boxes, labels = [], []
    for i, entry in enumerate(entries):
        try:
            box, label = _box_entry(entry, f"boxes[{i}]", num_frames)
        except TrajectoryError as err:
            raise TrajectoryError(f"{source}: {err}") from None
        boxes.append(box)
        labels.append(label or f"box {i}")
    if "camera" in data:
        try:
            boxes.append(_camera_box(data["camera"], "camera", num_frames, image_size))
        except TrajectoryError as err:
            raise TrajectoryError(f"{source}: {err}") from None
        labels.append("camera")
    result = np.stack(boxes)  # (N, F, 4)
    width, height = image_size
    first = result[:, 0]
    outside = (first[:, 0] < 0) | (first[:, 1] < 0) | (first[:, 2] > width) | (first[:, 3] > height)
    if outside.any():
        n = int(np.argwhere(outside)[0, 0])
        where = "camera" if labels[n] == "camera" else f"boxes[{n}].box"
        raise TrajectoryError(f"{source}: {where}: the frame-0 box {np.round(first[n], 2).tolist()} is not inside the {width}x{height} image")
    return Trajectory(result, (int(width), int(height)), tuple(labels))


def load_trajectory(path: str | os.PathLike, num_frames: int, image_size: tuple[int, int]) -> Trajectory:
    """Read and parse a trajectory JSON file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TrajectoryError(f"{path}: trajectory file not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise TrajectoryError(f"{path}: cannot read the trajectory file: {err}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise TrajectoryError(f"{path}: malformed JSON at line {err.lineno}, column {err.colno}: {err.msg}") from None
    return parse_trajectory(data, num_frames, image_size, source=str(path))


def load_reference_dir(directory: str | os.PathLike, width: int, height: int, num_frames: int) -> tuple[Image.Image, np.ndarray]:
    """Read the authors' folder format and convert it exactly as their tool does.

    Returns the image resized to ``width`` x ``height`` (PIL bicubic, as theirs) and the boxes
    ``(N, F, 4)`` ``(x0, y0, x1, y1)`` in output pixels, computed in float32 like theirs: coordinates
    rescaled from the image's size, each box translated by ``center[f] - center[0]``.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: reference folder not found")
    image = load_image(directory / "img.png")
    traj_path = directory / "traj.npy"
    if not traj_path.exists():
        raise FileNotFoundError(f"{traj_path}: trajectory file not found")
    try:
        raw = np.load(traj_path, allow_pickle=False)
    except (ValueError, OSError) as err:
        raise TrajectoryError(f"{traj_path}: not a readable .npy array: {err}") from None
    if raw.ndim != 3 or raw.shape[2] != 2 or raw.shape[1] < 3 or raw.shape[0] < 1 or not np.issubdtype(raw.dtype, np.number):
        raise TrajectoryError(f"{traj_path}: expected a numeric array of shape (N, 2 + F, 2), got {raw.shape} {raw.dtype}")
    if raw.shape[1] - 2 != num_frames:
        raise TrajectoryError(f"{traj_path}: has {raw.shape[1] - 2} frames per path but {num_frames} frames are generated")
    if not np.isfinite(raw).all():
        raise TrajectoryError(f"{traj_path}: contains NaN or infinite coordinates")
    original_width, original_height = image.size
    ret = raw.astype(np.float32)
    ret[:, :, 0] = ret[:, :, 0] * width / original_width
    ret[:, :, 1] = ret[:, :, 1] * height / original_height
    corners = ret[:, :2].reshape(-1, 4)  # (N, 4): x0, y0, x1, y1
    centers = ret[:, 2:]  # (N, F, 2)
    delta = centers - centers[:, :1]  # float32, (N, F, 2)
    boxes = np.stack(
        [corners[:, None, 0] + delta[..., 0], corners[:, None, 1] + delta[..., 1],
         corners[:, None, 2] + delta[..., 0], corners[:, None, 3] + delta[..., 1]], axis=-1
    )  # (N, F, 4) float32
    return image.resize((width, height)), boxes
