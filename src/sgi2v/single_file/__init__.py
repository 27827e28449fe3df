"""Single-file SVD checkpoints: Stability's ``svd.safetensors``, ``svd_xt.safetensors`` and
``svd_xt_1_1.safetensors`` (the files ComfyUI reads from ``models/checkpoints``), and files of the same
layout saved by ComfyUI, loaded into diffusers' components through our own key conversion.

    pipe = SGI2VPipeline.from_single_file("svd_xt.safetensors", torch_dtype=torch.float16)

The scheduler and the CLIP preprocessing come from the bundled configs, so nothing is downloaded.
"""

from __future__ import annotations

import functools
import hashlib

from .architecture import check_single_file, single_file_configs
from .reader import SUFFIXES, SingleFileError, SVDFile, inspect_single_file, is_single_file

__all__ = ["SingleFileError", "SVDFile", "SUFFIXES", "is_single_file", "inspect_single_file", "check_single_file",
           "single_file_configs", "load_components", "pipeline_from_single_file", "file_sha256"]


def load_components(path, dtype=None, num_frames=None) -> dict:
    """``unet``, ``vae`` and ``image_encoder`` (and ``svd``, the :class:`SVDFile`) of a checkpoint; see
    :func:`sgi2v.single_file.load.load_components`."""
    from .load import load_components as load

    return load(path, dtype=dtype, num_frames=num_frames)


def file_sha256(path) -> str:
    """SHA-256 of a model file (read in 16 MB blocks; cached by path, size and modification time)."""
    import os

    stat = os.stat(path)
    return _sha256(os.path.realpath(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(16 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def pipeline_from_single_file(cls, path, torch_dtype=None, num_frames=None):
    """A pipeline of class ``cls`` (an SVD pipeline) from a single-file checkpoint; ``torch_dtype`` None keeps
    the file's own, ``num_frames`` None the detected frame count (25 for XT files, 14 otherwise)."""
    from diffusers import EulerDiscreteScheduler
    from transformers import CLIPImageProcessor

    from ..configs import svd_config

    parts = load_components(path, dtype=torch_dtype, num_frames=num_frames)
    svd = parts.pop("svd")
    scheduler = EulerDiscreteScheduler.from_config(svd_config("scheduler"))
    processor = {k: v for k, v in svd_config("feature_extractor").items() if k != "image_processor_type"}
    pipe = cls(vae=parts["vae"], image_encoder=parts["image_encoder"], unet=parts["unet"], scheduler=scheduler,
               feature_extractor=CLIPImageProcessor(**processor))
    pipe.single_file = svd
    return pipe
