import json
from pathlib import Path

import numpy as np
import pytest

import sgi2v.trajectory
from sgi2v.boxes import validate_boxes
from sgi2v.trajectory import (
    MAX_TRAJECTORY_BYTES,
    TrajectoryError,
    load_reference_dir,
    load_trajectory,
    parse_trajectory,
    read_json_text,
    read_reference_dir,
    reference_boxes,
)

REFERENCE_EXAMPLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "reference-examples"
SIZE = (200, 100)


def parse(data, frames=5, size=SIZE):
    return parse_trajectory(data, frames, size)


def test_path_two_points_is_uniform_straight_motion():
    t = parse({"boxes": [{"box": [10, 20, 30, 40], "path": [[20, 30], [60, 50]]}]})
    assert t.boxes.shape == (1, 5, 4)
    np.testing.assert_allclose(t.centers()[0], [[20, 30], [30, 35], [40, 40], [50, 45], [60, 50]])
    np.testing.assert_allclose(t.boxes[0, :, 2] - t.boxes[0, :, 0], 20)  # size kept


def test_path_points_spread_evenly_and_joined_linearly():
    t = parse({"boxes": [{"box": [0, 0, 10, 10], "path": [[5, 5], [45, 5], [45, 25]]}]})
    # 3 points over 5 frames: at frames 0, 2, 4
    np.testing.assert_allclose(t.centers()[0], [[5, 5], [25, 5], [45, 5], [45, 15], [45, 25]])


def test_box_moves_by_path_offset_like_the_authors_tool():
    t = parse({"boxes": [{"box": [10, 10, 20, 20], "path": [[100, 50], [110, 60]]}]}, frames=2)
    np.testing.assert_allclose(t.boxes[0], [[10, 10, 20, 20], [20, 20, 30, 30]])


def test_spline_passes_through_points_and_is_smooth():
    data = {"boxes": [{"box": [0, 0, 10, 10], "path": [[5, 5], [45, 25], [85, 5]], "interpolation": "spline"}]}
    t = parse(data, frames=9)
    c = t.centers()[0]
    np.testing.assert_allclose(c[[0, 4, 8]], [[5, 5], [45, 25], [85, 5]])
    linear = parse({"boxes": [{"box": [0, 0, 10, 10], "path": [[5, 5], [45, 25], [85, 5]]}]}, frames=9).centers()[0]
    assert c[2, 1] > linear[2, 1]  # rounded, not a corner


def test_keyframes_hold_after_last_and_default_start():
    t = parse({"boxes": [{"box": [0, 0, 10, 10], "keyframes": {"2": [25, 5]}}]})
    np.testing.assert_allclose(t.centers()[0, :, 0], [5, 15, 25, 25, 25])


def test_static_and_scale_and_labels():
    t = parse({"boxes": [{"box": [10, 10, 30, 30], "static": True, "label": "rock"},
                         {"box": [50, 20, 70, 40], "path": [[60, 30], [60, 30]], "scale": 2.0}]})
    np.testing.assert_allclose(t.boxes[0], [[10, 10, 30, 30]] * 5)
    widths = t.boxes[1, :, 2] - t.boxes[1, :, 0]
    np.testing.assert_allclose(widths, [20, 25, 30, 35, 40])
    np.testing.assert_allclose(t.centers()[1], [[60, 30]] * 5)
    assert t.labels == ("rock", "box 1")


@pytest.mark.parametrize("direction, sign", [("left", 1), ("right", -1)])
def test_camera_pan_moves_the_scene_against_the_camera(direction, sign):
    t = parse({"boxes": [], "camera": {"pan": direction, "amount": 0.2}})
    assert t.labels == ("camera",)
    dx = t.centers()[0, -1, 0] - t.centers()[0, 0, 0]
    assert dx == pytest.approx(sign * 0.2 * SIZE[0])
    first, last = t.boxes[0, 0], t.boxes[0, -1]
    assert first[0] >= 0 and first[2] <= SIZE[0] and last[0] >= 0 and last[2] <= SIZE[0] + 1e-9


def test_camera_zoom_in_grows_inside_the_image_and_combines_with_objects():
    t = parse({"boxes": [{"box": [0, 0, 10, 10], "static": True}], "camera": {"zoom": 1.5}})
    cam = t.boxes[1]
    w = cam[:, 2] - cam[:, 0]
    assert w[-1] / w[0] == pytest.approx(1.5) and w[-1] == pytest.approx(SIZE[0])
    assert (cam[0, :2] >= 0).all() and cam[0, 2] <= SIZE[0] and cam[0, 3] <= SIZE[1]
    out = parse({"boxes": [], "camera": {"zoom": 0.5}}).boxes[0]
    assert (out[-1, 2] - out[-1, 0]) == pytest.approx(SIZE[0] / 2)


