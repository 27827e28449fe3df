"""The web app: the prepared picture, loaded files, one generation, failures, and a real browser session (Chromium + Playwright)."""

import json
import os
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from editor_page import CHROMIUM, CHROMIUM_ARGS, EditorPage
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
    paths = generate_video(session, FAST, app, cache, tmp_path / "s", lambda done, total, desc: seen.append((done, total)))
    assert seen[-1] == (2, 2) and (1, 2) in seen
    assert read_video(paths["video"]).shape == (4, 64, 128, 3)
    assert read_video(paths["overlay"]).shape == (4, 64, 128, 3)
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
    assert "1 boxes" in message and frames == 4 and data == json.loads(traj.read_text())  # shown as it is in the file
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
    from sgi2v.ui.app import launch

    port = free_port()
    demo = launch(model="tiny-random", device="cpu", dtype="fp32", port=port, block=False, root=tmp_path_factory.mktemp("ui"))
    yield demo, f"http://127.0.0.1:{port}/"
    demo.close()


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


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)")
def test_browser_draw_and_generate(server, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    demo, url = server
    image_path = tmp_path / "photo.png"
    picture(400, 200).save(image_path)
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "ui.png"

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
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
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "ui-failure.png"), full_page=True)
            raise
        finally:
            browser.close()
    print(f"screenshot: {shot}")

    runs = [p for p in demo.sgi2v.root.rglob("sgi2v-001.trajectory.json")]
    assert len(runs) == 1
    trajectory = json.loads(runs[0].read_text())
    assert len(trajectory["boxes"]) == 2 and trajectory["boxes"][1]["static"] is True
    assert len(trajectory["boxes"][0]["path"]) == 3  # the centre and two clicked points
    x0, y0, x1, y1 = trajectory["boxes"][0]["box"]  # in the 400 x 200 upload's pixels: the 128 x 64 clicks times 3.125
    assert abs(x0 - 62.5) <= 6 and abs(y0 - 50) <= 6 and abs(x1 - 162.5) <= 6 and abs(y1 - 137.5) <= 6
    record = json.loads(runs[0].with_name("sgi2v-001.json").read_text())
    assert record["frames_shape"] == [4, 64, 128, 3] and record["settings"]["num_inference_steps"] == 2
    assert record["config"]["optimize_timesteps"] == [2] and record["config"]["iterations"] == 1
