"""The web app's trajectory editor (sgi2v/ui/editor.js).

Its logic runs in Node and is compared with the library: the boxes it draws per frame against
:func:`sgi2v.trajectory.parse_trajectory`, the camera against the generation's layout. Then the
editor in the app, in Chromium, driven by real mouse and keyboard events: each test saves a
screenshot under ``test-artifacts/``.
"""

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from editor_page import EditorPage
from sgi2v.generation import prepare_inputs
from sgi2v import trajectory
from sgi2v.settings import resolve_settings
from sgi2v.trajectory import parse_trajectory
from test_ui import free_port, picture

EDITOR_JS = Path(__file__).resolve().parent.parent / "src" / "sgi2v" / "ui" / "editor.js"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
NODE = shutil.which("node") or shutil.which("nodejs")
SIZE = (400, 200)  # the uploaded picture

needs_node = pytest.mark.skipif(NODE is None, reason="no Node.js to run the editor's logic outside a browser")


def js(body: str):
    """Run ``body`` (JavaScript returning a value; ``E`` is the editor module) in Node; its value, through JSON."""
    script = f"const E = require({json.dumps(str(EDITOR_JS))});\nconst out = (() => {{ {body} }})();\n" \
             "process.stdout.write(JSON.stringify(out));"
    done = subprocess.run([NODE, "-e", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


# -- the logic, against the library ----------------------------------------------------------------

ENTRIES = [
    {"box": [20, 30, 60, 70], "path": [[40, 50], [120, 60], [200, 40]]},
    {"box": [20, 30, 60, 70], "path": [[45, 52], [120, 60], [200, 40], [260, 90]], "interpolation": "spline"},  # path[0] off the centre
    {"box": [100, 20, 140, 60], "keyframes": {"3": [180, 40], "7": [250, 120]}},
    {"box": [100, 20, 140, 60], "keyframes": {"0": [118, 41], "4": [180, 40], "9": [60, 150]}, "interpolation": "spline"},
    {"box": [200, 100, 260, 150], "path": [[230, 125], [300, 140]], "scale": 1.5},
    {"box": [200, 100, 260, 150], "path": [[230, 125], [300, 140], [320, 100]], "scale": [1, 0.5, 2], "interpolation": "spline"},
    {"box": [300, 150, 340, 190], "static": True, "label": "anchor"},
]


@needs_node
@pytest.mark.parametrize("frames", [10, 14, 25])
def test_boxes_per_frame_are_those_of_parse_trajectory(frames):
    drawn = js(f"return {json.dumps(ENTRIES)}.map((e) => E.sampleEntry(e, {frames}).boxes);")
    parsed = parse_trajectory({"boxes": ENTRIES}, frames, SIZE).boxes
    np.testing.assert_allclose(np.array(drawn), parsed, atol=1e-9)


TIMED = [
    {"box": [20, 30, 60, 70], "path": [[40, 50], [120, 60], [120, 60], [200, 40]], "timing": "speed"},  # a repeated point
    {"box": [20, 30, 60, 70], "path": [[40, 50], [120, 60], [200, 40], [260, 90]], "timing": "ease"},
    {"box": [20, 30, 60, 70], "path": [[45, 52], [120, 60], [200, 40], [260, 90]], "timing": "ease", "interpolation": "spline"},
    {"box": [200, 100, 260, 150], "path": [[230, 125], [300, 140], [320, 100]], "timing": "speed", "scale": 1.5},
]


@needs_node
@pytest.mark.parametrize("frames", [2, 7, 14])
def test_timed_paths_are_those_of_parse_trajectory(frames):
    out = js(f"return {json.dumps(TIMED)}.map((e) => E.sampleEntry(e, {frames}));")
    parsed = parse_trajectory({"boxes": TIMED}, frames, SIZE).boxes
    np.testing.assert_allclose(np.array([o["boxes"] for o in out]), parsed, atol=1e-6)
    # each point is passed at the frame its knot says: the centre there is the point (linear paths)
    for entry, o in zip(TIMED, out):
        if entry.get("interpolation") == "spline":
            continue
        centres = trajectory.resample_path(np.array(entry["path"], dtype=float), 2001, entry["timing"])
        for knot in o["knots"]:
            at = centres[int(round(knot["t"] / (frames - 1) * 2000))]
            assert np.hypot(*(at - np.array(entry["path"][0]) + (np.array(entry["box"][:2]) + entry["box"][2:]) / 2
                              - [knot["x"], knot["y"]])) < 0.5


@needs_node
@pytest.mark.parametrize("fit", ["stretch", "crop", "pad"])
@pytest.mark.parametrize("camera", [{"pan": "left"}, {"pan": "up", "amount": 0.2, "zoom": 1.3}, {"pan": [0.1, -0.05], "zoom": 0.8}])
def test_camera_outline_is_the_camera_box_the_generation_uses(camera, fit):
    settings, _ = resolve_settings({"width": 128, "height": 128, "num_frames": 6, "image_fit": fit}, model="tiny-random")
    prepared = prepare_inputs(picture(*SIZE), {"camera": camera}, settings)
    from sgi2v.fitting import Fit

    placed = list(Fit.make(fit, SIZE, (128, 128)).placed)
    drawn = js(f"return E.cameraBoxes({json.dumps(camera)}, 6, {json.dumps(placed)});")  # in output pixels
    np.testing.assert_allclose(np.array(drawn), prepared.boxes[-1], atol=1e-6)


@needs_node
def test_the_drawn_path_runs_through_every_point_and_ticks_are_the_frames():
    out = js(f"""const e = {json.dumps(ENTRIES[1])}; const s = E.sampleEntry(e, 7);
        return {{knots: s.knots, curve: s.curve, boxes: s.boxes}};""")
    curve = np.array(out["curve"])
    for knot in out["knots"]:  # every point is a vertex of the drawn curve
        assert np.min(np.hypot(*(curve - [knot["x"], knot["y"]]).T)) < 1e-9
    boxes = np.array(out["boxes"])
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    times = [k["t"] for k in out["knots"]]
    np.testing.assert_allclose(times, np.linspace(0, 6, 4))
    # the knots are where the box centre is at their frames: frames 0, 2, 4, 6
    np.testing.assert_allclose(centres[[0, 2, 4, 6]], [[k["x"], k["y"]] for k in out["knots"]], atol=1e-9)


@needs_node
def test_every_edit_is_one_undo_step_and_leaves_a_valid_trajectory():
    states = js("""
        const m = new E.Model(null, {numFrames: 9, bounds: [0, 0, 400, 200], minSize: 4});
        const seen = [m.text()];
        const step = (f) => { f(); seen.push(m.text()); };
        step(() => m.addBox(40, 40, 100, 90));                        // 1 a box (static: no path yet)
        step(() => m.appendPoint(0, 200, 80));                         // 2 a path from its centre
        step(() => m.appendPoint(0, 300, 50));                         // 3
        step(() => m.insertPoint(0, 0, 150, 100));                     // 4 between the first two points
        let before = m.text();
        step(() => { m.moveKnot(0, JSON.parse(before).boxes[0], 2, 220, 120); m.commit(before); });  // 5 a point dragged
        before = m.text();
        step(() => { m.moveBox(0, JSON.parse(before).boxes[0], 10, -5); m.commit(before); });        // 6 the box with its path
        before = m.text();
        step(() => { m.resizeBox(0, JSON.parse(before).boxes[0], "se", 130, 110); m.commit(before); }); // 7
        step(() => m.deletePoint(0, 1));                               // 8
        step(() => m.setStatic(0, true));                              // 9
        step(() => m.setStatic(0, false));                             // 10 its path comes back
        step(() => m.setKeyframe(0, 1, 6));                            // 11 point 1 at frame 6
        step(() => m.setLabel(0, "car"));                              // 12
        step(() => m.setCamera({pan: "left", amount: 0.2}));           // 13
        const undone = [];
        while (m.undo()) undone.push(m.text());
        const redone = [];
        while (m.redo()) redone.push(m.text());
        return {seen, undone, redone};""")
    seen = [json.loads(s) for s in states["seen"]]
    assert len(seen) == 14 and all(a != b for a, b in zip(states["seen"], states["seen"][1:]))  # each step changed it
    assert states["undone"] == states["seen"][-2::-1] and states["redone"] == states["seen"][1:]
    for data in seen[1:]:
        parse_trajectory(data, 9, SIZE)  # valid at every step
    assert seen[1]["boxes"][0] == {"box": [40, 40, 100, 90], "static": True}
    assert seen[3]["boxes"][0]["path"] == [[70, 65], [200, 80], [300, 50]]
    assert seen[4]["boxes"][0]["path"] == [[70, 65], [150, 100], [200, 80], [300, 50]]
    assert seen[5]["boxes"][0]["path"][2] == [220, 120]
    assert seen[6]["boxes"][0] == {"box": [50, 35, 110, 85], "path": [[80, 60], [160, 95], [230, 115], [310, 45]]}
    assert seen[7]["boxes"][0] == {"box": [50, 35, 130, 110], "path": [[90, 72.5], [160, 95], [230, 115], [310, 45]]}
    assert seen[8]["boxes"][0]["path"] == [[90, 72.5], [230, 115], [310, 45]]
    assert seen[9]["boxes"][0] == {"box": [50, 35, 130, 110], "static": True}
    assert seen[10]["boxes"][0] == seen[8]["boxes"][0]
    assert seen[11]["boxes"][0]["keyframes"] == {"0": [90, 72.5], "6": [230, 115], "8": [310, 45]}
    assert seen[12]["boxes"][0]["label"] == "car" and seen[13]["camera"] == {"pan": "left", "amount": 0.2}
    # keyframing kept the positions: the box reaches each point at its frame
    boxes = parse_trajectory(seen[11], 9, SIZE).boxes[0]
    np.testing.assert_allclose((boxes[[0, 6, 8], :2] + boxes[[0, 6, 8], 2:]) / 2, [[90, 72.5], [230, 115], [310, 45]])


@needs_node
def test_deleting_points_down_to_one_makes_the_box_static_and_the_first_point_moves_the_box():
    out = js("""
        const m = new E.Model({boxes: [{box: [40, 40, 100, 90], path: [[70, 65], [200, 80], [300, 50]]}]}, {numFrames: 5, bounds: [0, 0, 400, 200]});
        m.deletePoint(0, 0);   // the box starts at the next point
        const first = m.text();
        m.deletePoint(0, 1);
        return [JSON.parse(first), m.data];""")
    assert out[0]["boxes"][0] == {"box": [170, 55, 230, 105], "path": [[200, 80], [300, 50]]}
    assert out[1]["boxes"][0] == {"box": [170, 55, 230, 105], "static": True}


@needs_node
def test_clicking_selects_the_box_under_the_mouse_and_points_come_first():
    out = js("""
        const m = new E.Model({boxes: [
            {box: [10, 10, 300, 190], path: [[155, 100], [350, 100]]},
            {box: [100, 50, 160, 110], static: true}]}, {numFrames: 5, bounds: [0, 0, 400, 200]});
        return [m.hit(120, 60, 2, 0), m.hit(50, 50, 2, 1), m.hit(155, 100, 2, 1), m.hit(300, 190, 2, 0),
                m.hit(250, 100, 2, 0), m.hit(380, 20, 2, 0)];""")
    inner, outer, knot, handle, segment, nothing = out
    assert inner == {"kind": "box", "i": 1}  # inside the other (smaller) box: that box, though box 0 is selected
    assert outer == {"kind": "box", "i": 0}
    assert knot == {"kind": "knot", "i": 0, "k": 0}
    assert handle == {"kind": "handle", "i": 0, "handle": "se"}
    assert segment == {"kind": "segment", "i": 0, "k": 0}
    assert nothing is None


# -- the editor in the app, in a browser -------------------------------------------------------------

@pytest.fixture(scope="module")
def server(tmp_path_factory):
    pytest.importorskip("gradio")
    from sgi2v.ui.app import launch

    port = free_port()
    demo = launch(model="tiny-random", device="cpu", dtype="fp32", port=port, block=False, root=tmp_path_factory.mktemp("ui"))
    yield demo, f"http://127.0.0.1:{port}/"
    demo.close()


@pytest.fixture
def editor(server, browser, tmp_path, request):
    """A new session with a 400 x 200 picture uploaded; a screenshot is saved after the test, pass or fail."""
    from playwright.sync_api import expect

    _, url = server
    image_path = tmp_path / "photo.png"
    picture(*SIZE).save(image_path)
    page = browser.new_page(viewport={"width": 1280, "height": 1000}, accept_downloads=True)
    page.goto(url, timeout=60_000)
    expect(page.locator("#status")).to_contain_text("Upload an image", timeout=60_000)
    page.locator("#upload input[type=file]").set_input_files(str(image_path))
    ed = EditorPage(page)
    ed.wait_for_picture(*SIZE)
    yield ed
    ARTIFACTS.mkdir(exist_ok=True)
    page.locator(".sgi2v-canvas").scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / f"editor-{request.node.name}.png"))
    page.close()


