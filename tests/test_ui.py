"""The web app: the prepared picture, loaded files, one generation, failures, and a real browser session (Chromium + Playwright)."""

import contextlib
import json
import os
import socket
import time
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from editor_page import EditorPage
from sgi2v.trajectory import parse_trajectory
from sgi2v.fitting import Fit
from sgi2v.ui.state import fit_image

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
# Small enough for 2 busy CPU cores: 64 x 128 pixels, 4 frames, 2 steps, 1 optimised step.
FAST = dict(model="tiny-random", num_frames=4, width=128, height=64, num_inference_steps=2, seed=817, offload=False,
            gradient_checkpointing="auto", image_fit="stretch",
            optimize_timesteps="2", iterations=2, learning_rate=0.21, feature_layers="up_blocks.2.attentions.1,up_blocks.2.attentions.2",
            heatmap_sigma=0.4, high_frequency_reinit=True, low_pass_cutoff=0.5, butterworth_order=4, fps=7, motion_bucket_id=127,
            noise_aug_strength=0.02, min_guidance_scale=1.0, max_guidance_scale=3.0, decode_chunk_size=8)


def picture(width=200, height=100):
    """A synthetic photo: a gradient with a dark disc and a light square."""
    x = np.linspace(0, 255, width)[None, :, None]
    y = np.linspace(0, 255, height)[:, None, None]
    array = np.concatenate([np.broadcast_to(x, (height, width, 1)), np.broadcast_to(y, (height, width, 1)),
                            np.full((height, width, 1), 128.0)], axis=2).astype(np.uint8)
    image = Image.fromarray(array)
    draw = ImageDraw.Draw(image)
    draw.ellipse([width * 0.2, height * 0.3, width * 0.4, height * 0.7], fill=(20, 20, 30))
    draw.rectangle([width * 0.6, height * 0.2, width * 0.8, height * 0.6], fill=(240, 230, 200))
    return image


# -- the picture and loaded files ------------------------------------------------------------------

def test_fit_crops_to_the_aspect_and_maps_points_both_ways():
    image = picture(200, 100)  # 2:1 -> 1:1 crops the sides
    prepared, fit = fit_image(image, 64, 64, "crop")
    assert prepared.size == (64, 64) and fit.crop == (50.0, 0.0, 150.0, 100.0)
    assert fit.to_output(50, 0) == (0, 0) and fit.to_output(150, 100) == (64, 64)
    assert fit.to_source(*fit.to_output(77, 33)) == pytest.approx((77, 33))
    tall = Fit.make("crop", (100, 200), (128, 64))  # 1:2 -> 2:1 crops top and bottom
    assert tall.crop == (0.0, 75.0, 100.0, 125.0)


def test_reference_boxes_become_paths_with_the_same_motion():
    from sgi2v.ui.app import reference_trajectory

    boxes = np.array([[[10, 10, 30, 30], [20, 10, 40, 30], [30, 12, 50, 32]],
                      [[60, 40, 80, 60]] * 3], dtype=np.float32)
    data = reference_trajectory(boxes)
    assert data["boxes"][1] == {"box": [60, 40, 80, 60], "static": True}
    assert data["boxes"][0]["path"] == [[20, 20], [30, 20], [40, 22]]
    np.testing.assert_allclose(parse_trajectory(data, 3, (128, 64)).boxes, boxes)


# -- generation -------------------------------------------------------------------------------------

@pytest.fixture
def app_parts(tmp_path):
    from sgi2v.ui.app import AppConfig, PipelineCache

    app = AppConfig(models=("tiny-random",), device=torch.device("cpu"), dtype=torch.float32, root=tmp_path)
    return app, PipelineCache()


def session_with_box():
    from sgi2v.ui.app import Session

    session = Session()
    session.set_image(picture(256, 100), 128, 64)
    session.trajectory = {"boxes": [{"box": [20, 15.63, 100, 62.5], "path": [[60, 39.06], [160, 46.88]]}]}  # upload pixels
    return session


def test_generate_writes_the_cli_files_and_reuses_the_pipeline(app_parts, tmp_path):
    from sgi2v.ui.app import generate_video
    from sgi2v.video import read_video

    app, cache = app_parts
    session = session_with_box()
    seen = []
    paths = generate_video(session, FAST, app, cache, tmp_path / "s", lambda done, total, desc: seen.append((done, total, desc)))
    # 2 steps, the paper's t = 2 is the first step (i = 2 - 2 = 0), optimised by 2 iterations first: 4 ticks in all.
    assert seen == [(0, 4, "loading the model tiny-random"), (0, 4, "encoding the image"),
                    (0, 4, "optimising the latent: step 1 of 2, iteration 1 of 2"),
                    (1, 4, "optimising the latent: step 1 of 2, iteration 2 of 2"),
                    (2, 4, "denoising: step 1 of 2"), (3, 4, "denoising: step 2 of 2"),
                    (4, 4, "decoding the frames"), (4, 4, "writing the videos")]
    assert read_video(paths["video"]).shape == (4, 64, 128, 3)
    assert read_video(paths["overlay"]).shape == (4, 64, 128, 3)
    try:
        import cv2  # noqa: F401
    except ImportError:
        assert "tracked" not in paths
    else:  # with the evaluation extra: the overlay with the tracked paths as well
        assert read_video(paths["tracked"]).shape == (4, 64, 128, 3) and paths["tracked"].parent == paths["video"].parent
    record = json.loads(paths["record"].read_text())
    assert record["model"] == "tiny-random" and record["settings"]["num_frames"] == 4 and record["config"]["optimize_timesteps"] == [2]
    assert record["inputs"]["image"] == str(paths["input"].resolve())
    trajectory = json.loads(paths["trajectory"].read_text())  # in the uploaded image's pixels, as a trajectory file
    assert trajectory == session.trajectory  # what was drawn, as it was drawn
    np.testing.assert_allclose(record["boxes"], parse_trajectory(trajectory, 4, (256, 100)).resized(128, 64).boxes, atol=1e-9)
    assert Image.open(paths["input"]).size == (256, 100)  # the upload, fitted by the generation as the record says

    again = generate_video(session, FAST, app, cache, tmp_path / "s")
    assert cache.loads == 1  # the pipeline is cached
    assert again["video"].parent.name == "run-002"
    assert json.loads(again["record"].read_text())["frames_sha256"] == record["frames_sha256"]


