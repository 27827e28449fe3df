"""Motion preview without a model: what a trajectory asks for, as a cheap animation of the first frame.

Each box's content is cut from the first frame and moved (and scaled) along its path; the camera box
moves the whole picture (a pan or a zoom); static boxes are boxes that do not move, so they stay
pinned. Frame ``f`` is drawn in this order:

1. the background: the first frame warped so that the picture inside the camera box at frame 0 fills
   the camera box at frame ``f`` (a scale and a shift per axis); without a camera, the first frame;
2. the boxes in their order (later boxes over earlier ones), each the frame-0 content of its box
   scaled into its box at frame ``f``, clipped to the picture.

Uncovered areas: where the camera's warp reaches beyond the first frame, the picture's edge pixels
are repeated (edge replicate). Where a box moved away from, the background shows through, so its
content is still there too (the preview does not guess what is behind an object).

Sampling is nearest-neighbour at pixel centres: output pixel ``x`` of a box whose frame-0 span is
``[a0, a1)`` and whose span at frame ``f`` is ``[b0, b1)`` takes source pixel
``floor(a0 + (x + 0.5 - b0) * (a1 - a0) / (b1 - b0))``, for the pixels whose centre lies in
``[b0, b1)``. A move by whole pixels copies the content exactly; scaling by a whole factor repeats
each pixel. Vectorised numpy indexing, no torch: about 0.1 s for 14 frames at 1024x576 on one core.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .boxes import validate_boxes

__all__ = ["PREVIEW_PRESET", "render_preview", "preview_prepared", "camera_index", "write_preview"]

#: x264 preset of preview videos: they are remade after every edit, so encoding time counts more than size.
PREVIEW_PRESET = "veryfast"


def _covered(target: np.ndarray, size: int) -> tuple[int, int]:
    """The output pixels ``start .. stop - 1`` (within ``0 .. size - 1``) whose centres lie in the span ``(b0, b1)``."""
    start = min(size, max(0, int(np.ceil(target[0] - 0.5))))
    return start, max(start, min(size, int(np.ceil(target[1] - 0.5))))


def _source_pixels(target: np.ndarray, source: np.ndarray, start: int, stop: int, size: int) -> np.ndarray:
    """For output pixels ``start .. stop - 1``, the source pixel under the map of span ``target`` ``(b0, b1)``
    onto span ``source`` ``(a0, a1)``, clipped to ``0 .. size - 1`` (edge replicate beyond the picture)."""
    (b0, b1), (a0, a1) = target, source
    centers = np.arange(start, stop, dtype=np.float64) + 0.5
    index = np.floor(a0 + (centers - b0) * ((a1 - a0) / (b1 - b0))).astype(np.intp)
    return np.clip(index, 0, size - 1)


def render_preview(image: np.ndarray, boxes: np.ndarray, *, camera: int | None = None) -> np.ndarray:
    """Animate the first frame along the boxes' paths (see the module docstring for the rules).

    Args:
        image: the first frame, uint8 ``(H, W, 3)``.
        boxes: ``(N, F, 4)`` ``(x0, y0, x1, y1)`` per frame, in the image's pixels (float); every box
            non-empty, its frame-0 box inside the image (later boxes may leave it).
        camera: index of the camera box in ``boxes`` (its motion moves the whole picture), or ``None``.

    Returns:
        uint8 ``(F, H, W, 3)``; frame 0 is ``image`` itself (every box is drawn where its content is).

    Raises ``ValueError`` naming the problem: an image that is not uint8 ``(H, W, 3)``, boxes that are not
    ``(N, F, 4)`` with ``F >= 1`` or fail :func:`sgi2v.boxes.validate_boxes`, a camera index out of range.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or 0 in image.shape:
        raise ValueError(f"image must be uint8 (H, W, 3), got {image.dtype} {image.shape}")
    height, width = image.shape[:2]
    shape = np.shape(boxes)
    if len(shape) != 3 or shape[-1] != 4 or shape[1] < 1:
        raise ValueError(f"boxes must have shape (N, num_frames, 4) with num_frames >= 1, got {shape}")
    boxes = validate_boxes(boxes, shape[1], height, width)  # float64 (N, F, 4)
    if camera is not None and not -len(boxes) <= camera < len(boxes):
        raise ValueError(f"camera must index one of the {len(boxes)} boxes, got {camera}")
    camera = None if camera is None else camera % len(boxes)
    frames = np.empty((boxes.shape[1],) + image.shape, dtype=np.uint8)  # (F, H, W, 3)
    for f in range(boxes.shape[1]):
        # 1. the background: the picture in the camera's frame-0 box shown in its box at frame f
        if camera is None:
            frames[f] = image
        else:
            start, now = boxes[camera, 0], boxes[camera, f]
            rows = _source_pixels(now[[1, 3]], start[[1, 3]], 0, height, height)  # (H,)
            cols = _source_pixels(now[[0, 2]], start[[0, 2]], 0, width, width)  # (W,)
            np.take(image.take(rows, axis=0, mode="clip"), cols, axis=1, out=frames[f], mode="clip")
        # 2. the boxes, each its frame-0 content in its box at frame f
        for n in range(len(boxes)):
            if n == camera:
                continue
            start, now = boxes[n, 0], boxes[n, f]
            (y0, y1), (x0, x1) = _covered(now[[1, 3]], height), _covered(now[[0, 2]], width)
            if y1 > y0 and x1 > x0:
                rows = _source_pixels(now[[1, 3]], start[[1, 3]], y0, y1, height)  # (h,)
                cols = _source_pixels(now[[0, 2]], start[[0, 2]], x0, x1, width)  # (w,)
                frames[f, y0:y1, x0:x1] = image[rows[:, None], cols[None, :]]  # (h, w, 3)
    return frames


def camera_index(prepared) -> int | None:
    """The index of the camera box of :class:`sgi2v.generation.PreparedInputs` (the last box, when the
    trajectory has a ``camera`` entry), or ``None``."""
    trajectory = prepared.inputs.get("trajectory")
    return len(prepared.boxes) - 1 if isinstance(trajectory, dict) and "camera" in trajectory else None


def preview_prepared(prepared) -> np.ndarray:
    """The preview of inputs brought to the output size by :func:`sgi2v.generation.prepare_inputs` (or
    ``prepare_reference``, ``prepare_replay``): uint8 ``(F, H, W, 3)`` at the output size, F the number of frames."""
    image = np.asarray(prepared.image.convert("RGB"), dtype=np.uint8)
    return render_preview(image, prepared.boxes, camera=camera_index(prepared))


def write_preview(path: str | os.PathLike, frames: np.ndarray, fps: float) -> None:
    """Write preview frames uint8 ``(F, H, W, 3)`` as an MP4 at ``fps`` frames per second, under a temporary name
    renamed at the end (readers see the old file or the whole new one; a failed write leaves nothing)."""
    from .generation import write_atomic
    from .video import write_mp4

    write_atomic(Path(path), lambda temporary: write_mp4(temporary, frames, fps, preset=PREVIEW_PRESET))
