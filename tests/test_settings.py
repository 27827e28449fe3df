"""One schema of settings: names on every surface, record -> manifest round trip, checkpointing tri-state, image fit."""

import datetime
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sgi2v.cli import build_parser, main
from sgi2v.config import SGI2VConfig
from sgi2v.fitting import Fit
from sgi2v.generation import prepare_inputs
from sgi2v.schema import flag
from sgi2v.settings import GenerationSettings, resolve_settings, setting_specs, settings_table

ROOT = Path(__file__).resolve().parent.parent
FAST = ["--model", "tiny-random", "--height", "64", "--width", "128", "--num-frames", "4", "--num-inference-steps", "3",
        "--optimize-timesteps", "2", "--iterations", "1", "--device", "cpu"]


# -- one name everywhere ----------------------------------------------------------------------------

def _help(command: str) -> str:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    return sub.format_help()


@pytest.mark.parametrize("command", ["generate", "batch"])
def test_every_setting_is_an_option_named_after_it(command):
    text = _help(command)
    for name, (_, spec) in setting_specs().items():
        assert flag(name) in text, name
        for alias in spec.aliases:
            assert flag(alias) in text, alias


def test_docs_hold_the_generated_settings_table_and_the_manifest_docs_name_every_setting():
    table = (ROOT / "docs" / "settings.md").read_text()
    assert settings_table() in table, "docs/settings.md is out of date: paste sgi2v.settings.settings_table()"
    batch_docs = (ROOT / "docs" / "batch.md").read_text()
    assert "settings.md" in batch_docs
    for name in setting_specs():
        assert f"`{name}`" in table


def test_the_form_has_one_control_per_setting_named_after_it(tmp_path):
    pytest.importorskip("gradio")
    from sgi2v.ui.app import build_app, form_settings

    demo = build_app(model="tiny-random", device="cpu", dtype="float32", root=tmp_path)
    ids = {getattr(block, "elem_id", None) for block in demo.blocks.values()}
    assert set(form_settings()) <= ids
    assert {"device", "dtype", "threads"} & set(form_settings()) == set()  # the server decides those


def test_aliases_and_names_give_the_same_settings():
    a = resolve_settings({"steps": 25, "frames": 6, "lr": 0.1, "hf_reinit": False, "cutoff": 0.3}, model="tiny-random")
    b = resolve_settings({"num_inference_steps": "25", "num_frames": "6", "learning_rate": "0.1", "high_frequency_reinit": "false",
                          "low_pass_cutoff": "0.3"}, model="tiny-random")
    assert a == b
    assert a[1].optimize_timesteps == SGI2VConfig().scaled_to_steps(25).optimize_timesteps  # window moved with the steps
    with pytest.raises(ValueError, match="'steps' and 'num_inference_steps' are the same setting"):
        resolve_settings({"steps": 25, "num_inference_steps": 25})


@pytest.mark.parametrize("values, message", [
    ({"seed": -1}, r"seed: expected an integer from 0 to 9\.22337e\+18, got -1"),
    ({"height": 100}, "height: expected an integer from 64 to 4096, a multiple of 64, got 100"),
    ({"optimize_timesteps": "30-x"}, "optimize_timesteps: expected timesteps like 30-45"),
    ({"optimize_timesteps": [60]}, r"optimize_timesteps: \[60\] exceed num_inference_steps=50"),
    ({"feature_layers": "up_block.2.attentions.1"}, "feature_layers: 'up_block.2.attentions.1' is not a spatial transformer"),
    ({"feature_layers": "up_blocks.0.attentions.0"}, "is not a spatial transformer of the SVD UNet"),
    ({"image_fit": "zoom"}, "image_fit: expected one of stretch, crop, pad"),
    ({"feature_kind": "dift"}, "feature_kind: expected one of aligned, self_attention, layer_output, got 'dift'"),
    ({"gradient_checkpointing": "maybe"}, "gradient_checkpointing: expected one of auto, on, off"),
    ({"dtype": "fp8"}, "dtype: expected one of auto, float32, float16, bfloat16"),
    ({"device": "tpu"}, "device: expected one of auto, cpu, cuda, mps"),
    ({"learning_rate": float("nan")}, "learning_rate: expected a number"),
    ({"stepz": 3}, "unknown setting 'stepz'"),
])
def test_bad_values_are_named(values, message):
    with pytest.raises(ValueError, match=message):
        resolve_settings(values, model="stabilityai/stable-video-diffusion-img2vid", source="m.jsonl: line 3")
    with pytest.raises(ValueError, match="^m.jsonl: line 3: "):
        resolve_settings(values, model="stabilityai/stable-video-diffusion-img2vid", source="m.jsonl: line 3")


