"""The ComfyUI nodes, called as ComfyUI calls them: ``INPUT_TYPES``, then ``FUNCTION`` with the inputs as keywords.

The frames must equal the library's own (``prepare_inputs`` + ``generate``) for the same inputs. The last
test starts a real ComfyUI from ``COMFYUI_DIR`` and runs the example API workflow over HTTP.
"""

import contextlib
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import types
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sgi2v.comfyui import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
from sgi2v.comfyui.install import ENTRY, install
from sgi2v.comfyui.nodes import DrawBoxes, LoadModel, Sampler, TargetBoxes, Trajectory, frames_to_image, image_to_pil
from sgi2v.formats import tracks_to_trajectory
from sgi2v.generation import generate, prepare_inputs
from sgi2v.settings import resolve_settings, setting_specs
from sgi2v.video import draw_condition, draw_overlay

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / "docs" / "comfyui"
# Small enough for 2 CPU cores (as conftest): 64 x 128 output, 4 frames, 4 steps, 1 optimised step.
SVD_FIXTURE = ROOT / "tests" / "data" / "comfyui" / "svd_small_fixture.safetensors"  # saved by ComfyUI
SMALL = {"height": 64, "width": 128, "num_frames": 4, "num_inference_steps": 4, "optimize_timesteps": "3", "iterations": 2}
TRAJECTORY = {"boxes": [{"box": [10, 10, 40, 30], "path": [[25, 20], [55, 25]]}, {"box": [60, 5, 90, 40], "static": True}]}


def call(node_class, **inputs):
    """Run a node as ComfyUI does: check the inputs against INPUT_TYPES, call FUNCTION under torch.inference_mode()
    (ComfyUI's execution.py), check RETURN_TYPES."""
    declared = node_class.INPUT_TYPES()
    known = {**declared.get("required", {}), **declared.get("optional", {})}
    assert set(declared.get("required", {})) <= set(inputs), f"missing required inputs of {node_class.__name__}"
    assert set(inputs) <= set(known), f"undeclared inputs: {set(inputs) - set(known)}"
    for name, value in inputs.items():
        kind, options = (known[name] + ({},))[:2]
        if kind == "INT":
            assert isinstance(value, int) and options["min"] <= value <= options["max"], (name, value)
        elif kind == "FLOAT":
            assert options["min"] <= value <= options["max"], (name, value)
        elif isinstance(kind, list):
            assert value in kind, (name, value)
    with torch.inference_mode():
        out = getattr(node_class(), node_class.FUNCTION)(**inputs)
    assert isinstance(out, tuple) and len(out) == len(node_class.RETURN_TYPES)
    return out


def as_image(picture: Image.Image) -> torch.Tensor:
    """A picture as ComfyUI's LoadImage gives it: float32 (1, H, W, 3) in [0, 1]."""
    return torch.from_numpy(np.asarray(picture.convert("RGB"), dtype=np.float32) / 255.0)[None]


@pytest.fixture(scope="module")
def model():
    (loaded,) = call(LoadModel, model="tiny-random", device="cpu", dtype="float32", offload=False)
    return loaded


@pytest.fixture(scope="module")
def picture():
    return Image.fromarray((np.random.RandomState(1).rand(50, 100, 3) * 255).astype(np.uint8))


def library_frames(model, picture, trajectory, values):
    """The library's frames for the same inputs: the generation layer, called directly."""
    settings, config = resolve_settings(values, model=model.name)
    prepared = prepare_inputs(picture, trajectory, settings)
    return generate(prepared, settings, config, model.pipe, model=model.name), prepared


def test_mappings_name_every_node_with_the_node_api():
    assert set(NODE_CLASS_MAPPINGS) == set(NODE_DISPLAY_NAME_MAPPINGS)
    assert sorted(NODE_DISPLAY_NAME_MAPPINGS.values()) == ["SG-I2V Draw Boxes", "SG-I2V Load Model", "SG-I2V Sampler",
                                                           "SG-I2V Trajectory"]
    for node in NODE_CLASS_MAPPINGS.values():
        assert callable(getattr(node(), node.FUNCTION))
        assert isinstance(node.INPUT_TYPES()["required"], dict) and node.CATEGORY == "SG-I2V"
        assert len(node.RETURN_NAMES) == len(node.RETURN_TYPES)


def test_importing_the_pack_loads_neither_comfyui_nor_torch():
    code = "import sys, sgi2v.comfyui; print(any(m == 'comfy' or m.startswith(('comfy.', 'torch')) for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=os.environ)
    assert out.stdout.strip() == "False"


