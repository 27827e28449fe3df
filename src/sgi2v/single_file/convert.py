"""Names of Stability's original (SGM) checkpoint layout in diffusers' SVD components.

A single-file SVD checkpoint (``svd.safetensors``, ``svd_xt.safetensors``, ``svd_xt_1_1.safetensors``,
or one saved by ComfyUI) holds three models under three prefixes:

- ``model.diffusion_model.``: the video UNet (``input_blocks``, ``middle_block``, ``output_blocks``);
- ``first_stage_model.``: the VAE, with the temporal decoder (``encoder``/``decoder``, ``down``/``up``);
- ``conditioner.embedders.0.open_clip.model.visual.``: the CLIP image encoder, in OpenCLIP's layout
  (Stability's files) or in the transformers layout (files ComfyUI saves).

Each ``*_name_map`` below returns ``{original name: (diffusers name, transform)}`` for every tensor of
the component, computed from the diffusers config, so the same code converts the full-size models and
small ones of the same layout. A transform is one of ``None`` (as is), ``"squeeze"`` (a 1 x 1
convolution read as a linear layer), ``"transpose"`` (OpenCLIP's projection), or ``("split", i)``
(the i-th third of OpenCLIP's fused q/k/v projection).
"""

from __future__ import annotations

from typing import Union

__all__ = ["UNET_PREFIX", "VAE_PREFIX", "CLIP_PREFIX", "IGNORED_PREFIXES", "unet_name_map", "vae_name_map",
           "clip_name_map", "expected_sources"]

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP_PREFIX = "conditioner.embedders.0.open_clip.model.visual."
#: Tensors that Stability's files carry but an image-to-video pipeline never uses: the rest of the OpenCLIP
#: model (its text side) and the conditioner's second copy of the VAE's encoder.
IGNORED_PREFIXES = (
    "conditioner.embedders.0.open_clip.model.ln_final.",
    "conditioner.embedders.0.open_clip.model.logit_scale",
    "conditioner.embedders.0.open_clip.model.positional_embedding",
    "conditioner.embedders.0.open_clip.model.text_projection",
    "conditioner.embedders.0.open_clip.model.token_embedding.",
    "conditioner.embedders.0.open_clip.model.attn_mask",
    "conditioner.embedders.3.encoder.",
)

Transform = Union[None, str, tuple]
NameMap = dict[str, tuple[str, Transform]]

_SPATIAL_RES = {"in_layers.0": "norm1", "in_layers.2": "conv1", "emb_layers.1": "time_emb_proj",
                "out_layers.0": "norm2", "out_layers.3": "conv2", "skip_connection": "conv_shortcut"}
_TRANSFORMER_BLOCK = ["norm1", "attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0", "norm2", "attn2.to_q",
                      "attn2.to_k", "attn2.to_v", "attn2.to_out.0", "norm3", "ff.net.0.proj", "ff.net.2"]
_TEMPORAL_BLOCK = ["norm_in", "ff_in.net.0.proj", "ff_in.net.2"] + _TRANSFORMER_BLOCK
_NO_BIAS = ("to_q", "to_k", "to_v")


def _params(module: str, bias: bool = True) -> list[str]:
    return [f"{module}.weight"] + ([f"{module}.bias"] if bias else [])


def _video_resblock(src: str, dst: str, in_ch: int, out_ch: int, has_emb: bool = True) -> NameMap:
    """SGM's ``VideoResBlock`` (spatial ResBlock + ``time_stack`` + ``time_mixer``) as diffusers'
    ``SpatioTemporalResBlock``."""
    out: NameMap = {}
    for ours, theirs in _SPATIAL_RES.items():
        if theirs == "time_emb_proj" and not has_emb or theirs == "conv_shortcut" and in_ch == out_ch:
            continue
        for suffix in ("weight", "bias"):
            out[f"{src}.{ours}.{suffix}"] = (f"{dst}.spatial_res_block.{theirs}.{suffix}", None)
    for ours, theirs in _SPATIAL_RES.items():
        if theirs == "conv_shortcut" or theirs == "time_emb_proj" and not has_emb:
            continue
        for suffix in ("weight", "bias"):
            out[f"{src}.time_stack.{ours}.{suffix}"] = (f"{dst}.temporal_res_block.{theirs}.{suffix}", None)
    out[f"{src}.time_mixer.mix_factor"] = (f"{dst}.time_mixer.mix_factor", None)
    return out


