"""Semantically aligned self-attention features (SG-I2V, Sec. 3.2), and the features of the ablation.

In the chosen spatial self-attention layers every frame's queries also attend to the keys and
values of frame 0 of the same video: ``A_f = softmax(Q_f K_0^T / sqrt(d)) V_0``. ``K_0`` and
``V_0`` are detached, so gradients reach the latent through the queries only. The recorded
feature is ``A_f`` with heads concatenated, before the output projection. The layer's own
output is the normal attention, unchanged.

The change is a diffusers attention processor installed on ``<layer>.transformer_blocks[0].attn1``
of the named spatial transformers and removed afterwards; the UNet itself is never modified.

The recorder's ``kind`` (``SGI2VConfig.feature_kind``) chooses the feature:

- ``"aligned"`` (the paper's): ``A_f`` as above.
- ``"self_attention"``: the layer's ordinary self-attention ``softmax(Q_f K_f^T / sqrt(d)) V_f``
  (heads concatenated, before the output projection), recorded by the same processor; gradients
  flow through queries, keys and values.
- ``"layer_output"``: the output of the named spatial transformer itself, recorded by a forward hook
  on it; no processor is installed.

Every feature is ``(B * F, h', w', C)``, channels last.
"""

from __future__ import annotations

import contextlib
import functools
import math
from typing import Callable, Iterator

import torch
import torch.nn.functional as F

from .config import FEATURE_KINDS

__all__ = [
    "FEATURE_KINDS", "FeatureRecorder", "FrameZeroAttnProcessor", "frame_zero_attention", "record_features", "resolve_feature_layers",
]


class FeaturesReady(Exception):
    """Raised after the last feature layer has run, to end the UNet pass early."""


def frame_zero_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, num_frames: int) -> torch.Tensor:
    """Attention of every frame's queries to frame 0's (detached) keys and values.

    Args:
        query, key, value: ``(B * F, heads, L, d)``, frames of a video consecutive.
        num_frames: ``F``.

    Returns:
        ``(B * F, heads, L, d)``.
    """
    bf, heads, length, dim = key.shape
    batch = bf // num_frames
    # Frame 0 of every video, broadcast to all of its frames; no gradient through keys/values.
    key0 = key.detach().view(batch, num_frames, heads, length, dim)[:, :1].expand(-1, num_frames, -1, -1, -1)
    value0 = value.detach().view(batch, num_frames, heads, length, dim)[:, :1].expand(-1, num_frames, -1, -1, -1)
    return F.scaled_dot_product_attention(
        query, key0.reshape(bf, heads, length, dim), value0.reshape(bf, heads, length, dim), dropout_p=0.0, is_causal=False
    )


class FeatureRecorder:
    """Collects the features of one UNet pass, of the given ``kind`` (one of :data:`FEATURE_KINDS`).

    ``armed`` is True only during the forward pass whose features are wanted; outside it (for
    example while gradient checkpointing recomputes a block during backward) the processors
    compute the same tensors but record nothing.
    """

    def __init__(self, layer_names: tuple[str, ...], num_frames: int, latent_size: tuple[int, int], kind: str = "aligned"):
        if kind not in FEATURE_KINDS:
            raise ValueError(f"feature_kind must be one of {', '.join(FEATURE_KINDS)}, got {kind!r}")
        self.layer_names = layer_names
        self.num_frames = num_frames
        self.latent_size = latent_size  # (h, w) latent cells
        self.kind = kind
        self.features: dict[str, torch.Tensor] = {}
        self.armed = False

    def spatial_size(self, num_tokens: int) -> tuple[int, int]:
        """Feature map size ``(h', w')`` of a layer with ``num_tokens`` tokens per frame."""
        h, w = self.latent_size
        factor = math.isqrt(h * w // num_tokens)
        if factor < 1 or (h // factor) * (w // factor) != num_tokens:
            raise ValueError(f"cannot infer the feature map size of {num_tokens} tokens for a {h}x{w} latent")
        return h // factor, w // factor

    def add(self, name: str, feature: torch.Tensor) -> None:
        if self.armed:
            self.features[name] = feature

    @property
    def complete(self) -> bool:
        return len(self.features) == len(self.layer_names)

    def capture(self, forward: Callable[[], object]) -> torch.Tensor:
        """Run ``forward`` (a UNet pass, with :func:`record_features` installed) and return the feature map
        ``(F, h, w, C)`` in float32: each layer's features upsampled bilinearly to the latent grid, concatenated
        in execution order. The pass may stop early (:class:`FeaturesReady`)."""
        self.features.clear()
        self.armed = True
        try:
            forward()
        except FeaturesReady:
            pass
        finally:
            self.armed = False
        if not self.complete:
            missing = sorted(set(self.layer_names) - set(self.features))
            raise RuntimeError(f"feature layers {missing} did not run during the UNet pass")
        h, w = self.latent_size
        maps = []
        for feature in self.features.values():  # execution order
            feature = feature.float().permute(0, 3, 1, 2)  # (F, C, h', w')
            if feature.shape[-2:] != (h, w):
                feature = F.interpolate(feature, size=(h, w), mode="bilinear", align_corners=False)
            maps.append(feature.permute(0, 2, 3, 1))  # (F, h, w, C)
        return torch.cat(maps, dim=-1)


class FrameZeroAttnProcessor:
    """Self-attention processor that also records frame-0 key/value attention features.

    The normal output is computed as diffusers' ``AttnProcessor2_0`` computes it, from the same
    query/key/value projections (each computed once). With a recorder of kind ``"self_attention"``
    it records that normal attention (before the output projection) instead, and computes no
    frame-0 attention.
    """

    def __init__(self, recorder: FeatureRecorder, name: str):
        self.recorder = recorder
        self.name = name

    def __call__(self, attn, hidden_states: torch.Tensor, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        if encoder_hidden_states is not None:
            raise ValueError(f"{type(self).__name__} is for self-attention; {self.name} got encoder_hidden_states")
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch_size, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch_size, channel, height * width).transpose(1, 2)
        batch_size, sequence_length, _ = hidden_states.shape  # (B*F, L, C)
        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, sequence_length, batch_size)
            attention_mask = attention_mask.view(batch_size, attn.heads, -1, attention_mask.shape[-1])
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)

        query = attn.to_q(hidden_states)
        key = attn.to_k(hidden_states)
        value = attn.to_v(hidden_states)
        inner_dim = key.shape[-1]
        head_dim = inner_dim // attn.heads
        query = query.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)  # (B*F, heads, L, d)
        key = key.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        value = value.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)

        kind = self.recorder.kind
        if kind == "aligned":
            aligned = frame_zero_attention(query, key, value, self.recorder.num_frames)  # (B*F, heads, L, d)
            fh, fw = self.recorder.spatial_size(sequence_length)
            self.recorder.add(self.name, aligned.transpose(1, 2).reshape(batch_size, fh, fw, inner_dim))  # (B*F, h', w', C)

        hidden_states = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask, dropout_p=0.0, is_causal=False)
        hidden_states = hidden_states.transpose(1, 2).reshape(batch_size, -1, inner_dim).to(query.dtype)
        if kind == "self_attention":
            fh, fw = self.recorder.spatial_size(sequence_length)
            self.recorder.add(self.name, hidden_states.reshape(batch_size, fh, fw, inner_dim))  # (B*F, h', w', C)
        hidden_states = attn.to_out[0](hidden_states)
        hidden_states = attn.to_out[1](hidden_states)
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch_size, channel, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