def test_generation_refuses_bad_input(app_parts, tmp_path):
    from sgi2v.ui.app import Session, UIError, generate_video

    app, cache = app_parts
    with pytest.raises(UIError, match="Upload an image"):
        generate_video(Session(), FAST, app, cache, tmp_path)
    session = Session()
    session.set_image(picture(), 128, 64)
    with pytest.raises(UIError, match="Draw at least one box"):
        generate_video(session, FAST, app, cache, tmp_path)
    session = session_with_box()
    with pytest.raises(UIError, match="unknown model"):
        generate_video(session, dict(FAST, model="/etc"), app, cache, tmp_path)  # the page cannot name other models
    with pytest.raises(UIError, match="multiple of 64"):
        generate_video(session, dict(FAST, width=100), app, cache, tmp_path)
    with pytest.raises(UIError, match="optimize_timesteps"):
        generate_video(session, dict(FAST, optimize_timesteps="x-y"), app, cache, tmp_path)
    assert cache.loads == 0


def test_load_files_json_and_reference_format(tmp_path):
    from sgi2v.ui.app import Session, UIError, load_files

    session = Session()
    traj = tmp_path / "t.json"
    traj.write_text(json.dumps({"boxes": [{"box": [20, 20, 60, 60], "path": [[40, 40], [120, 60]]}]}))
    with pytest.raises(UIError, match="Upload the image first"):
        load_files(session, [str(traj)], 4, 128, 64, tmp_path)
    session.set_image(picture(256, 128), 128, 64)
    message, frames, data = load_files(session, [str(traj)], 4, 128, 64, tmp_path)
    assert "Loaded 1 box from" in message and frames == 4 and data == json.loads(traj.read_text())  # shown as it is in the file
    bad = tmp_path / "bad.json"
    bad.write_text('{"boxes": [{"box": [1, 2, 3]}]}')
    with pytest.raises(UIError, match=r"boxes\[0\]\.box"):
        load_files(session, [str(bad)], 4, 128, 64, tmp_path)
    with pytest.raises(UIError, match="not a trajectory file"):
        load_files(session, [str(tmp_path / "x.txt")], 4, 128, 64, tmp_path)

    folder = tmp_path / "ref"
    folder.mkdir()
    picture(256, 128).save(folder / "img.png")
    raw = np.array([[[20, 20], [60, 60], [40, 40], [60, 40], [80, 50], [100, 60], [120, 70]]], dtype=np.float32)  # 5 frames
    np.save(folder / "traj.npy", raw)
    message, frames, data = load_files(session, [str(folder / "img.png"), str(folder / "traj.npy")], 4, 128, 64, tmp_path)
    assert frames == 5 and session.original.size == (256, 128)
    assert data == {"boxes": [{"box": [20, 20, 60, 60], "path": [[40, 40], [60, 40], [80, 50], [100, 60], [120, 70]]}]}
    assert not any(p.name.startswith("reference-") for p in tmp_path.iterdir())  # its scratch copy is gone


# -- the app in a browser ---------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    pytest.importorskip("gradio")
    from sgi2v.ui.app import launch, stop

    port = free_port()
    # A closed page is noticed at the next heartbeat: every second here rather than Gradio's 15 s.
    heartbeat = os.environ.get("GRADIO_HEARTBEAT_INTERVAL")
    os.environ["GRADIO_HEARTBEAT_INTERVAL"] = "1"
    demo = launch(model="tiny-random", device="cpu", dtype="fp32", port=port, block=False, root=tmp_path_factory.mktemp("ui"))
    yield demo, f"http://127.0.0.1:{port}/"
    stop(demo)
    if heartbeat is None:
        os.environ.pop("GRADIO_HEARTBEAT_INTERVAL", None)
    else:
        os.environ["GRADIO_HEARTBEAT_INTERVAL"] = heartbeat


def test_server_listens_on_localhost_only_and_serves_no_other_files(server):
    import urllib.error
    import urllib.request

    demo, url = server
    assert demo.server_name == "127.0.0.1"
    assert demo.max_file_size == 25 * 1024 * 1024  # uploads are limited
    generate = [f for f in demo.fns.values() if f.name == "on_generate"]
    assert len(generate) == 1 and generate[0].concurrency_limit == 1 and generate[0].queue  # one generation at a time
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.status == 200
    for path in ("gradio_api/file=/etc/passwd", f"gradio_api/file={Path(__file__).resolve()}"):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(url + path, timeout=30)
        assert err.value.code in (403, 404)