def test_setting_inputs_are_the_declared_settings():
    sampler = Sampler.INPUT_TYPES()["optional"]
    declared = LoadModel.INPUT_TYPES()
    loader = {**declared["required"], **declared["optional"]}
    specs = setting_specs()
    assert set(sampler) == {n for n, (_, s) in specs.items() if s.scope == "sample"}
    assert set(loader) - {"model", "checkpoint"} == {n for n, (_, s) in specs.items() if s.scope == "process"}
    assert set(declared["optional"]) == {"compile", "checkpoint"}  # added after workflows were saved: they still validate
    assert declared["optional"]["checkpoint"][0] == ["none"]  # outside ComfyUI no models/checkpoints folder
    for name, (kind, options) in {**sampler, **loader}.items():
        if name in ("model", "checkpoint"):
            continue
        field, spec = specs[name]
        if name in ("height", "width"):  # 0: the model's own size (128 for sprites, 576 x 1024 for SVD)
            assert (kind, options["default"], options["min"], options["max"]) == ("INT", 0, 0, spec.maximum), name
        elif spec.kind in ("int", "float") and not spec.optional:
            assert (kind, options["default"], options["min"], options["max"]) == \
                   (spec.kind.upper(), field.default, spec.minimum, spec.maximum), name
        elif spec.kind == "choice":
            assert (kind, options["default"]) == (list(spec.choices), field.default), name
        elif spec.kind == "bool":
            assert (kind, options["default"]) == ("BOOLEAN", field.default), name


def test_sampler_frames_equal_the_library(model, picture):
    (trajectory,) = call(Trajectory, coord_str="", trajectory_json=json.dumps(TRAJECTORY), canvas_width=0, canvas_height=0,
                         box_width=0, box_height=0, timing="time", camera_pan="none", pan_amount=0.25, zoom=1.0)
    frames, boxes, record = call(Sampler, model=model, image=as_image(picture), trajectory=trajectory, **SMALL)
    assert frames.dtype == torch.float32 and tuple(frames.shape) == (4, 64, 128, 3)
    expected, prepared = library_frames(model, picture, TRAJECTORY, SMALL)
    assert np.array_equal((frames.numpy() * 255).round().astype(np.uint8), expected.frames)
    assert np.array_equal(boxes.boxes, prepared.boxes) and boxes.size == (128, 64)
    assert json.loads(record)["frames_sha256"] == expected.record["frames_sha256"]


def test_sampler_with_drawn_paths_equals_the_library(model, picture):
    coord_str = json.dumps([[{"x": 50, "y": 40}, {"x": 80, "y": 40}, {"x": 110, "y": 60}], [{"x": 150, "y": 30}]])
    inputs = dict(coord_str=coord_str, canvas_width=200, canvas_height=100, box_width=40, box_height=30, timing="speed",
                  camera_pan="left", pan_amount=0.2, zoom=1.1, static_boxes="[[120, 60, 180, 95]]")
    (trajectory,) = call(Trajectory, **inputs)
    frames, _, _ = call(Sampler, model=model, image=as_image(picture), trajectory=trajectory, **SMALL)
    # The same drawing converted by the formats module and given to the library as a trajectory.
    from sgi2v.formats import parse_coord_str

    data = tracks_to_trajectory(parse_coord_str(coord_str), num_frames=4, canvas_size=(200, 100), image_size=picture.size,
                                box_size=(40, 30), timing="speed", static=[[120, 60, 180, 95]])
    data["camera"] = {"pan": "left", "amount": 0.2, "zoom": 1.1}
    assert data["boxes"][0]["box"] == [15.0, 12.5, 35.0, 27.5]  # 40x30 canvas pixels around (50, 40), halved
    expected, _ = library_frames(model, picture, data, SMALL)
    assert np.array_equal((frames.numpy() * 255).round().astype(np.uint8), expected.frames)


def test_canvas_defaults_to_the_image(picture):
    (trajectory,) = call(Trajectory, coord_str='[{"x": 20, "y": 20}, {"x": 60, "y": 30}]', canvas_width=0, canvas_height=0,
                         box_width=10, box_height=10, timing="time", camera_pan="none", pan_amount=0.25, zoom=1.0)
    data = trajectory.to_json(3, picture.size)
    assert data == {"boxes": [{"box": [15.0, 15.0, 25.0, 25.0], "path": [[20.0, 20.0], [40.0, 25.0], [60.0, 30.0]]}]}


