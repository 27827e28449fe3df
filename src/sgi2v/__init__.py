"""sgi2v: trajectory-controlled image-to-video generation with SG-I2V on Stable Video Diffusion."""

from .config import SGI2VConfig
from .pipeline import SGI2VPipeline, SGI2VPipelineOutput

__all__ = ["SGI2VConfig", "SGI2VPipeline", "SGI2VPipelineOutput"]
__version__ = "0.1.0"
