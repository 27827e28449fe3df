"""Reading a single-file checkpoint's table of contents, and saying what it is, before any weights load.

``.safetensors`` headers are read directly (8 bytes of length, then JSON), so a wrong file costs no
memory and no time; ``.ckpt`` files are opened with ``torch.load(weights_only=True, mmap=True)``.
"""

from __future__ import annotations

import functools
import json
import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

from .convert import CLIP_PREFIX, UNET_PREFIX, VAE_PREFIX

__all__ = ["SingleFileError", "Contents", "SUFFIXES", "is_single_file", "read_contents", "inspect_single_file", "SVDFile"]

SUFFIXES = (".safetensors", ".ckpt")
_SAFETENSORS_DTYPES = {"F16": "float16", "BF16": "bfloat16", "F32": "float32", "F64": "float64", "F8_E4M3": "float8_e4m3fn",
                       "F8_E5M2": "float8_e5m2", "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8",
                       "U8": "uint8", "BOOL": "bool"}
_HEADER_LIMIT = 100 * 1024 * 1024  # safetensors' own limit on the header's size


class SingleFileError(ValueError):
    """A model file that cannot be used: the one-line message names the file and what was found."""


def is_single_file(model: str) -> bool:
    """Whether ``model`` names a single-file checkpoint (by its suffix), rather than a folder or a hub id."""
    return isinstance(model, str) and model.lower().endswith(SUFFIXES)


@dataclass(frozen=True)
class Contents:
    """A checkpoint's tensors by name: shape and dtype name, without their data."""

    path: str
    shapes: dict[str, tuple[int, ...]]
    dtypes: dict[str, str]
    metadata: dict[str, str] = field(default_factory=dict)


def read_contents(path: str | os.PathLike) -> Contents:
    """The names, shapes and dtypes of a ``.safetensors`` or ``.ckpt`` file's tensors; :class:`SingleFileError`
    (one line, naming the file) for a missing, empty, truncated or foreign file."""
    path = Path(path).expanduser()
    if not path.exists():
        raise SingleFileError(f"{path}: model file not found")
    if path.is_dir():
        raise SingleFileError(f"{path}: is a folder, not a model file")
    try:
        stat = path.stat()
    except OSError as err:
        raise SingleFileError(f"{path}: cannot read: {err.strerror or err}") from None
    return _read_contents(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _read_contents(path: str, size: int, mtime_ns: int) -> Contents:
    if size == 0:
        raise SingleFileError(f"{path}: empty file (0 bytes), not a model checkpoint")
    if path.lower().endswith(".ckpt"):
        return _read_ckpt(path)
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            (length,) = struct.unpack("<Q", head) if len(head) == 8 else (None,)
            if length is None or length < 2 or length > min(_HEADER_LIMIT, size - 8):
                raise SingleFileError(f"{path}: not a safetensors file (no valid header: it may be a renamed or "
                                      "truncated file)")
            raw = f.read(length)
    except OSError as err:
        raise SingleFileError(f"{path}: cannot read: {err.strerror or err}") from None
    try:
        header = json.loads(raw.decode("utf-8"))
        if not isinstance(header, dict):
            raise ValueError
    except (UnicodeDecodeError, ValueError):
        raise SingleFileError(f"{path}: not a safetensors file (its header is not valid JSON: a renamed or damaged "
                              "file)") from None
    metadata = header.pop("__metadata__", None) or {}
    shapes, dtypes, end = {}, {}, 0
    try:
        for name, entry in header.items():
            shapes[name] = tuple(int(n) for n in entry["shape"])
            dtypes[name] = _SAFETENSORS_DTYPES.get(entry["dtype"], entry["dtype"].lower())
            end = max(end, int(entry["data_offsets"][1]))
    except (KeyError, TypeError, ValueError, IndexError):
        raise SingleFileError(f"{path}: not a safetensors file (malformed tensor entry {name!r})") from None
    data = size - 8 - length
    if end > data:
        raise SingleFileError(f"{path}: truncated: its header lists {8 + length + end:,} bytes, the file has {size:,} "
                              "(an interrupted download or copy?)")
    return Contents(path, shapes, dtypes, {str(k): str(v) for k, v in metadata.items()})


def _read_ckpt(path: str) -> Contents:
    import pickle
    import zipfile

    import torch

    if not zipfile.is_zipfile(path):
        raise SingleFileError(f"{path}: not a loadable .ckpt file (not a torch zip archive: a legacy, renamed or "
                              "truncated file); convert it to .safetensors")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, zipfile.BadZipFile) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise SingleFileError(f"{path}: cannot load this .ckpt safely (weights_only=True refused it: {first}); "
                              "convert it to .safetensors") from None
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise SingleFileError(f"{path}: not a model checkpoint (no state dict of tensors)")
    shapes = {k: tuple(v.shape) for k, v in data.items()}
    dtypes = {k: str(v.dtype).replace("torch.", "") for k, v in data.items()}
    return Contents(path, shapes, dtypes, {})


