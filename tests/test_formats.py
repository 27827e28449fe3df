"""Trajectory formats of other tools: read, resampled, exported and read back; the command line and batch take them."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sgi2v import formats
from sgi2v.cli import main
from sgi2v.formats import (
    parse_coord_str, read_any, resample_path, to_coord_str, to_reference_array, from_reference_array, tracks_to_trajectory,
    wanmove_to_trajectory,
)
from sgi2v.trajectory import TrajectoryError, parse_trajectory, reference_boxes

FAST = ["--model", "tiny-random", "--height", "64", "--width", "128", "--num-frames", "4", "--num-inference-steps", "3",
        "--optimize-timesteps", "2", "--iterations", "2", "--device", "cpu"]
SRC = str(Path(__file__).resolve().parents[1] / "src")


def _arc_fraction_l_shape(points):
    """Arc-length fraction of points on the L-shaped path (0, 0) -> (30, 0) -> (30, 10), computed by hand."""
    s = np.where(points[:, 1] <= 1e-12, points[:, 0], 30 + points[:, 1])
    return s / 40.0


# -- resampling ------------------------------------------------------------------------------------

def test_time_puts_the_points_on_evenly_spaced_frames():
    points = np.array([[3.0, 4.0], [10.0, -2.5], [11.0, 7.0], [0.5, 0.25]])
    path = resample_path(points, 10, "time")  # 4 points over 10 frames: at frames 0, 3, 6, 9
    assert np.array_equal(path[::3], points)
    times = np.linspace(0, 9, 4)
    expected = np.stack([np.interp(np.arange(10), times, points[:, d]) for d in range(2)], axis=1)
    assert np.array_equal(path, expected)
    assert np.array_equal(resample_path(points, 4, "time"), points)  # as many points as frames: unchanged


def test_time_is_how_a_trajectory_path_has_always_been_read():
    rng = np.random.RandomState(3)
    points = rng.uniform(20, 80, (7, 2))
    box = [40.0, 40.0, 60.0, 56.0]
    for num_frames in (5, 14, 25):
        plain = parse_trajectory({"boxes": [{"box": box, "path": points.tolist()}]}, num_frames, (100, 100)).boxes[0]
        timed = parse_trajectory({"boxes": [{"box": box, "path": points.tolist(), "timing": "time"}]}, num_frames, (100, 100)).boxes[0]
        offsets = resample_path(points, num_frames, "time") - points[0]
        assert np.array_equal(plain, timed)
        assert np.array_equal(plain, np.concatenate([np.array(box[:2]) + offsets, np.array(box[2:]) + offsets], axis=1))


@pytest.mark.parametrize("num_frames", [5, 14, 41])
def test_speed_takes_equal_arc_length_steps(num_frames):
    line = np.array([[0.0, 0.0], [1.0, 0.5], [20.0, 10.0], [20.0, 10.0], [30.0, 15.0]])  # uneven steps, a repeated point
    steps = np.hypot(*np.diff(resample_path(line, num_frames, "speed"), axis=0).T)
    np.testing.assert_allclose(steps, np.hypot(30, 15) / (num_frames - 1), rtol=1e-12)

    corner = np.array([[0.0, 0.0], [2.0, 0.0], [30.0, 0.0], [30.0, 10.0]])
    fractions = _arc_fraction_l_shape(resample_path(corner, num_frames, "speed"))
    np.testing.assert_allclose(fractions, np.linspace(0, 1, num_frames), atol=1e-12)


def test_ease_starts_and_ends_slowly():
    corner = np.array([[0.0, 0.0], [30.0, 0.0], [30.0, 10.0]])
    path = resample_path(corner, 11, "ease")
    u = np.linspace(0, 1, 11)
    np.testing.assert_allclose(_arc_fraction_l_shape(path), 3 * u**2 - 2 * u**3, atol=1e-12)
    steps = np.diff(_arc_fraction_l_shape(path))
    assert steps[0] < steps[5] and steps[-1] < steps[5]
    assert np.array_equal(path[[0, -1]], corner[[0, -1]])


def test_timing_key_of_a_box():
    points = [[10, 10], [12, 10], [14, 10], [80, 10]]
    speed = parse_trajectory({"boxes": [{"box": [0, 0, 20, 20], "path": points, "timing": "speed"}]}, 8, (100, 50)).centers()[0]
    np.testing.assert_allclose(np.diff(speed[:, 0]), 10.0)
    points = [[10, 10], [30, 10], [50, 10], [80, 10]]
    spline = parse_trajectory({"boxes": [{"box": [0, 0, 20, 20], "path": points, "interpolation": "spline", "timing": "ease"}]},
                              8, (100, 50)).centers()[0]
    assert spline[0, 0] == 10 and spline[-1, 0] == 80 and (np.diff(spline[:, 0]) > 0).all()
    with pytest.raises(TrajectoryError, match=r"t.json: boxes\[0\].timing: expected one of time, speed, ease, got 'fast'"):
        parse_trajectory({"boxes": [{"box": [0, 0, 20, 20], "path": points, "timing": "fast"}]}, 8, (100, 50), source="t.json")
    with pytest.raises(TrajectoryError, match=r"boxes\[0\].timing: only applies to a 'path'"):
        parse_trajectory({"boxes": [{"box": [0, 0, 20, 20], "keyframes": {"3": [5, 5]}, "timing": "speed"}]}, 8, (100, 50))


# -- SplineEditor / ATI ----------------------------------------------------------------------------

COORDS = [[{"x": 40, "y": 30}, {"x": 60, "y": 35}, {"x": 120, "y": 60}],
          [{"x": 150.5, "y": 20}] + [{"x": 150.5 - 2 * k, "y": 20 + k} for k in range(1, 12)]]


@pytest.mark.parametrize("canvas", [(200, 100), (400, 200)])
@pytest.mark.parametrize("timing", ["time", "speed"])
def test_spline_json_to_boxes_and_back(canvas, timing):
    image = (400, 200)
    paths = parse_coord_str(json.dumps(COORDS))
    assert [p.shape for p in paths] == [(3, 2), (12, 2)]
    data = tracks_to_trajectory(paths, num_frames=9, canvas_size=canvas, image_size=image, box_size=(20, 16), timing=timing)
    boxes = parse_trajectory(data, 9, image).boxes  # (2, 9, 4)
    scale = np.array(image) / np.array(canvas)
    np.testing.assert_allclose((boxes[:, 0, :2] + boxes[:, 0, 2:]) / 2, [[40 * scale[0], 30 * scale[1]], [150.5 * scale[0], 20 * scale[1]]])
    np.testing.assert_allclose(boxes[:, :, 2:] - boxes[:, :, :2], np.broadcast_to([20 * scale[0], 16 * scale[1]], (2, 9, 2)))
    np.testing.assert_allclose((boxes[:, -1, :2] + boxes[:, -1, 2:]) / 2, [[120 * scale[0], 60 * scale[1]], [128.5 * scale[0], 31 * scale[1]]])

    exported = to_coord_str(data, image_size=image, canvas_size=canvas)
    again = tracks_to_trajectory(parse_coord_str(exported), num_frames=9, canvas_size=canvas, image_size=image, box_size=(20, 16))
    back = parse_trajectory(again, 9, image).boxes
    if canvas == image:
        assert np.array_equal(back, boxes)
    else:
        np.testing.assert_allclose(back, boxes, rtol=0, atol=1e-9)
    # boxes (N, F, 4) export the same points (up to rounding) as the JSON they came from
    np.testing.assert_allclose([[[p["x"], p["y"]] for p in path] for path in json.loads(to_coord_str(boxes, image_size=image, canvas_size=canvas))],
                               [[[p["x"], p["y"]] for p in path] for path in json.loads(exported)], atol=1e-9)


@pytest.mark.parametrize("fmt", [None, "spline", "ati"])
def test_read_any_spline_file_equals_the_direct_conversion(tmp_path, fmt):
    path = tmp_path / "coords.json"
    path.write_text(json.dumps(COORDS[0]))  # one path, not nested
    data, info = read_any(path, format=fmt, num_frames=6, image_size=(400, 200), box_size=(30, 20), canvas_size=(200, 100), timing="ease")
    direct = tracks_to_trajectory(parse_coord_str(json.dumps([COORDS[0]])), num_frames=6, canvas_size=(200, 100),
                                  image_size=(400, 200), box_size=(30, 20), timing="ease")
    assert data == direct
    assert info == {"format": fmt or "spline", "timing": "ease", "frames": 6, "canvas_size": [200.0, 100.0],
                    "points": [3], "box_size": [30.0, 20.0], "resampled": True}


def test_default_box_is_clipped_to_the_canvas():
    data = tracks_to_trajectory([np.array([[2.0, 3.0], [50.0, 50.0]])], num_frames=4, canvas_size=(100, 80), image_size=(100, 80))
    side = formats.DEFAULT_BOX_FRACTION * 80
    assert data["boxes"][0]["box"] == [0.0, 0.0, 2.0 + side / 2, 3.0 + side / 2]
    assert data["boxes"][0]["path"][0] == [2.0, 3.0]


# -- the authors' traj.npy -------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.int64, np.float32, np.float64])
def test_traj_npy_to_json_to_traj_npy_is_exact(dtype, tmp_path):
    rng = np.random.RandomState(5)
    corners = np.array([[[10, 12], [40, 30]], [[50, 5], [70, 45]]])
    centres = corners.mean(axis=1, keepdims=True) + rng.uniform(-10, 10, (2, 14, 2))
    raw = np.concatenate([corners, centres], axis=1).astype(dtype)
    data = json.loads(json.dumps(from_reference_array(raw)))  # through a JSON file
    back = to_reference_array(data, dtype=dtype)
    assert back.dtype == raw.dtype and np.array_equal(back, raw)

    np.save(tmp_path / "traj.npy", raw)
    read, info = read_any(tmp_path / "traj.npy", num_frames=14, image_size=(100, 50))
    assert info["format"] == "reference" and info["resampled"] is False
    assert np.array_equal(to_reference_array(read, dtype=dtype), raw)
    # and it gives the boxes the authors' conversion gives
    ours = parse_trajectory(read, 14, (100, 50)).boxes
    np.testing.assert_allclose(ours, reference_boxes(raw, (100, 50), 100, 50), atol=1e-4)


def test_boxes_to_traj_npy():
    boxes = parse_trajectory({"boxes": [{"box": [10, 10, 30, 20], "keyframes": {"3": [40, 30]}}]}, 6, (100, 50)).boxes
    raw = to_reference_array(boxes)
    assert raw.shape == (1, 8, 2)
    np.testing.assert_allclose(reference_boxes(raw, (100, 50), 100, 50), boxes, atol=1e-4)
    zoom = parse_trajectory({"boxes": [{"box": [10, 10, 30, 20], "static": True, "scale": 1.5}]}, 6, (100, 50)).boxes
    with pytest.raises(ValueError, match="box 0: its size changes over time"):
        to_reference_array(zoom)


# -- Wan-Move --------------------------------------------------------------------------------------

def _wanmove(frames=12):
    t = np.arange(frames) / (frames - 1)
    tracks = np.zeros((frames, 3, 2))
    tracks[:, 0] = np.stack([50 + 30 * np.cos(np.pi * t), 40 + 20 * np.sin(np.pi * t)], axis=1)  # a half circle
    tracks[:, 1] = np.stack([10 + 60 * t, 70 - 10 * t], axis=1)
    tracks[:, 2] = np.nan  # never visible
    visibility = np.ones((frames, 3), dtype=bool)
    visibility[4:7, 0] = False  # hidden behind something for 3 frames
    visibility[:, 2] = False
    tracks[4:7, 0] = [-500, -500]  # garbage where hidden
    return tracks, visibility


def test_wanmove_boxes_follow_the_tracks():
    tracks, visibility = _wanmove()
    data, info = wanmove_to_trajectory(tracks, visibility, num_frames=12, image_size=(200, 100), canvas_size=(100, 100),
                                       box_size=(10, 10))
    assert info["dropped"] == [2] and info["invisible_frames"] == [3, 0] and info["tracks"] == 3
    centres = parse_trajectory(data, 12, (200, 100)).centers()
    expected = tracks[:, :2] * [2.0, 1.0]
    seen = visibility[:, 0]
    np.testing.assert_allclose(centres[0, seen], expected[seen, 0], atol=1e-9)
    np.testing.assert_allclose(centres[1], expected[:, 1], atol=1e-9)
    # hidden frames 4..6: on the straight line between frames 3 and 7
    for f in (4, 5, 6):
        w = (f - 3) / 4
        np.testing.assert_allclose(centres[0, f], (1 - w) * expected[3, 0] + w * expected[7, 0], atol=1e-9)
    # twice as many frames (minus one): the tracks' positions at the even frames
    data, _ = wanmove_to_trajectory(tracks[:, 1:2], None, num_frames=23, image_size=(100, 100), box_size=(10, 10))
    np.testing.assert_allclose(parse_trajectory(data, 23, (100, 100)).centers()[0, ::2], tracks[:, 1], atol=1e-9)


@pytest.mark.parametrize("kind", ["npy", "npz", "pt"])
def test_wanmove_files(tmp_path, kind):
    tracks, visibility = _wanmove()
    if kind == "npy":
        path = tmp_path / "walk_tracks.npy"
        np.save(path, tracks)
        np.save(tmp_path / "walk_visibility.npy", visibility)
    elif kind == "npz":
        path = tmp_path / "walk.npz"
        np.savez(path, track_path=tracks[None], track_visibility=visibility[None])
    else:
        import torch

        path = tmp_path / "walk.pt"
        torch.save({"track_path": torch.from_numpy(tracks), "track_visibility": torch.from_numpy(visibility)}, path)
    data, info = read_any(path, num_frames=12, image_size=(100, 100), box_size=(10, 10))
    direct, _ = wanmove_to_trajectory(tracks, visibility, num_frames=12, image_size=(100, 100), box_size=(10, 10))
    assert info["format"] == "wanmove" and info["dropped"] == [2]
    np.testing.assert_allclose(parse_trajectory(data, 12, (100, 100)).boxes, parse_trajectory(direct, 12, (100, 100)).boxes,
                               atol=1e-5)  # the .pt file went through float32


# -- bad input -------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, message", [
    ('[{"x": "a", "y": 2}]', r"c.json: \[0\].x: expected a finite number, got 'a'"),
    ('[[{"x": 1, "y": 2}], [{"x": 1}]]', r"c.json: \[1\]\[0\]: expected a point \{\"x\": .., \"y\": ..\}, got \{'x': 1\}"),
    ('[[{"x": 1, "y": 2}], []]', r"c.json: \[1\]: expected a non-empty list of points, got \[\]"),
    ('[]', r"c.json: expected a list of points"),
    ('[{"x": 1, "y": 2}', r"c.json: malformed JSON at line 1"),
])
def test_bad_coord_str_names_source_field_and_value(text, message):
    with pytest.raises(TrajectoryError, match=message):
        parse_coord_str(text, "c.json")


def test_bad_tracks_name_the_field(tmp_path):
    with pytest.raises(ValueError, match=r"w.npy: track_path: expected an array of shape \(F, N, 2\), got \(4, 3\)"):
        wanmove_to_trajectory(np.zeros((4, 3)), num_frames=4, image_size=(10, 10), source="w.npy")
    with pytest.raises(ValueError, match=r"track_visibility: expected shape \(4, 2\) \(F, N\) like the tracks, got \(2, 4\)"):
        wanmove_to_trajectory(np.zeros((4, 2, 2)), np.ones((2, 4)), num_frames=4, image_size=(10, 10))
    with pytest.raises(ValueError, match=r"path 0: its first point \[150.0, 5.0\] is outside the 100x50 canvas"):
        tracks_to_trajectory([np.array([[150.0, 5.0], [10.0, 5.0]])], num_frames=4, canvas_size=(100, 50), image_size=(100, 50))
    (tmp_path / "t.json").write_text('{"boxes": [{"box": [0, 0, 5, 5], "static": true}]}')
    with pytest.raises(ValueError, match=r"t.json: box_size: only for point formats"):
        read_any(tmp_path / "t.json", num_frames=4, image_size=(10, 10), box_size=(3, 3))
    with pytest.raises(ValueError, match=r"opts: box_size: expected a width and height like 80x60 .*, got '80y60'"):
        formats.resolve_trajectory_options({"box_size": "80y60"}, source="opts")
    with pytest.raises(ValueError, match=r"t.json: Wan-Move tracks are read from a .npy, .npz, .pt or .pth file, not .json$"):
        read_any(tmp_path / "t.json", format="wanmove", num_frames=4, image_size=(10, 10))
    (tmp_path / "t.pt").write_text("not a torch file")
    with pytest.raises(ValueError, match=r"t.pt: not a torch file of tensors \(saved with torch.save\): [^\n]{1,120}$"):
        read_any(tmp_path / "t.pt", num_frames=4, image_size=(10, 10))


@pytest.fixture
def image_file(tmp_path):
    path = tmp_path / "in.png"
    Image.fromarray((np.random.RandomState(0).rand(50, 100, 3) * 255).astype(np.uint8)).save(path)
    return path


@pytest.mark.parametrize("content, extra, message", [
    ('[{"x": 10, "y": "up"}]', [], r"coords.json: \[0\].y: expected a finite number, got 'up'"),
    ('[{"x": 10, "y": 5}, {"x": 20, "y": 5}]', ["--box-size", "80y60"], r"box_size: expected a width and height like 80x60 .*got '80y60'"),
    ('[{"x": 10, "y": 5}, {"x": 20, "y": 5}]', ["--timing", "fast"], r"timing: expected one of time, speed, ease, got 'fast'"),
    ('[{"x": 10, "y": 5}, {"x": 20, "y": 5}]', ["--traj-format", "sgi2v"], r"coords.json: expected a JSON object with a 'boxes' list, got list"),
    ('[{"x": 500, "y": 5}, {"x": 20, "y": 5}]', [], r"coords.json: path 0: its first point \[500.0, 5.0\] is outside the 100x50 canvas"),
])
def test_cli_bad_input_exits_2_with_one_line_and_no_files(tmp_path, image_file, capsys, content, extra, message):
    traj = tmp_path / "coords.json"
    traj.write_text(content)
    out = tmp_path / "out"
    assert main(["generate", str(image_file), "--traj", str(traj), "-o", str(out / "v.mp4"), *extra, *FAST]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("sgi2v: error: "), err
    import re

    assert re.search(message, err[0]), err[0]
    assert not out.exists()


def test_cli_rejects_trajectory_options_without_traj(tmp_path, capsys):
    assert main(["generate", "--reference-dir", str(tmp_path), "--box-size", "10x10", "-o", str(tmp_path / "v.mp4")]) == 2
    assert "--box-size says how to read --traj FILE" in capsys.readouterr().err


def test_bad_file_is_reported_before_torch_is_imported(tmp_path, image_file):
    traj = tmp_path / "coords.json"
    traj.write_text('[{"x": 10, "y": "up"}]')
    code = ("import sys; from sgi2v.cli import main; rc = main(['generate', sys.argv[1], '--traj', sys.argv[2], '--box-size', "
            "'20x10', '-o', sys.argv[3], '--model', 'tiny-random']); print(rc, 'torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code, str(image_file), str(traj), str(tmp_path / "v.mp4")],
                            capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=SRC), timeout=300)
    assert result.stdout.split() == ["2", "False"], result.stdout + result.stderr
    assert result.stderr.strip() == f"sgi2v: error: {traj}: [0].y: expected a finite number, got 'up'"


# -- end to end ------------------------------------------------------------------------------------

def test_cli_generates_from_spline_json_with_box_size(tmp_path, image_file):
    coords = tmp_path / "coords.json"
    coords.write_text(json.dumps([[{"x": 40, "y": 30}, {"x": 60, "y": 35}, {"x": 70, "y": 36}, {"x": 90, "y": 40}, {"x": 100, "y": 42},
                                   {"x": 120, "y": 45}, {"x": 130, "y": 50}],
                                  [{"x": 160, "y": 20}, {"x": 150, "y": 25}]]))
    out = tmp_path / "out"
    options = ["--box-size", "40x30", "--canvas-size", "200x100", "--timing", "speed"]
    assert main(["generate", str(image_file), "--traj", str(coords), "-o", str(out / "a.mp4"), *options, *FAST]) == 0
    record = json.loads((out / "a.json").read_text())
    conversion = record["inputs"]["trajectory_conversion"]
    assert conversion == {"format": "spline", "timing": "speed", "frames": 4, "canvas_size": [200.0, 100.0], "points": [7, 2],
                          "box_size": [40.0, 30.0], "resampled": True}
    boxes = np.array(record["boxes"])
    assert boxes.shape == (2, 4, 4)
    # independently: canvas 200x100 -> output 128x64 is a factor 0.64; box 40x30 -> 25.6x19.2 centred on the first point
    np.testing.assert_allclose(boxes[:, 0], [[(40 - 20) * .64, (30 - 15) * .64, (40 + 20) * .64, (30 + 15) * .64],
                                             [(160 - 20) * .64, (20 - 15) * .64, (160 + 20) * .64, (20 + 15) * .64]], atol=1e-9)
    centres = (boxes[..., :2] + boxes[..., 2:]) / 2
    steps = np.hypot(*np.diff(centres[1], axis=0).T)
    np.testing.assert_allclose(steps, steps[0], rtol=1e-9)

    # the same trajectory written as our JSON gives the same boxes and the same frames
    (tmp_path / "ours.json").write_text(json.dumps(record["inputs"]["trajectory"]))
    assert main(["generate", str(image_file), "--traj", str(tmp_path / "ours.json"), "-o", str(out / "b.mp4"), *FAST]) == 0
    other = json.loads((out / "b.json").read_text())
    assert other["boxes"] == record["boxes"] and other["frames_sha256"] == record["frames_sha256"]
    assert other["inputs"]["trajectory_conversion"]["format"] == "sgi2v"


def test_batch_reads_formats_and_reports_bad_lines_like_the_cli(tmp_path, image_file, capsys):
    (tmp_path / "coords.json").write_text(json.dumps([{"x": 40, "y": 30}, {"x": 60, "y": 35}]))
    (tmp_path / "bad.json").write_text('[{"x": 10, "y": "up"}]')
    lines = [{"id": "good", "image": "in.png", "traj": "coords.json", "box_size": [40, 30], "canvas_size": "200x100"},
             {"id": "bad", "image": "in.png", "traj": "bad.json"},
             {"id": "size", "image": "in.png", "traj": "coords.json", "box_size": "80y60"}]
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = tmp_path / "out"
    env = {k: v for k, v in dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=SRC).items() if k not in ("OMP_NUM_THREADS",)}
    result = subprocess.run([sys.executable, "-m", "sgi2v", "batch", str(manifest), "-o", str(out), *FAST, "--iterations", "1"],
                            capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 1, result.stderr
    record = json.loads((out / "good.json").read_text())
    assert record["inputs"]["trajectory_conversion"]["format"] == "spline"
    np.testing.assert_allclose(record["boxes"][0][0], [(40 - 20) * .64, (30 - 15) * .64, (40 + 20) * .64, (30 + 15) * .64])
    failures = {f["id"]: f["error"] for f in map(json.loads, (out / "failures.jsonl").read_text().splitlines())}
    assert failures["bad"].endswith(f"{tmp_path / 'bad.json'}: [0].y: expected a finite number, got 'up'"), failures
    assert "box_size: expected a width and height like 80x60" in failures["size"] and "'80y60'" in failures["size"]

    # the command line says the same about the same file
    assert main(["generate", str(image_file), "--traj", str(tmp_path / "bad.json"), "-o", str(tmp_path / "v.mp4"), *FAST]) == 2
    assert capsys.readouterr().err.strip() == f"sgi2v: error: {tmp_path / 'bad.json'}: [0].y: expected a finite number, got 'up'"


def test_web_app_loader_reads_spline_json_and_wanmove(tmp_path):
    from sgi2v.ui.app import Session, load_files

    session = Session()
    session.set_image(Image.new("RGB", (256, 128)), 128, 64)
    coords = tmp_path / "coords.json"
    coords.write_text(json.dumps([{"x": 40, "y": 40}, {"x": 80, "y": 40}, {"x": 120, "y": 60}]))
    message, frames, data = load_files(session, [str(coords)], 4, 128, 64, tmp_path)
    side = formats.DEFAULT_BOX_FRACTION * 128  # the default box (canvas = the upload, 256x128), in the upload's pixels
    assert "1 box" in message and frames == 4 and session.trajectory == data
    assert data["boxes"][0]["box"] == [40 - side / 2, 40 - side / 2, 40 + side / 2, 40 + side / 2]
    assert len(data["boxes"][0]["path"]) == 4 and data["boxes"][0]["path"][-1] == [120, 60]
    tracks, visibility = _wanmove(4)
    np.save(tmp_path / "walk_tracks.npy", tracks)
    np.save(tmp_path / "walk_visibility.npy", visibility)
    message, frames, data = load_files(session, [str(tmp_path / "walk_tracks.npy")], 4, 128, 64, tmp_path)
    assert "2 boxes" in message and [b.get("label") for b in data["boxes"]] == ["track 0", "track 1"]