def close(a, b, atol=1.0):
    """Coordinates equal to within ``atol`` pixels of the upload (mouse positions are whole screen pixels)."""
    return np.allclose(np.array(a, dtype=float), np.array(b, dtype=float), atol=atol)


def test_drag_draws_a_box_and_clicks_add_its_path(editor):
    editor.drag((60, 40), (140, 120))
    box = editor.data()["boxes"][0]
    assert box["static"] is True and close(box["box"], [60, 40, 140, 120])  # no path yet: an anchor
    assert "box 1 (red) drawn" in editor.status()
    editor.click(250, 80)
    editor.click(330, 60)
    box = editor.data()["boxes"][0]
    assert "static" not in box and close(box["path"], [[100, 80], [250, 80], [330, 60]])
    editor.drag((20, 150), (20, 170))  # no width: not a box, nothing is added
    assert len(editor.data()["boxes"]) == 1


def test_drag_moves_a_box_with_its_path_and_handles_resize_it(editor):
    editor.drag((60, 40), (140, 120))
    editor.click(250, 80)
    editor.drag((80, 60), (120, 90))  # from inside the box
    moved = editor.data()["boxes"][0]
    assert close(moved["box"], [100, 70, 180, 150]) and close(moved["path"], [[140, 110], [290, 110]])
    editor.drag((180, 150), (200, 170))  # the bottom-right handle of the selected box
    resized = editor.data()["boxes"][0]
    assert close(resized["box"], [100, 70, 200, 170])
    assert close(resized["path"], [[150, 120], [290, 110]])  # the start follows the centre; the path's end stays