class FakeComfy:
    """comfy.utils.ProgressBar and comfy.model_management's interrupt, recording their use."""

    class Interrupted(Exception):
        pass

    def __init__(self, interrupt_at=None):
        self.updates, self.totals, self.checks, self.interrupt_at = [], [], 0, interrupt_at
        fake = self

        class ProgressBar:
            def __init__(self, total, node_id=None):
                fake.totals.append(total)

            def update(self, value):
                fake.updates.append(value)

        def throw_exception_if_processing_interrupted():
            fake.checks += 1
            if fake.interrupt_at is not None and fake.checks > fake.interrupt_at:
                raise FakeComfy.Interrupted()

        self.modules = {"comfy": types.ModuleType("comfy"), "comfy.utils": types.ModuleType("comfy.utils"),
                        "comfy.model_management": types.ModuleType("comfy.model_management")}
        self.modules["comfy.utils"].ProgressBar = ProgressBar
        self.modules["comfy.model_management"].throw_exception_if_processing_interrupted = throw_exception_if_processing_interrupted
        self.modules["comfy"].utils = self.modules["comfy.utils"]
        self.modules["comfy"].model_management = self.modules["comfy.model_management"]


def test_progress_and_interrupt_go_through_comfyui(model, picture, monkeypatch):
    (trajectory,) = Trajectory().build("", trajectory_json=json.dumps(TRAJECTORY))
    fake = FakeComfy()
    for name, module in fake.modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    call(Sampler, model=model, image=as_image(picture), trajectory=trajectory, **SMALL)
    assert fake.totals == [4] and sum(fake.updates) == 4

    processors = dict(model.pipe.unet.attn_processors)
    fake.interrupt_at = fake.checks + 2  # the check before sampling, then one step
    with pytest.raises(FakeComfy.Interrupted):
        call(Sampler, model=model, image=as_image(picture), trajectory=trajectory, **SMALL)
    assert dict(model.pipe.unet.attn_processors) == processors  # the pipeline left the UNet as it was


def test_draw_boxes_equals_the_library_overlay(model, picture):
    frames = (np.random.RandomState(2).rand(4, 64, 128, 3) * 255).astype(np.uint8)
    boxes = np.array([[[10, 10, 40, 30], [12, 11, 42, 31], [14, 12, 44, 32], [16, 13, 46, 33]]], dtype=np.float64)
    (drawn,) = call(DrawBoxes, images=frames_to_image(frames), boxes=TargetBoxes(boxes, (128, 64)))
    assert np.array_equal((drawn.numpy() * 255).round().astype(np.uint8), draw_overlay(frames, boxes))
    # Frames of twice the size get the boxes doubled; one image gets the paths drawn on it.
    big = np.repeat(np.repeat(frames, 2, axis=1), 2, axis=2)
    (drawn,) = call(DrawBoxes, images=frames_to_image(big), boxes=TargetBoxes(boxes, (128, 64)))
    assert np.array_equal((drawn.numpy() * 255).round().astype(np.uint8), draw_overlay(big, boxes * 2))
    (one,) = call(DrawBoxes, images=frames_to_image(frames[:1]), boxes=TargetBoxes(boxes, (128, 64)))
    assert np.array_equal((one.numpy()[0] * 255).round().astype(np.uint8),
                          np.asarray(draw_condition(Image.fromarray(frames[0]), boxes)))
    with pytest.raises(ValueError, match="3 frames for boxes of 4 frames"):
        call(DrawBoxes, images=frames_to_image(frames[:3]), boxes=TargetBoxes(boxes, (128, 64)))


def test_image_conversion_round_trips(picture):
    assert np.array_equal(np.asarray(image_to_pil(as_image(picture))), np.asarray(picture))
    with pytest.raises(ValueError, match="a batch of 2 images"):
        image_to_pil(torch.zeros(2, 8, 8, 3))


@pytest.mark.parametrize("inputs, message", [
    (dict(coord_str="", trajectory_json=""), "coord_str and trajectory_json are both empty"),
    (dict(coord_str='[{"x": 1, "y": 2}]', trajectory_json='{"boxes": []}'), "not both"),
    (dict(coord_str="", trajectory_json='{"boxes": [}'), "trajectory_json: malformed JSON at line 1"),
    (dict(coord_str='[{"x": "a", "y": 2}]'), r"coord_str: \[0\].x"),
    (dict(coord_str='[[{"x": 1, "y": 2}], [{"x": 3, "y": 4}]]', boxes="[[0, 0, 5, 5]]"), "1 boxes for 2 paths"),
    (dict(coord_str='[{"x": 1, "y": 2}]', canvas_width=100), "give both"),
    (dict(coord_str="", trajectory_json=json.dumps({**TRAJECTORY, "camera": {"zoom": 2}}), zoom=1.5), "give it once"),
])
def test_trajectory_input_errors_name_the_input(inputs, message):
    with pytest.raises(ValueError, match=message) as err:
        Trajectory().build(**inputs)
    assert str(err.value).startswith("SG-I2V Trajectory: ")


