"""Bounding boxes: validation in pixels and placement on the latent grid."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["validate_boxes", "latent_boxes"]


def validate_boxes(boxes, num_frames: int, height: int, width: int, names: Sequence[str] | None = None) -> np.ndarray:
    """Check per-frame boxes and return them as float64 ``(N, F, 4)`` ``(x0, y0, x1, y1)`` in output pixels.

    Boxes may leave the image after frame 0 (only their inside part counts), but each box must be
    non-empty and its frame-0 box must lie inside the ``width`` x ``height`` image.
    Raises ``ValueError`` naming the problem and the offending values; a box is called ``names[n]``
    (e.g. ``"camera"``) when ``names`` is given, else ``"box {n}"``.
    """
    try:
        arr = np.asarray(boxes.detach().cpu() if hasattr(boxes, "detach") else boxes, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"boxes must be a numeric array of shape (N, {num_frames}, 4): {err}") from None
    if arr.ndim != 3 or arr.shape[-1] != 4 or arr.shape[0] < 1:
        raise ValueError(f"boxes must have shape (N, num_frames, 4) with N >= 1, got {arr.shape}")
    if arr.shape[1] != num_frames:
        raise ValueError(f"boxes have {arr.shape[1]} frames but num_frames is {num_frames}")
    if names is not None and len(names) != arr.shape[0]:
        raise ValueError(f"names has {len(names)} entries but there are {arr.shape[0]} boxes")

    def name(n: int) -> str:
        return names[n] if names is not None else f"box {n}"

    bad = ~np.isfinite(arr)
    if bad.any():
        n, f, k = np.argwhere(bad)[0]
        raise ValueError(f"{name(n)} at frame {f} has a non-finite coordinate: {arr[n, f].tolist()}")
    flipped = (arr[..., 2] <= arr[..., 0]) | (arr[..., 3] <= arr[..., 1])
    if flipped.any():
        n, f = np.argwhere(flipped)[0]
        raise ValueError(f"{name(n)} at frame {f} needs x1 > x0 and y1 > y0, got (x0, y0, x1, y1) = {arr[n, f].tolist()}")
    first = arr[:, 0]
    outside = (first[:, 0] < 0) | (first[:, 1] < 0) | (first[:, 2] > width) | (first[:, 3] > height)
    if outside.any():
        n = int(np.argwhere(outside)[0, 0])
        raise ValueError(
            f"{name(n)} at frame 0 must lie inside the {width}x{height} image, got (x0, y0, x1, y1) = {first[n].tolist()}"
        )
    return arr


def latent_boxes(boxes: np.ndarray, scale: int) -> np.ndarray:
    """Pixel boxes ``(N, F, 4)`` ``(x0, y0, x1, y1)`` -> latent cells ``(N, F, 4)`` ``(r0, c0, r1, c1)``, int64.

    Floor division by the VAE factor ``scale``; at least one cell per side
    (``r1 = max(r0 + 1, floor(y1 / scale))``). Rows ``r0 .. r1-1``, columns ``c0 .. c1-1``; not clipped.
    """
    cells = np.floor(np.asarray(boxes, dtype=np.float64) / scale).astype(np.int64)
    c0, r0, c1, r1 = cells[..., 0], cells[..., 1], cells[..., 2], cells[..., 3]
    r1 = np.maximum(r0 + 1, r1)
    c1 = np.maximum(c0 + 1, c1)
    return np.stack([r0, c0, r1, c1], axis=-1)
