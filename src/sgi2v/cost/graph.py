"""The pipeline's phases run on ``meta`` tensors: their memory and FLOPs, read from the real graph.

Each phase calls the same modules and pipeline code as a generation (the CLIP and VAE encoders, one
classifier-free-guidance UNet step with the Euler update, one SG-I2V optimisation pass through
``SGI2VPipeline._features_fn`` and ``optimize_latents``, the chunked VAE decode of
``decode_latents``), on components built from their configurations on the ``meta`` device: shapes and
lifetimes without data, so no weights are loaded and any size is quick to trace.

- Memory: :class:`~sgi2v.cost.tracker.LiveTensorBytes`, with the weights left out (they are added per
  mode by :mod:`sgi2v.cost.plan`).
- FLOPs: torch's per-operator formulas (``torch.utils.flop_counter``: matrix products, convolutions,
  attention; forward, backward and the recomputation of checkpointing), counted in the same pass.
- Attention runs as the fused kernels do (flash attention for half precision on CUDA, the
  memory-efficient kernel otherwise): no score matrix is materialised, as on the device.
- A half-precision optimisation pass runs under :class:`~sgi2v.cost.autocast.SimulatedAutocast`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .autocast import SimulatedAutocast
from .tracker import LiveTensorBytes

__all__ = ["Architecture", "architecture", "meta_pipeline", "random_pipeline", "example_boxes", "trace_phases", "PHASES", "weight_bytes"]

PHASES = ("encode", "denoise_step", "optimize_pass", "decode")
HALF = (torch.float16, torch.bfloat16)


@dataclass(frozen=True)
class Architecture:
    """The configurations of a model's three networks, and where they were read from."""

    model: str
    unet: dict
    vae: dict
    image_encoder: dict
    source: str

    @property
    def num_frames(self) -> int:
        return int(self.unet.get("num_frames", 25))


def _read(folder: Path, component: str) -> dict:
    path = folder / component / "config.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} is missing") from None


def architecture(model: str) -> Architecture:
    """The architecture of ``model`` (a hub id of Stability's SVD models, a local diffusers folder,
    ``sprites`` or ``tiny-random``) from configurations only. Other hub ids are read from the local
    Hugging Face cache when their configs are there."""
    from ..configs import SVD_FRAMES, svd_config
    from ..loading import ModelError
    from ..paths import model_folder
    from ..single_file import SingleFileError, is_single_file, single_file_configs
    from ..settings import TINY_MODEL_ID

    if model == TINY_MODEL_ID:
        from ..testing import tiny_components

        parts = tiny_components()  # tiny: building it is quicker than describing it
        return Architecture(model, dict(parts["unet"].config), dict(parts["vae"].config),
                            parts["image_encoder"].config.to_dict(), "sgi2v.testing")
    if model in SVD_FRAMES:
        return Architecture(model, svd_config("unet", SVD_FRAMES[model]), svd_config("vae"), svd_config("image_encoder"),
                            "bundled configs (sgi2v/configs/svd)")
    if is_single_file(model):
        try:
            svd, configs = single_file_configs(model)
        except SingleFileError as err:
            raise ModelError(str(err)) from None
        return Architecture(model, configs["unet"], configs["vae"], configs["image_encoder"], f"single file {svd.path}")
    folder = model_folder(model)
    if folder.is_dir():
        try:
            return Architecture(model, _read(folder, "unet"), _read(folder, "vae"), _read(folder, "image_encoder"), str(folder))
        except (FileNotFoundError, ValueError) as err:
            raise ModelError(f"model folder {model!r}: {err}") from None
    if Path(model).suffix or model.startswith((".", "/", "~")):
        raise ModelError(f"model {model!r} not found")
    try:
        from huggingface_hub import try_to_load_from_cache

        paths = {c: try_to_load_from_cache(model, "config.json", subfolder=c) for c in ("unet", "vae", "image_encoder")}
    except Exception:  # an invalid repo id and the like
        paths = {}
    if paths and all(isinstance(p, str) for p in paths.values()):
        configs = {c: json.loads(Path(p).read_text()) for c, p in paths.items()}
        return Architecture(model, configs["unet"], configs["vae"], configs["image_encoder"], "Hugging Face cache")
    raise ModelError(f"no architecture known for {model!r}: give one of {', '.join(SVD_FRAMES)}, a local model folder, "
                     f"sprites or tiny-random (other hub models need their configs in the local cache)")


def _strip(config: dict) -> dict:
    return {k: v for k, v in config.items() if not k.startswith("_")}


@contextlib.contextmanager
def _quiet_casts():
    """diffusers logs "should be kept in float32: []" on every cast of a model: not for our users."""
    quiet = logging.getLogger("diffusers.models.modeling_utils")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        yield
    finally:
        quiet.setLevel(level)