def test_bad_settings_and_boxes_are_reported_before_sampling(model, picture):
    (trajectory,) = Trajectory().build("", trajectory_json=json.dumps(TRAJECTORY))
    with pytest.raises(ValueError, match=r"SG-I2V Sampler: optimize_timesteps: \[9\] exceed num_inference_steps=4"):
        Sampler().sample(model, as_image(picture), trajectory, **{**SMALL, "optimize_timesteps": "9"})
    outside = {"boxes": [{"box": [150, 10, 160, 30], "path": [[155, 20], [155, 25]]}]}
    (trajectory,) = Trajectory().build("", trajectory_json=json.dumps(outside))
    with pytest.raises(ValueError, match="^SG-I2V Trajectory: boxes"):
        Sampler().sample(model, as_image(picture), trajectory, **SMALL)


def test_a_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no-such-model: model folder not found$"):
        LoadModel().load(str(tmp_path / "no-such-model"), device="cpu", dtype="float32", offload=False)
    with pytest.raises(ValueError, match="SG-I2V Load Model: dtype: expected one of"):
        LoadModel().load("tiny-random", device="cpu", dtype="float8", offload=False)


def test_a_model_folder_under_comfyuis_models_diffusers_is_found_by_name(tmp_path, monkeypatch, model):
    with torch.inference_mode(False):
        model.pipe.save_pretrained(tmp_path / "diffusers" / "my-svd")
    (tmp_path / "checkpoints" / "video").mkdir(parents=True)
    shutil.copy(SVD_FIXTURE, tmp_path / "checkpoints" / "video" / "svd_xt.safetensors")
    (tmp_path / "checkpoints" / "notes.txt").write_text("not a model")
    folder_paths = types.ModuleType("folder_paths")  # the parts of ComfyUI's folder_paths the nodes use
    folder_paths.get_folder_paths = lambda kind: [str(tmp_path / "elsewhere"), str(tmp_path / kind)]
    folder_paths.get_filename_list = lambda kind: sorted(
        p.relative_to(tmp_path / kind).as_posix() for p in (tmp_path / kind).rglob("*") if p.is_file())
    folder_paths.get_full_path = lambda kind, name: str(tmp_path / kind / name) if (tmp_path / kind / name).is_file() else None
    monkeypatch.setitem(sys.modules, "folder_paths", folder_paths)
    (loaded,) = call(LoadModel, model="my-svd", device="cpu", dtype="float32", offload=False)
    assert loaded.name == str(tmp_path / "diffusers" / "my-svd")
    for name, weight in loaded.pipe.unet.state_dict().items():
        assert torch.equal(weight, model.pipe.unet.state_dict()[name]), name

    assert LoadModel.INPUT_TYPES()["optional"]["checkpoint"][0] == ["none", "video/svd_xt.safetensors"]
    (by_list,) = call(LoadModel, model="my-svd", checkpoint="video/svd_xt.safetensors", device="cpu", dtype="float32",
                      offload=False)
    (by_name,) = call(LoadModel, model="video/svd_xt.safetensors", device="cpu", dtype="float32", offload=False)
    assert by_list is by_name and by_list.name == str(tmp_path / "checkpoints" / "video" / "svd_xt.safetensors")
    assert by_list.pipe.unet.config.num_frames == 25


def test_install_writes_an_entry_comfyui_can_load(tmp_path):
    (tmp_path / "custom_nodes").mkdir()
    entry = install(tmp_path)
    assert entry == tmp_path / "custom_nodes" / "sgi2v" / "__init__.py" and entry.read_text() == ENTRY
    assert install(tmp_path) == entry  # again: harmless
    # ComfyUI's loader: the folder's __init__.py under a module name made from its path.
    spec = importlib.util.spec_from_file_location(str(entry.parent).replace(".", "_x_"), entry)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.NODE_CLASS_MAPPINGS is NODE_CLASS_MAPPINGS
    entry.write_text("# another pack\n")
    with pytest.raises(ValueError, match="is not the SG-I2V entry"):
        install(tmp_path)
    with pytest.raises(ValueError, match="not a ComfyUI folder"):
        install(tmp_path / "custom_nodes")