def test_path_points_move_insert_and_delete(editor):
    page = editor.page
    editor.drag((40, 40), (100, 100))
    editor.click(200, 70)
    editor.click(300, 70)
    editor.drag((200, 70), (200, 120))  # drag a point
    assert close(editor.data()["boxes"][0]["path"], [[70, 70], [200, 120], [300, 70]])
    editor.dblclick(250, 95)  # on the segment between the two points: insert
    path = editor.data()["boxes"][0]["path"]
    assert len(path) == 4 and close(path[2], [250, 95])
    editor.click(250, 95, button="right")  # right-click a point: delete it
    assert close(editor.data()["boxes"][0]["path"], [[70, 70], [200, 120], [300, 70]])
    editor.click(200, 120)  # choose a point, then the Delete key
    editor.key("Delete")
    assert close(editor.data()["boxes"][0]["path"], [[70, 70], [300, 70]])
    assert "point deleted" in editor.status()
    editor.click(300, 70)  # the arrow keys move the chosen point by one pixel of the upload, with Shift by ten
    before = editor.data()["boxes"][0]["path"][1]
    editor.key("ArrowRight")
    editor.key("Shift+ArrowUp")
    assert editor.data()["boxes"][0]["path"][1] == [before[0] + 1, before[1] - 10]
    page.locator(".sgi2v-canvas").scroll_into_view_if_needed()