def test_browser_draw_and_generate(server, tmp_path, browser):
    sync_api = pytest.importorskip("playwright.sync_api")
    demo, url = server
    image_path = tmp_path / "photo.png"
    picture(400, 200).save(image_path)
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "ui.png"

    page = browser.new_page(viewport={"width": 1400, "height": 1300})
    try:
        page.goto(url, timeout=60_000)
        status, run_status = page.locator("#status"), page.locator("#run-status")
        sync_api.expect(status).to_contain_text("Upload an image", timeout=60_000)

        # A failed generation shows its error and the app keeps serving.
        page.locator("#generate").click()
        sync_api.expect(run_status).to_contain_text("Error: Upload an image first", timeout=60_000)

        for elem, value in (("#width", "128"), ("#height", "64"), ("#num_frames", "4"), ("#num_inference_steps", "2")):
            page.locator(f"{elem} input").fill(value)
            page.locator(f"{elem} input").press("Tab")
            sync_api.expect(page.locator(f"{elem} input")).to_have_value(value)
        sync_api.expect(status).to_contain_text("Output size 128x64", timeout=30_000)
        page.locator("#upload input[type=file]").set_input_files(str(image_path))
        sync_api.expect(status).to_contain_text("Image prepared at 128x64", timeout=30_000)

        editor = EditorPage(page)
        editor.wait_for_picture(400, 200)
        # In the 400 x 200 upload's pixels: a box, two path points, a second box marked static.
        editor.drag((62.5, 50), (162.5, 137.5))
        sync_api.expect(page.locator(".sgi2v-status")).to_contain_text("box 1 (red) drawn", timeout=30_000)
        editor.click(250, 93.75)
        editor.click(337.5, 75)
        sync_api.expect(page.locator(".sgi2v-status")).to_contain_text("path point 2 added", timeout=30_000)
        editor.drag((281.25, 125), (375, 187.5))
        sync_api.expect(page.locator(".sgi2v-status")).to_contain_text("box 2 (blue) drawn", timeout=30_000)
        editor.click(112.5, 70)  # select box 1, then box 2 again: clicking a box selects it
        editor.click(330, 160)
        sync_api.expect(page.locator(".sgi2v-side [data-field=static]")).to_be_checked()  # no path yet: an anchor
        second = editor.data()["boxes"][1]
        assert second["static"] is True and np.allclose(second["box"], [281.25, 125, 375, 187.5], atol=1)

        page.get_by_text("SG-I2V method").click()  # one optimised step, one iteration: quick on a CPU
        for field, value in (("#optimize_timesteps textarea, #optimize_timesteps input", "2"), ("#iterations input", "1")):
            box = page.locator(field).first
            sync_api.expect(box).to_be_editable(timeout=30_000)  # the section has opened
            for _ in range(3):  # a busy page may re-render the field while it opens: type again
                box.fill(value)
                box.press("Tab")  # leave the field, so the page has taken the value before Generate
                if box.input_value() == value:
                    break
            sync_api.expect(box).to_have_value(value)

        # A generation that fails on the device shows the error; the next one works.
        cache = demo.sgi2v_cache
        real_loader = cache.loader

        def broken_loader(*args, **kwargs):
            raise RuntimeError("simulated device failure")

        cache.loader = broken_loader
        try:
            page.locator("#generate").click()
            sync_api.expect(run_status).to_contain_text("Error: RuntimeError: simulated device failure", timeout=60_000)
        finally:
            cache.loader = real_loader
        page.locator("#generate").click()
        sync_api.expect(run_status).to_contain_text("Done in", timeout=180_000)
        video = page.locator("#video video")
        sync_api.expect(video).to_have_attribute("src", __import__("re").compile(r"sgi2v-001\.mp4"), timeout=30_000)
        sync_api.expect(page.locator("#overlay video")).to_be_visible(timeout=30_000)
        for name in ("sgi2v-001.trajectory.json", "sgi2v-001.json"):  # the downloads: trajectory and run record
            sync_api.expect(page.locator(f"#downloads a[href$='/{name}']")).to_have_count(1, timeout=30_000)
        page.wait_for_function("document.querySelector('#video video').readyState >= 1", timeout=30_000)
        page.screenshot(path=str(shot), full_page=True)
        runs = [p for p in demo.sgi2v.root.rglob("sgi2v-001.trajectory.json")]  # read while the session lasts
        assert len(runs) == 1
        trajectory = json.loads(runs[0].read_text())
        record = json.loads(runs[0].with_name("sgi2v-001.json").read_text())
    except Exception:
        page.screenshot(path=str(ARTIFACTS / "ui-failure.png"), full_page=True)
        raise
    finally:
        page.close()
    print(f"screenshot: {shot}")

    assert len(trajectory["boxes"]) == 2 and trajectory["boxes"][1]["static"] is True
    assert len(trajectory["boxes"][0]["path"]) == 3  # the centre and two clicked points
    x0, y0, x1, y1 = trajectory["boxes"][0]["box"]  # in the 400 x 200 upload's pixels: the 128 x 64 clicks times 3.125
    assert abs(x0 - 62.5) <= 6 and abs(y0 - 50) <= 6 and abs(x1 - 162.5) <= 6 and abs(y1 - 137.5) <= 6
    assert record["frames_shape"] == [4, 64, 128, 3] and record["settings"]["num_inference_steps"] == 2
    assert record["config"]["optimize_timesteps"] == [2] and record["config"]["iterations"] == 1


