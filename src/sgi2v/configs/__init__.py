"""Bundled configurations of Stable Video Diffusion (shapes, scheduler, preprocessing; no weights).

They let the cost model read SVD's architecture without the hub, and build the non-weight parts of a
pipeline offline.
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["SVD_CONFIG_DIR", "SVD_FRAMES", "svd_config"]

SVD_CONFIG_DIR = Path(__file__).parent / "svd"

#: The UNet's frame count of each of Stability's image-to-video models; every other shape is shared.
SVD_FRAMES = {
    "stabilityai/stable-video-diffusion-img2vid": 14,
    "stabilityai/stable-video-diffusion-img2vid-xt": 25,
    "stabilityai/stable-video-diffusion-img2vid-xt-1-1": 25,
}


def svd_config(component: str, num_frames: int = 14) -> dict:
    """The bundled config of ``component`` (``unet``, ``vae``, ``image_encoder``, ``scheduler`` or
    ``feature_extractor``); the UNet's with ``num_frames`` set."""
    config = json.loads((SVD_CONFIG_DIR / f"{component}.json").read_text())
    if component == "unet":
        config["num_frames"] = num_frames
    return config