def test_resized():
    t = parse({"boxes": [{"box": [10, 10, 30, 30], "static": True}]}).resized(400, 50)
    np.testing.assert_allclose(t.boxes[0, 0], [20, 5, 60, 15])
    assert t.size == (400, 50)


@pytest.mark.parametrize("size, out", [((1000, 562), (512, 320)), ((275, 331), (768, 768)), ((653, 681), (768, 768))])
def test_resized_keeps_boxes_on_the_edge_inside(size, out):
    """x * (w / W) can land just past w; the camera box touches the edges."""
    t = parse_trajectory({"boxes": [{"box": [0, 0, *size], "static": True}], "camera": {"pan": "left"}}, 3, size)
    resized = t.resized(*out)
    assert resized.boxes[..., 2].max() == out[0] and resized.boxes[..., 3].max() == out[1]
    validate_boxes(resized.boxes, 3, out[1], out[0], names=list(t.labels))


@pytest.mark.parametrize(
    "data, message",
    [
        ([1, 2], "expected a JSON object"),
        ({"boxes": []}, "at least one box"),
        ({"boxes": [{"path": [[1, 1]]}]}, r"boxes\[0\].box: missing"),
        ({"boxes": [{"box": [0, 0, 10], "static": True}]}, r"boxes\[0\].box: expected \[x0, y0, x1, y1\]"),
        ({"boxes": [{"box": [10, 0, 10, 10], "static": True}]}, r"boxes\[0\].box: needs x1 > x0"),
        ({"boxes": [{"box": [0, 0, 10, 10], "path": [[1, 1], [2, "a"]]}]}, r"boxes\[0\].path\[1\]\[1\]: expected a finite number"),
        ({"boxes": [{"box": [0, 0, 10, 10], "path": [[1, 1], [2, float("nan")]]}]}, r"path\[1\]\[1\]: expected a finite number"),
        ({"boxes": [{"box": [0, 0, 10, 10], "path": [[1, 1]], "static": True}]}, "exactly one of"),
        ({"boxes": [{"box": [0, 0, 10, 10], "pth": [[1, 1]]}]}, r"boxes\[0\].pth: unknown field"),
        ({"boxes": [{"box": [0, 0, 10, 10], "keyframes": {"9": [1, 1]}}]}, r"keyframes.9: frame 9 is outside 0..4"),
        ({"boxes": [{"box": [0, 0, 10, 10], "static": True, "interpolation": "cubic"}]}, "interpolation"),
        ({"boxes": [{"box": [0, 0, 10, 10], "static": True, "scale": -1}]}, r"scale: factors must be > 0"),
        ({"boxes": [{"box": [190, 0, 210, 10], "static": True}]}, r"boxes\[0\].box: the frame-0 box .* not inside the 200x100 image"),
        ({"boxes": [], "camera": {"pan": "sideways"}}, r"camera.pan: expected one of"),
        ({"boxes": [], "camera": {"pan": "left", "amount": 2}}, r"camera.amount"),
        ({"boxes": [], "camera": {"tilt": 1}}, r"camera.tilt: unknown field"),
        ({"boxes": [{"box": [0, 0, 10, 10], "static": True}], "num_frames": 14}, "for 14 frames but 5"),
    ],
)
def test_errors_name_the_field(data, message):
    with pytest.raises(TrajectoryError, match=message):
        parse(data)


def test_load_trajectory_file_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"boxes": [\n  {"box": [0, 0, 1, 1],}\n]}')
    with pytest.raises(TrajectoryError, match=r"bad.json: malformed JSON at line 2"):
        load_trajectory(bad, 5, SIZE)
    with pytest.raises(TrajectoryError, match="not found"):
        load_trajectory(tmp_path / "none.json", 5, SIZE)