def test_the_pack_is_a_package_of_the_distribution():
    setuptools = pytest.importorskip("setuptools")
    assert "sgi2v.comfyui" in setuptools.find_packages(str(ROOT / "src"))


def test_install_command(tmp_path, capsys):
    from sgi2v.cli import main

    assert main(["comfyui-install", str(tmp_path)]) == 2
    assert "not a ComfyUI folder" in capsys.readouterr().err
    (tmp_path / "custom_nodes").mkdir()
    assert main(["comfyui-install", str(tmp_path)]) == 0
    assert (tmp_path / "custom_nodes" / "sgi2v" / "__init__.py").read_text() == ENTRY


def test_example_workflow_files_are_up_to_date(tmp_path):
    from sgi2v.comfyui.workflows import write_examples

    for path in write_examples(tmp_path):
        assert (WORKFLOWS / path.name).read_text() == path.read_text(), \
            f"docs/comfyui/{path.name} is out of date: run python -m sgi2v.comfyui.workflows docs/comfyui"


@pytest.mark.parametrize("name", ["sgi2v_only.api.json", "sgi2v_spline_editor.api.json"])
def test_example_api_workflows_match_the_nodes(name):
    """Every SG-I2V node of an example workflow names declared inputs, with values its widgets accept."""
    workflow = json.loads((WORKFLOWS / name).read_text())
    ours = [node for node in workflow.values() if node["class_type"] in NODE_CLASS_MAPPINGS]
    assert {node["class_type"] for node in ours} >= {"SGI2VLoadModel", "SGI2VTrajectory", "SGI2VSampler", "SGI2VDrawBoxes"}
    for node in ours:
        declared = NODE_CLASS_MAPPINGS[node["class_type"]].INPUT_TYPES()
        known = {**declared["required"], **declared.get("optional", {})}
        assert set(declared["required"]) <= set(node["inputs"]) <= set(known), node["class_type"]
        for key, value in node["inputs"].items():
            kind, options = (known[key] + ({},))[:2]
            if isinstance(value, list):  # a link [node id, output index]
                assert str(value[0]) in workflow
            elif isinstance(kind, list):
                assert value in kind, key
            elif kind in ("INT", "FLOAT"):
                assert options["min"] <= value <= options["max"], key


# -- a real ComfyUI ---------------------------------------------------------------------------------

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _get(url: str):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def small_workflow(workflow: dict, image_name: str) -> dict:
    """The example workflow on the tiny model at a small size, reading ``image_name`` from ComfyUI's input folder."""
    for node in workflow.values():
        if node["class_type"] == "SGI2VLoadModel":
            node["inputs"].update(model="tiny-random", device="cpu", dtype="float32")
        elif node["class_type"] == "SGI2VSampler":
            node["inputs"].update({k: v for k, v in SMALL.items()})
        elif node["class_type"] == "LoadImage":
            node["inputs"]["image"] = image_name
    return workflow


def _comfyui_dir() -> str:
    comfyui = os.environ.get("COMFYUI_DIR")
    if not comfyui:
        pytest.skip("COMFYUI_DIR is unset: set it to a ComfyUI checkout (and COMFYUI_PYTHON to its Python, where sgi2v "
                    "is installed) to run the example workflows in a real ComfyUI")
    return comfyui