def test_undo_and_redo_every_edit_with_the_keyboard(editor):
    states = [editor.data()]
    editor.drag((60, 40), (140, 120))
    states.append(editor.data())
    editor.click(250, 80)
    states.append(editor.data())
    editor.drag((80, 60), (100, 70))
    states.append(editor.data())
    editor.page.locator(".sgi2v-side [data-field=label]").fill("car")
    editor.page.locator(".sgi2v-side [data-field=label]").press("Enter")
    states.append(editor.data())
    assert states[-1]["boxes"][0]["label"] == "car"
    undone = []
    for _ in range(4):
        editor.key("Control+z")
        undone.append(editor.data())
    assert undone == states[-2::-1]
    editor.key("Control+Shift+z")
    editor.key("Control+y")
    assert editor.data() == states[2]
    editor.page.locator(".sgi2v-side [data-action=redo]").click()
    editor.page.locator(".sgi2v-side [data-action=redo]").click()
    assert editor.data() == states[4]


def test_download_then_load_gives_back_what_was_on_screen(editor, tmp_path):
    from playwright.sync_api import expect

    page = editor.page
    editor.drag((60, 40), (140, 120))
    editor.click(250, 80)
    editor.click(330, 60)
    page.locator(".sgi2v-side [data-field=label]").fill("car")
    page.locator(".sgi2v-side [data-field=label]").press("Enter")
    page.locator(".sgi2v-side [data-field=smooth]").check()
    editor.click(250, 80)
    page.locator(".sgi2v-side [data-field=frame]").fill("9")
    page.locator(".sgi2v-side [data-field=frame]").press("Enter")
    editor.drag((280, 120), (360, 180))
    page.locator(".sgi2v-side [data-field=pan]").select_option("up")
    page.locator(".sgi2v-side [data-field=amount]").fill("0.2")
    page.locator(".sgi2v-side [data-field=amount]").press("Enter")
    editor.key("Escape")
    shown, picture_before = editor.data(), page.locator(".sgi2v-canvas").evaluate("c => c.toDataURL()")
    assert shown["boxes"][0]["keyframes"]["9"] and shown["camera"] == {"pan": "up", "amount": 0.2}

    with page.expect_download() as download:
        page.locator(".sgi2v-side [data-action=download]").click()
    saved = tmp_path / "trajectory.json"
    download.value.save_as(saved)
    assert json.loads(saved.read_text()) == shown

    page.locator(".sgi2v-side [data-action=clear]").click()
    assert editor.data() == {"boxes": []}
    editor.load(saved)
    expect(page.locator("#status")).to_contain_text("Loaded 2 boxes and a camera motion", timeout=30_000)
    page.wait_for_function("window.sgi2vEditor.text() !== '{\"boxes\":[]}'", timeout=30_000)
    assert editor.data() == shown
    assert page.locator(".sgi2v-canvas").evaluate("c => c.toDataURL()") == picture_before  # the same picture, pixel for pixel
    expect(page.locator(".sgi2v-side [data-field=amount]")).to_have_value("0.2")  # not rounded to a slider step
    page.locator(".sgi2v-side [data-field=zoom]").fill("1.1")  # touching the zoom keeps the pan amount
    page.locator(".sgi2v-side [data-field=zoom]").press("Enter")
    assert editor.data()["camera"] == {"pan": "up", "amount": 0.2, "zoom": 1.1}
    editor.click(100, 80)
    expect(page.locator(".sgi2v-side [data-field=label]")).to_have_value("car")  # the loaded label

    # A second file loads without removing the first by hand.
    second = tmp_path / "second.json"
    second.write_text(json.dumps({"boxes": [{"box": [10, 10, 50, 50], "path": [[30, 30], [90, 60]], "label": "dog"}]}))
    editor.load(second)
    expect(page.locator("#status")).to_contain_text("from second.json", timeout=30_000)
    page.wait_for_function("window.sgi2vEditor.text().includes('dog')", timeout=30_000)
    assert editor.data() == json.loads(second.read_text())
    expect(page.locator(".sgi2v-side [data-field=pan]")).to_have_value("none")  # the controls follow what is loaded


