"""Single-file SVD checkpoints in Stability's original layout: the key conversion against ComfyUI's own
model classes (full-size names and shapes; a small checkpoint ComfyUI saved, with its outputs), the
frame count and dtype, and one-line errors for files that are not SVD checkpoints.

The data in ``tests/data/comfyui`` was written by a real ComfyUI (``make_svd_keys.py``,
``make_svd_fixture.py``); nothing of ComfyUI is needed here.
"""

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from sgi2v.cli import main
from sgi2v.configs import svd_config
from sgi2v.single_file import SingleFileError, check_single_file, inspect_single_file, load_components
from sgi2v.single_file.architecture import check_names, infer_configs, name_maps
from sgi2v.single_file.convert import CLIP_PREFIX, IGNORED_PREFIXES
from sgi2v.single_file.reader import Contents, SVDFile

DATA = Path(__file__).parent / "data" / "comfyui"
FIXTURE = DATA / "svd_small_fixture.safetensors"


def _full_size(clip: str) -> dict:
    keys = json.loads((DATA / "svd_keys.json").read_text())
    shapes = {**keys["unet"], **keys["vae"], **keys[clip]}
    return {k: tuple(v) for k, v in shapes.items()}


@pytest.mark.parametrize("layout, clip", [("openclip", "clip_openclip"), ("transformers", "clip_comfyui")])
def test_full_size_checkpoints_convert_to_the_bundled_svd_architecture(layout, clip):
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKLTemporalDecoder, UNetSpatioTemporalConditionModel
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    shapes = _full_size(clip)
    # what Stability's files carry besides: OpenCLIP's text side and the conditioner's copy of the encoder
    shapes.update({"conditioner.embedders.0.open_clip.model.logit_scale": (), "conditioner.embedders.3.encoder.encoder."
                   "conv_in.weight": (128, 3, 3, 3)})
    contents = Contents("svd_xt.safetensors", shapes, {k: "float16" for k in shapes})
    svd = SVDFile("svd_xt.safetensors", layout, "float16", 25, "file name", len(shapes))
    configs = infer_configs(contents, svd)
    for component in ("unet", "vae", "image_encoder"):  # read from the shapes: exactly SVD's (XT: 25 frames)
        assert configs[component] == svd_config(component, 25), component
    maps = name_maps(configs, layout)
    check_names(contents, maps)  # every tensor has a place, none is missing
    with init_empty_weights():
        models = {"unet": UNetSpatioTemporalConditionModel.from_config(configs["unet"]),
                  "vae": AutoencoderKLTemporalDecoder.from_config(configs["vae"]),
                  "image_encoder": CLIPVisionModelWithProjection(CLIPVisionConfig(
                      **{k: v for k, v in configs["image_encoder"].items() if k != "architectures"}))}
    for component, (prefix, name_map) in maps.items():
        targets = {k: tuple(v.shape) for k, v in models[component].state_dict().items()}
        converted = {}
        for source, (target, transform) in name_map.items():
            shape = shapes[prefix + source.split("#")[0]]
            if transform == "squeeze":
                shape = shape[:2]
            elif transform == "transpose":
                shape = shape[::-1]
            elif isinstance(transform, tuple):
                shape = (shape[0] // 3, *shape[1:])
            converted[target] = shape
        expected = {k: v for k, v in targets.items() if not k.startswith("quant_conv.")}  # SGM's video VAE has none
        assert converted == expected, component


def test_a_tensor_left_unconverted_or_missing_is_an_error():
    shapes = _full_size("clip_openclip")
    svd = SVDFile("svd.safetensors", "openclip", "float16", 14, "file name", len(shapes))
    configs = infer_configs(Contents("svd.safetensors", shapes, {}), svd)
    maps = name_maps(configs, "openclip")
    extra = dict(shapes, **{"model.diffusion_model.input_blocks.1.0.lora_up.weight": (4, 4)})
    with pytest.raises(SingleFileError, match=r"1 tensor\(s\) not part of an SVD image-to-video model were left "
                                              r"unconverted, first 'model.diffusion_model.input_blocks.1.0.lora_up.weight'"):
        check_names(Contents("svd.safetensors", extra, {}), maps)
    missing = {k: v for k, v in shapes.items() if not k.endswith("time_mixer.mix_factor")}
    with pytest.raises(SingleFileError, match=r"tensor\(s\) of the SVD model are missing, first '.*mix_factor'"):
        check_names(Contents("svd.safetensors", missing, {}), maps)
    assert all(p.startswith(("conditioner.embedders.0.open_clip.model.", "conditioner.embedders.3.")) for p in IGNORED_PREFIXES)


@pytest.fixture(scope="module")
def converted():
    return load_components(str(FIXTURE), dtype=torch.float32)


@pytest.fixture(scope="module")
def comfyui_outputs():
    return load_file(str(DATA / "svd_small_outputs.safetensors"))


def test_the_unet_gives_comfyuis_output(converted, comfyui_outputs):
    o = comfyui_outputs
    with torch.no_grad():
        out = converted["unet"](o["unet.x"][None], o["unet.t"][0], encoder_hidden_states=o["unet.context"][:1],
                                added_time_ids=o["unet.added_time_ids"][None]).sample[0]
    # float32 against float32; the two attention implementations sum in different orders
    torch.testing.assert_close(out, o["unet.out"], atol=2e-3, rtol=1e-3)


def test_the_vae_gives_comfyuis_encoding_and_video_decode(converted, comfyui_outputs):
    o, vae = comfyui_outputs, converted["vae"]
    with torch.no_grad():
        posterior = vae.encode(o["vae.frames"]).latent_dist
        decoded = vae.decode(o["vae.z"], num_frames=o["vae.z"].shape[0]).sample
    torch.testing.assert_close(torch.cat([posterior.mean, posterior.logvar], 1), o["vae.moments"], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(decoded, o["vae.decoded"], atol=1e-4, rtol=1e-4)


def test_the_image_encoder_gives_comfyuis_embedding_in_both_layouts(converted, comfyui_outputs, tmp_path):
    o = comfyui_outputs
    with torch.no_grad():
        torch.testing.assert_close(converted["image_encoder"](o["clip.pixels"]).image_embeds, o["clip.image_embeds"],
                                   atol=1e-4, rtol=1e-4)
    # Stability's files: the same encoder in OpenCLIP's layout (checked by ComfyUI's reader when written)
    tensors = {k: v for k, v in load_file(str(FIXTURE)).items() if not k.startswith(CLIP_PREFIX)}
    tensors.update(load_file(str(DATA / "svd_small_clip_openclip.safetensors")))
    path = tmp_path / "svd_openclip.safetensors"
    save_file(tensors, str(path))
    assert inspect_single_file(path).clip_layout == "openclip"
    encoder = load_components(str(path), dtype=torch.float32)["image_encoder"]
    with torch.no_grad():
        torch.testing.assert_close(encoder(o["clip.pixels"]).image_embeds, o["clip.image_embeds"], atol=1e-4, rtol=1e-4)


def test_dtype_and_frames_come_from_the_file(tmp_path):
    from sgi2v.loading import resolve_dtype
    from sgi2v.pipeline import SGI2VPipeline
    from sgi2v.settings import resolve_settings

    pipe = SGI2VPipeline.from_single_file(str(FIXTURE))
    assert pipe.unet.dtype == pipe.vae.dtype == pipe.image_encoder.dtype == torch.float16  # the file's own
    assert SGI2VPipeline.from_single_file(str(FIXTURE), torch_dtype=torch.float32).unet.dtype == torch.float32
    assert resolve_dtype("auto", torch.device("cuda"), str(FIXTURE)) == torch.float16
    assert resolve_dtype("float32", torch.device("cuda"), str(FIXTURE)) == torch.float32
    assert resolve_dtype("auto", torch.device("cpu"), str(FIXTURE)) == torch.float32  # half precision is slow there

    for name, frames in (("svd.safetensors", 14), ("svd_xt.safetensors", 25), ("svd_xt_1_1.safetensors", 25),
                         ("SVD-XT.safetensors", 25), ("my_next_model.safetensors", 14)):
        shutil.copy(FIXTURE, tmp_path / name)
        assert inspect_single_file(tmp_path / name).num_frames == frames, name
        settings, _ = resolve_settings({}, model=str(tmp_path / name))
        assert settings.num_frames == frames and (settings.height, settings.width) == (576, 1024)
        assert resolve_settings({"num_frames": 8}, model=str(tmp_path / name))[0].num_frames == 8
    tensors = load_file(str(FIXTURE))
    save_file(tensors, str(tmp_path / "renamed.safetensors"), metadata={"modelspec.architecture": "stable-video-diffusion-img2vid-xt"})
    assert inspect_single_file(tmp_path / "renamed.safetensors").num_frames == 25


def test_a_ckpt_loads_only_through_weights_only(tmp_path, converted):
    tensors = load_file(str(FIXTURE))
    torch.save({"state_dict": tensors}, tmp_path / "svd.ckpt")
    parts = load_components(str(tmp_path / "svd.ckpt"), dtype=torch.float32)
    for component in ("unet", "vae", "image_encoder"):
        mine, theirs = parts[component].state_dict(), converted[component].state_dict()
        assert all(torch.equal(mine[k], theirs[k]) for k in theirs), component

    class Payload:  # an object in the pickle: refused by weights_only loading, never executed
        def __reduce__(self):
            return (print, ("ran",))

    torch.save({"state_dict": tensors, "extra": Payload()}, tmp_path / "unsafe.ckpt")
    with pytest.raises(SingleFileError, match=r"unsafe.ckpt: cannot load this .ckpt safely \(weights_only=True refused"):
        check_single_file(tmp_path / "unsafe.ckpt")


def _bad_files(folder: Path) -> dict:
    save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(8, 4, 3, 3),
               "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight": torch.zeros(10, 8),
               "first_stage_model.encoder.conv_in.weight": torch.zeros(8, 3, 3, 3)}, str(folder / "sd15.safetensors"))
    unet = {k: v for k, v in load_file(str(FIXTURE)).items() if k.startswith("model.diffusion_model.")}
    save_file({k[len("model.diffusion_model."):]: v for k, v in unet.items()}, str(folder / "unet.safetensors"))
    save_file(unet, str(folder / "unet_only.safetensors"))
    data = FIXTURE.read_bytes()
    (folder / "truncated.safetensors").write_bytes(data[: len(data) // 2])
    (folder / "notes.safetensors").write_text("my notes about svd\n" * 40)
    (folder / "empty.safetensors").write_bytes(b"")
    return {
        "sd15": "sd15.safetensors: a Stable Diffusion 1.x checkpoint, not a Stable Video Diffusion image-to-video checkpoint",
        "unet": f"unet.safetensors: a bare video UNet ({len(unet)} tensors, no VAE or image encoder), not a Stable Video "
                "Diffusion checkpoint",
        "unet_only": "unet_only.safetensors: an SVD UNet without its VAE and CLIP image encoder",
        "truncated": f"truncated.safetensors: truncated: its header lists {len(data):,} bytes, the file has "
                     f"{len(data) // 2:,}",
        "notes": "notes.safetensors: not a safetensors file (no valid header: it may be a renamed or truncated file)",
        "empty": "empty.safetensors: empty file (0 bytes), not a model checkpoint",
        "missing": "missing.safetensors: model file not found",
    }


def test_files_that_are_not_svd_checkpoints_get_one_line_and_exit_2(inputs, capsys):
    image, traj, out = inputs
    for name, message in _bad_files(out.parent).items():
        video = out / f"{name}.mp4"
        code = main(["generate", str(image), "--traj", str(traj), "--model", str(out.parent / f"{name}.safetensors"),
                     "-o", str(video)])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and message in err[0], (name, err)
        assert list(out.iterdir()) == []  # nothing written


def test_generate_and_batch_run_the_fixture_and_record_its_hash(inputs, capsys):
    from sgi2v.video import read_video

    image, traj, out = inputs
    model = str(out.parent / "svd_small_fixture.safetensors")
    shutil.copy(FIXTURE, model)
    fast = ["--model", model, "--height", "64", "--width", "64", "--num-frames", "4", "--num-inference-steps", "3",
            "--optimize-timesteps", "2", "--iterations", "1"]
    assert main(["generate", str(image), "--traj", str(traj), "-o", str(out / "v.mp4"), *fast]) == 0
    assert read_video(out / "v.mp4").shape == (4, 64, 64, 3)
    record = json.loads((out / "v.json").read_text())
    assert record["model"] == model and record["model_sha256"] == hashlib.sha256(FIXTURE.read_bytes()).hexdigest()

    (out.parent / "m.jsonl").write_text(json.dumps({"id": "a", "image": str(image), "traj": str(traj)}) + "\n")
    assert main(["batch", str(out.parent / "m.jsonl"), "-o", str(out / "batch"), *fast]) == 0
    assert json.loads((out / "batch" / "a.json").read_text())["model_sha256"] == record["model_sha256"]
    capsys.readouterr()
    (out.parent / "sd15.safetensors").write_bytes(b"")  # a bad file stops a batch before anything is written
    assert main(["batch", str(out.parent / "m.jsonl"), "-o", str(out / "batch2"), "--model",
                 str(out.parent / "sd15.safetensors")]) == 2
    assert "empty file" in capsys.readouterr().err and not (out / "batch2").exists()


def test_the_web_app_and_the_comfyui_node_load_a_file(tmp_path):
    from sgi2v.comfyui.nodes import LoadModel
    from sgi2v.ui.app import PipelineCache, build_app

    model = str(tmp_path / "svd_xt.safetensors")
    shutil.copy(FIXTURE, model)
    app = build_app(model=model, device="cpu", dtype="float32", root=tmp_path / "ui")
    assert model in app.sgi2v.models
    on_model = next(f.fn for f in app.fns.values() if f.name == "on_model")
    assert on_model(model, 14, 128, 128) == (25, 1024, 576)  # SVD-XT's native frames and size
    pipe = PipelineCache().get(model, torch.device("cpu"), torch.float32, 25)
    assert type(pipe).__name__ == "SGI2VPipeline" and pipe.unet.config.num_frames == 25

    with torch.inference_mode():  # as ComfyUI runs nodes
        (first,) = LoadModel().load(model, device="cpu", dtype="float32", offload=False)
        (second,) = LoadModel().load(model, device="cpu", dtype="float32", offload=False)
    assert second is first and first.patcher is None  # one copy; ComfyUI's manager only inside ComfyUI
    assert first.pipe.unet.dtype == torch.float32
    with pytest.raises(SingleFileError, match="empty file"):
        (tmp_path / "bad.safetensors").write_bytes(b"")
        LoadModel().load(str(tmp_path / "bad.safetensors"), device="cpu", dtype="auto", offload=False)