def test_feature_kind_is_read_from_every_surface():
    assert resolve_settings({}, model="tiny-random")[1].feature_kind == "aligned"
    assert resolve_settings({"feature_kind": " self_attention "}, model="tiny-random")[1].feature_kind == "self_attention"
    args = build_parser().parse_args(["generate", "in.png", "--traj", "t.json", "-o", "o.mp4", "--feature-kind", "layer_output"])
    assert args.feature_kind == "layer_output"


def _generate_in_a_fresh_process(inputs, out, *options: str) -> tuple[list[str], list[str]]:
    """``sgi2v generate`` on the test inputs with ``options``, in a new interpreter: (its exit code and whether torch
    and diffusers were imported, as printed; its stderr lines)."""
    image, traj, _ = inputs
    code = ("import sys; from sgi2v.cli import main; "
            f"rc = main(['generate', {str(image)!r}, '--traj', {str(traj)!r}, '-o', {str(out)!r}, *{list(options)!r}]); "
            "print(rc, 'torch' in sys.modules, 'diffusers' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    return result.stdout.split(), result.stderr.strip().splitlines()


def _not_a_feature_layer(name: str) -> str:
    return (f"sgi2v: error: feature_layers: {name!r} is not a spatial transformer of the SVD UNet (these are "
            + ", ".join(__import__("sgi2v.settings").settings.SVD_FEATURE_LAYERS) + ")")


def test_bad_settings_are_reported_before_torch_is_imported(inputs, tmp_path):
    """A typo in a setting is reported without loading torch or diffusers (so at once)."""
    printed, errors = _generate_in_a_fresh_process(inputs, tmp_path / "o.mp4", "--feature-layers",
                                                   "up_blocks.9.attentions.1,bogus")
    assert printed == ["2", "False", "False"], (printed, errors)
    assert errors == [_not_a_feature_layer("up_blocks.9.attentions.1")]


def test_the_latent_window_reads_the_models_schedule_without_torch(inputs, tmp_path):
    """``latent`` reads the sprites model's scheduler config, and a bad setting beside it is still reported before
    torch or diffusers load."""
    printed, errors = _generate_in_a_fresh_process(inputs, tmp_path / "o.mp4", "--model", "sprites",
                                                   "--optimize-timesteps", "latent", "--feature-layers", "bogus")
    assert printed == ["2", "False", "False"], (printed, errors)
    assert errors == [_not_a_feature_layer("bogus")]
    assert not (tmp_path / "o.mp4").exists()


# -- the record is a request ------------------------------------------------------------------------

def test_record_settings_pasted_into_a_manifest_line_give_the_same_frames(inputs, tmp_path, capsys):
    image, traj, _ = inputs
    out = tmp_path / "one" / "v.mp4"
    assert main(["generate", str(image), "--traj", str(traj), "-o", str(out), *FAST, "--seed", "11", "--image-fit", "pad",
                 "--learning-rate", "0.3", "--no-high-frequency-reinit", "--fps", "5"]) == 0
    record = json.loads(out.with_suffix(".json").read_text())
    line = {"id": "again", "image": str(image), "traj": str(traj), **record["settings"], **record["config"]}
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps(line) + "\n")
    capsys.readouterr()
    assert main(["batch", str(manifest), "-o", str(tmp_path / "batch"), "--model", "tiny-random"]) == 0, capsys.readouterr()
    again = json.loads((tmp_path / "batch" / "again.json").read_text())
    assert again["frames_sha256"] == record["frames_sha256"]
    assert again["settings"] == record["settings"] and again["config"] == record["config"]
    assert record["settings"]["image_fit"] == "pad" and record["inputs"]["fit"]["mode"] == "pad"


