"""Bringing an image to the output size (stretch, crop or pad) and its trajectory with it, exactly alike.

A :class:`Fit` maps a region of the source image (``crop``) onto a region of the output (``placed``):
a scale and an offset per axis, applied the same way to the pixels and to the boxes.

- ``stretch``: the whole image onto the whole output (the authors' tool; the aspect ratio may change);
- ``crop``: the largest centred region with the output's aspect ratio onto the whole output;
- ``pad``: the whole image onto the largest centred region of the output with the image's aspect
  ratio (letterbox); the bars are black.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

__all__ = ["FIT_MODES", "PAD_COLOR", "Fit"]

FIT_MODES = ("stretch", "crop", "pad")
PAD_COLOR = (0, 0, 0)


@dataclass(frozen=True)
class Fit:
    """How a ``source`` ``(width, height)`` image becomes the ``size`` ``(width, height)`` output.

    ``crop`` is ``(x0, y0, x1, y1)`` in source pixels; ``placed`` is ``(x0, y0, x1, y1)`` in output pixels.
    """

    mode: str
    source: tuple[int, int]
    size: tuple[int, int]
    crop: tuple[float, float, float, float]
    placed: tuple[int, int, int, int]

    @classmethod
    def make(cls, mode: str, source: tuple[int, int], size: tuple[int, int]) -> "Fit":
        if mode not in FIT_MODES:
            raise ValueError(f"image_fit: expected one of {', '.join(FIT_MODES)}, got {mode!r}")
        (sw, sh), (w, h) = (int(source[0]), int(source[1])), (int(size[0]), int(size[1]))
        crop, placed = (0.0, 0.0, float(sw), float(sh)), (0, 0, w, h)
        if mode == "crop":
            if sw * h > sh * w:  # wider than the output: crop the sides
                cw, ch = sh * w / h, float(sh)
            else:  # taller: crop top and bottom
                cw, ch = float(sw), sw * h / w
            x0, y0 = (sw - cw) / 2, (sh - ch) / 2
            crop = (x0, y0, x0 + cw, y0 + ch)
        elif mode == "pad":
            if sw * h > sh * w:  # wider: bars above and below
                pw, ph = w, max(1, round(w * sh / sw))
            else:
                pw, ph = max(1, round(h * sw / sh)), h
            x0, y0 = (w - pw) // 2, (h - ph) // 2
            placed = (x0, y0, x0 + pw, y0 + ph)
        return cls(mode, (sw, sh), (w, h), crop, placed)

    @property
    def scale(self) -> tuple[float, float]:
        """Output pixels per source pixel, ``(sx, sy)``."""
        (cx0, cy0, cx1, cy1), (px0, py0, px1, py1) = self.crop, self.placed
        return (px1 - px0) / (cx1 - cx0), (py1 - py0) / (cy1 - cy0)

    def image(self, image: Image.Image) -> Image.Image:
        """The source image as the pipeline gets it (bicubic)."""
        if self.mode == "stretch":
            return image.resize(self.size, resample=Image.Resampling.BICUBIC)
        px0, py0, px1, py1 = self.placed
        resized = image.resize((px1 - px0, py1 - py0), resample=Image.Resampling.BICUBIC, box=self.crop)
        if self.mode == "crop":
            return resized
        canvas = Image.new("RGB", self.size, PAD_COLOR)
        canvas.paste(resized, (px0, py0))
        return canvas

    def boxes(self, boxes: np.ndarray) -> np.ndarray:
        """Boxes ``(..., 4)`` ``(x0, y0, x1, y1)`` in source pixels -> output pixels (float64)."""
        boxes = np.asarray(boxes, dtype=np.float64)
        if self.mode == "stretch":  # the authors' rescaling, unchanged
            out = boxes * np.array([self.size[0] / self.source[0], self.size[1] / self.source[1]] * 2)
        else:
            sx, sy = self.scale
            out = (boxes - np.array(self.crop[:2] * 2)) * np.array([sx, sy] * 2) + np.array(self.placed[:2] * 2, dtype=np.float64)
        # A box drawn on the image's edge may land a rounding error outside the output: put it on the edge.
        limits = np.array([self.size[0], self.size[1]] * 2, dtype=np.float64)
        out = np.where((out < 0) & (out > -1e-6), 0.0, out)
        return np.where((out > limits) & (out < limits + 1e-6), limits, out)

    def to_output(self, x: float, y: float) -> tuple[float, float]:
        """A point in source pixels -> output pixels."""
        sx, sy = self.scale
        return (x - self.crop[0]) * sx + self.placed[0], (y - self.crop[1]) * sy + self.placed[1]

    def to_source(self, x: float, y: float) -> tuple[float, float]:
        """A point in output pixels -> source pixels (the inverse of :meth:`to_output`)."""
        sx, sy = self.scale
        return (x - self.placed[0]) / sx + self.crop[0], (y - self.placed[1]) / sy + self.crop[1]

    def to_dict(self) -> dict:
        """For the run record."""
        return {"mode": self.mode, "source": list(self.source), "size": list(self.size),
                "crop": [round(v, 4) for v in self.crop], "placed": list(self.placed)}