def reference_conversion(folder, width, height):
    """The authors' conversion, written out per box and frame in float32."""
    from PIL import Image

    original_width, original_height = Image.open(folder / "img.png").size
    ret = np.load(folder / "traj.npy").astype(np.float32)
    ret[:, :, 0] = ret[:, :, 0] * width / original_width
    ret[:, :, 1] = ret[:, :, 1] * height / original_height
    out = []
    for j in range(ret.shape[0]):
        x0, y0, x1, y1 = ret[j, 0, 0], ret[j, 0, 1], ret[j, 1, 0], ret[j, 1, 1]
        frames = []
        for i in range(ret.shape[1] - 2):
            dx = ret[j, 2 + i, 0] - ret[j, 2, 0]
            dy = ret[j, 2 + i, 1] - ret[j, 2, 1]
            frames.append([x0 + dx, y0 + dy, x1 + dx, y1 + dy])
        out.append(frames)
    return np.array(out, dtype=np.float32)


@pytest.mark.skipif(not REFERENCE_EXAMPLES.is_dir(), reason="shared reference examples not present")
@pytest.mark.parametrize("name", ["111", "13", "15"])
@pytest.mark.parametrize("size", [(1024, 576), (512, 320)])
def test_reference_examples_convert_exactly(name, size):
    folder = REFERENCE_EXAMPLES / name
    image, boxes = load_reference_dir(folder, *size, num_frames=14)
    assert image.size == size
    want = reference_conversion(folder, *size)
    assert boxes.dtype == np.float32
    np.testing.assert_array_equal(boxes, want)
    raw = np.load(folder / "traj.npy")
    scale = np.array([size[0] / 1024, size[1] / 576])
    centers = (boxes[..., :2] + boxes[..., 2:]) / 2
    np.testing.assert_allclose(centers - centers[:, :1], (raw[:, 2:] - raw[:, 2:3]) * scale, atol=1e-3)


def test_reference_dir_errors(tmp_path):
    from PIL import Image

    Image.new("RGB", (64, 32)).save(tmp_path / "img.png")
    np.save(tmp_path / "traj.npy", np.zeros((1, 5, 3)))
    with pytest.raises(TrajectoryError, match=r"shape \(N, 2 \+ F, 2\)"):
        load_reference_dir(tmp_path, 128, 64, 3)
    np.save(tmp_path / "traj.npy", np.zeros((1, 5, 2)))
    with pytest.raises(TrajectoryError, match="3 frames per path but 14"):
        load_reference_dir(tmp_path, 128, 64, 14)
    with pytest.raises(FileNotFoundError, match="reference folder not found"):
        load_reference_dir(tmp_path / "nope", 128, 64, 3)


def test_reference_dir_split_composes_to_load_reference_dir():
    folder = REFERENCE_EXAMPLES / "15"
    if not folder.is_dir():
        pytest.skip("shared reference examples not present")
    image, raw = read_reference_dir(folder, 14)
    assert image.size == (1024, 576) and image.mode == "RGB"
    np.testing.assert_array_equal(raw, np.load(folder / "traj.npy"))
    assert raw.dtype == np.load(folder / "traj.npy").dtype
    resized, boxes = load_reference_dir(folder, 512, 320, 14)
    np.testing.assert_array_equal(reference_boxes(raw, image.size, 512, 320), boxes)
    assert resized.tobytes() == image.resize((512, 320)).tobytes()


# -- limits and bounds ----------------------------------------------------------------------------

AREA = "the 200x100 image (x in -200..400, y in -100..200)"
BOX = [10, 10, 30, 30]


