"""Reading the folders of ``sgi2v evaluate``: generated videos and records, reference videos, trajectories."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .common import EvaluationError, validate_points

__all__ = ["VIDEO_SUFFIXES", "FRAME_SUFFIXES", "find_videos", "read_frames", "Sample", "load_targets", "discover"]

logger = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".avi", ".mkv", ".gif")
FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
SKIPPED_VIDEO_SUFFIXES = (".overlay.mp4", ".replay.mp4", ".replay.overlay.mp4")


def find_videos(folder: Path, what: str) -> dict[str, Path]:
    """``{id: path}`` of the videos in ``folder``: ``<id>.mp4`` (and other video types) or ``<id>/`` frame folders.

    Overlay and replay videos written by ``sgi2v generate`` (``*.overlay.mp4``, ``*.replay.mp4``) are skipped.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise EvaluationError(f"{folder}: {what} folder not found")
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        name = path.name.lower()
        if path.is_file() and name.endswith(VIDEO_SUFFIXES) and not name.endswith(SKIPPED_VIDEO_SUFFIXES):
            key = path.name[: -len(path.suffix)]
        elif path.is_dir() and any(p.suffix.lower() in FRAME_SUFFIXES for p in path.iterdir()):
            key = path.name
        else:
            continue
        if key in found:
            raise EvaluationError(f"{folder}: two videos for id {key!r}: {found[key].name} and {path.name}")
        found[key] = path
    if not found:
        raise EvaluationError(f"{folder}: no {what} videos (<id>.mp4 files or <id>/ folders of frames)")
    return found


def read_frames(path: Path) -> np.ndarray:
    """uint8 ``(F, H, W, 3)`` from a video file or a folder of frames (sorted by name)."""
    path = Path(path)
    try:
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix.lower() in FRAME_SUFFIXES)
            frames = [np.asarray(Image.open(p).convert("RGB")) for p in files]
            sizes = {f.shape for f in frames}
            if len(sizes) > 1:
                raise EvaluationError(f"{path}: frames of different sizes {sorted(s[1::-1] for s in sizes)}")
            return np.stack(frames)
        from ..video import read_video

        video = read_video(path)
    except EvaluationError:
        raise
    except Exception as err:
        raise EvaluationError(f"{path}: cannot read the video: {' '.join(str(err).split())[:200]}") from None
    if video.ndim != 4 or len(video) == 0:
        raise EvaluationError(f"{path}: no frames decoded")
    return video


@dataclass
class Sample:
    """One video to evaluate."""

    id: str
    generated: Path
    record: dict | None
    reference: Path | None = None
    trajectory: Path | None = None


def _read_json(path: Path, what: str):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise EvaluationError(f"{path}: malformed JSON at line {err.lineno}, column {err.colno}: {err.msg}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise EvaluationError(f"{path}: cannot read the {what}: {err}") from None


def discover(generated: Path, reference: Path | None, trajectories: Path | None) -> list[Sample]:
    """Match generated videos with their run records, references and trajectory files by id."""
    samples = []
    gen = find_videos(generated, "generated")
    refs = find_videos(reference, "reference") if reference is not None else {}
    if trajectories is not None and not Path(trajectories).is_dir():
        raise EvaluationError(f"{trajectories}: trajectories folder not found")
    for key, path in gen.items():
        record_path = Path(generated) / f"{key}.json"
        record = _read_json(record_path, "run record") if record_path.is_file() else None
        sample = Sample(key, path, record)
        if reference is not None:
            if key not in refs:
                raise EvaluationError(f"{Path(reference) / (key + '.mp4')}: reference video for generated {path.name} not found")
            sample.reference = refs[key]
        if trajectories is not None:
            traj = Path(trajectories) / f"{key}.json"
            if not traj.is_file():
                raise EvaluationError(f"{traj}: trajectory file for generated {path.name} not found")
            sample.trajectory = traj
        elif record is None or "boxes" not in record:
            raise EvaluationError(f"{record_path}: no run record with 'boxes' for {path.name}; give --trajectories DIR")
        samples.append(sample)
    extra = sorted(set(refs) - set(gen))
    if extra:
        logger.warning("%d reference videos have no generated video and are not used (e.g. %s)", len(extra), extra[0])
    return samples


def load_targets(sample: Sample, num_frames: int, height: int, width: int) -> np.ndarray:
    """Target points ``(N, F, 2)`` in pixels of the generated video.

    From ``sample.trajectory`` when given, else from the run record's ``boxes`` (centres). A
    trajectory file is either a points file ``{"size": [W, H], "points": [[[x, y], ...], ...]}``
    (per object, one point per frame) or an sgi2v trajectory file (box centres); coordinates are
    rescaled from ``size`` (points file), or from the generation's input image size recorded in
    the run record, to the video's size. A trajectory file with no known size is taken to be in
    the video's pixels.
    """
    if sample.trajectory is None:
        boxes = np.asarray(sample.record["boxes"], dtype=np.float64)
        where = Path(sample.generated).with_suffix(".json")
        if boxes.ndim != 3 or boxes.shape[2] != 4:
            raise EvaluationError(f"{where}: 'boxes' should have shape (N, F, 4), got {boxes.shape}")
        return validate_points((boxes[..., :2] + boxes[..., 2:]) / 2, num_frames, height, width, name=f"{where} boxes")
    path = sample.trajectory
    data = _read_json(path, "trajectory file")
    if isinstance(data, dict) and "points" in data:
        size = data.get("size")
        if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, (int, float)) and v > 0 for v in size)):
            raise EvaluationError(f"{path}: size: expected [width, height] in pixels, got {size!r}")
        try:
            points = np.asarray(data["points"], dtype=np.float64)
        except (TypeError, ValueError):
            raise EvaluationError(f"{path}: points: expected an array (N, F, 2) of numbers") from None
        if points.ndim != 3 or points.shape[2] != 2:
            raise EvaluationError(f"{path}: points: expected shape (N, F, 2), got {points.shape}")
        scale = np.array([width / size[0], height / size[1]])
    else:
        from ..trajectory import TrajectoryError, parse_trajectory

        inputs = (sample.record or {}).get("inputs", {})
        size = inputs.get("image_size") or [width, height]
        try:
            trajectory = parse_trajectory(data, num_frames, tuple(size), source=str(path))
        except TrajectoryError as err:
            raise EvaluationError(str(err)) from None
        points = trajectory.centers()
        scale = np.array([width / size[0], height / size[1]])
    return validate_points(points * scale, num_frames, height, width, name=str(path))