def meta_pipeline(arch: Architecture, dtype: torch.dtype):
    """An ``SGI2VPipeline`` of ``arch`` with every weight on the ``meta`` device in ``dtype``."""
    return random_pipeline(arch, dtype, "meta")


def random_pipeline(arch: Architecture, dtype: torch.dtype, device: str = "meta"):
    """An ``SGI2VPipeline`` of ``arch`` with its networks' initial (random) weights, built on ``device`` in
    ``dtype``, in eval mode and without gradients for the weights; on ``meta`` no memory is used."""
    from diffusers import AutoencoderKLTemporalDecoder, UNetSpatioTemporalConditionModel
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from ..pipeline import SGI2VPipeline
    from ..testing import CLIPImageProcessor, svd_scheduler

    def ready(module):
        # Some layers make tensors with the legacy constructor, which ignores the default device. Each network is
        # cast as soon as it is built, so that on a GPU only one of them is ever held in float32.
        return module.to(device, dtype).eval().requires_grad_(False)

    with _quiet_casts(), torch.device(device):
        unet = ready(UNetSpatioTemporalConditionModel.from_config(_strip(arch.unet)))
        vae = ready(AutoencoderKLTemporalDecoder.from_config(_strip(arch.vae)))
        encoder_config = {k: v for k, v in arch.image_encoder.items() if k not in ("architectures", "model_type", "transformers_version")}
        image_encoder = ready(CLIPVisionModelWithProjection(CLIPVisionConfig(**encoder_config)))
    size = int(arch.image_encoder.get("image_size", 224))
    return SGI2VPipeline(unet=unet, vae=vae, image_encoder=image_encoder, scheduler=svd_scheduler(),
                         feature_extractor=CLIPImageProcessor(crop_size=size, size={"shortest_edge": size}))


def weight_bytes(module: torch.nn.Module, dtype: torch.dtype | None = None) -> int:
    """Bytes of the module's parameters and buffers (floating ones in ``dtype`` when given)."""
    total = 0
    for t in [*module.parameters(), *module.buffers()]:
        size = (torch.empty((), dtype=dtype).element_size() if dtype is not None and t.is_floating_point() else t.element_size())
        total += t.numel() * size
    return total


@contextlib.contextmanager
def fused_attention(device_type: str, dtype: torch.dtype):
    """``F.scaled_dot_product_attention`` as the fused kernel the device would pick (flash attention for
    half precision on CUDA, the memory-efficient kernel otherwise), so that meta tensors see its memory
    (output and log-sum-exp only) and its FLOPs. Restored on exit."""
    original = F.scaled_dot_product_attention
    flash = device_type == "cuda" and dtype in HALF

    def sdpa(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, **kwargs):
        if flash and attn_mask is None and query.dtype in HALF:
            return torch.ops.aten._scaled_dot_product_flash_attention(query, key, value, dropout_p, is_causal, False, scale=scale)[0]
        grad = torch.is_grad_enabled() and any(t.requires_grad for t in (query, key, value))
        bias = None if attn_mask is None else attn_mask.to(query.dtype).expand(query.shape[0], query.shape[1], query.shape[2], key.shape[2])
        return torch.ops.aten._scaled_dot_product_efficient_attention(query, key, value, bias, grad, dropout_p, is_causal, scale=scale)[0]

    F.scaled_dot_product_attention = sdpa
    try:
        yield
    finally:
        F.scaled_dot_product_attention = original


@dataclass
class PhaseCost:
    """One phase: the peak bytes of its tensors other than the weights, and its FLOPs."""

    activation_bytes: int
    flops: int
    detail: dict = dataclasses.field(default_factory=dict)


def _measure(fn, pipe) -> PhaseCost:
    """Run ``fn`` once under the live-bytes tracker, counting FLOPs as it goes; the weights are left out."""
    live = LiveTensorBytes("meta", count_flops=True)
    for module in (pipe.unet, pipe.vae, pipe.image_encoder):
        live.ignore(module)
    with live:
        fn()
    return PhaseCost(live.peak, live.flops)


def example_boxes(num_frames: int, height: int, width: int) -> np.ndarray:
    """A box a quarter of the picture's side moving a third of the way across: what the loss costs
    barely depends on the boxes."""
    f = np.linspace(0, 1, num_frames)[:, None]
    x0, y0 = width * (0.1 + 0.3 * f), np.full_like(f, height * 0.3)
    return np.concatenate([x0, y0, x0 + width / 4, y0 + height / 4], axis=1)[None]