# -- sessions, messages, examples -------------------------------------------------------------------

def test_session_folders_are_separate_unguessable_and_removed(tmp_path):
    from sgi2v.ui.app import SessionFolders, UIError

    folders = SessionFolders(tmp_path)
    a, b = folders.get("tab-a"), folders.get("tab-b")
    assert a != b and a.parent == b.parent == tmp_path
    assert folders.get("tab-a") == a  # the same session keeps its folder
    assert "tab-a" not in a.name and len(a.name) >= 32  # named at random, not after anything the page sends
    assert oct(a.stat().st_mode & 0o777) == oct(0o700)
    (a / "run-001").mkdir()
    (b / "x.json").write_text("{}")
    folders.remove("tab-a")
    assert not a.exists() and (b / "x.json").exists()
    with pytest.raises(UIError, match="session has ended"):  # a late event of the closed page makes no new folder
        folders.get("tab-a")
    assert folders.get(None) != folders.get(None)  # without a session id: a new folder each time, never a shared one
    folders.remove(folder=b)
    assert not b.exists()
    folders.remove_all()
    assert not any(tmp_path.iterdir()) and len(folders) == 0


def _png_declaring(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width`` x ``height`` (a decompression bomb) with one row of data."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit gray
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * (width + 1)))
            + chunk(b"IEND", b""))


def test_upload_errors_name_the_file_not_the_server_folder(tmp_path):
    from sgi2v.ui.app import UIError, read_image_upload

    text = tmp_path / "notes.png"
    text.write_text("not an image")
    good = tmp_path / "photo.png"
    picture(64, 32).save(good)
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_declaring(16000, 12000))
    for path, expected in ((text, "notes.png: not an image file"), (truncated, "cut.png: cannot read the image"),
                           (bomb, "bomb.png: the image is 16000x12000")):
        with pytest.raises(UIError) as err:
            read_image_upload(path)
        assert str(err.value).startswith(expected) and str(tmp_path) not in str(err.value)
    assert read_image_upload(good).size == (64, 32)


def test_keyframes_past_the_last_frame_ask_for_the_frame_count(tmp_path):
    from sgi2v.ui.app import FramesNeeded, Session, load_files

    session = Session()
    session.set_image(picture(256, 128), 128, 64)
    traj = tmp_path / "late.json"
    traj.write_text(json.dumps({"boxes": [{"box": [20, 20, 60, 60], "keyframes": {"5": [80, 40], "20": [120, 60]}}]}))
    with pytest.raises(FramesNeeded) as err:
        load_files(session, [str(traj)], 14, 128, 64, tmp_path)
    assert err.value.frames == 21 and "late.json: its keyframes go up to frame 20, but the video has 14 frames" in str(err.value)
    message, frames, data = load_files(session, [str(traj)], err.value.frames, 128, 64, tmp_path)  # the offer taken
    assert frames == 21 and data == json.loads(traj.read_text())
    bad = tmp_path / "broken.json"
    bad.write_text('{"boxes": [')
    with pytest.raises(ValueError, match="broken.json"):
        load_files(session, [str(bad)], 14, 128, 64, tmp_path)


def test_the_page_is_built_without_the_model_libraries(tmp_path):
    """The server answers before diffusers and transformers are imported (they took 2.5 s of its 6.3 s start on a
    2-core CPU): they load with the first model, when a run needs one."""
    import subprocess
    import sys

    code = ("import sys, pathlib; from sgi2v.ui.app import build_app; "
            "build_app(model='tiny-random', device='cpu', dtype='float32', root=pathlib.Path(sys.argv[1])); "
            "print(sorted(m for m in ('diffusers', 'transformers') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "ui")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]", result.stdout


def test_every_bundled_example_loads_its_image_and_trajectory(tmp_path):
    from sgi2v.images import load_image
    from sgi2v.ui.app import EXAMPLES_DIR, Session, _example_image, examples, load_example

    names = examples()
    assert names == sorted(p.name for p in EXAMPLES_DIR.iterdir() if p.is_dir())
    assert {"sprites", "sprites-static", "sprites-leaving"} <= set(names)  # scenes for the sprites model among them
    for name in names:
        session = Session()
        message, frames, image, trajectory = load_example(session, name, 14, 128, 64, tmp_path)
        assert f"the example '{name}'" in message and frames == 14
        assert image.parent == tmp_path and image.read_bytes() == _example_image(EXAMPLES_DIR / name).read_bytes()
        assert trajectory == json.loads((EXAMPLES_DIR / name / "trajectory.json").read_text())
        assert session.original.size == load_image(_example_image(EXAMPLES_DIR / name)).size
        assert session.prepared.size == (128, 64)


def _ui_process(scratch: Path, port: int):
    """``sgi2v ui`` on the tiny model in a subprocess whose TMPDIR is ``scratch``; its output (text, stderr
    included) in ``process.stdout``."""
    import subprocess
    import sys

    env = dict(os.environ, TMPDIR=str(scratch), PYTHONPATH=os.pathsep.join(filter(None, [str(Path(__file__).parent.parent / "src"),
                                                                                        os.environ.get("PYTHONPATH")])))
    return subprocess.Popen([sys.executable, "-m", "sgi2v", "ui", "--model", "tiny-random", "--device", "cpu", "--port", str(port)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _read_lines(process):
    """The process's output lines as they come (a list filled by the returned daemon thread)."""
    import threading

    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(process.stdout.readline, "")), daemon=True)
    reader.start()
    return lines, reader


def _wait_until_served(process, port: int, lines: list[str] | None = None) -> None:
    """Wait (up to 180 s) until the server answers on ``port``; fails with its output if it exits first."""
    import urllib.request

    deadline = time.monotonic() + 180
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5):
                return
        except OSError:
            output = "".join(lines) if lines is not None else process.stdout.read() if process.poll() is not None else ""
            assert process.poll() is None and time.monotonic() < deadline, output[-2000:]
            time.sleep(0.5)