def test_a_manifest_line_cannot_change_what_the_run_loaded(inputs, tmp_path, capsys):
    image, traj, _ = inputs
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"id": "x", "image": str(image), "traj": str(traj), "dtype": "float16"}) + "\n")
    assert main(["batch", str(manifest), "-o", str(tmp_path / "out"), *FAST]) == 1
    failure = json.loads((tmp_path / "out" / "failures.jsonl").read_text())
    assert "dtype: this run uses float32 (set on the command line), the line asks for float16" in failure["error"]


# -- gradient checkpointing: auto, on, off ----------------------------------------------------------

# (auto's decision from the cost model and free memory: tests/test_cost.py)


def test_checkpointing_setting_maps_to_the_pipeline_argument():
    assert GenerationSettings().gradient_checkpointing == "auto"
    assert [GenerationSettings(gradient_checkpointing=v).checkpointing for v in ("auto", "on", "off", True, False)] == \
        [None, True, False, True, False]


@pytest.fixture
def spy(monkeypatch):
    """Records the ``gradient_checkpointing`` argument of every pipeline call."""
    from sgi2v.pipeline import SGI2VPipeline

    seen = []
    original = SGI2VPipeline.__call__

    def call(self, *args, **kwargs):
        seen.append(kwargs.get("gradient_checkpointing", "absent"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(SGI2VPipeline, "__call__", call)
    return seen


def test_auto_checkpointing_reaches_the_pipeline_from_every_road(inputs, tmp_path, spy, capsys):
    image, traj, _ = inputs
    assert main(["generate", str(image), "--traj", str(traj), "-o", str(tmp_path / "g.mp4"), *FAST]) == 0
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"id": "b", "image": str(image), "traj": str(traj)}) + "\n")
    assert main(["batch", str(manifest), "-o", str(tmp_path / "batch"), *FAST]) == 0
    assert main(["generate", str(image), "--traj", str(traj), "-o", str(tmp_path / "on.mp4"), *FAST,
                 "--gradient-checkpointing", "on"]) == 0

    pytest.importorskip("gradio")
    from sgi2v.ui.app import AppConfig, PipelineCache, Session, generate_video

    app = AppConfig(models=("tiny-random",), device=torch.device("cpu"), dtype=torch.float32, root=tmp_path)
    session = Session()
    session.set_image(Image.open(image), 128, 64)
    session.trajectory = {"boxes": [{"box": [8, 8, 39, 31], "path": [[23.5, 19.5], [62, 23]]}]}  # what the editor sends
    values = {"model": "tiny-random", "num_frames": 4, "width": 128, "height": 64, "num_inference_steps": 3,
              "optimize_timesteps": "2", "iterations": 1}
    generate_video(session, values, app, PipelineCache(), tmp_path / "ui")
    assert spy == [None, None, True, None]  # None: the pipeline decides from free memory


# -- image fit --------------------------------------------------------------------------------------

def test_fit_geometry():
    crop = Fit.make("crop", (200, 100), (64, 64))
    assert crop.crop == (50.0, 0.0, 150.0, 100.0) and crop.placed == (0, 0, 64, 64)
    pad = Fit.make("pad", (200, 100), (64, 64))
    assert pad.placed == (0, 16, 64, 48) and pad.crop == (0.0, 0.0, 200.0, 100.0)
    for fit in (crop, pad, Fit.make("stretch", (200, 100), (64, 64))):
        assert fit.to_source(*fit.to_output(77.0, 33.0)) == pytest.approx((77.0, 33.0))
        np.testing.assert_allclose(fit.boxes(np.array([77.0, 33.0, 120.0, 90.0])),
                                   [*fit.to_output(77.0, 33.0), *fit.to_output(120.0, 90.0)])