class _Tracer:
    """The phases of one generation's shapes, each a function to run on the meta pipeline."""

    def __init__(self, pipe, *, height: int, width: int, num_frames: int, dtype: torch.dtype, device_type: str,
                 num_inference_steps: int, guidance: bool, decode_chunk_size: int, config):
        self.pipe, self.height, self.width, self.num_frames = pipe, height, width, num_frames
        self.dtype, self.device_type, self.guidance, self.decode_chunk_size, self.config = (
            dtype, device_type, guidance, decode_chunk_size, config)
        self.meta = torch.device("meta")
        self.h, self.w = height // pipe.vae_scale_factor, width // pipe.vae_scale_factor
        self.batch = 2 if guidance else 1
        upcast = dtype == torch.float16 and bool(pipe.vae.config.get("force_upcast", False))
        self.vae_encode_dtype = torch.float32 if upcast else dtype  # the pipeline upcasts a float16 VAE to encode
        self.embed_dim = pipe.image_encoder.config.projection_dim
        pipe.scheduler.set_timesteps(num_inference_steps)

    def _empty(self, *shape, dtype=None):
        return torch.empty(*shape, device=self.meta, dtype=dtype or self.dtype)

    def state(self) -> dict:
        """What the denoising loop holds between steps."""
        f, h, w, b = self.num_frames, self.h, self.w, self.batch
        return dict(latents=self._empty(1, f, 4, h, w), image_latents=self._empty(b, f, 4, h, w),
                    embeddings=self._empty(b, 1, self.embed_dim), time_ids=self._empty(b, 3))

    def _timestep(self):
        self.pipe.scheduler._step_index = 0  # any step: the shapes are the same
        return self.pipe.scheduler.timesteps[0]

    def encode_clip(self):
        size = self.pipe.image_encoder.config.image_size
        embeds = self.pipe.image_encoder(self._empty(1, 3, size, size)).image_embeds.unsqueeze(1)
        return torch.cat([torch.zeros_like(embeds), embeds]) if self.guidance else embeds

    def encode_vae(self):
        embeds = self._empty(self.batch, 1, self.embed_dim)  # held from the CLIP part
        image = self._empty(1, 3, self.height, self.width, dtype=self.vae_encode_dtype)
        latent = self.pipe.vae.encode(image).latent_dist.mode()
        latent = torch.cat([torch.zeros_like(latent), latent]) if self.guidance else latent
        return embeds, latent.to(self.dtype).unsqueeze(1).repeat(1, self.num_frames, 1, 1, 1)

    def denoise_step(self):
        s, t, scheduler = self.state(), self._timestep(), self.pipe.scheduler
        model_input = torch.cat([s["latents"]] * self.batch)
        model_input = torch.cat([scheduler.scale_model_input(model_input, t), s["image_latents"]], dim=2)
        noise = self.pipe.unet(model_input, t, encoder_hidden_states=s["embeddings"], added_time_ids=s["time_ids"],
                               return_dict=False)[0]
        if self.guidance:
            uncond, cond = noise.chunk(2)
            scale = torch.linspace(1.0, 3.0, self.num_frames, device=self.meta, dtype=self.dtype)[None, :, None, None, None]
            noise = uncond + scale * (cond - uncond)
        scheduler.step(noise, t, s["latents"])

    def decode(self):
        self.pipe.decode_latents(self._empty(1, self.num_frames, 4, self.h, self.w), self.num_frames, self.decode_chunk_size)

    def optimize_pass(self, checkpointing: bool):
        """One AdamW iteration of SG-I2V: the UNet pass to the feature layers (under autocast for a half
        precision UNet, also when checkpointing recomputes it during backward), the loss outside it, the
        backward to the latent and the high-frequency re-initialisation, as the pipeline runs them."""
        from ..attention import FeatureRecorder, record_features
        from ..boxes import latent_boxes
        from ..loss import BoxLoss
        from ..memory import checkpoint_sub_blocks
        from ..optimization import optimize_latents
        from ..pipeline import _frozen_parameters

        pipe, config, half = self.pipe, self.config, self.dtype in HALF
        boxes = example_boxes(self.num_frames, self.height, self.width)
        loss_fn = BoxLoss(latent_boxes(boxes, pipe.vae_scale_factor), (self.h, self.w), config.heatmap_sigma, self.meta)
        s, t = self.state(), self._timestep()
        recorder = FeatureRecorder(config.feature_layers, self.num_frames, (self.h, self.w), config.feature_kind)
        cond = slice(-1, None)
        recompute = (lambda: SimulatedAutocast(self.dtype)) if half else None
        with record_features(pipe.unet, recorder), _frozen_parameters(pipe.unet), \
                (checkpoint_sub_blocks(pipe.unet, recompute) if checkpointing else contextlib.nullcontext()):
            plain = pipe._features_fn(recorder, t, s["image_latents"][cond], s["embeddings"][cond], s["time_ids"][cond], None)

            def features(z):
                with SimulatedAutocast(self.dtype) if half else contextlib.nullcontext():
                    return plain(z)

            optimize_latents(s["latents"], features, loss_fn, dataclasses.replace(config, iterations=1))