def test_a_new_upload_starts_empty_with_the_controls_to_match(editor, tmp_path):
    from playwright.sync_api import expect

    page = editor.page
    editor.drag((60, 40), (140, 120))
    page.locator(".sgi2v-side [data-field=pan]").select_option("left")
    assert editor.data()["camera"] == {"pan": "left", "amount": 0.25}
    other = tmp_path / "other.png"
    picture(300, 300).save(other)
    page.locator("#upload input[type=file]").set_input_files(str(other))
    editor.wait_for_picture(300, 300)
    page.wait_for_function("window.sgi2vEditor.text() === '{\"boxes\":[]}'", timeout=30_000)
    expect(page.locator(".sgi2v-side [data-field=pan]")).to_have_value("none")
    custom = tmp_path / "custom.json"  # a pan as [dx, dy] fractions: shown as such, its amount not offered
    custom.write_text(json.dumps({"boxes": [], "camera": {"pan": [0.1, -0.05], "zoom": 0.9}}))
    editor.load(custom)
    page.wait_for_function("window.sgi2vEditor.text().includes('camera')", timeout=30_000)
    expect(page.locator(".sgi2v-side [data-field=pan]")).to_have_value("custom")
    expect(page.locator(".sgi2v-side [data-field=amount]")).to_be_disabled()
    expect(page.locator(".sgi2v-side [data-field=zoom]")).to_have_value("0.9")
    page.locator(".sgi2v-side [data-field=zoom]").fill("1.5")
    page.locator(".sgi2v-side [data-field=zoom]").press("Enter")
    assert editor.data() == {"boxes": [], "camera": {"pan": [0.1, -0.05], "zoom": 1.5}}