@pytest.mark.parametrize("mode", ["stretch", "crop", "pad"])
def test_fit_moves_the_boxes_with_the_pixels(mode, tmp_path):
    """A white square in a dark image, with a box drawn exactly on it: after fitting, the box is still on the square."""
    array = np.zeros((100, 300, 3), dtype=np.uint8)
    array[30:70, 130:190] = 255
    Image.fromarray(array).save(tmp_path / "sq.png")
    settings = GenerationSettings(width=128, height=128, num_frames=2, image_fit=mode)
    prepared = prepare_inputs(tmp_path / "sq.png", {"boxes": [{"box": [130, 30, 190, 70], "static": True}]}, settings)
    x0, y0, x1, y1 = prepared.boxes[0, 0]
    pixels = np.asarray(prepared.image.convert("L"), dtype=np.float64)
    inside = pixels[int(np.ceil(y0)) + 1:int(y1) - 1, int(np.ceil(x0)) + 1:int(x1) - 1]
    assert inside.size and inside.min() > 200  # the square fills the box
    ring = np.concatenate([pixels[max(0, int(y0) - 3), int(x0):int(x1)], pixels[min(127, int(y1) + 3), int(x0):int(x1)]])
    assert ring.max() < 60  # and ends at its edges
    assert prepared.inputs["fit"]["mode"] == mode


def test_crop_refuses_a_box_that_is_cut_away(tmp_path):
    Image.new("RGB", (300, 100)).save(tmp_path / "wide.png")
    settings = GenerationSettings(width=128, height=128, num_frames=2, image_fit="crop")
    with pytest.raises(ValueError, match=r"^traj\.json: boxes\[0\] at frame 0 must lie inside the 128x128 image.*image_fit crop"):
        prepare_inputs(tmp_path / "wide.png", {"boxes": [{"box": [0, 10, 40, 50], "static": True}]}, settings, source="traj.json")


# -- every bundled example from the web app ---------------------------------------------------------

SIZES = [(1024, 576), (512, 512), (256, 128)]


def _example_session(name: str, width: int, height: int, fit: str = "stretch"):
    from sgi2v.cli import example_files
    from sgi2v.trajectory import load_image
    from sgi2v.ui.app import Session, load_files

    image, traj = example_files(name)
    session = Session()
    session.set_image(load_image(image), width, height, fit)
    load_files(session, [str(traj)], 14, width, height, Path(os.devnull).parent, fit)
    return session


@pytest.mark.parametrize("name", ["astronaut", "cat", "coffee", "rocket"])
def test_every_bundled_example_prepares_from_the_web_app_at_every_size(name, tmp_path, monkeypatch):
    """The web app's whole road (load the example, draw, prepare, check, write) at the app's default size and
    at the three sizes, up to the pipeline's own input check; the denoising is replaced by grey frames (the
    tiny model at 1024x576 takes minutes on 2 cores: the real one runs at 256x128 below, and at every size
    in the slow test)."""
    pytest.importorskip("gradio")
    from sgi2v.generation import Generation
    from sgi2v.testing import tiny_pipeline
    from sgi2v.ui import app as ui

    tiny = tiny_pipeline(num_frames=14)

    def fake_generate(prepared, settings, config, pipe, **kwargs):
        assert prepared.image.size == (settings.width, settings.height)
        tiny.check_sgi2v_inputs(prepared.image, prepared.boxes, config, settings.height, settings.width, settings.num_frames,
                                settings.num_inference_steps)
        frames = np.full((settings.num_frames, settings.height, settings.width, 3), 128, np.uint8)
        return Generation(frames, {"frames_sha256": "-", "settings": settings.to_dict(), "boxes": prepared.boxes.tolist()})

    monkeypatch.setattr(ui, "generate", fake_generate)
    app = ui.AppConfig(models=("tiny-random",), device=torch.device("cpu"), dtype=torch.float32, root=tmp_path)
    default = (GenerationSettings().width, GenerationSettings().height)
    for width, height in [default, *SIZES]:
        session = _example_session(name, width, height)
        values = {"model": "tiny-random", "width": width, "height": height, "num_frames": 14}
        paths = ui.generate_video(session, values, app, ui.PipelineCache(loader=lambda *a, **k: object()), tmp_path / f"{width}")
        record = json.loads(paths["record"].read_text())
        # What the editor holds (the example's trajectory, in the upload's pixels) brought to the output size.
        from sgi2v.trajectory import parse_trajectory

        expected = Fit.make("stretch", session.original.size, (width, height)).boxes(
            parse_trajectory(session.trajectory, 14, session.original.size).boxes)
        np.testing.assert_allclose(record["boxes"], expected, atol=0.05)