def _submit(url: str, workflow: dict, minutes: float = 5) -> dict:
    """POST a workflow and wait for its history entry."""
    request = urllib.request.Request(f"{url}/prompt", data=json.dumps({"prompt": workflow}).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            prompt_id = json.loads(response.read())["prompt_id"]
    except urllib.error.HTTPError as err:
        pytest.fail(f"ComfyUI refused the workflow: {err.read().decode()[:2000]}")
    for _ in range(int(minutes * 120)):
        history = _get(f"{url}/history/{prompt_id}").get(prompt_id)
        if history and history.get("status", {}).get("completed") is not None:
            return history
        time.sleep(0.5)
    pytest.fail(f"the workflow did not finish within {minutes} minutes")


@contextlib.contextmanager
def real_comfyui(example: str, tmp_path: Path, checkpoints: tuple = ()):
    """ComfyUI from COMFYUI_DIR, run by COMFYUI_PYTHON (where sgi2v is installed), in a fresh base directory where
    ``install`` put the pack (and KJNodes from COMFYUI_DIR/custom_nodes for the SplineEditor example), with the
    rocket image in its input folder and ``checkpoints`` in models/checkpoints; yields its URL and base directory.
    Skips without COMFYUI_DIR."""
    comfyui = _comfyui_dir()
    kjnodes = Path(comfyui) / "custom_nodes" / "ComfyUI-KJNodes"
    if example == "sgi2v_spline_editor" and not kjnodes.is_dir():
        pytest.skip(f"{kjnodes} is absent: the SplineEditor example needs KJNodes")
    base = tmp_path / "base"
    for folder in ("custom_nodes", "input", "output", "models/checkpoints"):
        (base / folder).mkdir(parents=True)
    for path in checkpoints:
        shutil.copy(path, base / "models" / "checkpoints" / Path(path).name)
    install(base)
    if example == "sgi2v_spline_editor":
        (base / "custom_nodes" / kjnodes.name).symlink_to(kjnodes)
    shutil.copy(ROOT / "src" / "sgi2v" / "examples" / "rocket" / "image.jpg", base / "input" / "sgi2v-rocket.jpg")
    port = _free_port()
    log_path = tmp_path / "comfyui.log"
    with open(log_path, "w") as log:
        server = subprocess.Popen([os.environ.get("COMFYUI_PYTHON", sys.executable), "main.py", "--cpu", "--listen",
                                   "127.0.0.1", "--port", str(port), "--disable-auto-launch", "--base-directory", str(base)],
                                  cwd=comfyui, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(240):
                try:
                    info = _get(f"{url}/object_info/SGI2VSampler")
                    break
                except OSError:
                    assert server.poll() is None, log_path.read_text()[-3000:]
                    time.sleep(0.5)
            else:
                pytest.fail("ComfyUI did not answer within 2 minutes")
            assert info["SGI2VSampler"]["display_name"] == "SG-I2V Sampler", log_path.read_text()[-3000:]
            yield url, base
        finally:
            server.terminate()
            server.wait(timeout=30)


@pytest.mark.parametrize("example", ["sgi2v_only", "sgi2v_spline_editor"])
def test_real_comfyui_runs_the_example_workflow(example, tmp_path):
    """The example API workflow, submitted over HTTP on the tiny model at 128 x 64, 4 frames: an MP4 and the
    overlay's PNG frames come out."""
    with real_comfyui(example, tmp_path) as (url, base):
        workflow = small_workflow(json.loads((WORKFLOWS / f"{example}.api.json").read_text()), "sgi2v-rocket.jpg")
        history = _submit(url, workflow)
        assert history["status"]["status_str"] == "success", json.dumps(history["status"])[:3000]
        written = sorted(p.relative_to(base / "output") for p in (base / "output").rglob("*") if p.is_file())
        print(f"ComfyUI wrote ({example}):", *written)
        videos = [p for p in written if p.suffix == ".mp4"]
        pngs = [p for p in written if p.suffix == ".png"]
        assert videos and len(pngs) == SMALL["num_frames"], written
        assert Image.open(base / "output" / pngs[0]).size == (SMALL["width"], SMALL["height"])


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)")
@pytest.mark.parametrize("example", ["sgi2v_only", "sgi2v_spline_editor"])
def test_real_comfyui_editor_reads_the_ui_workflow_as_the_api_one(example, tmp_path):
    """The editor loads the UI-format file and turns it into the API format (its own graphToPrompt): the result
    is the API-format file. SplineEditor's coordinates, which the editor samples again, agree to 0.001 pixel."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with real_comfyui(example, tmp_path) as (url, _):
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            try:
                page = browser.new_page(viewport={"width": 1600, "height": 1000})
                page.goto(url, timeout=90_000)
                page.wait_for_function("window.app && window.app.graph", timeout=90_000)
                ui = json.loads((WORKFLOWS / f"{example}.ui.json").read_text())
                count = f"window.app.graph._nodes.length === {len(ui['nodes'])}"
                for _ in range(10):  # a busy editor may still be starting and replace the graph with its default one
                    page.evaluate("async (w) => { await window.app.loadGraphData(w); }", ui)
                    page.wait_for_timeout(2000)  # the editors' widgets settle
                    if page.evaluate(count):
                        break
                prompt = page.evaluate("async () => (await window.app.graphToPrompt()).output")
            finally:
                browser.close()
    expected = json.loads((WORKFLOWS / f"{example}.api.json").read_text())
    for node in (prompt.get("4"), expected.get("4")):
        if node and node["class_type"] == "SplineEditor":
            node["inputs"]["coordinates"] = np.round(
                [[[q["x"], q["y"]] for q in path] for path in json.loads(node["inputs"].pop("coordinates"))], 3).tolist()
    assert {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in prompt.items()} == expected


# Run by ComfyUI's Python (aiohttp is one of its requirements): submit a prompt on the websocket's client id,
# wait for the sampler's progress, interrupt, and print the events seen as JSON.
_INTERRUPT_CLIENT = """
import asyncio, json, sys, uuid
import aiohttp

async def main(url, workflow, node):
    client, events = uuid.uuid4().hex, []
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"{url}/ws?clientId={client}") as ws:
            async with session.post(f"{url}/prompt", json={"prompt": workflow, "client_id": client}) as response:
                assert response.status == 200, await response.text()
            interrupted = False
            async for message in ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    continue
                event = json.loads(message.data)
                events.append(event)
                data = event.get("data", {})
                if event["type"] == "progress" and data.get("node") == node and data["value"] >= 2 and not interrupted:
                    async with session.post(f"{url}/interrupt") as response:
                        assert response.status == 200
                    interrupted = True
                if event["type"] in ("execution_interrupted", "execution_error", "execution_success"):
                    break
    print(json.dumps(events))

