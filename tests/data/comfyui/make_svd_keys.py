"""Write the names and shapes of every tensor that ComfyUI's SVD img2vid loader reads from a single-file
checkpoint (``svd_keys.json``): its own model classes built at full size on the ``meta`` device, with the
prefixes its ``state_dict_for_saving`` gives them. The CLIP image encoder is listed in both layouts ComfyUI
reads: OpenCLIP's (Stability's files), turned into ComfyUI's by ``comfy.clip_vision.convert_to_transformers``
to check the list, and the transformers-style one that ComfyUI itself saves.

Run with a ComfyUI checkout's Python (see ``docs/comfyui.md``):
    COMFYUI_DIR=... $COMFY_PYTHON tests/data/comfyui/make_svd_keys.py
"""

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, os.environ["COMFYUI_DIR"])
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.argv[1:] = ["--cpu"]  # ComfyUI reads its options at import, when parsing is enabled
import comfy.options  # noqa: E402

comfy.options.enable_args_parsing()

import torch  # noqa: E402

import comfy.clip_vision  # noqa: E402
from comfy_svd import SVD_UNET  # noqa: E402
from comfy.ldm.models.autoencoder import AutoencodingEngine  # noqa: E402

PREFIX = "conditioner.embedders.0.open_clip.model.visual."


def shapes(module: torch.nn.Module, prefix: str) -> dict:
    return {prefix + k: list(v.shape) for k, v in module.state_dict().items()}


with torch.device("meta"):
    full = dict(SVD_UNET, dtype=torch.float32, device=torch.device("meta"))
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel
    import comfy.ops
    unet = UNetModel(**full, operations=comfy.ops.disable_weight_init)
    encoder = {"double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
               "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0}
    decoder = dict(encoder, video_kernel_size=[3, 1, 1], alpha=0.0)
    vae = AutoencodingEngine(regularizer_config={"target": "comfy.ldm.models.autoencoder.DiagonalGaussianRegularizer"},
                             encoder_config={"target": "comfy.ldm.modules.diffusionmodules.model.Encoder", "params": encoder},
                             decoder_config={"target": "comfy.ldm.modules.temporal_ae.VideoDecoder", "params": decoder})
    clip_json = Path(comfy.clip_vision.__file__).with_name("clip_vision_config_h.json")
    clip_config = json.loads(clip_json.read_text())
    from comfy.clip_model import CLIPVisionModelProjection
    clip = CLIPVisionModelProjection(clip_config, torch.float32, torch.device("meta"), comfy.ops.manual_cast)

clip_hf = {k: list(v.shape) for k, v in clip.state_dict().items()}
layers = clip_config["num_hidden_layers"]
width = clip_config["hidden_size"]


def openclip_layout() -> dict:
    """ComfyUI's CLIP keys as OpenCLIP names them (Stability's files), checked below by ComfyUI's own reader."""
    out = {"class_embedding": [width], "conv1.weight": clip_hf["vision_model.embeddings.patch_embedding.weight"],
           "positional_embedding": clip_hf["vision_model.embeddings.position_embedding.weight"],
           "ln_pre.weight": [width], "ln_pre.bias": [width], "ln_post.weight": [width], "ln_post.bias": [width],
           "proj": clip_hf["visual_projection.weight"][::-1]}
    for i in range(layers):
        b = f"transformer.resblocks.{i}."
        out[b + "attn.in_proj_weight"] = [3 * width, width]
        out[b + "attn.in_proj_bias"] = [3 * width]
        for name, hf in (("ln_1", "layer_norm1"), ("ln_2", "layer_norm2"), ("mlp.c_fc", "mlp.fc1"),
                         ("mlp.c_proj", "mlp.fc2"), ("attn.out_proj", "self_attn.out_proj")):
            for p in ("weight", "bias"):
                out[b + f"{name}.{p}"] = clip_hf[f"vision_model.encoder.layers.{i}.{hf}.{p}"]
    return {PREFIX + k: v for k, v in out.items()}


openclip = openclip_layout()
converted = comfy.clip_vision.convert_to_transformers({k: torch.empty(v, device="meta") for k, v in openclip.items()}, PREFIX)
assert {k: list(v.shape) for k, v in converted.items()} == clip_hf, "ComfyUI does not read the OpenCLIP layout as listed"

data = {
    "source": "ComfyUI model classes at full size (SVD img2vid), meta device",
    "unet": shapes(unet, "model.diffusion_model."),
    "vae": shapes(vae, "first_stage_model."),
    "clip_openclip": openclip,
    "clip_comfyui": {PREFIX + k: v for k, v in clip_hf.items()},
}
out = Path(__file__).with_name("svd_keys.json")
out.write_text(json.dumps(data, indent=0, sort_keys=True))
print(out, {k: len(v) for k, v in data.items() if isinstance(v, dict)})