def _video_transformer(src: str, dst: str, layers: int = 1) -> NameMap:
    """SGM's ``SpatialVideoTransformer`` as diffusers' ``TransformerSpatioTemporalModel``."""
    out: NameMap = {}
    for name in ("norm", "proj_in", "proj_out"):
        for p in _params(name):
            out[f"{src}.{p}"] = (f"{dst}.{p}", None)
    for i in range(layers):
        for name in _TRANSFORMER_BLOCK:
            for p in _params(name, bias=not name.endswith(_NO_BIAS)):
                out[f"{src}.transformer_blocks.{i}.{p}"] = (f"{dst}.transformer_blocks.{i}.{p}", None)
        for name in _TEMPORAL_BLOCK:
            for p in _params(name, bias=not name.endswith(_NO_BIAS)):
                out[f"{src}.time_stack.{i}.{p}"] = (f"{dst}.temporal_transformer_blocks.{i}.{p}", None)
    for ours, theirs in (("0", "linear_1"), ("2", "linear_2")):
        for p in ("weight", "bias"):
            out[f"{src}.time_pos_embed.{ours}.{p}"] = (f"{dst}.time_pos_embed.{theirs}.{p}", None)
    out[f"{src}.time_mixer.mix_factor"] = (f"{dst}.time_mixer.mix_factor", None)
    return out


def _same(src: str, dst: str, bias: bool = True) -> NameMap:
    return {f"{src}.{p}": (f"{dst}.{p}", None) for p in ("weight", "bias")[: 2 if bias else 1]}


def unet_name_map(config: dict) -> NameMap:
    """Every tensor of SGM's ``VideoUNet`` (without the ``model.diffusion_model.`` prefix) for a diffusers
    ``UNetSpatioTemporalConditionModel`` with ``config``."""
    channels = list(config["block_out_channels"])
    per_block = config["layers_per_block"]
    per_block = per_block if isinstance(per_block, int) else per_block[0]
    down_attn = ["CrossAttn" in t for t in config["down_block_types"]]
    up_attn = ["CrossAttn" in t for t in config["up_block_types"]]
    depth = config.get("transformer_layers_per_block", 1)
    if not isinstance(depth, int):
        if len(set(depth)) != 1:
            raise ValueError("transformer_layers_per_block must be the same for every block")
        depth = depth[0]
    levels = len(channels)
    out: NameMap = {}
    out.update(_same("time_embed.0", "time_embedding.linear_1"))
    out.update(_same("time_embed.2", "time_embedding.linear_2"))
    out.update(_same("label_emb.0.0", "add_embedding.linear_1"))
    out.update(_same("label_emb.0.2", "add_embedding.linear_2"))
    out.update(_same("input_blocks.0.0", "conv_in"))
    index, ch = 1, channels[0]
    for level in range(levels):
        for j in range(per_block):
            out.update(_video_resblock(f"input_blocks.{index}.0", f"down_blocks.{level}.resnets.{j}", ch, channels[level]))
            ch = channels[level]
            if down_attn[level]:
                out.update(_video_transformer(f"input_blocks.{index}.1", f"down_blocks.{level}.attentions.{j}", depth))
            index += 1
        if level < levels - 1:
            out.update(_same(f"input_blocks.{index}.0.op", f"down_blocks.{level}.downsamplers.0.conv"))
            index += 1
    top = channels[-1]
    out.update(_video_resblock("middle_block.0", "mid_block.resnets.0", top, top))
    out.update(_video_transformer("middle_block.1", "mid_block.attentions.0", depth))
    out.update(_video_resblock("middle_block.2", "mid_block.resnets.1", top, top))
    # skip connections: the channel count of each input block's output, in order
    skips = [channels[0]]
    for level in range(levels):
        skips += [channels[level]] * per_block + ([channels[level]] if level < levels - 1 else [])
    reversed_channels = channels[::-1]
    index, ch = 0, top
    for level in range(levels):
        for j in range(per_block + 1):
            out_ch = reversed_channels[level]
            in_ch = ch + skips.pop()
            out.update(_video_resblock(f"output_blocks.{index}.0", f"up_blocks.{level}.resnets.{j}", in_ch, out_ch))
            ch = out_ch
            sub = 1
            if up_attn[level]:
                out.update(_video_transformer(f"output_blocks.{index}.1", f"up_blocks.{level}.attentions.{j}", depth))
                sub = 2
            if j == per_block and level < levels - 1:
                out.update(_same(f"output_blocks.{index}.{sub}.conv", f"up_blocks.{level}.upsamplers.0.conv"))
            index += 1
    out.update(_same("out.0", "conv_norm_out"))
    out.update(_same("out.2", "conv_out"))
    return out