@pytest.mark.parametrize(
    "data, message",
    [
        ({"boxes": [{"box": BOX, "path": [[20, 20], [30, 20]], "scale": 1e4}]},
         "boxes[0].scale: the factor 10000 is outside 0.05..20"),
        ({"boxes": [{"box": BOX, "static": True, "scale": 0.01}]}, "boxes[0].scale: the factor 0.01 is outside 0.05..20"),
        ({"boxes": [{"box": BOX, "static": True, "scale": [1, 2, 30]}]}, "boxes[0].scale[2]: the factor 30 is outside 0.05..20"),
        ({"boxes": [{"box": BOX, "static": True, "scale": [1, -2]}]}, "boxes[0].scale[1]: factors must be > 0, got -2"),
        ({"boxes": [{"box": [40, 20, 60, 30], "static": True, "scale": [20, 0.05, 0.05, 20], "interpolation": "spline"}]},
         'boxes[0].scale: factors must be > 0, but the spline through [20, 0.05, 0.05, 20] reaches -2.44 at frame 2 '
         '(use "interpolation": "linear")'),
        ({"boxes": [], "camera": {"zoom": 1e6}}, "camera.zoom: expected a factor within 0.1..10, got 1e+06"),
        ({"boxes": [], "camera": {"zoom": 0}}, "camera.zoom: expected a factor within 0.1..10, got 0"),
        ({"boxes": [{"box": BOX, "path": [[20, 20], [1e308, 10]]}]},
         f"boxes[0].path[1]: the point [1e+308, 10.0] is far outside {AREA}"),
        ({"boxes": [{"box": BOX, "path": [[20, 20], [20, -101]]}]},
         f"boxes[0].path[1]: the point [20.0, -101.0] is far outside {AREA}"),
        ({"boxes": [{"box": BOX, "keyframes": {"3": [401, 0]}}]},
         f"boxes[0].keyframes.3: the point [401.0, 0.0] is far outside {AREA}"),
        ({"boxes": [{"box": [0, 0, 1e308, 10], "static": True}]}, f"boxes[0].box: the box [0.0, 0.0, 1e+308, 10.0] is far outside {AREA}"),
        ({"boxes": [{"box": BOX, "path": [[20, 20]]}]},
         'boxes[0].path: give at least 2 points (the first at frame 0, the last at the last frame); '
         'for a box that stays put use "static": true'),
        ({"boxes": [{"box": BOX, "path": [3]}]}, "boxes[0].path[0]: expected a point [x, y], got 3"),
        ({"boxes": [{"box": BOX, "path": [[20, 20], [395, 20]]}]},
         f"boxes[0]: at frame 4 its path takes the box to [385.0, 10.0, 405.0, 30.0], far outside {AREA}"),
        ({"boxes": [{"box": BOX, "keyframes": {"2": [20, 195]}}]},
         f"boxes[0]: at frame 2 its keyframes takes the box to [10.0, 185.0, 30.0, 205.0], far outside {AREA}"),
        ({"boxes": [{"box": [90, 40, 110, 60], "static": True, "scale": 20}]},
         f"boxes[0]: at frame 3 its scale takes the box to [-52.5, -102.5, 252.5, 202.5], far outside {AREA}"),
        ({"boxes": [{"box": [90, 40, 110, 60], "path": [[100, 50], [150, 50]], "scale": 20}]},
         f"boxes[0]: at frame 3 its path and scale take the box to [-15.0, -102.5, 290.0, 202.5], far outside {AREA}"),
        ({"boxes": [{"box": BOX, "keyframes": {"0": [20, 20], "00": [25, 20]}}]}, "boxes[0].keyframes.00: frame 0 is given twice"),
        ({"boxes": [{"box": BOX, "static": True}] * 300}, "boxes: 300 boxes given; at most 256 are accepted"),
        ({"boxes": [{"box": BOX, "path": [[20, 20]] * 1025}]}, "boxes[0].path: 1025 points given; at most 1024 are accepted"),
        ({"boxes": [{"box": BOX, "static": True, "scale": [1.0] * 2000}]}, "boxes[0].scale: 2000 factors given; at most 1024 are accepted"),
        ({"boxes": [{"box": BOX, "path": [[20, 20], list(range(1000))]}]},
         "boxes[0].path[1]: expected a point [x, y], got [0, 1, 2, 3, 4, 5, 6, 7, ...]"),
        ({"boxes": [{"box": [0, 0, 10, 10**400], "static": True}]},
         "boxes[0].box[3]: expected a finite number, got 100000000000000000...0000000000000000000"),
        ({"boxes": [{"box": BOX, "static": True, "a\nb": 1}]},
         r"boxes[0].'a\nb': unknown field (allowed: box, interpolation, keyframes, label, path, scale, static, timing)"),
        ({"boxes": [{"box": [150, 10, 250, 20], "static": True, "label": "camera"}]},
         "boxes[0].box: the frame-0 box [150.0, 10.0, 250.0, 20.0] is not inside the 200x100 image"),
    ],
)
def test_bounds_and_limits_name_the_field(data, message):
    with pytest.raises(TrajectoryError) as caught:
        parse_trajectory(data, 5, SIZE, source="t.json")
    assert str(caught.value) == f"t.json: {message}"


def test_many_keyframes_are_refused_before_reading_them():
    keys = {str(i): [20, 20] for i in range(1100)}
    with pytest.raises(TrajectoryError, match=r"^t.json: boxes\[0\].keyframes: 1100 keyframes given; at most 1024 are accepted$"):
        parse_trajectory({"boxes": [{"box": BOX, "keyframes": keys}]}, 2000, SIZE, source="t.json")