def _generate_example(name: str, width: int, height: int, tmp_path: Path) -> None:
    pytest.importorskip("gradio")
    from sgi2v.ui.app import AppConfig, PipelineCache, generate_video
    from sgi2v.video import read_video

    app = AppConfig(models=("tiny-random",), device=torch.device("cpu"), dtype=torch.float32, root=tmp_path)
    session = _example_session(name, width, height)
    values = {"model": "tiny-random", "width": width, "height": height, "num_frames": 14, "num_inference_steps": 2,
              "optimize_timesteps": "2", "iterations": 1}
    paths = generate_video(session, values, app, PipelineCache(), tmp_path / f"{width}x{height}")
    assert read_video(paths["video"]).shape == (14, height, width, 3)


@pytest.mark.parametrize("name", ["astronaut", "cat", "coffee", "rocket"])
def test_every_bundled_example_generates_from_the_web_app(name, tmp_path):
    _generate_example(name, 256, 128, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["astronaut", "cat", "coffee", "rocket"])
def test_every_bundled_example_generates_from_the_web_app_at_every_size(name, tmp_path):
    """The tiny model for real at 1024x576 (the app's default) and 512x512: minutes each on 2 CPU cores."""
    for width, height in SIZES[:2]:
        _generate_example(name, width, height, tmp_path)


# -- batch under torchrun ---------------------------------------------------------------------------

def test_the_collective_timeout_reaches_the_process_group(tmp_path, monkeypatch, capsys):
    import accelerate

    seen = {}
    real = accelerate.PartialState

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(cpu=kwargs.get("cpu", False))

    monkeypatch.setattr(accelerate, "PartialState", spy)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"id": "x", "image": "missing.png", "traj": "t.json"}) + "\n")
    main(["batch", str(manifest), "-o", str(tmp_path / "out"), *FAST, "--collective-timeout", "3"])
    assert seen["timeout"] == datetime.timedelta(hours=3)
    monkeypatch.setattr(accelerate, "PartialState", real)
    assert main(["batch", str(manifest), "-o", str(tmp_path / "out"), "--collective-timeout", "0"]) == 2
    assert "--collective-timeout must be a positive number of hours" in capsys.readouterr().err


# -- bad input: the same answer from every road, before anything heavy -----------------------------

def _trajectory_case(kind: str, folder: Path) -> tuple[str, Path, str]:
    """(image, trajectory file, expected message after the file name) of one bad input."""
    image = folder / "in.png"
    Image.new("RGB", (100, 50), (90, 120, 150)).save(image)
    traj = folder / "t.json"
    box = {"box": [10, 10, 40, 30]}
    data = {
        "scale": {"boxes": [{**box, "path": [[25, 20], [55, 25]], "scale": 1e4}]},
        "far point": {"boxes": [{**box, "path": [[25, 20], [1e308, 10]]}]},
        "one point": {"boxes": [{**box, "path": [[25, 20]]}]},
        "camera": {"boxes": [], "camera": {"zoom": 1e6}},
    }.get(kind)
    if data is not None:
        traj.write_text(json.dumps(data))
    elif kind == "nested":
        traj.write_text("[" * 100_000 + "]" * 100_000)
    elif kind == "huge file":
        traj.write_text(json.dumps({"boxes": [{**box, "path": [[25, 20], [26, 20]]}], "pad": "x" * (6 << 20)}))
    elif kind == "bomb":
        Image.new("1", (11000, 9000)).save(image)  # 99 megapixels, a small file
        traj.write_text(json.dumps({"boxes": [{**box, "static": True}]}))
    message = {
        "scale": "boxes[0].scale: the factor 10000 is outside 0.05..20",
        "far point": "boxes[0].path[1]: the point [1e+308, 10.0] is far outside the 100x50 image",
        "one point": "boxes[0].path: give at least 2 points",
        "camera": "camera.zoom: expected a factor within 0.1..10, got 1e+06",
        "nested": "nested too deeply",
        "huge file": "at most 5 MB are accepted",
        "bomb": "(99.0 megapixels); at most 89.5 megapixels are accepted",
    }[kind]
    return str(image), traj, message


