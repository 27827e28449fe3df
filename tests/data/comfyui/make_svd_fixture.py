"""Write a small single-file SVD checkpoint in the original layout, and ComfyUI's own outputs on fixed inputs.

ComfyUI's SVD model classes (its video UNet, its VAE with the video decoder, its CLIP vision model) are
built at a small size, filled with seeded random weights, rounded to float16 (as Stability's files are),
and saved with ComfyUI's own ``state_dict_for_saving`` and ``save_torch_file``:

- ``svd_small_fixture.safetensors``: the checkpoint (float16);
- ``svd_small_clip_openclip.safetensors``: the same CLIP encoder in OpenCLIP's layout (Stability's files),
  checked to read back exactly through ComfyUI's ``convert_to_transformers``;
- ``svd_small_outputs.safetensors``: float32 inputs and what ComfyUI computes from them, in float32 with
  the same (rounded) weights: the raw UNet output, the VAE's encoder moments and video decode, and the
  CLIP image embedding.

``tests/test_single_file.py`` converts the checkpoint with sgi2v and checks that its components give these
outputs. Run with a ComfyUI checkout's Python (see ``docs/comfyui.md``):

    COMFYUI_DIR=... $COMFY_PYTHON tests/data/comfyui/make_svd_fixture.py
"""

import math
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
import comfy.model_base  # noqa: E402
import comfy.ops  # noqa: E402
import comfy.supported_models  # noqa: E402
import comfy.utils  # noqa: E402
from comfy.clip_model import CLIPVisionModelProjection  # noqa: E402
from comfy.ldm.models.autoencoder import AutoencodingEngine  # noqa: E402
from comfy_svd import SVD_UNET  # noqa: E402

HERE = Path(__file__).resolve().parent
FRAMES = 4

# SVD img2vid's layout (4 levels, 2 res blocks each, attention on all but the deepest level) at 32
# channels; one attention head per block (ComfyUI's num_heads=1), which is what a head width of 64 gives
# at these widths.
UNET = dict(model_channels=32, channel_mult=[1, 1, 1, 1], num_res_blocks=[2, 2, 2, 2], context_dim=32,
            num_heads=1, num_head_channels=-1)
VAE_ENCODER = {"double_z": True, "z_channels": 4, "resolution": 64, "in_channels": 3, "out_ch": 3, "ch": 32,
               "ch_mult": [1, 1, 1, 1], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0}
CLIP = {"hidden_size": 64, "image_size": 224, "intermediate_size": 128, "num_attention_heads": 1, "num_channels": 3,
        "num_hidden_layers": 2, "patch_size": 14, "projection_dim": 32, "hidden_act": "gelu", "layer_norm_eps": 1e-5,
        "model_type": "clip_vision_model"}