def test_limits_admit_what_they_promise():
    t = parse({"boxes": [{"box": [90, 45, 110, 55], "static": True, "scale": 20},
                         {"box": BOX, "path": [[20, 20], [-180, 170]]},
                         {"box": BOX, "keyframes": {"4": [380, -80]}}],
               "camera": {"zoom": 10}})
    assert t.boxes.shape == (4, 5, 4)
    np.testing.assert_allclose(t.boxes[0, -1], [-100, -50, 300, 150])  # reaches the edges of the allowed area
    assert parse({"boxes": [], "camera": {"zoom": 0.1}}).labels == ("camera",)


def test_camera_errors_name_the_camera():
    with pytest.raises(TrajectoryError, match=r"^t.json: camera.pan: fractions of the image must lie in \(-1, 1\)"):
        parse_trajectory({"boxes": [{"box": BOX, "static": True}], "camera": {"pan": [1.5, 0]}}, 5, SIZE, source="t.json")
    boxes = np.array([[[0, 0, 10, 10]] * 2, [[0, 0, 129, 10]] * 2], dtype=np.float64)
    with pytest.raises(ValueError, match=r"^camera at frame 0 must lie inside the 128x64 image"):
        validate_boxes(boxes, 2, 64, 128, names=["box 0", "camera"])
    with pytest.raises(ValueError, match=r"^box 1 at frame 0 must lie inside the 128x64 image"):
        validate_boxes(boxes, 2, 64, 128)
    boxes[1, 1, 2] = -1
    with pytest.raises(ValueError, match=r"^camera at frame 1 needs x1 > x0"):
        validate_boxes(boxes, 2, 64, 128, names=("box 0", "camera"))
    with pytest.raises(ValueError, match="names has 1 entries but there are 2 boxes"):
        validate_boxes(boxes, 2, 64, 128, names=["camera"])


# -- files ----------------------------------------------------------------------------------------


def test_deeply_nested_json_file(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text("[" * 100000 + "]" * 100000)
    with pytest.raises(TrajectoryError) as caught:
        load_trajectory(path, 5, SIZE)
    assert str(caught.value) == f"{path}: malformed JSON: nested too deeply"


def test_trajectory_file_size_limit(tmp_path):
    assert MAX_TRAJECTORY_BYTES == 5 << 20
    path = tmp_path / "big.json"
    path.write_bytes(b" " * (6 << 20))
    with pytest.raises(TrajectoryError) as caught:
        load_trajectory(path, 5, SIZE)
    assert str(caught.value) == f"{path}: the trajectory file is 6.0 MB; at most 5 MB are accepted"
    path.write_bytes(b" " * ((5 << 20) + 1))
    with pytest.raises(TrajectoryError, match=r"big.json: the trajectory file is 5.1 MB; at most 5 MB are accepted$"):
        load_trajectory(path, 5, SIZE)


def test_trajectory_file_size_is_checked_before_reading(tmp_path, monkeypatch):
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"boxes": [{"box": BOX, "static": True}]}))
    monkeypatch.setattr(sgi2v.trajectory, "MAX_TRAJECTORY_BYTES", 10)
    monkeypatch.setattr(Path, "read_bytes", lambda self: pytest.fail("read"))
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: pytest.fail("read"))
    with pytest.raises(TrajectoryError, match=r"t.json: the trajectory file is 0.1 MB; at most 9.53674e-06 MB are accepted"):
        load_trajectory(path, 5, SIZE)


def test_trajectory_file_other_errors(tmp_path):
    with pytest.raises(TrajectoryError, match=r": is a folder, not a trajectory file$"):
        load_trajectory(tmp_path, 5, SIZE)
    (tmp_path / "latin1.json").write_bytes(b'{"boxes": "\xe9"}')
    with pytest.raises(TrajectoryError, match=r"latin1.json: cannot read the trajectory file: 'utf-8' codec can't decode"):
        load_trajectory(tmp_path / "latin1.json", 5, SIZE)


def test_read_json_text():
    assert read_json_text('{"a": [1, 2.5, NaN]}', "x")["a"][:2] == [1, 2.5]
    with pytest.raises(ValueError) as caught:
        read_json_text('{"a": 1,\n  "b": }', "runs.json")
    assert type(caught.value) is ValueError
    assert str(caught.value) == "runs.json: malformed JSON at line 2, column 8: Expecting value"
    with pytest.raises(TrajectoryError, match=r"^m.json: malformed JSON: nested too deeply$"):
        read_json_text('{"a": ' * 50000, "m.json", TrajectoryError)
    with pytest.raises(ValueError, match=r"^n.json: malformed JSON: Exceeds the limit \(4300 digits\) for integer string conversion"):
        read_json_text("1" * 5000, "n.json")


