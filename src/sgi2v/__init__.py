"""sgi2v: trajectory-controlled image-to-video generation with SG-I2V on Stable Video Diffusion."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__all__ = ["SGI2VConfig", "SGI2VPipeline", "SGI2VPipelineOutput"]
__version__ = "0.1.0"

_LAZY = {"SGI2VConfig": ".config", "SGI2VPipeline": ".pipeline", "SGI2VPipelineOutput": ".pipeline"}

if TYPE_CHECKING:  # pragma: no cover
    from .config import SGI2VConfig
    from .pipeline import SGI2VPipeline, SGI2VPipelineOutput


def __getattr__(name: str):
    # The pipeline (diffusers, transformers) loads on first use, so `sgi2v --help` stays fast.
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'sgi2v' has no attribute {name!r}")