# SIGINT in the same state takes the same road (the second-Ctrl-C and generation tests send it to a serving server)
@pytest.mark.parametrize("signum", ["SIGTERM"])
def test_the_server_removes_its_folders_when_stopped(tmp_path, signum):
    pytest.importorskip("gradio")
    import signal

    port = free_port()
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    process = _ui_process(scratch, port)
    try:
        _wait_until_served(process, port)
        roots = [p for p in scratch.iterdir() if p.name.startswith("sgi2v-ui-")]
        assert len(roots) == 1 and (roots[0] / "examples").is_dir()  # the server's folder, with what it serves
        process.send_signal(getattr(signal, signum))
        assert process.wait(timeout=60) == 0
        assert not roots[0].exists()
        assert list(scratch.iterdir()) == []  # Gradio's own empty folders made at start are gone too
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.parametrize("signum", ["SIGINT", "SIGTERM"])
def test_a_signal_while_the_server_starts_stops_it_cleanly(tmp_path, signum):
    """The signal comes as soon as the server has made its folder (observed, not slept for), while it is
    still building the app and starting: exit 0 within 10 s, nothing left behind."""
    pytest.importorskip("gradio")
    import signal

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    process = _ui_process(scratch, free_port())
    try:
        deadline = time.monotonic() + 120
        while not any(p.name.startswith("sgi2v-ui-") for p in scratch.iterdir()):
            assert process.poll() is None and time.monotonic() < deadline, process.stdout.read()[-2000:]
            time.sleep(0.01)
        process.send_signal(getattr(signal, signum))
        start = time.monotonic()
        code = process.wait(timeout=30)
        output = process.stdout.read()
        assert code == 0, output[-2000:]
        assert time.monotonic() - start < 10
        assert list(scratch.iterdir()) == [], output[-2000:]
        assert "Traceback" not in output
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_a_second_ctrl_c_while_the_server_stops_still_leaves_nothing(tmp_path):
    """Ctrl-C, and Ctrl-C again as soon as the server says it is stopping (observed, not slept for): the clean-up
    runs to its end all the same; the command exits 130 (or 0 if it had already finished) within 10 s, with no
    folder or temporary file left and no traceback."""
    pytest.importorskip("gradio")
    import signal

    port = free_port()
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    process = _ui_process(scratch, port)
    lines, reader = _read_lines(process)
    try:
        _wait_until_served(process, port, lines)
        process.send_signal(signal.SIGINT)
        start = time.monotonic()
        while not any("stopping the server" in line for line in lines) and process.poll() is None:
            assert time.monotonic() - start < 10, "".join(lines)[-2000:]
            time.sleep(0.001)
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=60)
        took = time.monotonic() - start
        reader.join(timeout=10)
        output = "".join(lines)
        assert code in (130, 0), output[-3000:]
        assert took < 10, (took, output[-2000:])
        assert list(scratch.iterdir()) == [], (list(scratch.rglob("*")), output[-2000:])
        assert "Traceback" not in output, output[-3000:]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@contextlib.contextmanager
def _served_page(tmp_path, browser):
    """``sgi2v ui`` on the tiny model in a subprocess whose TMPDIR is a fresh folder, and a page showing it;
    yields its ``process``, ``page``, ``lines`` (the server's output, filled by ``reader``) and ``scratch`` (its
    TMPDIR). Kills the server and closes the page on the way out."""
    sync_api = pytest.importorskip("playwright.sync_api")

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    port = free_port()
    process = _ui_process(scratch, port)
    lines, reader = _read_lines(process)
    page = None
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        deadline = time.monotonic() + 180
        while True:
            try:
                page.goto(f"http://127.0.0.1:{port}/", timeout=10_000)
                break
            except Exception:
                assert process.poll() is None and time.monotonic() < deadline
                time.sleep(0.5)
        sync_api.expect(page.locator("#status")).to_contain_text("Upload an image", timeout=60_000)
        yield types.SimpleNamespace(process=process, page=page, lines=lines, scratch=scratch, reader=reader)
    except Exception as err:  # whatever failed (a page that waited in vain, too), the report shows what the server said
        err.add_note("the server's output (last 3,000 characters):\n" + "".join(lines)[-3000:])
        raise
    finally:
        if page is not None:
            page.close()
        if process.poll() is None:
            process.kill()
            process.wait()


