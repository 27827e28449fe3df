import json
from pathlib import Path

import numpy as np
import pytest

from sgi2v.trajectory import TrajectoryError, load_reference_dir, load_trajectory, parse_trajectory

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