@dataclass(frozen=True)
class SVDFile:
    """What a checked single-file SVD image-to-video checkpoint holds."""

    path: str
    clip_layout: str  # "openclip" (Stability's files) or "transformers" (ComfyUI's)
    dtype: str  # the UNet's weights' dtype name
    num_frames: int  # detected: 25 for XT files, 14 otherwise
    frames_from: str  # how num_frames was decided
    tensors: int


def inspect_single_file(path: str | os.PathLike) -> SVDFile:
    """Check that ``path`` is an SVD image-to-video checkpoint, from its table of contents only.

    Raises :class:`SingleFileError` with one line saying what the file holds instead."""
    contents = read_contents(path)
    return _inspect(contents)


def _inspect(contents: Contents) -> SVDFile:
    path, shapes = contents.path, contents.shapes
    if not shapes:
        raise SingleFileError(f"{path}: holds no tensors")
    unet = {k for k in shapes if k.startswith(UNET_PREFIX)}
    conv_in = shapes.get(UNET_PREFIX + "input_blocks.0.0.weight")
    if not unet:
        raise SingleFileError(f"{path}: {_describe_foreign(shapes)}, not a Stable Video Diffusion checkpoint")
    if not any(".time_stack." in k for k in unet) or conv_in is None or conv_in[1] != 8:
        raise SingleFileError(f"{path}: {_describe_image_model(shapes, conv_in)}, not a Stable Video Diffusion "
                              "image-to-video checkpoint")
    missing = [what for what, prefix in (("VAE", VAE_PREFIX), ("CLIP image encoder", CLIP_PREFIX))
               if not any(k.startswith(prefix) for k in shapes)]
    if missing:
        raise SingleFileError(f"{path}: an SVD UNet without its {' and '.join(missing)} (expected tensors under "
                              f"{', '.join(repr(p) for p in (VAE_PREFIX, CLIP_PREFIX))})")
    clip_layout = "transformers" if CLIP_PREFIX + "vision_model.embeddings.class_embedding" in shapes else "openclip"
    dtypes = [contents.dtypes[k] for k in unet if contents.dtypes[k].startswith(("float", "bfloat"))]
    dtype = max(set(dtypes), key=dtypes.count) if dtypes else "float32"
    num_frames, frames_from = _frames(contents)
    return SVDFile(path, clip_layout, dtype, num_frames, frames_from, len(shapes))


def _describe_foreign(shapes: dict) -> str:
    keys = set(shapes)
    if any(k.startswith(("input_blocks.", "down_blocks.")) for k in keys) and any(
            k.startswith(("output_blocks.", "up_blocks.")) for k in keys):
        video = any("time_stack" in k or "temporal_transformer_blocks" in k for k in keys)
        return f"a bare {'video ' if video else ''}UNet ({len(keys)} tensors, no VAE or image encoder)"
    if any(k.startswith(("encoder.down", "decoder.up")) for k in keys):
        return f"a VAE alone ({len(keys)} tensors)"
    if any(k.startswith(("vision_model.", "visual.")) for k in keys):
        return f"a CLIP vision encoder alone ({len(keys)} tensors)"
    first = sorted(keys)[0]
    return f"{len(keys)} tensors of an unknown model (first {first!r})"


def _describe_image_model(shapes: dict, conv_in) -> str:
    keys = set(shapes)
    if any(k.startswith("conditioner.embedders.1.model.") for k in keys):
        return "a Stable Diffusion XL checkpoint"
    if any(k.startswith("cond_stage_model.") for k in keys):
        if any(k.startswith("cond_stage_model.model.") for k in keys):
            return "a Stable Diffusion 2.x checkpoint"
        return "a Stable Diffusion 1.x checkpoint"
    channels = f"{conv_in[1]} input channels" if conv_in is not None else "no input convolution"
    video = "a video" if any(".time_stack." in k for k in keys) else "an image"
    return f"{video} diffusion model's checkpoint with {channels} (SVD image-to-video has 8)"


_XT = re.compile(r"(^|[^a-z0-9])xt([^a-z]|$)")


def _frames(contents: Contents) -> tuple[int, str]:
    """25 for the XT models, 14 for img2vid: their weights have the same shapes, so it is read from the file's
    metadata when it says, else from its name (``svd_xt*.safetensors``)."""
    meta = {k.lower(): v.lower() for k, v in contents.metadata.items()}
    for key in ("num_frames", "sgi2v.num_frames"):
        if meta.get(key, "").isdigit():
            return int(meta[key]), f"metadata {key}"
    described = " ".join(v for k, v in meta.items() if k.startswith("modelspec.") or k in ("title", "model"))
    if "img2vid" in described or "video" in described:
        return (25, "metadata") if _XT.search(described) else (14, "metadata")
    name = Path(contents.path).name.lower()
    return (25, "file name") if _XT.search(name) else (14, "file name")