def _stops_cleanly(server, signum: str) -> None:
    """Send ``signum`` to a :func:`_served_page` server: it exits 0 within 10 s, leaving nothing in its TMPDIR
    and no traceback."""
    import signal

    server.process.send_signal(getattr(signal, signum))
    start = time.monotonic()
    code = server.process.wait(timeout=60)
    took = time.monotonic() - start
    print(f"{signum}: the server exited {code} after {took:.2f} s")  # shown with pytest -rP: the margin under load
    server.reader.join(timeout=10)
    # A failure's report carries the server's output: _served_page adds it.
    assert code == 0
    assert took < 10, took
    assert list(server.scratch.iterdir()) == [], list(server.scratch.rglob("*"))
    assert "Traceback" not in "".join(server.lines)


@pytest.mark.parametrize("signum,moment", [("SIGINT", "generation"), ("SIGTERM", "generation"), ("SIGINT", "model load")])
def test_a_signal_during_a_generation_stops_the_server_cleanly(tmp_path, browser, signum, moment):
    """A generation runs (the page shows its denoising steps), or the model starts loading (the server logs
    it), when the signal comes (observed, not slept for): the server exits 0 within 10 s and leaves no
    folder, temporary file or child process."""
    sync_api = pytest.importorskip("playwright.sync_api")
    from sgi2v.ui.app import EXAMPLES_DIR

    with _served_page(tmp_path, browser) as server:
        page = server.page
        _fast_form(page, sync_api, steps="200")  # long enough to be caught in the middle
        page.locator("#examples img").nth(sorted(p.name for p in EXAMPLES_DIR.iterdir() if p.is_dir()).index("cat")).click()
        sync_api.expect(page.locator("#status")).to_contain_text("from the example 'cat'", timeout=30_000)
        page.locator("#generate").click()
        if moment == "generation":
            sync_api.expect(page.locator("#video")).to_contain_text("Denoising: step", timeout=120_000)
        else:
            deadline = time.monotonic() + 120
            while not any("loading tiny-random" in line for line in server.lines):
                assert time.monotonic() < deadline  # the report shows the server's output
                time.sleep(0.005)
        _stops_cleanly(server, signum)


@pytest.mark.parametrize("signum", ["SIGINT"])  # SIGTERM takes the same road (the generation tests have both)
def test_a_signal_while_a_preview_renders_stops_the_server_cleanly(tmp_path, browser, signum):
    """The motion preview of a loaded example is being written (its temporary file is there: observed, not slept
    for) when the signal comes: the server exits 0 within 10 s and leaves no folder or temporary file."""
    from sgi2v.ui.app import EXAMPLES_DIR

    with _served_page(tmp_path, browser) as server:
        page = server.page
        for elem, value in (("#num_frames", "25"), ("#width", "1024"), ("#height", "576")):  # a preview that takes a while
            page.locator(f"{elem} input").fill(value)
            page.locator(f"{elem} input").press("Tab")
        page.locator("#examples img").nth(sorted(p.name for p in EXAMPLES_DIR.iterdir() if p.is_dir()).index("cat")).click()
        deadline = time.monotonic() + 120
        while not any(".tmp" in p.name and p.parent.name == "preview" for p in server.scratch.rglob("*")):
            assert server.process.poll() is None and time.monotonic() < deadline  # with the output
            time.sleep(0.002)
        _stops_cleanly(server, signum)


def _fast_form(page, sync_api, steps: str = "3") -> None:
    """The form set for a quick run on a CPU: 128 x 64, 4 frames, ``steps`` steps, one optimised step of 2 iterations."""
    for elem, value in (("#width", "128"), ("#height", "64"), ("#num_frames", "4"), ("#num_inference_steps", steps)):
        page.locator(f"{elem} input").fill(value)
        page.locator(f"{elem} input").press("Tab")
        sync_api.expect(page.locator(f"{elem} input")).to_have_value(value)
    page.get_by_text("SG-I2V method").click()
    for field, value in (("#optimize_timesteps textarea, #optimize_timesteps input", "2"), ("#iterations input", "2")):
        box = page.locator(field).first
        sync_api.expect(box).to_be_editable(timeout=30_000)
        for _ in range(3):  # a busy page may re-render the field while it opens: type again
            box.fill(value)
            box.press("Tab")
            if box.input_value() == value:
                break
        sync_api.expect(box).to_have_value(value)


def test_loader_reads_point_formats_as_the_options_say(tmp_path):
    """The page's trajectory options are those of --box-size, --canvas-size, --timing: same file, same boxes."""
    from sgi2v.formats import resolve_trajectory_options
    from sgi2v.generation import prepare_inputs
    from sgi2v.settings import resolve_settings
    from sgi2v.ui.app import Session, load_files

    session = Session()
    session.set_image(picture(400, 200), 128, 64)
    coords = tmp_path / "coords.json"
    coords.write_text(json.dumps([{"x": 100, "y": 50}, {"x": 150, "y": 60}, {"x": 300, "y": 100}]))
    given = {"box_size": "40x20", "canvas_size": "800x400", "timing": "speed"}
    options = resolve_trajectory_options(given)
    _, frames, data = load_files(session, [str(coords)], 6, 128, 64, tmp_path, options=options)
    assert data["boxes"][0]["box"] == [40, 20, 60, 30]  # a 40x20 box of the 800x400 canvas, in the 400x200 upload
    image = tmp_path / "in.png"
    session.original.save(image)
    settings, _ = resolve_settings({"num_frames": 6, "width": 128, "height": 64})
    from_cli = prepare_inputs(image, coords, settings, trajectory_options=given)
    assert from_cli.inputs["trajectory"] == data
    with pytest.raises(Exception, match=r"box_size: expected a width and height like 80x60"):
        resolve_trajectory_options({"box_size": "40"}, source="reading the trajectory")


