"""Input images: any file Pillow reads, as an upright 8-bit RGB picture, within a pixel limit.

Only numpy, Pillow and the standard library: the input is checked before the heavy imports.
"""

from __future__ import annotations

import os
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["BACKGROUND", "MAX_IMAGE_PIXELS", "ImageError", "load_image", "to_rgb"]

MAX_IMAGE_PIXELS = 89_478_485  # larger images are refused before decoding (Pillow's default warning threshold)
BACKGROUND = (255, 255, 255)  # RGB colour transparent pixels are composited onto

_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N")
# What can go wrong while decoding a damaged file, across Pillow's format plugins.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error, zlib.error)


class ImageError(ValueError):
    """An input image that cannot be used; the message names the file."""


def load_image(path: str | os.PathLike) -> Image.Image:
    """Read an image file as an upright 8-bit RGB picture.

    The EXIF orientation is applied (phone photos come out upright); modes are converted by
    :func:`to_rgb` (16-bit scaled to 8 bits, transparency composited onto :data:`BACKGROUND`).
    Of an animated or multi-page file the first frame is read.

    Raises:
        FileNotFoundError: ``"{path}: image not found"``.
        ImageError: (a ``ValueError``) a folder, a file that is not an image, a truncated or corrupt
            file, or an image of more than :data:`MAX_IMAGE_PIXELS` pixels (refused before decoding).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: image not found")
    if path.is_dir():
        raise ImageError(f"{path}: is a folder, not an image")
    # Pillow warns about damaged metadata (and about large images, checked below with a clearer
    # message): the outcome is an image or one of the errors below, never a stray warning line.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            image = Image.open(path)
        except Image.DecompressionBombError:
            raise ImageError(_too_large(path, _declared_size(path))) from None
        except UnidentifiedImageError:
            raise ImageError(f"{path}: not an image file (or a format Pillow cannot read)") from None
        except _DECODE_ERRORS as err:
            raise ImageError(_unreadable(path, err)) from None
        with image:
            if image.size[0] * image.size[1] > MAX_IMAGE_PIXELS:
                raise ImageError(_too_large(path, image.size))
            try:
                image.load()
                upright = ImageOps.exif_transpose(image)
            except Image.DecompressionBombError:
                raise ImageError(_too_large(path, image.size)) from None
            except _DECODE_ERRORS as err:
                raise ImageError(_unreadable(path, err)) from None
    try:
        return to_rgb(upright)
    except ImageError as err:
        raise ImageError(f"{path}: {err}") from None


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert an image of any Pillow mode to 8-bit ``RGB`` (the EXIF orientation is left alone).

    * ``I;16``, ``I;16B``, ``I;16L``, ``I;16N`` (16-bit gray): ``round(v / 257)``. Pillow itself
      reads 16-bit colour PNGs as ``RGB``/``RGBA`` keeping the high byte (``v >> 8``, at most one
      level below ``round(v / 257)``).
    * ``I`` (32-bit integers): read as 16-bit values, clipped to 0..65535, then ``round(v / 257)``.
    * ``F`` (floats): if the largest finite value is at most 1, the range is [0, 1] (times 255),
      otherwise 0..255; clipped to 0..255 and rounded; NaN becomes 0.
    * Transparency (``LA``, ``PA``, ``RGBA``, ``P`` or ``L``/``RGB``/16-bit with a transparent colour,
      premultiplied ``La`` and ``RGBa``) is composited onto :data:`BACKGROUND` (white): transparent
      pixels become white, opaque ones are kept.
    * ``1``, ``L``, ``P``, ``RGBX``, ``CMYK``, ``YCbCr``, ``LAB``, ``HSV``: Pillow's conversion.

    Raises:
        ImageError: a mode Pillow cannot convert to RGB.
    """
    mode = image.mode
    if mode in _SIXTEEN_BIT or mode in ("I", "F"):
        values = np.asarray(image)  # (H, W)
        gray = _eight_bit(values, mode)
        transparent = image.info.get("transparency")
        alpha = None
        if mode != "F" and isinstance(transparent, int) and not isinstance(transparent, bool):
            alpha = np.where(values == transparent, 0, 255).astype(np.uint8)
        return _rgb_image(np.repeat(gray[..., None], 3, axis=-1), alpha)
    if mode in ("La", "RGBa"):
        pixels = np.asarray(image)  # (H, W, 2 or 4), colour already multiplied by alpha
        color = pixels[..., :-1] if mode == "RGBa" else np.repeat(pixels[..., :1], 3, axis=-1)
        alpha = pixels[..., -1:].astype(np.uint32)
        background = np.array(BACKGROUND, dtype=np.uint32)
        out = (color.astype(np.uint32) * 255 + background * (255 - alpha) + 127) // 255
        return Image.fromarray(np.minimum(out, 255).astype(np.uint8), "RGB")
    if mode == "RGB" and not image.has_transparency_data:
        return image.copy()
    try:
        if image.has_transparency_data:
            rgba = np.asarray(image.convert("RGBA"))  # (H, W, 4)
            return _rgb_image(rgba[..., :3], rgba[..., 3])
        return image.convert("RGB")
    except ValueError:
        raise ImageError(f"image mode {mode!r} cannot be converted to RGB") from None


