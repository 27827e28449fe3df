"""``SGI2VPipeline``: Stable Video Diffusion with SG-I2V trajectory control (Namekata et al., ICLR 2025)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable

import numpy as np
import PIL.Image
import torch
from diffusers import StableVideoDiffusionPipeline
from diffusers.pipelines.stable_video_diffusion.pipeline_stable_video_diffusion import _append_dims, retrieve_timesteps
from diffusers.utils import BaseOutput, logging
from diffusers.utils.torch_utils import randn_tensor

from .attention import FeatureRecorder, record_features, resolve_feature_layers
from .boxes import latent_boxes, validate_boxes
from .config import SGI2VConfig
from .loss import BoxLoss
from .memory import checkpoint_sub_blocks, should_checkpoint
from .optimization import optimize_latents

logger = logging.get_logger(__name__)

__all__ = ["SGI2VPipeline", "SGI2VPipelineOutput"]

#: Side lengths must be multiples of this (the UNet halves the latent three times).
SIZE_MULTIPLE = 64


@dataclass
class SGI2VPipelineOutput(BaseOutput):
    """Output of :class:`SGI2VPipeline`.

    Args:
        frames: as diffusers' SVD pipeline: ``(batch, frames, H, W, 3)`` in [0, 1] for ``"np"``, a list of
            lists of PIL images for ``"pil"``, a tensor for ``"pt"``, the latent for ``"latent"``.
        losses: per optimised timestep ``t`` (paper convention), the loss before each AdamW iteration.
    """

    frames: list[list[PIL.Image.Image]] | np.ndarray | torch.Tensor
    losses: dict[int, list[float]]


class SGI2VPipeline(StableVideoDiffusionPipeline):
    """Image-to-video generation with bounding-box trajectories, zero-shot, on a stock SVD model.

    Built from the same components as diffusers' ``StableVideoDiffusionPipeline`` (and loaded the same
    way with ``from_pretrained``). At the denoising steps named in :class:`SGI2VConfig` it optimises
    the latent so that the features inside each box (``config.feature_kind`` of ``config.feature_layers``:
    by default the paper's frame-0 aligned self-attention) follow the box's path, then
    continues plain SVD sampling. With ``config.iterations == 0`` it is exactly plain SVD.
    """

    @classmethod
    def from_single_file(cls, path, torch_dtype=None, num_frames: int | None = None) -> "SGI2VPipeline":
        """Load a single-file SVD checkpoint (``svd.safetensors``, ``svd_xt.safetensors``,
        ``svd_xt_1_1.safetensors``, or one ComfyUI saved): the UNet, VAE and CLIP image encoder from its
        tensors, the scheduler and preprocessing from bundled configs (no download). ``torch_dtype`` None
        keeps the file's dtype; ``num_frames`` None uses the detected one (25 for XT files, 14 otherwise).
        Raises ``sgi2v.single_file.SingleFileError`` (a ``ValueError``) naming the file for anything else."""
        from .single_file import pipeline_from_single_file

        return pipeline_from_single_file(cls, path, torch_dtype=torch_dtype, num_frames=num_frames)

    def check_sgi2v_inputs(self, image, boxes, config, height: int, width: int, num_frames: int, num_inference_steps: int):
        """Validate everything SG-I2V adds; returns the boxes as float64 ``(N, F, 4)``."""
        self.check_inputs(image, height, width)
        if isinstance(image, list) and len(image) != 1 or isinstance(image, torch.Tensor) and image.ndim == 4 and image.shape[0] != 1:
            raise ValueError("SGI2VPipeline generates one video per call: pass a single image")
        if not isinstance(config, SGI2VConfig):
            raise ValueError(f"config must be an SGI2VConfig, got {type(config).__name__}")
        if height % SIZE_MULTIPLE or width % SIZE_MULTIPLE:
            raise ValueError(f"height and width must be multiples of {SIZE_MULTIPLE}, got height={height}, width={width}")
        if num_frames < 2:
            raise ValueError(f"num_frames must be at least 2, got {num_frames}")
        resolve_feature_layers(self.unet, config.feature_layers)
        if config.enabled:
            late = [t for t in config.optimize_timesteps if t > num_inference_steps]
            if late:
                window = SGI2VConfig().scaled_to_steps(num_inference_steps).optimize_timesteps
                raise ValueError(
                    f"optimize_timesteps {late} exceed num_inference_steps={num_inference_steps} and would never run; "
                    f"choose timesteps from 1 to {num_inference_steps} (the paper's window at {num_inference_steps} steps is "
                    f"{min(window)}-{max(window)})"
                )
        return validate_boxes(boxes, num_frames, height, width)

    def compile_unet(self, **compile_kwargs) -> None:
        """Run the denoising steps' UNet calls through ``torch.compile(self.unet, **compile_kwargs)``; the
        optimisation passes (with their feature hooks and early stop) stay eager. Once per pipeline: later
        calls keep the first compiled module."""
        if getattr(self, "_compiled_unet", None) is None:
            self._compiled_unet = torch.compile(self.unet, **compile_kwargs)

    def _features_fn(self, recorder: FeatureRecorder, t, image_latents, image_embeddings, added_time_ids, half_precision):
        """``z -> (F, h, w, C)``: one conditional UNet pass up to the last feature layer, features upsampled to the latent."""
        device = image_latents.device
        autocast = torch.autocast(device.type, dtype=half_precision) if half_precision else contextlib.nullcontext()
        cond_latents, cond_embeddings, cond_time_ids = image_latents.float(), image_embeddings.float(), added_time_ids.float()

        def features(z: torch.Tensor) -> torch.Tensor:
            model_input = torch.cat([self.scheduler.scale_model_input(z, t), cond_latents], dim=2)

            def forward():
                with autocast:
                    self.unet(model_input, t, encoder_hidden_states=cond_embeddings, added_time_ids=cond_time_ids, return_dict=False)

            return recorder.capture(forward)

        return features

    @torch.no_grad()
    def __call__(
        self,
        image: PIL.Image.Image | torch.Tensor,
        boxes,
        config: SGI2VConfig | None = None,
        height: int = 576,
        width: int = 1024,
        num_frames: int | None = None,
        num_inference_steps: int = 50,
        sigmas: list[float] | None = None,
        min_guidance_scale: float = 1.0,
        max_guidance_scale: float = 3.0,
        fps: int = 7,
        motion_bucket_id: int = 127,
        noise_aug_strength: float = 0.02,
        decode_chunk_size: int | None = 8,
        num_videos_per_prompt: int = 1,
        generator: torch.Generator | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "pil",
        callback_on_step_end: Callable | None = None,
        callback_on_step_end_tensor_inputs: list[str] = ["latents"],
        return_dict: bool = True,
        gradient_checkpointing: bool | None = None,
    ):
        r"""Generate a video whose box contents follow the given paths.

        Args:
            image: the first frame, a PIL image or a ``(1, 3, H, W)`` tensor in [0, 1]; resized to
                ``height`` x ``width`` as diffusers does.
            boxes: array-like ``(N, num_frames, 4)``: box ``n`` at frame ``f`` as ``(x0, y0, x1, y1)`` in
                output pixels. Frame-0 boxes must lie inside the image; later boxes may leave it.
            config: the method's settings; ``SGI2VConfig()`` (the paper's) if omitted.
            height, width: output size in pixels, multiples of 64.
            num_frames: 14 for SVD img2vid, 25 for SVD-XT; defaults to the UNet's.
            num_inference_steps: Euler steps (the paper: 50). ``config.optimize_timesteps`` counts
                ``t = num_inference_steps - i`` for step ``i``.
            min_guidance_scale, max_guidance_scale: CFG scale rising linearly over frames.
            fps, motion_bucket_id, noise_aug_strength: SVD micro-conditioning.
            decode_chunk_size: frames decoded at once by the VAE.
            num_videos_per_prompt: must be 1.
            generator: randomness (noise augmentation first, then the initial latent, as diffusers).
            latents: optional initial noise ``(1, F, 4, H/8, W/8)``.
            output_type: ``"pil"``, ``"np"``, ``"pt"`` or ``"latent"``.
            callback_on_step_end, callback_on_step_end_tensor_inputs: as in diffusers.
            return_dict: return :class:`SGI2VPipelineOutput` rather than a tuple.
            gradient_checkpointing: recompute the UNet's activations during backward (each sub-block
                checkpointed): a large cut in the optimisation passes' memory for about one more forward
                pass of time; the numbers are the same. ``None`` (default) decides from free memory:
                on CUDA it is used when a pass would not fit, elsewhere not.

        Returns:
            :class:`SGI2VPipelineOutput`, or ``(frames,)`` if ``return_dict`` is False.
        """
        config = SGI2VConfig() if config is None else config
        # 0. Defaults
        num_frames = num_frames if num_frames is not None else self.unet.config.num_frames
        decode_chunk_size = decode_chunk_size if decode_chunk_size is not None else num_frames
        if num_videos_per_prompt != 1:
            raise ValueError(f"SGI2VPipeline generates one video per call, got num_videos_per_prompt={num_videos_per_prompt}")
        steps_for_check = len(sigmas) if sigmas is not None else num_inference_steps

        # 1. Check inputs
        boxes = self.check_sgi2v_inputs(image, boxes, config, height, width, num_frames, steps_for_check)
        batch_size = 1
        device = self._execution_device
        self._guidance_scale = max_guidance_scale

        # 2. Encode the input image (CLIP)
        image_embeddings = self._encode_image(image, device, 1, self.do_classifier_free_guidance)
        fps = fps - 1  # SVD was conditioned on fps - 1

        # 3. Encode the noise-augmented image (VAE); the first random draw
        image = self.video_processor.preprocess(image, height=height, width=width).to(device)
        noise = randn_tensor(image.shape, generator=generator, device=device, dtype=image.dtype)
        image = image + noise_aug_strength * noise
        needs_upcasting = self.vae.dtype == torch.float16 and self.vae.config.force_upcast
        if needs_upcasting:
            self.vae.to(dtype=torch.float32)
        image_latents = self._encode_vae_image(image, device=device, num_videos_per_prompt=1, do_classifier_free_guidance=self.do_classifier_free_guidance)
        image_latents = image_latents.to(image_embeddings.dtype)
        if needs_upcasting:
            self.vae.to(dtype=torch.float16)
        image_latents = image_latents.unsqueeze(1).repeat(1, num_frames, 1, 1, 1)  # (B, F, 4, h, w)

        # 4. Added time ids
        added_time_ids = self._get_add_time_ids(
            fps, motion_bucket_id, noise_aug_strength, image_embeddings.dtype, batch_size, 1, self.do_classifier_free_guidance
        ).to(device)

        # 5. Timesteps
        timesteps, num_inference_steps = retrieve_timesteps(self.scheduler, num_inference_steps, device, None, sigmas)

        # 6. Initial latent; the second random draw
        latents = self.prepare_latents(
            batch_size, num_frames, self.unet.config.in_channels, height, width, image_embeddings.dtype, device, generator, latents
        )

        # 7. Guidance scale per frame
        guidance_scale = torch.linspace(min_guidance_scale, max_guidance_scale, num_frames).unsqueeze(0)
        guidance_scale = guidance_scale.to(device, latents.dtype).repeat(batch_size, 1)
        self._guidance_scale = _append_dims(guidance_scale, latents.ndim)

        # 8. SG-I2V: boxes on the latent grid, loss, feature recorder
        latent_size = tuple(latents.shape[-2:])
        optimize_at = set(config.optimize_timesteps) if config.enabled else set()
        loss_fn = BoxLoss(latent_boxes(boxes, self.vae_scale_factor), latent_size, config.heatmap_sigma, device)
        if optimize_at and loss_fn.empty:
            logger.warning("No box overlaps the image after frame 0: nothing to optimise, sampling plain SVD.")
            optimize_at = set()
        recorder = FeatureRecorder(config.feature_layers, num_frames, latent_size, config.feature_kind)
        half_precision = self.unet.dtype if self.unet.dtype in (torch.float16, torch.bfloat16) else None
        cond = slice(-batch_size, None)  # the conditional half of the CFG batch
        losses: dict[int, list[torch.Tensor]] = {}

        # 9. Denoising loop, optimising the latent first at the chosen steps
        self._num_timesteps = len(timesteps)
        num_optimized = sum(1 for i in range(len(timesteps)) if len(timesteps) - i in optimize_at)
        total = num_inference_steps + num_optimized * config.iterations
        if gradient_checkpointing is None:
            gradient_checkpointing = bool(optimize_at) and should_checkpoint(device, num_frames, latent_size, self.unet.dtype, self, config)
        checkpointing = checkpoint_sub_blocks(self.unet) if gradient_checkpointing and optimize_at else contextlib.nullcontext()
        with checkpointing:
            with self.progress_bar(total=total) as progress_bar:
                for i, t in enumerate(timesteps):
                    paper_t = len(timesteps) - i
                    if paper_t in optimize_at:
                        with record_features(self.unet, recorder), _frozen_parameters(self.unet):
                            features_fn = self._features_fn(
                                recorder, t, image_latents[cond], image_embeddings[cond], added_time_ids[cond], half_precision
                            )
                            latents, step_losses = optimize_latents(
                                latents, _counting(features_fn, progress_bar), loss_fn, config, half_precision
                            )
                        losses[paper_t] = step_losses

                    latent_model_input = torch.cat([latents] * 2) if self.do_classifier_free_guidance else latents
                    latent_model_input = self.scheduler.scale_model_input(latent_model_input, t)
                    latent_model_input = torch.cat([latent_model_input, image_latents], dim=2)
                    denoiser = getattr(self, "_compiled_unet", None)
                    denoiser = self.unet if denoiser is None else denoiser
                    noise_pred = denoiser(
                        latent_model_input, t, encoder_hidden_states=image_embeddings, added_time_ids=added_time_ids, return_dict=False
                    )[0]
                    if self.do_classifier_free_guidance:
                        noise_pred_uncond, noise_pred_cond = noise_pred.chunk(2)
                        noise_pred = noise_pred_uncond + self.guidance_scale * (noise_pred_cond - noise_pred_uncond)
                    latents = self.scheduler.step(noise_pred, t, latents).prev_sample

                    if callback_on_step_end is not None:
                        callback_kwargs = {}
                        for k in callback_on_step_end_tensor_inputs:
                            callback_kwargs[k] = locals()[k]
                        callback_outputs = callback_on_step_end(self, i, t, callback_kwargs)
                        latents = callback_outputs.pop("latents", latents)
                    progress_bar.update()

        # 10. Decode
        if output_type != "latent":
            if needs_upcasting:
                self.vae.to(dtype=torch.float16)
            frames = self.decode_latents(latents, num_frames, decode_chunk_size)
            frames = self.video_processor.postprocess_video(video=frames, output_type=output_type)
        else:
            frames = latents
        self.maybe_free_model_hooks()

        losses_out = {t: [float(v) for v in vals] for t, vals in losses.items()}
        if not return_dict:
            return (frames,)
        return SGI2VPipelineOutput(frames=frames, losses=losses_out)


@contextlib.contextmanager
def _frozen_parameters(module: torch.nn.Module):
    """Gradients are wanted for the latent only: with the weights frozen, autograd keeps far fewer activations."""
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def _counting(fn, progress_bar):
    def wrapped(*args):
        result = fn(*args)
        progress_bar.update()
        return result

    return wrapped