TRAJECTORY_CASES = ["scale", "far point", "one point", "camera", "nested", "huge file", "bomb"]


@pytest.mark.parametrize("kind", TRAJECTORY_CASES)
def test_bad_input_gets_the_same_message_from_cli_batch_and_web_app(kind, tmp_path, capsys, monkeypatch):
    import sgi2v.loading

    image, traj, message = _trajectory_case(kind, tmp_path)
    monkeypatch.setattr(sgi2v.loading, "load_pipeline", lambda *a, **k: pytest.fail("the model was loaded"))
    out = tmp_path / "out"
    assert main(["generate", image, "--traj", str(traj), "-o", str(out / "v.mp4"), *FAST]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not out.exists()  # nothing written

    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"id": "x", "image": image, "traj": str(traj)}) + "\n")
    assert main(["batch", str(manifest), "-o", str(tmp_path / "b"), *FAST]) == 1
    failure = json.loads((tmp_path / "b" / "failures.jsonl").read_text())
    assert failure["error"] == err[0].removeprefix("sgi2v: error: ")

    pytest.importorskip("gradio")
    from sgi2v.images import load_image
    from sgi2v.ui.app import Session, UIError, load_files

    session = Session()
    if kind == "bomb":
        with pytest.raises(ValueError, match=__import__("re").escape(message)):
            load_image(image)  # the web app reads its uploads with the same function (ui.app's on_upload)
        return
    session.set_image(load_image(image), 128, 64)
    with pytest.raises(UIError) as raised:
        load_files(session, [str(traj)], 4, 128, 64, tmp_path)
    assert message in str(raised.value) and str(raised.value).startswith("t.json: ")