def test_the_preview_appears_after_an_edit(editor):
    from playwright.sync_api import expect

    page = editor.page
    video = page.locator("#preview video")
    expect(page.locator("#preview-status")).to_contain_text("Draw a box", timeout=30_000)
    editor.drag((60, 40), (140, 120))
    editor.click(250, 80)
    expect(video).to_have_attribute("src", __import__("re").compile(r"preview-\d+\.mp4"), timeout=60_000)
    first = video.get_attribute("src")
    expect(page.locator("#preview-status")).to_contain_text("Preview: 14 frames at 1024x576", timeout=30_000)
    editor.click(330, 60)
    page.wait_for_function(f"document.querySelector('#preview video').getAttribute('src') !== {json.dumps(first)}",
                           timeout=60_000)
    page.wait_for_function("document.querySelector('#preview video').readyState >= 2", timeout=30_000)


@pytest.mark.parametrize("fit", ["crop", "pad"])
def test_the_picture_is_shown_as_the_model_gets_it(editor, fit):
    """The editor maps the upload's pixels onto the prepared picture as sgi2v.fitting.Fit does."""
    from playwright.sync_api import expect

    from sgi2v.fitting import Fit

    page = editor.page
    page.locator(f"#image_fit label:has-text('{fit}')").click()
    expect(page.locator("#status")).to_contain_text(f"({fit})", timeout=30_000)
    page.wait_for_function("window.sgi2vEditor.model.bounds[0] > 0 || window.sgi2vEditor.model.bounds[1] > 0"
                           if fit == "crop" else "window.sgi2vEditor.model.bounds[2] === 400", timeout=30_000)
    mapping = Fit.make(fit, SIZE, (1024, 576))
    rect = page.locator(".sgi2v-canvas").bounding_box()
    k = rect["width"] / 1024
    for x, y in [(60, 20), (200, 100), (390, 190)]:
        X, Y = editor.at(x, y)
        rect = page.locator(".sgi2v-canvas").bounding_box()
        ox, oy = mapping.to_output(x, y)
        assert abs(X - rect["x"] - ox * k) < 0.01 and abs(Y - rect["y"] - oy * k) < 0.01
    if fit == "crop":  # boxes stay on the visible part of the picture
        editor.drag((200, 120), (10, 20))  # ending beyond the left edge of the picture shown
        x0 = editor.data()["boxes"][0]["box"][0]
        assert x0 == np.ceil(mapping.crop[0] * 100) / 100  # on the edge, rounded inwards to 0.01 pixel
