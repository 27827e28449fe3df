"""Tiny, seeded, randomly initialised SVD components with the real structure.

Used by the test-suite and by the offline ``tiny-random`` model of the command line and web UI.
The weights are random: the videos they make are noise-like and say nothing about quality.
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKLTemporalDecoder, EulerDiscreteScheduler, UNetSpatioTemporalConditionModel
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

from .settings import TINY_MODEL_ID  # the name under which the CLI and UI build these components

try:  # transformers >= 5 names the torchvision-free processor explicitly
    from transformers import CLIPImageProcessorPil as CLIPImageProcessor
except ImportError:  # pragma: no cover - older transformers
    from transformers import CLIPImageProcessor

__all__ = ["svd_scheduler", "tiny_components", "tiny_pipeline", "TINY_MODEL_ID"]


# Stable Video Diffusion's scheduler configuration (as shipped with the model).
SVD_SCHEDULER_CONFIG = dict(
    beta_end=0.012,
    beta_schedule="scaled_linear",
    beta_start=0.00085,
    interpolation_type="linear",
    num_train_timesteps=1000,
    prediction_type="v_prediction",
    sigma_max=700.0,
    sigma_min=0.002,
    steps_offset=1,
    timestep_spacing="leading",
    timestep_type="continuous",
    use_karras_sigmas=True,
)


def svd_scheduler() -> EulerDiscreteScheduler:
    """The Euler scheduler with SVD's settings (Karras sigmas, v-prediction)."""
    return EulerDiscreteScheduler(**SVD_SCHEDULER_CONFIG)


def tiny_components(seed: int = 0, num_frames: int = 14) -> dict:
    """Components for ``SGI2VPipeline(**components)``: 4-level UNet (so ``up_blocks.2`` exists),
    VAE with scale factor 8, CLIP vision encoder on 224 x 224 inputs. float32, CPU, seeded."""
    torch.manual_seed(seed)
    unet = UNetSpatioTemporalConditionModel(
        block_out_channels=(32, 32, 64, 64),
        down_block_types=(
            "CrossAttnDownBlockSpatioTemporal",
            "CrossAttnDownBlockSpatioTemporal",
            "CrossAttnDownBlockSpatioTemporal",
            "DownBlockSpatioTemporal",
        ),
        up_block_types=(
            "UpBlockSpatioTemporal",
            "CrossAttnUpBlockSpatioTemporal",
            "CrossAttnUpBlockSpatioTemporal",
            "CrossAttnUpBlockSpatioTemporal",
        ),
        cross_attention_dim=32,
        num_attention_heads=(2, 2, 4, 4),
        layers_per_block=2,
        sample_size=16,
        in_channels=8,
        out_channels=4,
        addition_time_embed_dim=32,
        projection_class_embeddings_input_dim=96,
        num_frames=num_frames,
    )
    torch.manual_seed(seed + 1)
    vae = AutoencoderKLTemporalDecoder(
        block_out_channels=(32, 32, 32, 32),
        down_block_types=("DownEncoderBlock2D",) * 4,
        latent_channels=4,
        layers_per_block=1,
        sample_size=64,
    )
    torch.manual_seed(seed + 2)
    image_encoder = CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=32,
            projection_dim=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=37,
            image_size=224,
            patch_size=16,
            num_channels=3,
        )
    )
    feature_extractor = CLIPImageProcessor(crop_size=224, size={"shortest_edge": 224})
    for module in (unet, vae, image_encoder):
        module.eval()
    return dict(unet=unet, vae=vae, image_encoder=image_encoder, scheduler=svd_scheduler(), feature_extractor=feature_extractor)


def tiny_pipeline(seed: int = 0, num_frames: int = 14, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
    """An :class:`~sgi2v.SGI2VPipeline` on :func:`tiny_components`, progress bar off."""
    from .pipeline import SGI2VPipeline

    pipe = SGI2VPipeline(**tiny_components(seed, num_frames)).to(device)
    if dtype != torch.float32:
        pipe.to(dtype=dtype)
    pipe.set_progress_bar_config(disable=True)
    return pipe