def test_browser_loads_a_spline_path_with_the_box_size_given_in_the_page(server, tmp_path, browser):
    sync_api = pytest.importorskip("playwright.sync_api")
    demo, url = server
    good, coords = tmp_path / "photo.png", tmp_path / "coords.json"
    picture(400, 200).save(good)
    coords.write_text(json.dumps([{"x": 100, "y": 50}, {"x": 150, "y": 60}, {"x": 300, "y": 100}]))
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    try:
        page.goto(url, timeout=60_000)
        page.locator("#upload input[type=file]").set_input_files(str(good))
        sync_api.expect(page.locator("#status")).to_contain_text("Image prepared", timeout=60_000)
        page.locator("#trajectory-options").get_by_text("Reading a trajectory file").click()
        field = page.locator("#box_size textarea, #box_size input").first
        field.fill("40")  # refused, in the page
        field.press("Tab")  # leave the field, as a user does before loading, so that its value is settled
        sync_api.expect(field).to_have_value("40")
        EditorPage(page).load(coords)
        sync_api.expect(page.locator("#status")).to_contain_text("box_size: expected a width and height", timeout=30_000)
        field.fill("40x20")
        field.press("Tab")
        sync_api.expect(field).to_have_value("40x20")
        EditorPage(page).load(coords)
        sync_api.expect(page.locator("#status")).to_contain_text("Loaded 1 box from coords.json", timeout=30_000)
        box = EditorPage(page).data()["boxes"][0]["box"]
        assert box == [80, 40, 120, 60]  # 40x20 around the first point, in the upload's pixels
        sync_api.expect(page.locator("#preview-status")).to_contain_text("Preview: 14 frames", timeout=30_000)
        page.screenshot(path=str(ARTIFACTS / "ui-load-spline.png"), full_page=True)
    finally:
        page.close()


def test_browser_failed_uploads_show_their_message_until_a_good_one(server, tmp_path, browser):
    sync_api = pytest.importorskip("playwright.sync_api")
    demo, url = server
    text, good = tmp_path / "notes.png", tmp_path / "photo.png"
    text.write_text("a text file named .png")
    picture(400, 200).save(good)
    ARTIFACTS.mkdir(exist_ok=True)

    page = browser.new_page(viewport={"width": 1280, "height": 800})
    try:
        page.goto(url, timeout=60_000)
        status = page.locator("#status")
        sync_api.expect(status).to_contain_text("Upload an image", timeout=60_000)
        assert page.locator("#generate").bounding_box()["y"] + 40 < 800  # Generate is seen without scrolling
        page.locator("#upload input[type=file]").set_input_files(str(text))
        sync_api.expect(status).to_contain_text("Error: notes.png: not an image file", timeout=30_000)
        # the editor's own line under the canvas says the same, not "Upload an image to start"
        sync_api.expect(page.locator(".sgi2v-status")).to_contain_text("notes.png: not an image file", timeout=30_000)
        sync_api.expect(status).to_be_in_viewport()
        page.screenshot(path=str(ARTIFACTS / "ui-bad-upload.png"))
        page.locator("#upload input[type=file]").set_input_files(str(good))  # the field was emptied for the next try
        sync_api.expect(status).to_contain_text("Image prepared at 1024x576", timeout=30_000)
        sync_api.expect(status).not_to_contain_text("Error")
        sync_api.expect(page.locator("#status.error")).to_have_count(0)

        page.locator("#width input").fill("100")  # an invalid number: said at once, gone once fixed
        page.locator("#width input").press("Tab")
        sync_api.expect(page.locator("#form-status")).to_contain_text("width: expected an integer", timeout=30_000)
        page.locator("#width input").fill("1024")
        page.locator("#width input").press("Tab")
        sync_api.expect(page.locator("#form-status")).to_have_text("", timeout=30_000)
    except Exception:
        page.screenshot(path=str(ARTIFACTS / "ui-bad-upload-failure.png"), full_page=True)
        raise
    finally:
        page.close()