def _vae_resblock(src: str, dst: str, in_ch: int, out_ch: int) -> NameMap:
    out: NameMap = {}
    for name in ("norm1", "conv1", "norm2", "conv2") + (("nin_shortcut",) if in_ch != out_ch else ()):
        out.update(_same(f"{src}.{name}", f"{dst}.{'conv_shortcut' if name == 'nin_shortcut' else name}"))
    return out


def _vae_video_resblock(src: str, dst: str, in_ch: int, out_ch: int) -> NameMap:
    """The temporal decoder's ``VideoResBlock``: a plain ResBlock with ``time_stack`` and ``mix_factor``."""
    out = {k: (v.replace(dst + ".", dst + ".spatial_res_block.", 1), t)
           for k, (v, t) in _vae_resblock(src, dst, in_ch, out_ch).items()}
    for ours, theirs in (("in_layers.0", "norm1"), ("in_layers.2", "conv1"), ("out_layers.0", "norm2"),
                         ("out_layers.3", "conv2")):
        out.update(_same(f"{src}.time_stack.{ours}", f"{dst}.temporal_res_block.{theirs}"))
    out[f"{src}.mix_factor"] = (f"{dst}.time_mixer.mix_factor", None)
    return out


def _vae_attention(src: str, dst: str) -> NameMap:
    out = _same(f"{src}.norm", f"{dst}.group_norm")
    for ours, theirs in (("q", "to_q"), ("k", "to_k"), ("v", "to_v"), ("proj_out", "to_out.0")):
        out[f"{src}.{ours}.weight"] = (f"{dst}.{theirs}.weight", "squeeze")
        out[f"{src}.{ours}.bias"] = (f"{dst}.{theirs}.bias", None)
    return out


def vae_name_map(config: dict) -> NameMap:
    """Every tensor of SGM's VAE with the video decoder (without ``first_stage_model.``) for a diffusers
    ``AutoencoderKLTemporalDecoder`` with ``config``. Its ``quant_conv`` has no counterpart (SGM's video
    VAE has none): the loader sets it to the identity."""
    channels = list(config["block_out_channels"])
    per_block = config["layers_per_block"]
    levels = len(channels)
    out: NameMap = {}
    out.update(_same("encoder.conv_in", "encoder.conv_in"))
    ch = channels[0]
    for level in range(levels):
        for j in range(per_block):
            out.update(_vae_resblock(f"encoder.down.{level}.block.{j}", f"encoder.down_blocks.{level}.resnets.{j}", ch,
                                     channels[level]))
            ch = channels[level]
        if level < levels - 1:
            out.update(_same(f"encoder.down.{level}.downsample.conv", f"encoder.down_blocks.{level}.downsamplers.0.conv"))
    top = channels[-1]
    out.update(_vae_resblock("encoder.mid.block_1", "encoder.mid_block.resnets.0", top, top))
    out.update(_vae_attention("encoder.mid.attn_1", "encoder.mid_block.attentions.0"))
    out.update(_vae_resblock("encoder.mid.block_2", "encoder.mid_block.resnets.1", top, top))
    out.update(_same("encoder.norm_out", "encoder.conv_norm_out"))
    out.update(_same("encoder.conv_out", "encoder.conv_out"))

    out.update(_same("decoder.conv_in", "decoder.conv_in"))
    out.update(_vae_video_resblock("decoder.mid.block_1", "decoder.mid_block.resnets.0", top, top))
    out.update(_vae_attention("decoder.mid.attn_1", "decoder.mid_block.attentions.0"))
    out.update(_vae_video_resblock("decoder.mid.block_2", "decoder.mid_block.resnets.1", top, top))
    ch = top
    for up in range(levels):  # diffusers counts up blocks from the deepest; SGM's ``up`` from the shallowest
        level = levels - 1 - up
        for j in range(per_block + 1):
            out.update(_vae_video_resblock(f"decoder.up.{level}.block.{j}", f"decoder.up_blocks.{up}.resnets.{j}", ch,
                                           channels[level]))
            ch = channels[level]
        if level > 0:
            out.update(_same(f"decoder.up.{level}.upsample.conv", f"decoder.up_blocks.{up}.upsamplers.0.conv"))
    out.update(_same("decoder.norm_out", "decoder.conv_norm_out"))
    out.update(_same("decoder.conv_out", "decoder.conv_out"))
    out.update(_same("decoder.conv_out.time_mix_conv", "decoder.time_conv_out"))
    return out