def fill(module: torch.nn.Module, seed: int) -> None:
    """Seeded weights of a sensible scale (ComfyUI's layers are created uninitialised), rounded to float16."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(module.named_parameters()):
            if name.endswith("mix_factor"):
                value = torch.randn(p.shape, generator=g)
            elif p.dim() >= 2:
                fan_in = math.prod(p.shape[1:])
                value = torch.randn(p.shape, generator=g) / math.sqrt(fan_in)
            elif "norm" in name or name.split(".")[-2].startswith(("ln", "layer_norm")) or "in_layers.0" in name \
                    or "out_layers.0" in name or name.startswith("out.0"):
                value = (1 + 0.1 * torch.randn(p.shape, generator=g)) if name.endswith("weight") else \
                    0.1 * torch.randn(p.shape, generator=g)
            else:
                value = 0.1 * torch.randn(p.shape, generator=g)
            p.copy_(value.half().float())


def openclip_layout(sd: dict, layers: int) -> dict:
    """The CLIP vision tensors named as OpenCLIP names them (q, k and v fused, the projection transposed)."""
    out = {"class_embedding": sd["vision_model.embeddings.class_embedding"],
           "conv1.weight": sd["vision_model.embeddings.patch_embedding.weight"],
           "positional_embedding": sd["vision_model.embeddings.position_embedding.weight"],
           "proj": sd["visual_projection.weight"].t()}
    for ours, theirs in (("ln_pre", "pre_layrnorm"), ("ln_post", "post_layernorm")):
        for p in ("weight", "bias"):
            out[f"{ours}.{p}"] = sd[f"vision_model.{theirs}.{p}"]
    for i in range(layers):
        src, dst = f"vision_model.encoder.layers.{i}.", f"transformer.resblocks.{i}."
        for ours, theirs in (("ln_1", "layer_norm1"), ("ln_2", "layer_norm2"), ("mlp.c_fc", "mlp.fc1"),
                             ("mlp.c_proj", "mlp.fc2"), ("attn.out_proj", "self_attn.out_proj")):
            for p in ("weight", "bias"):
                out[f"{dst}{ours}.{p}"] = sd[f"{src}{theirs}.{p}"]
        for p in ("weight", "bias"):
            out[f"{dst}attn.in_proj_{p}"] = torch.cat([sd[f"{src}self_attn.{n}_proj.{p}"] for n in "qkv"])
    return out


def main() -> None:
    torch.manual_seed(0)
    # what ComfyUI's model detection gives for a real SVD file, at the small size
    unet_config = dict(SVD_UNET)
    unet_config.update(UNET)
    config = comfy.supported_models.SVD_img2vid(unet_config)
    config.unet_config.update(UNET)  # its unet_extra_config sets SVD's 64-wide heads over ours
    config.set_inference_dtype(torch.float32, None)
    model = comfy.model_base.SVD_img2vid(config, device=torch.device("cpu"))
    unet = model.diffusion_model
    fill(unet, 1)
    decoder = dict(VAE_ENCODER, video_kernel_size=[3, 1, 1], alpha=0.0)
    vae = AutoencodingEngine(
        regularizer_config={"target": "comfy.ldm.models.autoencoder.DiagonalGaussianRegularizer"},
        encoder_config={"target": "comfy.ldm.modules.diffusionmodules.model.Encoder", "params": VAE_ENCODER},
        decoder_config={"target": "comfy.ldm.modules.temporal_ae.VideoDecoder", "params": decoder})
    fill(vae, 2)
    clip = CLIPVisionModelProjection(CLIP, torch.float32, torch.device("cpu"), comfy.ops.manual_cast)
    fill(clip, 3)

    sd = model.state_dict_for_saving(vae_state_dict=vae.state_dict(), clip_vision_state_dict=clip.state_dict())
    sd = {k: v.half().contiguous() for k, v in sd.items()}
    comfy.utils.save_torch_file(sd, str(HERE / "svd_small_fixture.safetensors"))

    # Stability's files hold the CLIP encoder in OpenCLIP's layout; ComfyUI's reader of that layout
    # (convert_to_transformers) must give back exactly the tensors above
    prefix = config.clip_vision_prefix
    openclip = openclip_layout(clip.state_dict(), CLIP["num_hidden_layers"])
    back = comfy.clip_vision.convert_to_transformers({prefix + k: v.clone() for k, v in openclip.items()}, prefix)
    assert set(back) == set(clip.state_dict()) and all(torch.equal(back[k], v) for k, v in clip.state_dict().items())
    comfy.utils.save_torch_file({prefix + k: v.half().contiguous() for k, v in openclip.items()},
                                str(HERE / "svd_small_clip_openclip.safetensors"))

    g = torch.Generator().manual_seed(10)
    out = {}
    with torch.no_grad():
        # the UNet: noisy latent and the image latent, concatenated (8 channels), 4 frames of 8 x 8
        x = torch.randn(FRAMES, 8, 8, 8, generator=g)
        context = torch.randn(1, 1, 32, generator=g).repeat(FRAMES, 1, 1)  # one image embedding for every frame
        y = model.encode_adm(fps=7, motion_bucket_id=127, augmentation_level=0.02).repeat(FRAMES, 1)
        t = torch.full((FRAMES,), 0.25 * math.log(80.0))
        out["unet.x"], out["unet.context"], out["unet.t"] = x, context, t
        out["unet.added_time_ids"] = torch.tensor([6.0, 127.0, 0.02])
        out["unet.out"] = unet(x, timesteps=t, context=context, y=y, num_video_frames=FRAMES,
                               image_only_indicator=torch.zeros(1, FRAMES))
        # the VAE: encoder moments of frames in [-1, 1]; video decode of 4 latent frames
        frames = torch.rand(FRAMES, 3, 32, 32, generator=g) * 2 - 1
        out["vae.frames"], out["vae.moments"] = frames, vae.encoder(frames)
        z = torch.randn(FRAMES, 4, 4, 4, generator=g)
        out["vae.z"], out["vae.decoded"] = z, vae.decode(z)
        # CLIP: normalised pixels in, projected image embedding out
        pixels = torch.randn(1, 3, 224, 224, generator=g)
        out["clip.pixels"], out["clip.image_embeds"] = pixels, clip(pixels)[2]
    comfy.utils.save_torch_file({k: v.float().contiguous() for k, v in out.items()},
                                str(HERE / "svd_small_outputs.safetensors"))
    for name in ("svd_small_fixture.safetensors", "svd_small_outputs.safetensors", "svd_small_clip_openclip.safetensors"):
        print(name, (HERE / name).stat().st_size, "bytes")
    print("tensors:", len(sd), {k: tuple(v.shape) for k, v in out.items() if not k.endswith(".x")})


if __name__ == "__main__":
    main()