def test_browser_two_sessions_generate_at_once_each_with_its_own_files(server, browser):
    """Two browser sessions load different examples from the gallery and generate at the same time: each gets its own
    folder and files, whose SHA-256 are those of its own run record; the progress names each phase; closing one
    session removes its folder only."""
    import hashlib
    import re
    import urllib.request

    sync_api = pytest.importorskip("playwright.sync_api")
    from sgi2v.ui.app import EXAMPLES_DIR

    demo, url = server
    ARTIFACTS.mkdir(exist_ok=True)
    names = ("cat", "rocket")  # both fit 4 frames
    watch = """() => { window.phases = []; new MutationObserver(() => {
        const text = document.querySelector('#video')?.innerText || '';
        const match = text.match(/(Loading the model|Encoding|Optimising the latent: step \\d+ of \\d+, iteration \\d+ of \\d+|Denoising: step \\d+ of \\d+|Decoding|Writing)/);
        if (match && window.phases[window.phases.length - 1] !== match[1]) window.phases.push(match[1]);
    }).observe(document.body, {subtree: true, childList: true, characterData: true}); }"""

    contexts = [browser.new_context(viewport={"width": 1280, "height": 800}) for _ in names]
    pages = [context.new_page() for context in contexts]
    try:
        for page, name in zip(pages, names):
            page.goto(url, timeout=60_000)
            sync_api.expect(page.locator("#status")).to_contain_text("Upload an image", timeout=60_000)
            _fast_form(page, sync_api)
            page.locator("#examples img").nth(sorted(p.name for p in EXAMPLES_DIR.iterdir() if p.is_dir()).index(name)).click()
            sync_api.expect(page.locator("#status")).to_contain_text(f"from the example '{name}'", timeout=30_000)
            page.evaluate(watch)
        for page in pages:  # both at once: one runs, the other waits its turn
            page.locator("#generate").click()
        for page, name in zip(pages, names):
            sync_api.expect(page.locator("#run-status")).to_contain_text("Done in", timeout=300_000)
            assert page.evaluate("window.scrollY") > 400  # the page went down to the results
            page.screenshot(path=str(ARTIFACTS / f"ui-session-{name}.png"))

        folders, loaded = [], []
        for page, name in zip(pages, names):
            links = {Path(href).name: url.rstrip("/") + href if href.startswith("/") else href
                     for href in page.locator("#downloads a").evaluate_all("els => els.map(a => a.getAttribute('href'))")}
            record = json.loads(urllib.request.urlopen(links["sgi2v-001.json"], timeout=30).read())
            served_input = urllib.request.urlopen(links["sgi2v-001.input.png"], timeout=30).read()
            served_trajectory = json.loads(urllib.request.urlopen(links["sgi2v-001.trajectory.json"], timeout=30).read())
            assert hashlib.sha256(served_input).hexdigest() == record["inputs"]["image_sha256"]
            assert served_trajectory == record["inputs"]["trajectory"] == json.loads((EXAMPLES_DIR / name / "trajectory.json").read_text())
            assert Image.open(EXAMPLES_DIR / name / "image.jpg").size == tuple(record["inputs"]["image_size"])
            video = Path(record["inputs"]["image"]).with_name("sgi2v-001.mp4")
            assert hashlib.sha256(video.read_bytes()).hexdigest() == hashlib.sha256(
                urllib.request.urlopen(links["sgi2v-001.mp4"] if "sgi2v-001.mp4" in links else
                                       url.rstrip("/") + page.locator("#video video").get_attribute("src").split(url.rstrip("/"))[-1],
                                       timeout=30).read()).hexdigest()
            folders.append(Path(record["inputs"]["image"]).parent.parent)  # <session folder>/run-001/
            # 3 steps; the paper's t = 2 is the second step (i = 3 - 2 = 1), its latent optimised first.
            phases = page.evaluate("window.phases")
            first = {}
            for index, phase in enumerate(phases):
                first.setdefault(re.sub(r":.*", "", phase), index)
            order = ["Loading the model", "Encoding", "Denoising", "Optimising the latent", "Decoding", "Writing"]
            # the run that finds the model already loaded may pass "Loading the model" faster than the page redraws
            seen = sorted(first, key=first.get)
            assert seen == [p for p in order if p in seen or p != "Loading the model"], phases
            loaded.append("Loading the model" in seen)
            assert any(p.startswith("Optimising the latent: step 2 of 3, iteration") for p in phases), phases
            assert "Denoising: step 3 of 3" in phases, phases
        assert any(loaded), "no page showed the model loading"
        assert folders[0] != folders[1] and all(f.parent == demo.sgi2v.root for f in folders)

        contexts[0].close()  # the first session ends: its folder goes, the other's stays
        deadline = time.monotonic() + 60
        while folders[0].exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not folders[0].exists() and folders[1].exists()
        time.sleep(3)  # late events of the closed page (its motion preview) leave no new folder behind
        assert {f.name for f in demo.sgi2v.root.glob("session-*")} == {folders[1].name}
    except Exception:
        for page, name in zip(pages, names):
            with __import__("contextlib").suppress(Exception):
                page.screenshot(path=str(ARTIFACTS / f"ui-session-{name}-failure.png"), full_page=True)
        raise
    finally:
        for context in contexts:
            context.close()


def test_tracked_paths_follow_a_square_moved_by_a_known_path():
    pytest.importorskip("cv2")
    from sgi2v.ui.app import tracked_overlay, tracked_paths
    from sgi2v.video import draw_overlay

    rng = np.random.RandomState(0)
    background = (rng.rand(64, 128, 3) * 60).astype(np.uint8)
    texture = 160 + (rng.rand(16, 16, 3) * 90).astype(np.uint8)
    frames, boxes = [], []
    for f in range(5):  # a textured light square moving 3 px right and 1 px down per frame
        frame = background.copy()
        x, y = 20 + 3 * f, 16 + f
        frame[y:y + 16, x:x + 16] = texture
        frames.append(frame)
        boxes.append([x, y, x + 16, y + 16])
    frames = np.stack(frames)
    boxes = np.array([boxes, [[0, 0, 128, 64]] * 5], dtype=np.float64)  # the square's box and a camera box
    chosen, tracks, valid = tracked_paths(frames, boxes, ("square", "camera"))
    assert chosen == [0]  # the camera is not tracked
    expected = (boxes[0, :, :2] + boxes[0, :, 2:]) / 2
    np.testing.assert_allclose(tracks[0], expected, atol=0.5)
    assert valid.all()
    shown = tracked_overlay(frames, boxes, ("square", "camera"))
    plain = draw_overlay(frames, boxes)
    assert shown.shape == plain.shape and (shown != plain).any()
