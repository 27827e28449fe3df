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

* ``path``: positions of the box centre (at least 2), the first at frame 0 and the last at the last
  frame, spread evenly in time and joined linearly (or by a Catmull-Rom spline with
  ``"interpolation": "spline"``). The box keeps its size and moves by ``path[f] - path[0]``.
  ``"timing"`` says how the box travels along its path (see :func:`resample_path`): ``"time"`` (the
  default: the points at evenly spaced frames), ``"speed"`` (constant speed along the path) or
  ``"ease"`` (ease-in-out along the path).
* ``keyframes``: centre positions at chosen frames (frame numbers as keys); frame 0 defaults to the
  box centre; the box holds still after the last keyframe.
* ``static: true``: the box's content stays where it is.
* ``scale``: the box's size over time, relative to the drawn box: a number (the factor reached at the
  last frame, growing linearly from 1) or a list of factors spread evenly in time, like ``path``;
  factors lie in ``MIN_SCALE .. MAX_SCALE`` (0.05 .. 20).
* ``camera``: camera motion expressed as one more, large box. ``pan`` is the camera's direction
  (``"left"``, ``"right"``, ``"up"``, ``"down"``, with ``amount`` as a fraction of the image, default
  0.25; or ``[dx, dy]`` fractions) - the scene moves the other way; ``zoom`` is the factor by which the
  scene grows by the last frame (> 1 zooms in, < 1 zooms out; ``MIN_ZOOM .. MAX_ZOOM``, 0.1 .. 10).

Limits: the frame-0 box lies inside the image; every box corner, path or keyframe point, and every
box at every frame lies within one image size beyond each edge (x in ``-W .. 2W``, y in ``-H .. 2H``
for a ``W`` x ``H`` image); at most :data:`MAX_BOXES` boxes, :data:`MAX_POINTS` points in a ``path``,
``keyframes`` or ``scale`` list, and :data:`MAX_TRAJECTORY_BYTES` per file.

The authors' folder format (``img.png`` and ``traj.npy`` of shape ``(N, 2 + F, 2)``: the top-left and
bottom-right corners, then the centre per frame) is read by :func:`read_reference_dir` and converted by
:func:`reference_boxes`; :func:`load_reference_dir` does both.