asyncio.run(asyncio.wait_for(main(sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]), 300))
"""


def test_real_comfyui_reports_a_missing_model_and_cancels_sampling(tmp_path):
    """A missing model fails its node with our message and ComfyUI goes on; ComfyUI's progress reaches the
    Sampler's steps and its interrupt stops the sampling within a step."""
    with real_comfyui("sgi2v_only", tmp_path) as (url, base):
        workflow = small_workflow(json.loads((WORKFLOWS / "sgi2v_only.api.json").read_text()), "sgi2v-rocket.jpg")
        missing = json.loads(json.dumps(workflow))
        missing["2"]["inputs"]["model"] = str(tmp_path / "no-such-model")
        request = urllib.request.Request(f"{url}/prompt", data=json.dumps({"prompt": missing}).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            prompt_id = json.loads(response.read())["prompt_id"]
        for _ in range(240):
            history = _get(f"{url}/history/{prompt_id}").get(prompt_id)
            if history and history.get("status", {}).get("completed") is not None:
                break
            time.sleep(0.5)
        error = dict(history["status"]["messages"])["execution_error"]
        assert error["node_type"] == "SGI2VLoadModel" and error["exception_type"].endswith("ModelError")
        assert error["exception_message"].strip() == f"{tmp_path / 'no-such-model'}: model folder not found"

        workflow["5"]["inputs"].update(num_inference_steps=200, iterations=0)  # long enough to be interrupted
        start = time.monotonic()
        out = subprocess.run([os.environ.get("COMFYUI_PYTHON", sys.executable), "-c", _INTERRUPT_CLIENT, url,
                              json.dumps(workflow), "5"], capture_output=True, text=True, timeout=360)
        assert out.returncode == 0, out.stderr[-3000:]
        events = json.loads(out.stdout)
        progress = [e["data"] for e in events if e["type"] == "progress" and e["data"]["node"] == "5"]
        assert progress and all(p["max"] == 200 for p in progress) and progress[-1]["value"] < 200
        assert events[-1]["type"] == "execution_interrupted" and events[-1]["data"]["node_id"] == "5", events[-1]
        print(f"interrupted at step {progress[-1]['value']} of 200, {time.monotonic() - start:.0f} s after submitting")
        assert _get(f"{url}/object_info/SGI2VSampler")  # still serving



def test_real_comfyui_lists_and_samples_a_single_file_checkpoint(tmp_path):
    """Load Model lists ComfyUI's models/checkpoints; the example workflow runs on the SVD checkpoint chosen there
    (the small one in the original layout, saved by ComfyUI)."""
    with real_comfyui("sgi2v_only", tmp_path, checkpoints=(SVD_FIXTURE,)) as (url, base):
        info = _get(f"{url}/object_info/SGI2VLoadModel")["SGI2VLoadModel"]
        assert info["input"]["optional"]["checkpoint"][0] == ["none", SVD_FIXTURE.name]
        workflow = small_workflow(json.loads((WORKFLOWS / "sgi2v_only.api.json").read_text()), "sgi2v-rocket.jpg")
        workflow["2"]["inputs"]["checkpoint"] = SVD_FIXTURE.name
        history = _submit(url, workflow)
        assert history["status"]["status_str"] == "success", json.dumps(history["status"])[:3000]
        written = [p for p in (base / "output").rglob("*") if p.suffix == ".mp4"]
        assert written, list((base / "output").rglob("*"))


# Run by ComfyUI's Python in its checkout: our Load Model and Sampler against ComfyUI's own memory manager, with a
# second model (a ComfyUI ModelPatcher of 64 MB) taking turns with ours. ComfyUI on the CPU never frees memory for
# a load (``load_models_gpu`` skips the CPU), so where a GPU would call ``free_memory(needed, device)`` this script
# calls it the same way; everything else is ComfyUI's accounting.
_MANAGER_SCRIPT = r"""
import json, os, sys
sys.path.insert(0, os.getcwd())
fixture = sys.argv[1]
sys.argv[1:] = ["--cpu"]
import comfy.options
comfy.options.enable_args_parsing()
import torch
import comfy.model_management as mm
import comfy.model_patcher
from sgi2v.comfyui.nodes import LoadModel, Sampler, Trajectory

calls = []
load_models_gpu = mm.load_models_gpu
def spy(models, memory_required=0, **kw):
    calls.append({"models": len(models), "memory_required": memory_required, "force_full_load": kw.get("force_full_load")})
    return load_models_gpu(models, memory_required=memory_required, **kw)
mm.load_models_gpu = spy

def state(ours, other):
    loaded = mm.loaded_models()
    return {"ours": ours.patcher in loaded and ours.patcher.loaded_size() == ours.patcher.model_size(),
            "ours_bytes": ours.patcher.loaded_size(),
            "other": other in loaded and other.loaded_size() == other.model_size()}

device = mm.get_torch_device()
steps = []
with torch.inference_mode():
    (ours,) = LoadModel().load(fixture, device="auto", dtype="float32", offload=False)
    (again,) = LoadModel().load(fixture, device="auto", dtype="float32", offload=False)
    other = comfy.model_patcher.ModelPatcher(torch.nn.Linear(4096, 4096), load_device=device,
                                             offload_device=mm.unet_offload_device())
    (trajectory,) = Trajectory().build(coord_str="", trajectory_json=json.dumps(
        {"boxes": [{"box": [10, 10, 40, 30], "path": [[25, 20], [55, 25]]}]}))
    image = torch.rand(1, 64, 128, 3)
    sample = dict(height=64, width=128, num_frames=4, num_inference_steps=2, optimize_timesteps="2", iterations=1)
    steps.append(("loaded", state(ours, other)))
    Sampler().sample(ours, image, trajectory, **sample)
    steps.append(("sampled", state(ours, other)))
    mm.free_memory(mm.get_free_memory(device) + other.model_size(), device)  # the other model needs the room
    mm.load_models_gpu([other])
    steps.append(("other loaded", state(ours, other)))
    need = ours.patcher.model_size() + calls[0]["memory_required"]
    mm.free_memory(mm.get_free_memory(device) + need, device)  # our next sampling needs the room
    Sampler().sample(ours, image, trajectory, **sample)
    steps.append(("sampled again", state(ours, other)))
print(json.dumps({"shared": again is ours, "patcher": type(ours.patcher).__name__, "calls": calls, "steps": steps,
                  "size": ours.patcher.model_size()}))
"""


def test_real_comfyuis_memory_manager_moves_our_model_and_another_in_turn(tmp_path):
    """Our model goes through ComfyUI's memory manager: the Sampler asks load_models_gpu for the room its
    generation needs (weights, plus the cost model's peak of the chosen mode), ComfyUI's free_memory unloads ours
    when another model needs the room and the other when ours does, and the same model loaded twice is one copy."""
    comfyui = _comfyui_dir()
    out = subprocess.run([os.environ.get("COMFYUI_PYTHON", sys.executable), "-c", _MANAGER_SCRIPT, str(SVD_FIXTURE)],
                         cwd=comfyui, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(json.dumps(result))
    assert result["shared"] and result["patcher"] == "ModelPatcher"
    ours_calls = [c for c in result["calls"] if c["force_full_load"]]
    assert len(ours_calls) == 2 and all(c["memory_required"] > 0 for c in ours_calls)  # one per sampling
    states = dict(result["steps"])
    assert states["loaded"] == {"ours": False, "ours_bytes": 0, "other": False}  # waits on the offload device
    assert states["sampled"]["ours"] and not states["sampled"]["other"]
    assert states["other loaded"] == {"ours": False, "ours_bytes": 0, "other": True}
    assert states["sampled again"]["ours"] and not states["sampled again"]["other"]
