"""The diffusers configs of a single-file SVD checkpoint, read from its tensors' shapes.

Stability's three files have SVD's architecture (the bundled configs in ``sgi2v/configs/svd``); smaller
models of the same layout (test fixtures, distilled models) get the same configs with the sizes their
tensors show. What weights cannot show follows SVD's conventions: attention heads 64 wide in the UNet
(at least one head), CLIP ViT-H's 16 heads of 80 (other widths: heads 64 wide), the VAE's scaling
factor 0.18215.
"""

from __future__ import annotations

import math
import re

from ..configs import svd_config
from .convert import CLIP_PREFIX, IGNORED_PREFIXES, UNET_PREFIX, VAE_PREFIX, clip_name_map, expected_sources, \
    unet_name_map, vae_name_map
from .reader import Contents, SingleFileError, SVDFile, inspect_single_file, read_contents

__all__ = ["infer_configs", "name_maps", "check_names", "check_single_file", "single_file_configs"]


def _sub(shapes: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in shapes.items() if k.startswith(prefix)}


def _count(keys, pattern: str) -> int:
    rx = re.compile(pattern)
    return len({m.group(1) for k in keys if (m := rx.match(k))})


def _unet_config(s: dict, num_frames: int) -> dict:
    # input blocks: conv_in, then per level its res blocks and (but the last level) a downsampler
    blocks = sorted({int(m.group(1)) for k in s if (m := re.match(r"input_blocks\.(\d+)\.", k))})
    levels, per_block, channels, attention = [], 0, [], []
    current: list[int] = []
    for i in blocks[1:]:
        if f"input_blocks.{i}.0.op.weight" in s:
            levels.append(current)
            current = []
        else:
            current.append(i)
    levels.append(current)
    per_block = len(levels[0])
    for level in levels:
        if len(level) != per_block:
            raise ValueError("levels with different numbers of res blocks")
        channels.append(s[f"input_blocks.{level[0]}.0.out_layers.3.weight"][0])
        attention.append(f"input_blocks.{level[0]}.1.proj_in.weight" in s)
    first_attn = next((f"input_blocks.{lv[0]}.1" for lv, a in zip(levels, attention) if a), "middle_block.1")
    depth = _count(s, rf"{re.escape(first_attn)}\.transformer_blocks\.(\d+)\.")
    label = s["label_emb.0.0.weight"]
    config = svd_config("unet", num_frames)
    config.update(
        in_channels=s["input_blocks.0.0.weight"][1],
        out_channels=s["out.2.weight"][0],
        block_out_channels=channels,
        layers_per_block=per_block,
        down_block_types=["CrossAttnDownBlockSpatioTemporal" if a else "DownBlockSpatioTemporal" for a in attention],
        up_block_types=["CrossAttnUpBlockSpatioTemporal" if a else "UpBlockSpatioTemporal" for a in attention[::-1]],
        cross_attention_dim=s[f"{first_attn}.transformer_blocks.0.attn2.to_k.weight"][1],
        transformer_layers_per_block=depth,
        num_attention_heads=[max(1, c // 64) for c in channels],
        projection_class_embeddings_input_dim=label[1],
        addition_time_embed_dim=label[1] // 3,
    )
    return config


def _vae_config(s: dict) -> dict:
    levels = _count(s, r"encoder\.down\.(\d+)\.")
    per_block = _count(s, r"encoder\.down\.0\.block\.(\d+)\.")
    config = svd_config("vae")
    config.update(
        in_channels=s["encoder.conv_in.weight"][1],
        out_channels=s["decoder.conv_out.weight"][0],
        latent_channels=s["decoder.conv_in.weight"][1],
        layers_per_block=per_block,
        block_out_channels=[s[f"encoder.down.{i}.block.0.conv2.weight"][0] for i in range(levels)],
        down_block_types=["DownEncoderBlock2D"] * levels,
    )
    return config


def _clip_config(s: dict, layout: str) -> dict:
    if layout == "transformers":
        emb = "vision_model.embeddings."
        width = s[emb + "class_embedding"][0]
        patch = s[emb + "patch_embedding.weight"][2]
        positions = s[emb + "position_embedding.weight"][0]
        layers = _count(s, r"vision_model\.encoder\.layers\.(\d+)\.")
        inner = s["vision_model.encoder.layers.0.mlp.fc1.weight"][0]
        projection = s["visual_projection.weight"][0]
    else:
        width = s["class_embedding"][0]
        patch = s["conv1.weight"][2]
        positions = s["positional_embedding"][0]
        layers = _count(s, r"transformer\.resblocks\.(\d+)\.")
        inner = s["transformer.resblocks.0.mlp.c_fc.weight"][0]
        projection = s["proj"][1]
    side = math.isqrt(positions - 1)
    if side * side != positions - 1:
        raise ValueError(f"{positions} position embeddings are not a square grid plus one")
    config = svd_config("image_encoder")
    config.update(hidden_size=width, num_hidden_layers=layers, intermediate_size=inner, patch_size=patch,
                  image_size=side * patch, projection_dim=projection,
                  num_attention_heads=16 if width == 1280 else max(1, width // 64))
    return config


def infer_configs(contents: Contents, svd: SVDFile, num_frames: int | None = None) -> dict[str, dict]:
    """The ``unet``, ``vae`` and ``image_encoder`` configs of the checkpoint (SVD's, with its sizes)."""
    try:
        return {
            "unet": _unet_config(_sub(contents.shapes, UNET_PREFIX), num_frames or svd.num_frames),
            "vae": _vae_config(_sub(contents.shapes, VAE_PREFIX)),
            "image_encoder": _clip_config(_sub(contents.shapes, CLIP_PREFIX), svd.clip_layout),
        }
    except (KeyError, IndexError, ValueError) as err:
        detail = f"no tensor {err.args[0]!r}" if isinstance(err, KeyError) else str(err)
        raise SingleFileError(f"{contents.path}: an SVD checkpoint of an unknown layout ({detail})") from None


def name_maps(configs: dict, layout: str) -> dict[str, tuple[str, dict]]:
    """Component -> (prefix in the file, name map)."""
    return {"unet": (UNET_PREFIX, unet_name_map(configs["unet"])),
            "vae": (VAE_PREFIX, vae_name_map(configs["vae"])),
            "image_encoder": (CLIP_PREFIX, clip_name_map(configs["image_encoder"], layout))}


def check_names(contents: Contents, maps: dict) -> None:
    """Every tensor of the file is converted or known to be unused, and every tensor a component needs is
    there; else :class:`SingleFileError` naming how many and the first."""
    wanted = {prefix + name for prefix, m in maps.values() for name in expected_sources(m)}
    present = set(contents.shapes)
    left = sorted(k for k in present - wanted if not k.startswith(IGNORED_PREFIXES))
    if left:
        raise SingleFileError(f"{contents.path}: {len(left)} tensor(s) not part of an SVD image-to-video model were "
                              f"left unconverted, first {left[0]!r} (a modified or different model?)")
    missing = sorted(wanted - present)
    if missing:
        raise SingleFileError(f"{contents.path}: {len(missing)} tensor(s) of the SVD model are missing, first "
                              f"{missing[0]!r} (a damaged or partial checkpoint?)")


def single_file_configs(path: str, num_frames: int | None = None) -> tuple[SVDFile, dict]:
    """The checked file and its ``unet``, ``vae`` and ``image_encoder`` configs (no weights read)."""
    svd = inspect_single_file(path)
    contents = read_contents(path)
    configs = infer_configs(contents, svd, num_frames)
    check_names(contents, name_maps(configs, svd.clip_layout))
    return svd, configs


def check_single_file(path: str) -> SVDFile:
    """Everything that can be checked without reading weights: the file is an SVD image-to-video checkpoint
    whose every tensor has a place (:class:`SingleFileError`, one line naming the file, otherwise)."""
    return single_file_configs(path)[0]