# -- the authors' traj.npy ------------------------------------------------------------------------


@pytest.fixture
def ref_dir(tmp_path):
    """img.png 64x32 and a valid traj.npy, one box over 3 frames."""
    from PIL import Image

    Image.new("RGB", (64, 32), (10, 20, 30)).save(tmp_path / "img.png")
    np.save(tmp_path / "traj.npy", np.array([[[10, 5], [30, 20], [20, 12], [25, 12], [30, 14]]], dtype=np.float64))
    return tmp_path


def test_reference_dir_good(ref_dir):
    image, raw = read_reference_dir(ref_dir, 3)
    assert image.size == (64, 32) and raw.shape == (1, 5, 2)
    resized, boxes = load_reference_dir(ref_dir, 128, 64, 3)
    assert resized.size == (128, 64) and boxes.dtype == np.float32
    np.testing.assert_array_equal(boxes[0], [[20, 10, 60, 40], [30, 10, 70, 40], [40, 14, 80, 44]])


def _npy_bytes(array) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "not a readable .npy array: the file is empty"),
        (_npy_bytes(np.zeros((1, 5, 2)))[:100], "not a readable .npy array: "),
        (b"hello, not numpy", "not a readable .npy array: it does not start with the .npy signature"),
        (b"PK\x03\x04 a zip file", "not a readable .npy array: it does not start with the .npy signature"),
        (_npy_bytes(np.zeros((1, 5, 2), dtype=np.complex128)), "expected real numbers (integers or floats), got complex128 values"),
        (_npy_bytes(np.zeros((1, 5, 2), dtype=bool)), "expected real numbers (integers or floats), got bool values"),
        (_npy_bytes(np.full((1, 5, 2), "1")), "expected real numbers (integers or floats), got <U1 values"),
        (_npy_bytes(np.zeros((1, 5, 2), dtype=object)), "not a readable .npy array: Object arrays cannot be loaded when allow_pickle=False"),
        (_npy_bytes(np.tile([[10.0, 5], [30, 20], [20, 12], [20, 12], [20, 12]], (300, 1, 1))), "300 boxes given; at most 256 are accepted"),
        (_npy_bytes(np.array([[[30, 5], [10, 20], [20, 12], [20, 12], [20, 12]]])), "box 0: needs x1 > x0 and y1 > y0, got [30.0, 5.0, 10.0, 20.0]"),
        (_npy_bytes(np.array([[[10, 5], [30, 20], [20, 12], [20, 12], [20, 12]], [[50, 10], [70, 20], [60, 15], [60, 15], [60, 15]]])),
         "box 1: the frame-0 box [50.0, 10.0, 70.0, 20.0] is not inside the 64x32 image img.png"),
        (_npy_bytes(np.array([[[10, 5], [30, 20], [20, 12], [20, 12], [1e308, 12]]])),
         "box 0: the centre at frame 2 [1e+308, 12.0] is far outside the 64x32 image img.png (x in -64..128, y in -32..64)"),
        (_npy_bytes(np.array([[[10, 5], [30, 20], [20, 12], [20, 12], [120, 12]]])),
         "box 0: at frame 2 its path takes the box to [110.0, 5.0, 130.0, 20.0], far outside the 64x32 image img.png "
         "(x in -64..128, y in -32..64)"),
        (_npy_bytes(np.array([[[10, 5], [30, 20], [20, 12], [20, 12], [np.nan, 12]]])), "contains NaN or infinite coordinates"),
    ],
)
def test_reference_npy_errors(ref_dir, content, message):
    (ref_dir / "traj.npy").write_bytes(content)
    with pytest.raises(TrajectoryError) as caught:
        load_reference_dir(ref_dir, 512, 320, 3)  # checked in the file's pixels, not the output's
    assert str(caught.value).startswith(f"{ref_dir / 'traj.npy'}: {message}")
    assert "\n" not in str(caught.value)


def test_reference_npy_size_limit(ref_dir, monkeypatch):
    monkeypatch.setattr(sgi2v.trajectory, "MAX_TRAJECTORY_BYTES", 100)
    with pytest.raises(TrajectoryError, match=r"traj.npy: the trajectory file is 0.1 MB; at most 9.53674e-05 MB are accepted"):
        read_reference_dir(ref_dir, 3)
    (ref_dir / "traj.npy").unlink()
    with pytest.raises(FileNotFoundError, match=r"traj.npy: trajectory file not found"):
        read_reference_dir(ref_dir, 3)