def clip_name_map(config: dict, layout: str) -> NameMap:
    """Every tensor of the CLIP image encoder (without the visual prefix) for a transformers
    ``CLIPVisionModelWithProjection`` with ``config``; ``layout`` is ``"openclip"`` (Stability's files)
    or ``"transformers"`` (ComfyUI's saved files)."""
    layers = config["num_hidden_layers"]
    if layout == "transformers":
        names = ["vision_model.embeddings.class_embedding", "vision_model.embeddings.patch_embedding.weight",
                 "vision_model.embeddings.position_embedding.weight", "visual_projection.weight"]
        names += _params("vision_model.pre_layrnorm") + _params("vision_model.post_layernorm")
        for i in range(layers):
            base = f"vision_model.encoder.layers.{i}."
            for name in ("layer_norm1", "layer_norm2", "mlp.fc1", "mlp.fc2", "self_attn.q_proj", "self_attn.k_proj",
                         "self_attn.v_proj", "self_attn.out_proj"):
                names += _params(base + name)
        return {n: (n, None) for n in names}
    if layout != "openclip":
        raise ValueError(f"unknown CLIP layout {layout!r}")
    out: NameMap = {
        "class_embedding": ("vision_model.embeddings.class_embedding", None),
        "conv1.weight": ("vision_model.embeddings.patch_embedding.weight", None),
        "positional_embedding": ("vision_model.embeddings.position_embedding.weight", None),
        "proj": ("visual_projection.weight", "transpose"),
    }
    out.update(_same("ln_pre", "vision_model.pre_layrnorm"))
    out.update(_same("ln_post", "vision_model.post_layernorm"))
    for i in range(layers):
        src, dst = f"transformer.resblocks.{i}", f"vision_model.encoder.layers.{i}"
        for ours, theirs in (("ln_1", "layer_norm1"), ("ln_2", "layer_norm2"), ("mlp.c_fc", "mlp.fc1"),
                             ("mlp.c_proj", "mlp.fc2"), ("attn.out_proj", "self_attn.out_proj")):
            out.update(_same(f"{src}.{ours}", f"{dst}.{theirs}"))
        for part, name in enumerate(("q_proj", "k_proj", "v_proj")):
            # the fused projection is one source tensor for three targets: keyed by target, see expected_sources
            out[f"{src}.attn.in_proj_weight#{part}"] = (f"{dst}.self_attn.{name}.weight", ("split", part))
            out[f"{src}.attn.in_proj_bias#{part}"] = (f"{dst}.self_attn.{name}.bias", ("split", part))
    return out


def expected_sources(name_map: NameMap) -> set[str]:
    """The source tensor names a map reads (fused q/k/v counted once)."""
    return {k.split("#", 1)[0] for k in name_map}