def _eight_bit(values: np.ndarray, mode: str) -> np.ndarray:
    """16-bit, 32-bit integer or float gray values ``(H, W)`` -> uint8 by the rules of :func:`to_rgb`."""
    if mode == "F":
        values = values.astype(np.float64)
        finite = values[np.isfinite(values)]
        if finite.size and finite.max() <= 1:
            values = values * 255
        values = np.nan_to_num(values, nan=0.0, posinf=255.0, neginf=0.0)
        return np.rint(np.clip(values, 0, 255)).astype(np.uint8)
    values = np.clip(values.astype(np.float64), 0, 65535)
    return np.rint(values / 257).astype(np.uint8)


def _rgb_image(color: np.ndarray, alpha: np.ndarray | None) -> Image.Image:
    """uint8 colour ``(H, W, 3)`` composited by uint8 ``alpha`` ``(H, W)`` (straight, not premultiplied) onto the background."""
    if alpha is not None:
        a = alpha[..., None].astype(np.uint32)
        background = np.array(BACKGROUND, dtype=np.uint32)
        color = ((color.astype(np.uint32) * a + background * (255 - a) + 127) // 255).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(color, dtype=np.uint8), "RGB")


def _too_large(path: Path, size: tuple[int, int] | None) -> str:
    limit = f"at most {MAX_IMAGE_PIXELS / 1e6:.1f} megapixels are accepted"
    if size is None:
        return f"{path}: the image is too large (its size could not be read); {limit}"
    width, height = size
    return f"{path}: the image is {width}x{height} ({width * height / 1e6:.1f} megapixels); {limit}"


def _declared_size(path: Path) -> tuple[int, int] | None:
    """The size an image file's header declares, read by Pillow's format plugins without its decompression-bomb check."""
    Image.init()
    try:
        with open(path, "rb") as fp:
            prefix = fp.read(16)
            for name in Image.ID:
                factory, accept = Image.OPEN[name]
                accepted = accept(prefix) if accept is not None else True
                if not accepted or isinstance(accepted, str):  # a str is a warning: not this format
                    continue
                try:
                    fp.seek(0)
                    return factory(fp, os.fspath(path)).size
                except Exception:  # this plugin cannot parse the header: try the next one
                    continue
    except OSError:
        pass
    return None


def _unreadable(path: Path, err: Exception) -> str:
    if isinstance(err, OSError) and err.strerror:  # e.g. permission denied
        return f"{path}: cannot read the image: {err.strerror}"
    text = " ".join(str(err).split()) or type(err).__name__
    return f"{path}: cannot read the image (truncated or corrupt file?): {text}"