def resolve_feature_layers(unet: torch.nn.Module, names: tuple[str, ...]) -> dict[str, torch.nn.Module]:
    """Map each configured layer name to the self-attention module whose features it gives.

    A name must denote a spatial transformer of the UNet (a module with ``transformer_blocks``
    whose first block has ``attn1``). Raises ``ValueError`` listing the valid names otherwise.
    """
    modules = dict(unet.named_modules())
    valid = [n for n, m in modules.items() if _self_attention_of(m) is not None]
    resolved = {}
    for name in names:
        attn = _self_attention_of(modules.get(name))
        if attn is None:
            raise ValueError(f"unknown feature layer {name!r}: the UNet's spatial transformers are {valid}")
        resolved[name] = attn
    return resolved


def _self_attention_of(module):
    blocks = getattr(module, "transformer_blocks", None)
    if module is None or blocks is None or len(blocks) == 0:
        return None
    return getattr(blocks[0], "attn1", None)


@contextlib.contextmanager
def record_features(unet: torch.nn.Module, recorder: FeatureRecorder, stop_early: bool = True) -> Iterator[FeatureRecorder]:
    """Install the recording processors or hooks (and the early stop) on ``unet`` for the duration of the block.

    With ``stop_early`` the UNet pass raises :class:`FeaturesReady` right after the last feature
    layer (in execution order) has finished; callers catch it. Originals are restored on exit,
    also after an exception.
    """
    layers = resolve_feature_layers(unet, recorder.layer_names)
    modules = dict(unet.named_modules())
    originals = {name: attn.processor for name, attn in layers.items()}
    replaced = []
    hooks = []

    def stop_when_complete(module, args, output):
        if recorder.armed and recorder.complete:
            raise FeaturesReady

    try:
        for name, attn in layers.items():
            if recorder.kind == "layer_output":
                # Registered before the early stop on the same module, so it records first.
                hooks.append(modules[name].register_forward_hook(functools.partial(_record_output, recorder, name)))
            else:
                replaced.append(name)
                attn.set_processor(FrameZeroAttnProcessor(recorder, name))
            if stop_early:
                hooks.append(modules[name].register_forward_hook(stop_when_complete))
        yield recorder
    finally:
        for hook in hooks:
            hook.remove()
        for name in replaced:
            layers[name].set_processor(originals[name])


def _record_output(recorder: FeatureRecorder, name: str, module, args, output) -> None:
    """Forward hook: the spatial transformer's output ``(B * F, C, h', w')``, recorded as ``(B * F, h', w', C)``."""
    sample = output if isinstance(output, torch.Tensor) else output[0]  # a tuple or a TransformerTemporalModelOutput
    if sample.ndim != 4:
        raise ValueError(f"feature layer {name} returned a tensor of shape {tuple(sample.shape)}, expected (B * F, C, h, w)")
    recorder.add(name, sample.permute(0, 2, 3, 1))