Only numpy, Pillow and the standard library: input is checked before the heavy imports.
"""

from __future__ import annotations

import io
import json
import math
import os
import reprlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .images import load_image

__all__ = [
    "MAX_BOXES", "MAX_POINTS", "TIMINGS", "resample_path", "MAX_SCALE", "MAX_TRAJECTORY_BYTES", "MAX_ZOOM", "MIN_SCALE", "MIN_ZOOM",
    "Trajectory", "TrajectoryError", "parse_trajectory", "load_trajectory", "read_json_text",
    "read_reference_dir", "reference_boxes", "load_reference_dir", "read_trajectory_file", "load_image",
]

CAMERA_DIRECTIONS = {"left": (-1.0, 0.0), "right": (1.0, 0.0), "up": (0.0, -1.0), "down": (0.0, 1.0)}
DEFAULT_PAN_AMOUNT = 0.25
MAX_TRAJECTORY_BYTES = 5 << 20  # a trajectory file (JSON or traj.npy); larger ones are refused unread
MAX_BOXES = 256  # boxes in one trajectory (the camera comes on top)
MAX_POINTS = 1024  # points in a path, keyframes or scale list
MIN_SCALE, MAX_SCALE = 0.05, 20.0  # a box's size factor (scale)
MIN_ZOOM, MAX_ZOOM = 0.1, 10.0  # the camera's zoom factor
_NPY_MAGIC = b"\x93NUMPY"
#: How a box travels along a drawn path: see :func:`resample_path`.
TIMINGS = ("time", "speed", "ease")
_SPLINE_SAMPLES = 32  # per segment, where a spline path is timed by speed or ease

_brief_repr = reprlib.Repr()
_brief_repr.maxlevel, _brief_repr.maxlist, _brief_repr.maxtuple, _brief_repr.maxdict = 3, 8, 8, 4
_brief_repr.maxstring, _brief_repr.maxother, _brief_repr.maxlong = 40, 40, 40


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
        """The same trajectory in pixels of a ``width`` x ``height`` image.

        Computed as ``x * width / size[0]`` (not ``x * (width / size[0])``), so a box on the image's
        edge stays exactly on the new image's edge.
        """
        new_size = np.array([width, height] * 2, dtype=np.float64)
        old_size = np.array([self.size[0], self.size[1]] * 2, dtype=np.float64)
        return Trajectory(self.boxes * new_size / old_size, (width, height), self.labels)

    def centers(self) -> np.ndarray:
        """Box centres ``(N, F, 2)``."""
        return (self.boxes[..., :2] + self.boxes[..., 2:]) / 2


def _fail(where: str, message: str):
    raise TrajectoryError(f"{where}: {message}")


def _brief(value) -> str:
    """``repr`` cut short (long lists, deep nesting, long strings), on one line."""
    return _brief_repr.repr(value)


def _key(name) -> str:
    """A field name as written in a message: as is when short and printable, else a cut-short repr."""
    return name if isinstance(name, str) and name.isprintable() and len(name) <= 40 else _brief(name)


def _rounded(values: np.ndarray) -> list[float]:
    """Coordinates for a message, to 0.01 (Python's round: no overflow for huge values)."""
    return [round(float(v), 2) for v in values]


def _g(value: float) -> str:
    return f"{value:g}"


def _area(size: tuple[int, int], name: str = "") -> str:
    """``'100x50 image (x in -100..200, y in -50..100)'``: the image (and its file ``name``) and the area coordinates may reach."""
    width, height = size
    image = f"{_g(width)}x{_g(height)} image" + (f" {name}" if name else "")
    return f"{image} (x in {_g(-width)}..{_g(2 * width)}, y in {_g(-height)}..{_g(2 * height)})"


def _far_outside(points: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Points ``(..., 2)`` -> bool ``(...)``: beyond one image size from any edge."""
    width, height = size
    x, y = points[..., 0], points[..., 1]
    return (x < -width) | (x > 2 * width) | (y < -height) | (y > 2 * height)


def _number(value, where: str) -> float:
    try:
        number = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan
    except OverflowError:  # an integer beyond float's range
        number = math.inf
    if not math.isfinite(number):
        _fail(where, f"expected a finite number, got {_brief(value)}")
    return number


def _point(value, where: str, size: tuple[int, int] | None = None) -> np.ndarray:
    """``[x, y]`` -> float64 ``(2,)``; with ``size``, refused when far outside that image."""
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        _fail(where, f"expected a point [x, y], got {_brief(value)}")
    point = np.array([_number(v, f"{where}[{i}]") for i, v in enumerate(value)])
    if size is not None and _far_outside(point, size):
        _fail(where, f"the point {point.tolist()} is far outside the {_area(size)}")
    return point


def _count(items, where: str, what: str, limit: int) -> None:
    if len(items) > limit:
        _fail(where, f"{len(items)} {what} given; at most {limit} are accepted")


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


def _arc_positions(points: np.ndarray, fractions: np.ndarray) -> np.ndarray:
    """The points ``(F, 2)`` at the given fractions ``(F,)`` of the polyline ``points`` ``(P, 2)``'s arc length."""
    lengths = np.hypot(*np.diff(points, axis=0).T)  # (P - 1,)
    keep = np.concatenate([[True], lengths > 0])  # repeated points add no length
    points, arc = points[keep], np.concatenate([[0.0], np.cumsum(lengths[lengths > 0])])
    if len(points) == 1:  # the path does not move
        return np.repeat(points, len(fractions), axis=0)
    targets = fractions * arc[-1]
    return np.stack([np.interp(targets, arc, points[:, d]) for d in range(2)], axis=1)


def resample_path(points: np.ndarray, num_frames: int, timing: str = "time") -> np.ndarray:
    """Positions per frame ``(num_frames, 2)`` along a drawn path of ``points`` ``(P, 2)`` (any units).

    The path runs from ``points[0]`` at frame 0 to ``points[-1]`` at the last frame, through the points
    in order, joined linearly; ``P`` need not equal ``num_frames``.

    * ``time``: the points fall on evenly spaced frames (``points[k]`` at frame ``k (F - 1) / (P - 1)``),
      positions in between joined linearly. With ``P == F`` the points are returned unchanged. This is
      how a trajectory file's ``path`` has always been read.
    * ``speed``: constant speed along the path: frame ``f`` lies at the fraction ``u = f / (F - 1)`` of
      its arc length, so consecutive frames are equal arc-length steps apart.
    * ``ease``: ease-in-out along the path: frame ``f`` lies at the fraction ``3u^2 - 2u^3`` of its arc
      length (the cubic smoothstep: speed 0 at both ends, 1.5 times the average in the middle).

    Raises ``ValueError`` for an unknown timing, fewer than 1 point or ``num_frames < 1``.
    """
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2 or len(points) < 1:
        raise ValueError(f"points: expected an array of shape (P, 2) with P >= 1, got shape {points.shape}")
    if num_frames < 1:
        raise ValueError(f"num_frames: expected at least 1, got {num_frames}")
    if timing == "time":
        return _interpolate(_even_times(len(points), num_frames), points, num_frames, "linear")
    if timing not in TIMINGS:
        raise ValueError(f"timing: expected one of {', '.join(TIMINGS)}, got {_brief(timing)}")
    u = np.linspace(0.0, 1.0, num_frames) if num_frames > 1 else np.zeros(1)
    if timing == "ease":
        u = u * u * (3 - 2 * u)
    return _arc_positions(points, u)


def _box_entry(entry, where: str, num_frames: int, size: tuple[int, int]) -> tuple[np.ndarray, str]:
    """One ``boxes`` entry -> its boxes ``(num_frames, 4)`` in image pixels and its label."""
    if not isinstance(entry, dict):
        _fail(where, f"expected an object with 'box' and 'path', 'keyframes' or 'static', got {_brief(entry)}")
    allowed = {"box", "path", "keyframes", "static", "interpolation", "scale", "label", "timing"}
    unknown = sorted(set(entry) - allowed)
    if unknown:
        _fail(f"{where}.{_key(unknown[0])}", f"unknown field (allowed: {', '.join(sorted(allowed))})")
    if "box" not in entry:
        _fail(f"{where}.box", "missing: give the box as [x0, y0, x1, y1]")
    raw = entry["box"]
    if not isinstance(raw, (list, tuple)) or len(raw) != 4:
        _fail(f"{where}.box", f"expected [x0, y0, x1, y1], got {_brief(raw)}")
    box = np.array([_number(v, f"{where}.box[{i}]") for i, v in enumerate(raw)])
    if _far_outside(box.reshape(2, 2), size).any():
        _fail(f"{where}.box", f"the box {box.tolist()} is far outside the {_area(size)}")
    if box[2] <= box[0] or box[3] <= box[1]:
        _fail(f"{where}.box", f"needs x1 > x0 and y1 > y0, got {_brief(raw)}")
    kinds = [k for k in ("path", "keyframes", "static") if k in entry]
    if len(kinds) != 1:
        _fail(where, f"give exactly one of 'path', 'keyframes' or 'static', got {kinds or 'none'}")
    interpolation = entry.get("interpolation", "linear")
    if interpolation not in ("linear", "spline"):
        _fail(f"{where}.interpolation", f"expected 'linear' or 'spline', got {_brief(interpolation)}")
    timing = entry.get("timing", "time")
    if timing not in TIMINGS:
        _fail(f"{where}.timing", f"expected one of {', '.join(TIMINGS)}, got {_brief(timing)}")
    if timing != "time" and "path" not in entry:
        _fail(f"{where}.timing", "only applies to a 'path' (keyframes give their frames; a static box does not move)")
    center = (box[:2] + box[2:]) / 2

    if "static" in entry:
        if entry["static"] is not True:
            _fail(f"{where}.static", f"expected true, got {_brief(entry['static'])}")
        path = np.repeat(center[None], num_frames, axis=0)
    elif "path" in entry:
        points = entry["path"]
        if not isinstance(points, (list, tuple)) or len(points) == 0:
            _fail(f"{where}.path", f"expected a list of [x, y] points, got {_brief(points)}")
        _count(points, f"{where}.path", "points", MAX_POINTS)
        values = np.stack([_point(p, f"{where}.path[{i}]", size) for i, p in enumerate(points)])
        if len(values) == 1:
            _fail(f"{where}.path", "give at least 2 points (the first at frame 0, the last at the last frame); "
                                   "for a box that stays put use \"static\": true")
        if timing == "time":
            path = _interpolate(_even_times(len(values), num_frames), values, num_frames, interpolation)
        else:
            if interpolation == "spline":  # the curve, finely sampled by time, then travelled by arc length
                samples = _SPLINE_SAMPLES * (len(values) - 1) + 1
                values = _interpolate(_even_times(len(values), samples), values, samples, "spline")
            path = resample_path(values, num_frames, timing)
    else:
        keys = entry["keyframes"]
        if not isinstance(keys, dict) or not keys:
            _fail(f"{where}.keyframes", f"expected an object {{frame: [x, y]}}, got {_brief(keys)}")
        _count(keys, f"{where}.keyframes", "keyframes", MAX_POINTS)
        frames = {}
        for k, p in keys.items():
            try:
                frame = int(k)
            except (TypeError, ValueError):
                _fail(f"{where}.keyframes", f"frame {_brief(k)} is not an integer")
            if not 0 <= frame < num_frames:
                _fail(f"{where}.keyframes.{_key(k)}", f"frame {frame} is outside 0..{num_frames - 1}")
            if frame in frames:
                _fail(f"{where}.keyframes.{_key(k)}", f"frame {frame} is given twice")
            frames[frame] = _point(p, f"{where}.keyframes.{_key(k)}", size)
        frames.setdefault(0, center)
        times = np.array(sorted(frames), dtype=np.float64)
        path = _interpolate(times, np.stack([frames[int(t)] for t in times]), num_frames, interpolation)

    scale = entry.get("scale", 1.0)
    if isinstance(scale, (list, tuple)):
        if not scale:
            _fail(f"{where}.scale", "expected a number or a non-empty list of numbers")
        _count(scale, f"{where}.scale", "factors", MAX_POINTS)
        factors = np.array([_factor(s, f"{where}.scale[{i}]") for i, s in enumerate(scale)])[:, None]
        factors = _interpolate(_even_times(len(factors), num_frames), factors, num_frames, interpolation)[:, 0]
    else:
        final = _factor(scale, f"{where}.scale")
        factors = np.linspace(1.0, final, num_frames)
    if (factors <= 0).any():  # a spline through small factors can dip below 0
        f = int(np.argmax(factors <= 0))
        _fail(f"{where}.scale", f"factors must be > 0, but the spline through {_brief(scale)} reaches "
                                f"{factors[f]:.3g} at frame {f} (use \"interpolation\": \"linear\")")

    label = entry.get("label", "")
    if not isinstance(label, str):
        _fail(f"{where}.label", f"expected a string, got {_brief(label)}")
    if "scale" not in entry:
        # No zoom: translate the box exactly as the authors' tool does (box + path[f] - path[0]).
        offsets = path - path[0]
        return np.concatenate([box[:2] + offsets, box[2:] + offsets], axis=1), label
    centers = center + (path - path[0])
    half = (box[2:] - box[:2]) / 2 * factors[:, None]
    return np.concatenate([centers - half, centers + half], axis=1), label


def _factor(value, where: str) -> float:
    factor = _number(value, where)
    if factor <= 0:
        _fail(where, f"factors must be > 0, got {_brief(value)}")
    if not MIN_SCALE <= factor <= MAX_SCALE:
        _fail(where, f"the factor {_g(factor)} is outside {_g(MIN_SCALE)}..{_g(MAX_SCALE)}")
    return factor


def _camera_box(camera, where: str, num_frames: int, size: tuple[int, int]) -> np.ndarray:
    if not isinstance(camera, dict):
        _fail(where, f"expected an object like {{\"pan\": \"left\", \"zoom\": 1.2}}, got {_brief(camera)}")
    unknown = sorted(set(camera) - {"pan", "amount", "zoom"})
    if unknown:
        _fail(f"{where}.{_key(unknown[0])}", "unknown field (allowed: amount, pan, zoom)")
    width, height = size
    pan = camera.get("pan", [0.0, 0.0])
    if isinstance(pan, str):
        if pan not in CAMERA_DIRECTIONS:
            _fail(f"{where}.pan", f"expected one of {sorted(CAMERA_DIRECTIONS)} or [dx, dy], got {_brief(pan)}")
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
    if not MIN_ZOOM <= zoom <= MAX_ZOOM:
        _fail(f"{where}.zoom", f"expected a factor within {_g(MIN_ZOOM)}..{_g(MAX_ZOOM)}, got {_g(zoom)}")
    shift = -pan * np.array([width, height])  # the scene moves against the camera, by the last frame
    span = np.array([width, height]) - np.abs(shift)
    size0 = span / max(zoom, 1.0)  # so the box stays inside the image from first to last frame
    progress = np.linspace(0.0, 1.0, num_frames)[:, None]
    centers = np.array([width, height]) / 2 - shift / 2 + shift * progress
    half = size0 / 2 * (1 + (zoom - 1) * progress)
    return np.concatenate([centers - half, centers + half], axis=1)


def _check_placement(boxes: np.ndarray, where: str, box_field: str, movers: str, size: tuple[int, int]) -> None:
    """Boxes ``(F, 4)`` of one entry: the frame-0 box inside the image, every box within one image size of it."""
    width, height = size
    first = boxes[0]
    if first[0] < 0 or first[1] < 0 or first[2] > width or first[3] > height:
        _fail(box_field, f"the frame-0 box {_rounded(first)} is not inside the {width}x{height} image")
    far = _far_outside(boxes.reshape(-1, 2, 2), size).any(axis=1)  # (F,)
    if far.any():
        f = int(np.argmax(far))
        _fail(where, f"at frame {f} {movers} the box to {_rounded(boxes[f])}, far outside the {_area(size)}")


def _movers(entry: dict) -> str:
    """What moves a box entry, for messages: ``'its path takes'``, ``'its keyframes and scale take'``, ..."""
    fields = [k for k in ("path", "keyframes", "scale") if k in entry] or ["box"]
    return "its " + " and ".join(fields) + (" takes" if len(fields) == 1 else " take")


def parse_trajectory(data, num_frames: int, image_size: tuple[int, int], source: str = "trajectory") -> Trajectory:
    """Parse a trajectory object (see the module docstring) into per-frame boxes in image pixels.

    Args:
        data: the decoded JSON object.
        num_frames: frames of the video to make.
        image_size: ``(width, height)`` of the input image.
        source: name used in error messages (a file name).

    Raises:
        TrajectoryError: one line, ``"{source}: {field}: {problem}"``, naming the offending value.
    """
    if num_frames < 2:
        raise TrajectoryError(f"{source}: num_frames must be at least 2, got {num_frames}")
    if not isinstance(data, dict):
        raise TrajectoryError(f"{source}: expected a JSON object with a 'boxes' list, got {type(data).__name__}")
    unknown = sorted(set(data) - {"boxes", "camera", "num_frames"})
    if unknown:
        raise TrajectoryError(f"{source}: {_key(unknown[0])}: unknown field (allowed: boxes, camera, num_frames)")
    if "num_frames" in data and data["num_frames"] != num_frames:
        raise TrajectoryError(
            f"{source}: num_frames: the file is for {_brief(data['num_frames'])} frames but {num_frames} are generated")
    entries = data.get("boxes", [])
    if not isinstance(entries, list):
        raise TrajectoryError(f"{source}: boxes: expected a list, got {type(entries).__name__}")
    if not entries and "camera" not in data:
        raise TrajectoryError(f"{source}: boxes: give at least one box (or a camera motion)")
    if len(entries) > MAX_BOXES:
        raise TrajectoryError(f"{source}: boxes: {len(entries)} boxes given; at most {MAX_BOXES} are accepted")
    size = (image_size[0], image_size[1])
    boxes, labels = [], []
    try:
        for i, entry in enumerate(entries):
            box, label = _box_entry(entry, f"boxes[{i}]", num_frames, size)
            _check_placement(box, f"boxes[{i}]", f"boxes[{i}].box", _movers(entry), size)
            boxes.append(box)
            labels.append(label or f"box {i}")
        if "camera" in data:
            camera = _camera_box(data["camera"], "camera", num_frames, size)
            _check_placement(camera, "camera", "camera", "its pan and zoom take", size)
            boxes.append(camera)
            labels.append("camera")
    except TrajectoryError as err:
        raise TrajectoryError(f"{source}: {err}") from None
    result = np.stack(boxes)  # (N, F, 4)
    return Trajectory(result, (int(size[0]), int(size[1])), tuple(labels))


def read_json_text(text: str, source: str, error: type[ValueError] = ValueError) -> object:
    """Decode JSON text, with one-line messages naming ``source`` for every way it can fail.

    Raises ``error`` (a ``ValueError`` subclass, e.g. :class:`TrajectoryError`) with
    ``"{source}: malformed JSON at line L, column C: {problem}"``, or ``"{source}: malformed JSON:
    nested too deeply"`` where Python's parser would run out of recursion depth.
    """
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise error(f"{source}: malformed JSON at line {err.lineno}, column {err.colno}: {err.msg}") from None
    except RecursionError:
        raise error(f"{source}: malformed JSON: nested too deeply") from None
    except ValueError as err:  # e.g. an integer with more digits than Python converts
        raise error(f"{source}: malformed JSON: {str(err).split(';')[0]}") from None


def _read_limited(path: Path, what: str) -> bytes:
    """The bytes of a file of at most MAX_TRAJECTORY_BYTES; a larger one is refused unread."""
    limit = MAX_TRAJECTORY_BYTES

    def too_large(size: int) -> TrajectoryError:
        megabytes = math.ceil(size / 2**20 * 10) / 10  # rounded up: never shows the limit itself
        return TrajectoryError(f"{path}: the {what} is {megabytes:.1f} MB; at most {limit / 2**20:g} MB are accepted")

    try:
        if path.is_dir():
            raise TrajectoryError(f"{path}: is a folder, not a {what}")
        size = path.stat().st_size
        if size > limit:
            raise too_large(size)
        with open(path, "rb") as fp:
            data = fp.read(limit + 1)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: {what} not found") from None
    except OSError as err:
        raise TrajectoryError(f"{path}: cannot read the {what}: {err}") from None
    if len(data) > limit:  # grew since, or not a regular file
        raise too_large(len(data))
    return data


def read_trajectory_file(path: str | os.PathLike) -> object:
    """The decoded JSON of a trajectory file (at most :data:`MAX_TRAJECTORY_BYTES`), not yet checked.

    Raises:
        TrajectoryError: not found, too large, not UTF-8 or malformed JSON.
    """
    path = Path(path)
    try:
        data = _read_limited(path, "trajectory file")
    except FileNotFoundError as err:
        raise TrajectoryError(str(err)) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise TrajectoryError(f"{path}: cannot read the trajectory file: {err}") from None
    return read_json_text(text, str(path), TrajectoryError)


def load_trajectory(path: str | os.PathLike, num_frames: int, image_size: tuple[int, int]) -> Trajectory:
    """Read and parse a trajectory JSON file (see :func:`read_trajectory_file`); raises ``TrajectoryError``."""
    return parse_trajectory(read_trajectory_file(path), num_frames, image_size, source=str(path))


def read_reference_dir(directory: str | os.PathLike, num_frames: int) -> tuple[Image.Image, np.ndarray]:
    """Read and check the authors' folder format: ``img.png`` and ``traj.npy``.

    Returns:
        The image as it is in the file (RGB, see :func:`load_image`) and the array ``(N, 2 + F, 2)`` as
        stored (integers or floats): per box the top-left and bottom-right corners of its frame-0 box,
        then its centre at each of the ``F = num_frames`` frames, in the image's pixels.

    Raises:
        FileNotFoundError: the folder, ``img.png`` or ``traj.npy`` is missing.
        TrajectoryError: ``traj.npy`` is not a readable ``.npy`` array of real numbers of that shape,
            or a box is flipped, its frame-0 box is not inside the image, or its path goes further than
            one image size beyond the image's edges (checked in the file's pixels).
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: reference folder not found")
    image_path = directory / "img.png"
    image = load_image(image_path)
    traj_path = directory / "traj.npy"
    raw = _read_npy(traj_path)
    where = str(traj_path)
    if raw.ndim != 3 or raw.shape[2] != 2 or raw.shape[1] < 3 or raw.shape[0] < 1:
        raise TrajectoryError(f"{where}: expected a numeric array of shape (N, 2 + F, 2), got {raw.shape} {raw.dtype}")
    if raw.dtype.kind not in "iuf":
        raise TrajectoryError(f"{where}: expected real numbers (integers or floats), got {raw.dtype} values")
    if raw.shape[0] > MAX_BOXES:
        raise TrajectoryError(f"{where}: {raw.shape[0]} boxes given; at most {MAX_BOXES} are accepted")
    if raw.shape[1] - 2 != num_frames:
        raise TrajectoryError(f"{where}: has {raw.shape[1] - 2} frames per path but {num_frames} frames are generated")
    if not np.isfinite(raw).all():
        raise TrajectoryError(f"{where}: contains NaN or infinite coordinates")
    _check_reference(raw.astype(np.float64), where, image.size, image_path.name)
    return image, raw


def _read_npy(path: Path) -> np.ndarray:
    data = _read_limited(path, "trajectory file")
    if not data:
        raise TrajectoryError(f"{path}: not a readable .npy array: the file is empty")
    if not data.startswith(_NPY_MAGIC):
        raise TrajectoryError(f"{path}: not a readable .npy array: it does not start with the .npy signature")
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except (EOFError, ValueError, OSError) as err:
        raise TrajectoryError(f"{path}: not a readable .npy array: {' '.join(str(err).split())}") from None


def _check_reference(raw: np.ndarray, where: str, size: tuple[int, int], image_name: str) -> None:
    """The authors' array ``(N, 2 + F, 2)`` float64 against the ``size`` of their image, in its pixels."""
    width, height = size
    corners = raw[:, :2].reshape(-1, 4)  # (N, 4): x0, y0, x1, y1
    flipped = (corners[:, 2] <= corners[:, 0]) | (corners[:, 3] <= corners[:, 1])
    if flipped.any():
        n = int(np.argmax(flipped))
        raise TrajectoryError(f"{where}: box {n}: needs x1 > x0 and y1 > y0, got {_rounded(corners[n])}")
    outside = (corners[:, 0] < 0) | (corners[:, 1] < 0) | (corners[:, 2] > width) | (corners[:, 3] > height)
    if outside.any():
        n = int(np.argmax(outside))
        raise TrajectoryError(f"{where}: box {n}: the frame-0 box {_rounded(corners[n])} is not inside "
                              f"the {width}x{height} image {image_name}")
    centers = raw[:, 2:]  # (N, F, 2)
    far = _far_outside(centers, size)
    if far.any():
        n, f = (int(v) for v in np.argwhere(far)[0])
        raise TrajectoryError(f"{where}: box {n}: the centre at frame {f} {_rounded(centers[n, f])} is far "
                              f"outside the {_area(size, image_name)}")
    delta = centers - centers[:, :1]
    boxes = np.concatenate([corners[:, None, :2] + delta, corners[:, None, 2:] + delta], axis=-1)  # (N, F, 4)
    far = _far_outside(boxes.reshape(*boxes.shape[:2], 2, 2), size).any(axis=-1)
    if far.any():
        n, f = (int(v) for v in np.argwhere(far)[0])
        raise TrajectoryError(f"{where}: box {n}: at frame {f} its path takes the box to {_rounded(boxes[n, f])}, "
                              f"far outside the {_area(size, image_name)}")


def reference_boxes(raw: np.ndarray, image_size: tuple[int, int], width: int, height: int) -> np.ndarray:
    """Convert the authors' array exactly as their tool does.

    Args:
        raw: ``(N, 2 + F, 2)`` as returned by :func:`read_reference_dir`, in pixels of an image of
            ``image_size = (width, height)``.
        width, height: the output size.

    Returns:
        The boxes ``(N, F, 4)`` ``(x0, y0, x1, y1)`` in output pixels, computed in float32 like theirs:
        coordinates rescaled from ``image_size``, each box translated by ``center[f] - center[0]``.
    """
    original_width, original_height = image_size
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
    return boxes


def load_reference_dir(directory: str | os.PathLike, width: int, height: int, num_frames: int) -> tuple[Image.Image, np.ndarray]:
    """Read the authors' folder format and convert it exactly as their tool does.

    Returns the image resized to ``width`` x ``height`` (PIL bicubic, as theirs) and the boxes
    ``(N, F, 4)`` ``(x0, y0, x1, y1)`` in output pixels (float32): :func:`read_reference_dir`, then
    :func:`reference_boxes`.
    """
    image, raw = read_reference_dir(directory, num_frames)
    return image.resize((width, height)), reference_boxes(raw, image.size, width, height)