@pytest.mark.parametrize("kind, message", [
    ("empty", "traj.npy: not a readable .npy array: the file is empty"),
    ("complex", "traj.npy: expected real numbers (integers or floats), got complex128 values"),
    ("outside", "traj.npy: box 0: the frame-0 box [50.0, 10.0, 70.0, 20.0] is not inside the 64x32 image img.png"),
])
def test_bad_reference_folders_are_named_in_the_files_pixels(kind, message, tmp_path, capsys):
    folder = tmp_path / "ref"
    folder.mkdir()
    Image.new("RGB", (64, 32)).save(folder / "img.png")
    if kind == "empty":
        (folder / "traj.npy").write_bytes(b"")
    else:
        raw = np.array([[[50, 10], [70, 20], [60, 15], [62, 15], [64, 15], [66, 15]]], dtype=np.float64)
        np.save(folder / "traj.npy", raw.astype(np.complex128) if kind == "complex" else raw)
    assert main(["generate", "--reference-dir", str(folder), "-o", str(tmp_path / "o.mp4"), *FAST]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_a_sixteen_bit_png_is_not_washed_out(tmp_path):
    ramp = (np.linspace(0, 65535, 64 * 128).reshape(64, 128)).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    settings = GenerationSettings(width=128, height=64, num_frames=2)
    prepared = prepare_inputs(tmp_path / "deep.png", {"boxes": [{"box": [10, 10, 40, 30], "static": True}]}, settings)
    pixels = np.asarray(prepared.image)
    np.testing.assert_array_equal(pixels[..., 0], np.round(ramp / 257).astype(np.uint8))  # same size: no resampling blur


REFERENCE = ROOT.parent / "shared" / "data" / "reference-examples"


@pytest.mark.skipif(not REFERENCE.is_dir(), reason=f"no reference examples at {REFERENCE}")
def test_prepared_reference_folders_are_the_authors_conversion_exactly():
    from sgi2v.generation import prepare_reference
    from sgi2v.trajectory import load_reference_dir

    for folder in sorted(p for p in REFERENCE.iterdir() if p.is_dir()):
        settings = GenerationSettings(width=512, height=320, num_frames=14)
        prepared = prepare_reference(folder, settings)
        image, boxes = load_reference_dir(folder, 512, 320, 14)
        assert prepared.image.tobytes() == image.tobytes()
        np.testing.assert_array_equal(prepared.boxes, boxes.astype(np.float64))


@pytest.mark.parametrize("mode, region", [("crop", (0, 0, 128, 128)), ("pad", (0, 32, 128, 96))])
def test_the_camera_moves_the_picture_shown(mode, region, tmp_path):
    """With crop or pad the camera box is laid out on the visible picture, as stretch lays it out on the whole image."""
    Image.new("RGB", (300, 150)).save(tmp_path / "wide.png")
    camera = {"pan": "left", "amount": 0.2, "zoom": 1.2}
    fitted = prepare_inputs(tmp_path / "wide.png", {"camera": camera},
                            GenerationSettings(width=128, height=128, num_frames=3, image_fit=mode)).boxes[0]
    x0, y0, x1, y1 = region
    from sgi2v.trajectory import parse_trajectory

    expected = parse_trajectory({"camera": camera}, 3, (x1 - x0, y1 - y0)).boxes[0] + [x0, y0, x0, y0]
    np.testing.assert_allclose(fitted, expected)
    assert (fitted[0, :2] >= [x0, y0]).all() and (fitted[0, 2:] <= [x1, y1]).all()


def test_the_latent_window_resolves_to_the_outputs_size_and_steps_on_every_surface():
    from sgi2v.comfyui.nodes import _setting_values
    from sgi2v.config import latent_window
    from sgi2v.settings import SPRITES_MODEL, model_sigma_range
    from sgi2v.ui.app import settings_and_config

    # the sprites model's schedule is already moved to its 16 x 16 latent: there latent is the paper's window
    sprites_range = model_sigma_range(SPRITES_MODEL)
    _, sprites = resolve_settings({"optimize_timesteps": "latent"}, model=SPRITES_MODEL)
    assert sprites.optimize_timesteps == latent_window((16, 16), 50, sprites_range) == SGI2VConfig().optimize_timesteps
    _, larger = resolve_settings({"optimize_timesteps": "latent", "height": 256, "width": 256}, model=SPRITES_MODEL)
    assert max(larger.optimize_timesteps) > 45  # a larger latent than the model's own: more noise
    _, svd_small = resolve_settings({"optimize_timesteps": "latent", "height": 128, "width": 128}, model=None)
    assert svd_small.optimize_timesteps == latent_window((16, 16), 50) == tuple(range(33, 20, -1))  # SVD's schedule
    _, svd = resolve_settings({"optimize_timesteps": " Latent "}, model=None)  # 576 x 1024: the paper's
    assert svd.optimize_timesteps == SGI2VConfig().optimize_timesteps
    _, small = resolve_settings({"optimize_timesteps": "latent", "height": 320, "width": 576, "steps": 25}, model=None)
    assert small.optimize_timesteps == latent_window((40, 72), 25)
    values = {"optimize_timesteps": "latent", "num_inference_steps": 25}
    by_page = settings_and_config(values, model=SPRITES_MODEL)[1]
    by_node = resolve_settings(_setting_values(values), model=SPRITES_MODEL)[1]
    by_json = resolve_settings({"optimize_timesteps": "latent", "num_inference_steps": 25}, model=SPRITES_MODEL,
                               source="m.jsonl:1")[1]
    assert by_page == by_node == by_json and by_page.optimize_timesteps == latent_window((16, 16), 25, sprites_range)
    with pytest.raises(ValueError, match=r"m.jsonl:3: optimize_timesteps: expected timesteps like 30-45 .*or latent, "
                                         r"got 'latents'"):
        resolve_settings({"optimize_timesteps": "latents"}, source="m.jsonl:3")