def trace_phases(arch: Architecture, *, height: int, width: int, num_frames: int, dtype: torch.dtype, device_type: str,
                 num_inference_steps: int = 50, guidance: bool = True, decode_chunk_size: int = 8, config=None,
                 checkpointing: tuple[bool, ...] = (False, True), phases: tuple[str, ...] = PHASES, pipe=None) -> dict:
    """Trace each of ``phases`` once: ``{"encode": PhaseCost, "denoise_step": ..., "decode": ...,
    "optimize_pass": {checkpointing: PhaseCost}}``, plus ``"vae_encode_dtype"``. ``pipe``: a meta
    pipeline of ``arch`` already built (:func:`meta_pipeline`)."""
    from ..config import SGI2VConfig

    pipe = meta_pipeline(arch, dtype) if pipe is None else pipe
    tracer = _Tracer(pipe, height=height, width=width, num_frames=num_frames, dtype=dtype, device_type=device_type,
                     num_inference_steps=num_inference_steps, guidance=guidance, decode_chunk_size=decode_chunk_size,
                     config=SGI2VConfig() if config is None else config)
    out: dict = {"vae_encode_dtype": tracer.vae_encode_dtype}
    with fused_attention(device_type, dtype):
        with torch.no_grad():
            if "encode" in phases:
                clip = _measure(tracer.encode_clip, pipe)
                with _quiet_casts():
                    pipe.vae.to(tracer.vae_encode_dtype)
                try:
                    vae = _measure(tracer.encode_vae, pipe)
                finally:
                    with _quiet_casts():
                        pipe.vae.to(dtype)
                out["encode"] = PhaseCost(max(clip.activation_bytes, vae.activation_bytes), clip.flops + vae.flops,
                                          {"clip": clip.activation_bytes, "vae": vae.activation_bytes})
            if "denoise_step" in phases:
                out["denoise_step"] = _measure(tracer.denoise_step, pipe)
            if "decode" in phases:
                out["decode"] = _measure(tracer.decode, pipe)
        if "optimize_pass" in phases:
            out["optimize_pass"] = {ckpt: _measure(functools.partial(tracer.optimize_pass, ckpt), pipe) for ckpt in checkpointing}
    return out


@functools.lru_cache(maxsize=16)
def _optimize_pass_bytes(key: str, num_frames: int, latent_size: tuple[int, int], dtype: torch.dtype, device_type: str,
                         config) -> int:
    configs = json.loads(key)
    arch = Architecture("loaded pipeline", configs["unet"], configs["vae"], configs["image_encoder"], "the loaded pipeline")
    scale = 2 ** (len(arch.vae.get("block_out_channels", (0,) * 4)) - 1)
    traced = trace_phases(arch, height=latent_size[0] * scale, width=latent_size[1] * scale, num_frames=num_frames, dtype=dtype,
                          device_type=device_type, config=config, checkpointing=(False,), phases=("optimize_pass",),
                          num_inference_steps=max(config.optimize_timesteps, default=1))
    return traced["optimize_pass"][False].activation_bytes


def optimize_pass_bytes(pipe, num_frames: int, latent_size: tuple[int, int], dtype: torch.dtype, device_type: str, config) -> int:
    """Predicted bytes of an unchecked optimisation pass's tensors (weights aside) for a loaded pipeline,
    traced on its architecture (cached per architecture and shape)."""
    key = json.dumps({"unet": _strip(dict(pipe.unet.config)), "vae": _strip(dict(pipe.vae.config)),
                      "image_encoder": pipe.image_encoder.config.to_dict()}, sort_keys=True, default=str)
    return _optimize_pass_bytes(key, num_frames, tuple(latent_size), dtype, device_type, config)


def flops_attention(batch_heads: int, queries: int, keys: int, head_dim: int) -> int:
    """Hand count of one attention's forward FLOPs: ``Q K^T`` and ``P V``, two per multiply-add."""
    return 2 * 2 * batch_heads * queries * keys * head_dim


def flops_conv2d(batch: int, c_in: int, c_out: int, kernel: int, out_h: int, out_w: int, groups: int = 1) -> int:
    """Hand count of one 2-D convolution's forward FLOPs (bias not counted)."""
    return 2 * batch * c_out * out_h * out_w * (c_in // groups) * kernel * kernel
