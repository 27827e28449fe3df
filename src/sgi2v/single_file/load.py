"""Building diffusers' SVD components from a single-file checkpoint, one tensor at a time."""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch

from .architecture import name_maps, single_file_configs
from .reader import SingleFileError

__all__ = ["load_components"]


class _Tensors:
    """Reads tensors by name from a ``.safetensors`` (memory-mapped, one at a time) or ``.ckpt`` file."""

    def __init__(self, path: str):
        self.path = path
        self._stack = contextlib.ExitStack()
        if path.lower().endswith(".safetensors"):
            from safetensors import safe_open

            handle = self._stack.enter_context(safe_open(path, framework="pt", device="cpu"))
            self.get = handle.get_tensor
        else:
            data = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            data = data.get("state_dict", data) if isinstance(data, dict) else data
            self.get = data.__getitem__

    def close(self):
        self._stack.close()


def _convert(tensor: torch.Tensor, transform) -> torch.Tensor:
    if transform is None:
        return tensor
    if transform == "squeeze":
        return tensor.reshape(tensor.shape[0], tensor.shape[1]) if tensor.dim() == 4 else tensor
    if transform == "transpose":
        return tensor.t()
    if transform[0] == "split":
        return tensor.chunk(3, dim=0)[transform[1]]
    raise ValueError(f"unknown transform {transform!r}")


def _build(component: str, config: dict, dtype: torch.dtype):
    from accelerate import init_empty_weights  # parameters on the meta device, buffers real

    with init_empty_weights():
        if component == "unet":
            from diffusers import UNetSpatioTemporalConditionModel

            return UNetSpatioTemporalConditionModel.from_config(config)
        if component == "vae":
            from diffusers import AutoencoderKLTemporalDecoder

            return AutoencoderKLTemporalDecoder.from_config(config)
        from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

        settings = {k: v for k, v in config.items() if k not in ("architectures", "model_type")}
        return CLIPVisionModelWithProjection(CLIPVisionConfig(**settings))


def load_components(path: str, dtype: torch.dtype | None = None, num_frames: int | None = None) -> dict:
    """``unet``, ``vae`` and ``image_encoder`` of a single-file SVD checkpoint, in ``dtype`` (the file's own
    when None), on the CPU. Tensors are read one at a time and cast as they come, so the peak memory is
    about one copy of the weights in ``dtype``."""
    path = str(Path(path).expanduser())
    svd, configs = single_file_configs(path, num_frames)
    dtype = dtype or getattr(torch, svd.dtype)
    maps = name_maps(configs, svd.clip_layout)
    tensors = _Tensors(path)
    out = {}
    try:
        for component, (prefix, name_map) in maps.items():
            model = _build(component, configs[component], dtype)
            state, fused = {}, {}
            for source, (target, transform) in name_map.items():
                key = prefix + source.split("#", 1)[0]
                if isinstance(transform, tuple):  # one fused q/k/v tensor read once for its three parts
                    tensor = fused.pop(key, None) if transform[1] == 2 else fused.get(key)
                    if tensor is None:
                        tensor = tensors.get(key)
                        if transform[1] != 2:
                            fused[key] = tensor
                else:
                    tensor = tensors.get(key)
                state[target] = _convert(tensor, transform).to(dtype).contiguous()
            if component == "vae":  # SGM's video VAE has no quant_conv: the identity
                channels = 2 * configs["vae"]["latent_channels"]
                state["quant_conv.weight"] = torch.eye(channels, dtype=dtype).reshape(channels, channels, 1, 1)
                state["quant_conv.bias"] = torch.zeros(channels, dtype=dtype)
            try:
                model.load_state_dict(state, strict=True, assign=True)
            except RuntimeError as err:
                first = next((line.strip() for line in str(err).splitlines()[1:] if line.strip()), str(err))
                raise SingleFileError(f"{path}: its {component} does not fit SVD's layout: {first}") from None
            del state
            out[component] = model.eval()
    finally:
        tensors.close()
    out["svd"] = svd
    return out
