"""Trajectories as other tools write them, read into (and written back from) sgi2v's trajectory JSON.

Formats (:data:`FORMATS`; examples of each in ``docs/trajectories.md``):

* ``sgi2v``: our JSON object (see :mod:`sgi2v.trajectory`), in the image's pixels.
* ``spline``: KJNodes ``SplineEditor``'s ``coord_str``, JSON in canvas pixels:
  ``[{"x": 10, "y": 20}, ...]`` for one path, ``[[{"x": .., "y": ..}, ...], [...]]`` for several.
* ``ati``: ATI's ``tracks``, the same JSON (and read the same way), with the canvas's width and height.
* ``wanmove``: Wan-Move's tracks ``(F, N, 2)`` in canvas pixels with visibility ``(F, N)``, from a
  ``.npy`` (a sibling ``...visibility...npy`` file is picked up), ``.npz`` or ``.pt`` file, or arrays.
* ``reference``: the authors' ``traj.npy``, ``(N, 2 + F, 2)``: per box its frame-0 corners, then its
  centre at each frame.

Every reader ends in our JSON object in the image's pixels whose path boxes carry exactly
``num_frames`` points, so the rest of sgi2v reads it unchanged. Points are resampled to the frame
count with a timing (:data:`TIMINGS`, see :func:`resample_path`): a path with more or fewer points
than frames is never an error. Point-only formats take a box size (``box_size``, canvas pixels,
centred on each path's first point and clipped to the canvas; default a square of
:data:`DEFAULT_BOX_FRACTION` of the canvas's shorter side) or frame-0 boxes (``boxes``).

Wan-Move's visibility: the SG-I2V loss has no per-frame mask (every box counts at every frame after
the first, :class:`sgi2v.loss.BoxLoss`), and the pipeline is left as it is. So a track's invisible
frames keep its box, at a position interpolated linearly between the nearest visible frames (held
at its first or last visible position before or after them); a track never visible is dropped. The
conversion info (the run record's ``inputs.trajectory_conversion``) lists both.

numpy and the standard library only; torch is imported to read a ``.pt`` file and nowhere else.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .schema import parse_value, setting, specs
from .trajectory import (
    MAX_BOXES, TIMINGS, TrajectoryError, _brief, _read_limited, _read_npy, parse_trajectory, read_json_text,
    read_trajectory_file, resample_path,
)

__all__ = [
    "FORMATS", "TIMINGS", "DEFAULT_BOX_FRACTION", "TrajectoryOptions", "resolve_trajectory_options",
    "resample_path", "parse_coord_str", "tracks_to_trajectory", "wanmove_to_trajectory", "read_wanmove",
    "from_reference_array", "to_reference_array", "to_coord_str", "detect_format", "read_any", "with_timing",
]

#: Trajectory formats read by :func:`read_any` (``--traj-format``).
FORMATS = ("sgi2v", "spline", "ati", "wanmove", "reference")
#: Default box of a point-only format: a square, this fraction of the canvas's shorter side.
DEFAULT_BOX_FRACTION = 0.125
TRAJECTORY = "trajectory input"


@dataclass(frozen=True)
class TrajectoryOptions:
    """How a trajectory file is read: its format, the box of point-only formats, the canvas, the timing.

    Declared once here; the command line (``--traj-format``, ``--box-size``, ``--canvas-size``,
    ``--timing``), the manifest keys and :func:`sgi2v.generation.prepare_inputs` derive from it.
    """

    traj_format: str = setting("auto", "the trajectory file's format: auto (from its name and content), " + ", ".join(FORMATS),
                               "choice", TRAJECTORY, choices=("auto", *FORMATS), label="Trajectory format")
    box_size: tuple[float, float] | None = setting(
        None, "box width and height (WxH, canvas pixels) around each path of a point-only format "
              f"(default: a square of {DEFAULT_BOX_FRACTION:g} of the canvas's shorter side)",
        "size", TRAJECTORY, optional=True, label="Box size")
    canvas_size: tuple[float, float] | None = setting(
        None, "width and height (WxH) of the canvas a point-only format's coordinates refer to (default: the image's size)",
        "size", TRAJECTORY, optional=True, label="Canvas size")
    timing: str = setting("time", "how boxes travel along drawn paths: time (points at evenly spaced frames), "
                                  "speed (constant speed along the path) or ease (ease-in-out)",
                          "choice", TRAJECTORY, choices=TIMINGS, label="Timing")

    def __post_init__(self):
        for name, (_, spec) in specs(type(self)).items():
            object.__setattr__(self, name, parse_value(name, spec, getattr(self, name)))

    def to_dict(self) -> dict:
        return {name: (list(v) if isinstance(v, tuple) else v) for name in specs(type(self)) for v in [getattr(self, name)]}


def resolve_trajectory_options(values: Mapping[str, Any], *, defaults: Mapping[str, Any] | None = None,
                               source: str = "trajectory options") -> TrajectoryOptions:
    """:class:`TrajectoryOptions` from ``name -> value`` pairs (JSON values or command-line text), as every surface
    gives them; names missing from ``values`` come from ``defaults``, then the declared default. Other names are
    ignored (they are settings). Raises ``ValueError("{source}: name: expected ..., got ...")``."""
    known = specs(TrajectoryOptions)
    parsed = {}
    for name, value in {**(defaults or {}), **values}.items():
        if name in known and value is not None:
            try:
                parsed[name] = parse_value(name, known[name][1], value)
            except ValueError as err:
                raise ValueError(f"{source}: {err}" if source else str(err)) from None
    return TrajectoryOptions(**parsed)


# -- SplineEditor / ATI JSON ------------------------------------------------------------------------

def _coord_point(value, where: str) -> list[float]:
    if isinstance(value, dict):
        if "x" not in value or "y" not in value:
            raise TrajectoryError(f"{where}: expected a point {{\"x\": .., \"y\": ..}}, got {_brief(value)}")
        pair = [(value["x"], f"{where}.x"), (value["y"], f"{where}.y")]
    elif isinstance(value, (list, tuple)) and len(value) == 2:
        pair = [(value[0], f"{where}[0]"), (value[1], f"{where}[1]")]
    else:
        raise TrajectoryError(f"{where}: expected a point {{\"x\": .., \"y\": ..}}, got {_brief(value)}")
    out = []
    for v, field in pair:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(float(v)):
            raise TrajectoryError(f"{field}: expected a finite number, got {_brief(v)}")
        out.append(float(v))
    return out


def _is_point(value) -> bool:
    return isinstance(value, dict) or (isinstance(value, (list, tuple)) and len(value) == 2
                                       and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value))


def parse_coord_str(text: str | list, source: str = "coord_str") -> list[np.ndarray]:
    """The paths of a SplineEditor ``coord_str`` or ATI ``tracks`` string: ``(P, 2)`` float64 arrays, canvas pixels.

    Accepts one path ``[{"x": .., "y": ..}, ...]`` or a list of them (``[x, y]`` pairs also work), as
    JSON text or already decoded.
    Raises :class:`TrajectoryError`: ``"{source}: [i][j].x: expected a finite number, got 'a'"``.
    """
    data = read_json_text(text, source, TrajectoryError) if isinstance(text, str) else text
    return _coord_paths(data, source)


def _coord_paths(data, source: str) -> list[np.ndarray]:
    if not isinstance(data, list) or not data:
        raise TrajectoryError(f"{source}: expected a list of points [{{\"x\": .., \"y\": ..}}, ...] or a list of such lists, "
                              f"got {_brief(data)}")
    nested = not _is_point(data[0])
    groups = data if nested else [data]
    if len(groups) > MAX_BOXES:
        raise TrajectoryError(f"{source}: {len(groups)} paths given; at most {MAX_BOXES} are accepted")
    paths = []
    for i, group in enumerate(groups):
        where = f"{source}: [{i}]" if nested else f"{source}: "
        if not isinstance(group, list) or not group:
            raise TrajectoryError(f"{where.rstrip(': ')}: expected a non-empty list of points, got {_brief(group)}")
        paths.append(np.array([_coord_point(p, f"{where}[{j}]") for j, p in enumerate(group)], dtype=np.float64))
    return paths


def to_coord_str(trajectory: dict | np.ndarray, *, num_frames: int | None = None, image_size: tuple[int, int] | None = None,
                 canvas_size: tuple[float, float] | None = None, camera: bool = False) -> str:
    """Paths per frame as SplineEditor / ATI JSON: a list (one per box) of ``num_frames`` points ``{"x", "y"}``.

    A box's ``path`` of one point per frame is written as it is; other boxes (keyframes, short paths,
    ``scale``, an array of boxes) are written as their box centres per frame.

    Args:
        trajectory: our JSON object (coordinates in the image's pixels), or boxes ``(N, F, 4)`` in image pixels.
        num_frames: frames (needed for a JSON object whose paths are not already one point per frame).
        image_size: ``(width, height)`` of the image the trajectory is in (needed for a JSON object, and to rescale).
        canvas_size: the canvas to write coordinates for (default: the image's size).
        camera: include the camera's box (left out by default: those tools draw objects' paths).
    """
    centres = _centres(trajectory, num_frames, image_size, camera)  # list of (F, 2), image pixels
    scale = _scale(image_size, canvas_size)
    out = [[{"x": float(x), "y": float(y)} for x, y in (c * scale if scale is not None else c)] for c in centres]
    return json.dumps(out)


def _scale(from_size, to_size) -> np.ndarray | None:
    """Factor ``(2,)`` from one size to another, or None where they are the same (coordinates copied exactly)."""
    if to_size is None or from_size is None or tuple(map(float, from_size)) == tuple(map(float, to_size)):
        return None
    return np.array([to_size[0] / from_size[0], to_size[1] / from_size[1]], dtype=np.float64)


def _centres(trajectory, num_frames, image_size, camera: bool) -> list[np.ndarray]:
    """Centre paths ``(F, 2)`` of a trajectory's boxes; a ``path`` already one point per frame is taken as written."""
    if not isinstance(trajectory, dict):
        boxes = np.asarray(trajectory, dtype=np.float64)
        if boxes.ndim != 3 or boxes.shape[2] != 4:
            raise ValueError(f"boxes: expected an array of shape (N, F, 4), got {boxes.shape}")
        return list((boxes[..., :2] + boxes[..., 2:]) / 2)
    verbatim = _verbatim(trajectory, num_frames)
    if verbatim is not None and (not camera or "camera" not in trajectory):
        return [np.asarray(path, dtype=np.float64) for _, path in verbatim]
    if image_size is None or num_frames is None:
        raise ValueError("trajectory: give num_frames and image_size to export a trajectory with keyframes, camera or scale")
    parsed = parse_trajectory(trajectory, num_frames, image_size)
    boxes = parsed.boxes if camera or "camera" not in trajectory else parsed.boxes[:-1]
    return list((boxes[..., :2] + boxes[..., 2:]) / 2)


def _verbatim(trajectory: dict, num_frames: int | None) -> list[tuple[list, list]] | None:
    """``(box, path)`` of every box when each is a plain ``path`` (or ``static``) of one point per frame, else None."""
    out = []
    lengths = {len(e["path"]) for e in trajectory.get("boxes", []) if isinstance(e, dict) and "path" in e}
    frames = num_frames or (lengths.pop() if len(lengths) == 1 else None)
    for entry in trajectory.get("boxes", []):
        if not isinstance(entry, dict) or set(entry) - {"box", "path", "label", "timing", "static"}:
            return None
        if "path" in entry and len(entry["path"]) == frames and entry.get("timing", "time") == "time":
            out.append((entry["box"], entry["path"]))
        elif entry.get("static") is True and frames:
            x0, y0, x1, y1 = entry["box"]
            out.append((entry["box"], [[(x0 + x1) / 2, (y0 + y1) / 2]] * frames))
        else:
            return None
    return out


# -- tracks -> our JSON -----------------------------------------------------------------------------

def _size(value, name: str, source: str) -> tuple[float, float]:
    try:
        width, height = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{source}: {name}: expected (width, height), got {_brief(value)}") from None
    if not (np.isfinite([width, height]).all() and width > 0 and height > 0):
        raise ValueError(f"{source}: {name}: expected a positive width and height, got {_brief(value)}")
    return width, height


def tracks_to_trajectory(paths: Sequence[np.ndarray], *, num_frames: int, canvas_size: tuple[float, float],
                         image_size: tuple[int, int], box_size: tuple[float, float] | None = None,
                         boxes: Sequence[Sequence[float]] | None = None, timing: str = "time",
                         labels: Sequence[str] | None = None, static: Sequence[Sequence[float]] | None = None,
                         source: str = "tracks") -> dict:
    """Drawn paths -> our trajectory JSON object, in the image's pixels, each path box with ``num_frames`` points.

    Args:
        paths: one ``(P, 2)`` array per box: its centre's path in canvas pixels (``P >= 1``; one point
            is a box that stays put). Resampled to ``num_frames`` points with ``timing`` (see
            :func:`resample_path`).
        num_frames: frames of the video.
        canvas_size: ``(width, height)`` the coordinates refer to; rescaled to ``image_size``.
        image_size: ``(width, height)`` of the input image.
        box_size: ``(width, height)`` in canvas pixels of every box, centred on its path's first point
            and clipped to the canvas. Default: a square of :data:`DEFAULT_BOX_FRACTION` of the
            canvas's shorter side.
        boxes: instead of ``box_size``, one frame-0 box ``[x0, y0, x1, y1]`` (canvas pixels) per path,
            moved by ``path[f] - path[0]`` like the authors' tool does (not clipped).
        timing: one of :data:`TIMINGS`.
        labels: a label per path (default ``box i``).
        static: boxes ``[x0, y0, x1, y1]`` (canvas pixels) whose content stays put, added after the paths.
        source: the name used in messages.

    Raises ``ValueError`` (``TrajectoryError``) naming ``source``, the path and the value.
    """
    if timing not in TIMINGS:
        raise TrajectoryError(f"{source}: timing: expected one of {', '.join(TIMINGS)}, got {_brief(timing)}")
    canvas = _size(canvas_size, "canvas_size", source)
    image = _size(image_size, "image_size", source)
    if boxes is not None and len(boxes) != len(paths):
        raise TrajectoryError(f"{source}: boxes: {len(boxes)} boxes given for {len(paths)} paths")
    if labels is not None and len(labels) != len(paths):
        raise TrajectoryError(f"{source}: labels: {len(labels)} labels given for {len(paths)} paths")
    if boxes is None:
        if box_size is None:
            side = DEFAULT_BOX_FRACTION * min(canvas)
            box_size = (side, side)
        box_size = _size(box_size, "box_size", source)
    scale = _scale(canvas, image)
    cw, ch = canvas

    def to_image(values: np.ndarray) -> list:
        return (values * np.tile(scale, values.shape[-1] // 2) if scale is not None else values).tolist()

    entries = []
    for i, points in enumerate(paths):
        points = np.asarray(points, dtype=np.float64)
        if points.ndim != 2 or points.shape[1] != 2 or len(points) < 1:
            raise TrajectoryError(f"{source}: path {i}: expected points of shape (P, 2), got {points.shape}")
        if not np.isfinite(points).all():
            raise TrajectoryError(f"{source}: path {i}: contains NaN or infinite coordinates")
        if boxes is not None:
            box = np.array([float(v) for v in boxes[i]], dtype=np.float64)
        else:
            x, y = points[0]
            w, h = box_size
            box = np.array([max(x - w / 2, 0.0), max(y - h / 2, 0.0), min(x + w / 2, cw), min(y + h / 2, ch)])
            if box[2] <= box[0] or box[3] <= box[1]:
                raise TrajectoryError(f"{source}: path {i}: its first point {[round(float(v), 2) for v in points[0]]} "
                                      f"is outside the {cw:g}x{ch:g} canvas")
        entry = {"box": to_image(box)}
        if len(points) == 1 or (points == points[0]).all():
            entry["path"] = to_image(np.repeat(points[:1], num_frames, axis=0))
        else:
            entry["path"] = to_image(resample_path(points, num_frames, timing))
        if labels is not None:
            entry["label"] = str(labels[i])
        entries.append(entry)
    for box in static or []:
        entries.append({"box": to_image(np.array([float(v) for v in box], dtype=np.float64)), "static": True})
    return {"boxes": entries}


# -- Wan-Move ---------------------------------------------------------------------------------------

def _wanmove_arrays(tracks, visibility, source: str) -> tuple[np.ndarray, np.ndarray]:
    tracks = np.asarray(tracks)
    if tracks.ndim == 4 and tracks.shape[0] == 1:  # a batch of one
        tracks = tracks[0]
    if tracks.ndim != 3 or tracks.shape[2] != 2 or tracks.shape[0] < 1 or tracks.shape[1] < 1:
        raise TrajectoryError(f"{source}: track_path: expected an array of shape (F, N, 2), got {tracks.shape}")
    if tracks.dtype.kind not in "iuf":
        raise TrajectoryError(f"{source}: track_path: expected real numbers, got {tracks.dtype} values")
    tracks = tracks.astype(np.float64)
    if visibility is None:
        visible = np.ones(tracks.shape[:2], dtype=bool)
    else:
        visible = np.asarray(visibility)
        if visible.ndim == 3 and visible.shape[0] == 1:
            visible = visible[0]
        if visible.shape != tracks.shape[:2]:
            raise TrajectoryError(f"{source}: track_visibility: expected shape {tracks.shape[:2]} (F, N) like the tracks, "
                                  f"got {visible.shape}")
        if visible.dtype.kind not in "biuf":
            raise TrajectoryError(f"{source}: track_visibility: expected booleans or numbers, got {visible.dtype} values")
        visible = visible > 0.5 if visible.dtype.kind == "f" else visible.astype(bool)
    bad = ~np.isfinite(tracks).all(axis=2) & visible
    if bad.any():
        f, n = (int(v) for v in np.argwhere(bad)[0])
        raise TrajectoryError(f"{source}: track_path: track {n} has a NaN or infinite position at frame {f}")
    return tracks, visible


def wanmove_to_trajectory(tracks, visibility=None, *, num_frames: int, image_size: tuple[int, int],
                          canvas_size: tuple[float, float] | None = None, box_size: tuple[float, float] | None = None,
                          timing: str = "time", source: str = "tracks") -> tuple[dict, dict]:
    """Wan-Move tracks -> our trajectory JSON object (image pixels) and what the conversion did.

    Args:
        tracks: ``(F, N, 2)`` positions in canvas pixels (a leading batch dimension of 1 is dropped).
        visibility: ``(F, N)`` booleans (or numbers, visible above 0.5); default all visible.
        num_frames, image_size, canvas_size (default the image's), box_size, timing: as in
            :func:`tracks_to_trajectory`; each track is one box.

    Invisible frames keep the box, at positions interpolated linearly between the nearest visible
    frames (held before the first and after the last); tracks never visible are dropped. The returned
    info has ``tracks``, ``dropped`` (indices) and ``invisible_frames`` (per kept track).
    """
    tracks, visible = _wanmove_arrays(tracks, visibility, source)
    frames = np.arange(tracks.shape[0], dtype=np.float64)
    paths, kept, dropped, invisible = [], [], [], []
    for n in range(tracks.shape[1]):
        seen = visible[:, n]
        if not seen.any():
            dropped.append(n)
            continue
        path = np.stack([np.interp(frames, frames[seen], tracks[seen, n, d]) for d in range(2)], axis=1)
        paths.append(path)
        kept.append(n)
        invisible.append(int((~seen).sum()))
    if not paths:
        raise TrajectoryError(f"{source}: track_visibility: no track is visible in any frame")
    canvas = canvas_size if canvas_size is not None else image_size
    data = tracks_to_trajectory(paths, num_frames=num_frames, canvas_size=canvas, image_size=image_size,
                                box_size=box_size, timing=timing, labels=[f"track {n}" for n in kept], source=source)
    info = {"tracks": int(tracks.shape[1]), "track_frames": int(tracks.shape[0]), "dropped": dropped,
            "invisible_frames": invisible,
            "invisible": "kept in the loss; position interpolated between visible frames, held at the ends"}
    return data, info


def read_wanmove(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray | None, dict]:
    """Wan-Move tracks ``(F, N, 2)`` and visibility ``(F, N)`` (or None) from a ``.npy``, ``.npz`` or ``.pt`` file.

    ``.npz`` and ``.pt`` hold ``track_path`` (or ``tracks``) and ``track_visibility`` (or ``visibility``);
    a ``.pt`` may also be the tracks tensor alone. For ``name_tracks.npy`` the visibility is read from
    ``name_visibility.npy`` when that file exists. Returns also ``{"visibility_file": ...}`` when one was read.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    extra: dict = {}
    if suffix == ".npy":
        tracks, visibility = _read_npy(path), None
        if "tracks" in path.name:
            sibling = path.with_name(path.name.replace("tracks", "visibility"))
            if sibling.is_file():
                visibility = _read_npy(sibling)
                extra["visibility_file"] = str(sibling.resolve())
        return tracks, visibility, extra
    if suffix not in (".npz", ".pt", ".pth"):
        raise TrajectoryError(f"{path}: Wan-Move tracks are read from a .npy, .npz, .pt or .pth file, not {suffix or 'a file without a suffix'}")
    data = _read_limited(path, "trajectory file")
    if suffix == ".npz":
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as archive:
                arrays = {k: archive[k] for k in archive.files}
        except (EOFError, ValueError, OSError) as err:
            raise TrajectoryError(f"{path}: not a readable .npz archive: {' '.join(str(err).split())}") from None
    else:
        import torch  # only for .pt / .pth files

        try:
            loaded = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except Exception as err:  # torch raises many kinds for a bad file
            first = next((line.strip() for line in str(err).splitlines() if line.strip()), type(err).__name__)
            first = first.split(". ")[0].rstrip(".")[:120]  # torch's first sentence; the rest is advice for code
            raise TrajectoryError(f"{path}: not a torch file of tensors (saved with torch.save): {first}") from None
        arrays = loaded if isinstance(loaded, dict) else {"track_path": loaded}
        arrays = {k: (v.detach().float().numpy() if isinstance(v, torch.Tensor) else v) for k, v in arrays.items()}
    tracks = next((arrays[k] for k in ("track_path", "tracks") if k in arrays), None)
    if tracks is None:
        raise TrajectoryError(f"{path}: track_path: missing (the file holds {', '.join(map(str, arrays)) or 'nothing'})")
    visibility = next((arrays[k] for k in ("track_visibility", "visibility") if k in arrays), None)
    return np.asarray(tracks), None if visibility is None else np.asarray(visibility), extra


# -- the authors' traj.npy --------------------------------------------------------------------------

def from_reference_array(raw: np.ndarray) -> dict:
    """The authors' ``(N, 2 + F, 2)`` array -> our JSON object with each box's corners and ``F``-point path, as stored."""
    raw = np.asarray(raw)
    if raw.ndim != 3 or raw.shape[2] != 2 or raw.shape[1] < 3:
        raise TrajectoryError(f"traj.npy: expected an array of shape (N, 2 + F, 2), got {raw.shape}")
    return {"boxes": [{"box": raw[n, :2].reshape(4).tolist(), "path": raw[n, 2:].tolist()} for n in range(len(raw))]}


def to_reference_array(trajectory: dict | np.ndarray, *, num_frames: int | None = None,
                       image_size: tuple[int, int] | None = None, dtype=np.float64) -> np.ndarray:
    """Our JSON object or boxes ``(N, F, 4)`` -> the authors' ``(N, 2 + F, 2)`` array (same pixels).

    A JSON object whose boxes are plain ``path`` boxes of ``F`` points (as :func:`from_reference_array`
    writes) is copied as written, so ``traj.npy -> JSON -> traj.npy`` is exact. Otherwise it is parsed
    (``num_frames`` and ``image_size`` needed) and each box's corners at frame 0 and centres are taken;
    a box whose size changes (``scale``, a camera zoom) cannot be written and raises ``ValueError``.
    """
    if isinstance(trajectory, dict):
        verbatim = _verbatim(trajectory, num_frames)
        if verbatim is not None and "camera" not in trajectory and verbatim:
            return np.array([np.concatenate([np.reshape(box, (2, 2)), path]) for box, path in verbatim], dtype=dtype)
        if num_frames is None or image_size is None:
            raise ValueError("trajectory: give num_frames and image_size to export a trajectory with keyframes, camera or scale")
        parsed = parse_trajectory(trajectory, num_frames, image_size)
        boxes, labels = parsed.boxes, parsed.labels
    else:
        boxes = np.asarray(trajectory, dtype=np.float64)
        labels = tuple(f"box {n}" for n in range(len(boxes)))
        if boxes.ndim != 3 or boxes.shape[2] != 4:
            raise ValueError(f"boxes: expected an array of shape (N, F, 4), got {boxes.shape}")
    sizes = boxes[..., 2:] - boxes[..., :2]  # (N, F, 2)
    changing = ~np.isclose(sizes, sizes[:, :1], rtol=1e-9, atol=1e-9).all(axis=(1, 2))
    if changing.any():
        n = int(np.argmax(changing))
        raise ValueError(f"{labels[n]}: its size changes over time (scale or zoom), which traj.npy cannot hold")
    centres = (boxes[..., :2] + boxes[..., 2:]) / 2
    return np.concatenate([boxes[:, 0].reshape(-1, 2, 2), centres], axis=1).astype(dtype)


def with_timing(trajectory, timing: str):
    """Our JSON object with ``timing`` as the default of its ``path`` boxes that give none (the object itself for ``time``)."""
    if timing == "time" or not isinstance(trajectory, dict) or not isinstance(trajectory.get("boxes"), list):
        return trajectory
    return dict(trajectory, boxes=[dict(e, timing=e.get("timing", timing)) if isinstance(e, dict) and "path" in e else e
                                   for e in trajectory["boxes"]])


# -- any file ---------------------------------------------------------------------------------------

def detect_format(path: str | os.PathLike) -> str:
    """The format of a trajectory file, from its name and, for JSON, its content.

    ``traj.npy`` -> ``reference``; other ``.npy``, ``.npz``, ``.pt``, ``.pth`` -> ``wanmove``; any other
    file is read as JSON: ``sgi2v`` for an object, ``spline`` for a list (``ati`` is read the same way).
    Raises ``ValueError`` for a file that is not JSON, naming the file.
    """
    path = Path(path)
    if path.name.lower() == "traj.npy":
        return "reference"
    if path.suffix.lower() in (".npy", ".npz", ".pt", ".pth"):
        return "wanmove"
    return "sgi2v" if isinstance(read_trajectory_file(path), dict) else "spline"


def read_any(path: str | os.PathLike, *, format: str | None = None, num_frames: int, image_size: tuple[int, int],
             box_size: tuple[float, float] | None = None, canvas_size: tuple[float, float] | None = None,
             timing: str = "time") -> tuple[dict, dict]:
    """Read a trajectory file of any format into our JSON object (image pixels) and a conversion record.

    Args:
        path: the file.
        format: one of :data:`FORMATS`, or None / ``"auto"`` for :func:`detect_format`.
        num_frames: frames of the video; every path is resampled to it.
        image_size: ``(width, height)`` of the input image.
        box_size, canvas_size: for point-only formats (``spline``, ``ati``, ``wanmove``; ``canvas_size``
            also for ``reference``), in canvas pixels; the canvas defaults to the image's size.
        timing: one of :data:`TIMINGS`; for ``sgi2v`` files, the default of boxes without a ``timing``.

    Returns:
        ``(trajectory, info)``: ``info`` holds ``format``, ``timing``, ``canvas_size``, ``box_size`` and
        ``points`` (per path, before resampling to ``frames``), for the run record.

    Raises ``ValueError`` (``TrajectoryError``) or ``FileNotFoundError`` starting with the file's name.
    """
    source = str(path)
    if format in (None, "auto"):
        format = detect_format(path)
    if format not in FORMATS:
        raise TrajectoryError(f"{source}: traj_format: expected one of auto, {', '.join(FORMATS)}, got {_brief(format)}")
    if timing not in TIMINGS:
        raise TrajectoryError(f"{source}: timing: expected one of {', '.join(TIMINGS)}, got {_brief(timing)}")
    info: dict = {"format": format, "timing": timing, "frames": int(num_frames)}
    if format == "sgi2v":
        for name, value in (("box_size", box_size), ("canvas_size", canvas_size)):
            if value is not None:
                raise TrajectoryError(f"{source}: {name}: only for point formats (spline, ati, wanmove, reference); "
                                      f"an sgi2v trajectory file is in the image's pixels and has its own boxes")
        return with_timing(read_trajectory_file(path), timing), info
    canvas = tuple(canvas_size) if canvas_size is not None else tuple(image_size)
    info["canvas_size"] = [float(v) for v in canvas]
    if format in ("spline", "ati"):
        paths = parse_coord_str(read_trajectory_file(path), source)  # size, encoding and JSON checked as for ours
        info["points"] = [len(p) for p in paths]
        data = tracks_to_trajectory(paths, num_frames=num_frames, canvas_size=canvas, image_size=image_size,
                                    box_size=box_size, timing=timing, source=source)
    elif format == "reference":
        if box_size is not None:
            raise TrajectoryError(f"{source}: box_size: the authors' traj.npy has its own boxes")
        raw = _read_npy(Path(path))
        if raw.ndim != 3 or raw.shape[2] != 2 or raw.shape[1] < 3 or raw.dtype.kind not in "iuf":
            raise TrajectoryError(f"{source}: expected a numeric array of shape (N, 2 + F, 2), got {raw.shape} {raw.dtype}")
        if len(raw) > MAX_BOXES:
            raise TrajectoryError(f"{source}: {len(raw)} boxes given; at most {MAX_BOXES} are accepted")
        if not np.isfinite(raw).all():
            raise TrajectoryError(f"{source}: contains NaN or infinite coordinates")
        raw = raw.astype(np.float64)
        info["points"] = [raw.shape[1] - 2] * len(raw)
        data = tracks_to_trajectory(list(raw[:, 2:]), num_frames=num_frames, canvas_size=canvas, image_size=image_size,
                                    boxes=raw[:, :2].reshape(-1, 4), timing=timing, source=source)
    else:
        tracks, visibility, extra = read_wanmove(path)
        data, details = wanmove_to_trajectory(tracks, visibility, num_frames=num_frames, image_size=image_size,
                                              canvas_size=canvas, box_size=box_size, timing=timing, source=source)
        info.update(extra, **details, points=[details["track_frames"]] * len(data["boxes"]))
    if format != "reference":
        side = DEFAULT_BOX_FRACTION * min(canvas)
        info["box_size"] = [float(v) for v in (box_size if box_size is not None else (side, side))]
    info["resampled"] = any(p != num_frames for p in info["points"])
    return data, info
