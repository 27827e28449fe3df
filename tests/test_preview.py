"""The motion preview: boxes and camera land exactly where the trajectory says; the command and its checks."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from sgi2v.cli import main
from sgi2v.generation import prepare_inputs
from sgi2v.preview import camera_index, preview_prepared, render_preview
from sgi2v.settings import resolve_settings
from sgi2v.video import read_video

H, W = 64, 128


def unique_image(height=H, width=W):
    """Every pixel different: red is x, green is y, blue mixes both."""
    y, x = np.mgrid[:height, :width]
    return np.stack([x % 256, y % 256, (7 * x + 13 * y) % 256], axis=-1).astype(np.uint8)


def track(box, offsets):
    """Boxes ``(F, 4)``: ``box`` shifted by each ``(dx, dy)``."""
    return np.array([[box[0] + dx, box[1] + dy, box[2] + dx, box[3] + dy] for dx, dy in offsets], dtype=np.float64)


def shifted(image, dx, dy):
    """``image`` moved by whole pixels ``(dx, dy)``, the uncovered edge filled by the nearest edge pixel."""
    rows = np.clip(np.arange(image.shape[0]) - dy, 0, image.shape[0] - 1)
    cols = np.clip(np.arange(image.shape[1]) - dx, 0, image.shape[1] - 1)
    return image[rows][:, cols]


OFFSETS = [(0, 0), (3, 1), (-2, 5), (11, -4), (40, 20)]


def test_a_box_lands_where_its_path_says_at_every_frame():
    image = unique_image()
    box = (20, 10, 36, 22)
    frames = render_preview(image, track(box, OFFSETS)[None])
    assert frames.shape == (len(OFFSETS), H, W, 3) and frames.dtype == np.uint8
    block = image[10:22, 20:36]
    for f, (dx, dy) in enumerate(OFFSETS):
        np.testing.assert_array_equal(frames[f, 10 + dy:22 + dy, 20 + dx:36 + dx], block, err_msg=f"frame {f}")
        # everything else is the first frame (the box's old place included: nothing is guessed behind it)
        outside = np.ones((H, W), bool)
        outside[10 + dy:22 + dy, 20 + dx:36 + dx] = False
        np.testing.assert_array_equal(frames[f][outside], image[outside])


def test_a_path_from_a_trajectory_file_moves_the_box_by_its_points(tmp_path):
    """End to end from the JSON: one path point per frame, so every position is a given point."""
    image = unique_image()
    Image.fromarray(image).save(tmp_path / "in.png")
    points = [[28 + dx, 16 + dy] for dx, dy in OFFSETS]
    trajectory = {"boxes": [{"box": [20, 10, 36, 22], "path": points}]}
    settings, _ = resolve_settings({"width": W, "height": H, "num_frames": len(OFFSETS)})
    prepared = prepare_inputs(tmp_path / "in.png", trajectory, settings)
    frames = preview_prepared(prepared)
    for f, (dx, dy) in enumerate(OFFSETS):
        np.testing.assert_array_equal(frames[f, 10 + dy:22 + dy, 20 + dx:36 + dx], image[10:22, 20:36])


def test_a_box_leaving_the_picture_is_clipped():
    image = unique_image()
    frames = render_preview(image, track((100, 40, 120, 60), [(0, 0), (20, 0), (0, 15)])[None])
    np.testing.assert_array_equal(frames[1, 40:60, 120:], image[40:60, 100:108])
    np.testing.assert_array_equal(frames[2, 55:, 100:120], image[40:49, 100:120])


@pytest.mark.parametrize("factor", [2, 3])
def test_a_box_scaled_by_a_whole_factor_repeats_each_pixel(factor):
    image = unique_image()
    start = (10, 8, 18, 14)  # 8 x 6 pixels
    end = (50, 20, 50 + 8 * factor, 20 + 6 * factor)
    boxes = np.array([[start, end]], dtype=np.float64)
    frames = render_preview(image, boxes)
    expected = np.repeat(np.repeat(image[8:14, 10:18], factor, axis=0), factor, axis=1)
    np.testing.assert_array_equal(frames[1, 20:20 + 6 * factor, 50:50 + 8 * factor], expected)


def test_a_box_at_fractional_positions_covers_the_pixels_whose_centres_it_holds():
    image = unique_image()
    boxes = np.array([[(10, 10, 20, 20), (30.4, 5.6, 40.4, 15.6)]])  # 10 x 10, moved by (20.4, -4.4)
    frame = render_preview(image, boxes)[1]
    changed = np.argwhere((frame != image).any(axis=-1))
    # centres x + 0.5 in [30.4, 40.4): x = 30 .. 39; y + 0.5 in [5.6, 15.6): y = 6 .. 15
    assert changed.min(axis=0).tolist() >= [6, 30] and changed.max(axis=0).tolist() <= [15, 39]
    np.testing.assert_array_equal(frame[6:16, 30:40], image[10:20, 10:20])


def test_camera_pan_moves_the_whole_picture_with_the_edge_repeated():
    image = unique_image()
    camera = track((0, 0, 96, 48), OFFSETS)  # the scene inside it moves by the offsets
    frames = render_preview(image, camera[None], camera=0)
    for f, (dx, dy) in enumerate(OFFSETS):
        np.testing.assert_array_equal(frames[f], shifted(image, dx, dy), err_msg=f"frame {f}")


def test_camera_zoom_scales_the_whole_picture():
    image = unique_image()
    camera = np.array([[(32, 16, 96, 48), (0, 0, W, H)]], dtype=np.float64)  # the middle half fills the frame
    frames = render_preview(image, camera, camera=0)
    np.testing.assert_array_equal(frames[0], image)
    np.testing.assert_array_equal(frames[1], np.repeat(np.repeat(image[16:48, 32:96], 2, axis=0), 2, axis=1))


@pytest.mark.parametrize("pan, direction", [("left", (1, 0)), ("right", (-1, 0)), ("up", (0, 1)), ("down", (0, -1))])
def test_a_camera_pan_from_a_trajectory_moves_the_scene_the_other_way(pan, direction, tmp_path):
    """``pan: left`` by a quarter of the picture over 5 frames: the scene moves right by W / 16 a frame."""
    image = unique_image()
    Image.fromarray(image).save(tmp_path / "in.png")
    settings, _ = resolve_settings({"width": W, "height": H, "num_frames": 5})
    prepared = prepare_inputs(tmp_path / "in.png", {"camera": {"pan": pan, "amount": 0.25}}, settings)
    assert camera_index(prepared) == 0
    frames = preview_prepared(prepared)
    for f in range(5):
        dx, dy = direction[0] * f * W // 16, direction[1] * f * H // 16
        np.testing.assert_array_equal(frames[f], shifted(image, dx, dy), err_msg=f"frame {f}")


def test_static_boxes_stay_pinned_while_the_camera_pans_and_later_boxes_are_on_top():
    image = unique_image()
    frames_n = len(OFFSETS)
    moves = [(0, 0), (30, 5), (45, 8), (40, 0), (50, 5)]  # onto the static box from frame 2
    static = track((60, 30, 80, 50), [(0, 0)] * frames_n)
    mover = track((20, 30, 40, 50), moves)  # listed after the static box: drawn over it
    camera = track((0, 0, 96, 48), OFFSETS)
    frames = render_preview(image, np.stack([static, mover, camera]), camera=2)
    for f, ((dx, dy), (mx, my)) in enumerate(zip(OFFSETS, moves)):
        expected = shifted(image, dx, dy)
        expected[30:50, 60:80] = image[30:50, 60:80]
        expected[30 + my:50 + my, 20 + mx:40 + mx] = image[30:50, 20:40]
        np.testing.assert_array_equal(frames[f], expected, err_msg=f"frame {f}")


def test_the_camera_is_found_from_the_trajectory_and_only_there(tmp_path):
    Image.fromarray(unique_image()).save(tmp_path / "in.png")
    settings, _ = resolve_settings({"width": W, "height": H, "num_frames": 4})
    box = {"box": [10, 10, 30, 30], "static": True, "label": "camera"}  # a box named camera is still a box
    assert camera_index(prepare_inputs(tmp_path / "in.png", {"boxes": [box]}, settings)) is None
    assert camera_index(prepare_inputs(tmp_path / "in.png", {"boxes": [box], "camera": {"zoom": 1.5}}, settings)) == 1


@pytest.mark.parametrize("image, boxes, camera, message", [
    (np.zeros((H, W), np.uint8), np.zeros((1, 2, 4)), None, "uint8 \\(H, W, 3\\)"),
    (np.zeros((H, W, 3), np.float32), np.zeros((1, 2, 4)), None, "uint8 \\(H, W, 3\\)"),
    (unique_image(), np.zeros((2, 4)), None, "shape \\(N, num_frames, 4\\)"),
    (unique_image(), np.array([[[5, 5, 2, 9]] * 2], float), None, "needs x1 > x0"),
    (unique_image(), np.array([[[0, 0, W + 5, H]] * 2], float), None, "must lie inside"),
    (unique_image(), np.array([[[0, 0, 9, 9]] * 2], float), 1, "camera must index one of the 1 boxes, got 1"),
])
def test_bad_arguments_are_refused(image, boxes, camera, message):
    with pytest.raises(ValueError, match=message):
        render_preview(image, boxes, camera=camera)


# -- the command ------------------------------------------------------------------------------------

def test_the_command_writes_a_readable_video_of_the_preview(inputs, capsys):
    image, traj, out = inputs
    y, x = np.mgrid[:50, :100]
    smooth = np.stack([x * 2, y * 4, 255 - x - y], axis=-1)  # gradients: H.264 keeps them closely
    Image.fromarray(smooth.astype(np.uint8)).save(image)
    assert main(["preview", str(image), "--traj", str(traj), "-o", str(out / "p.mp4"), "--width", "128", "--height", "64",
                 "--frames", "6", "--fps", "5"]) == 0
    assert "wrote" in capsys.readouterr().out
    video = read_video(out / "p.mp4")
    assert video.shape == (6, 64, 128, 3)
    settings, _ = resolve_settings({"width": 128, "height": 64, "num_frames": 6})
    expected = preview_prepared(prepare_inputs(image, traj, settings))
    video, expected = video.astype(int), expected.astype(int)
    assert np.abs(video - expected).mean() < 3  # H.264 is lossy, but close on gradients
    for f in range(1, 6):  # where the box moved, the video shows the moved box, not the first frame
        moved = (expected[f] != expected[0]).any(axis=-1)
        assert moved.sum() > 100
        assert np.abs(video[f] - expected[f])[moved].mean() * 3 < np.abs(video[f] - expected[0])[moved].mean()
    assert sorted(p.name for p in out.iterdir()) == ["p.mp4"]


def test_the_command_reads_the_authors_folder_format(tmp_path):
    folder = tmp_path / "ref"
    folder.mkdir()
    Image.fromarray(unique_image(90, 160)).save(folder / "img.png")
    centers = np.array([[[40 + 5 * f, 45] for f in range(14)]], dtype=np.float64)
    np.save(folder / "traj.npy", np.concatenate([np.array([[[20, 30], [60, 60]]]), centers], axis=1))
    assert main(["preview", "--reference-dir", str(folder), "-o", str(tmp_path / "r.mp4"), "--width", "128",
                 "--height", "64"]) == 0
    assert read_video(tmp_path / "r.mp4").shape == (14, 64, 128, 3)


@pytest.mark.parametrize("case, message", [
    ("missing image", "none.png: image not found"),
    ("bad field", "boxes[0].path[0]: expected a point"),
    ("size", "height: expected an integer from 64 to 4096, a multiple of 64, got 100"),
    ("too many frames", "num_frames: the file is for 4 frames but 6 are generated"),
    ("not mp4", "p.avi: the output video must end in .mp4"),
    ("no output", "give the output video with -o PREVIEW.mp4"),
    ("two sources", "--reference-dir brings its own image and trajectory"),
    ("exists", "p.mp4: exists; pass --overwrite to replace it"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(case, message, inputs, tmp_path, capsys):
    image, traj, out = inputs
    args = [str(image), "--traj", str(traj), "-o", str(out / "p.mp4"), "--width", "128", "--height", "64"]
    if case == "missing image":
        args[0] = str(tmp_path / "none.png")
    elif case == "bad field":
        (tmp_path / "t.json").write_text('{"boxes": [{"box": [1, 1, 5, 5], "path": [3]}]}')
        args[2] = str(tmp_path / "t.json")
    elif case == "size":
        args[-1] = "100"
    elif case == "too many frames":
        (tmp_path / "t.json").write_text(json.dumps({**json.loads(traj.read_text()), "num_frames": 4}))
        args[2:] = [str(tmp_path / "t.json"), *args[3:], "--frames", "6"]
    elif case == "not mp4":
        args[4] = str(out / "p.avi")
    elif case == "no output":
        del args[3:5]
    elif case == "two sources":
        args += ["--reference-dir", str(tmp_path)]
    elif case == "exists":
        (out / "p.mp4").write_bytes(b"earlier")
    code = main(["preview", *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("sgi2v: error: ") and message in err[0], err
    if case == "exists":
        assert (out / "p.mp4").read_bytes() == b"earlier"
    else:
        assert list(out.iterdir()) == []


def test_a_failed_write_leaves_the_earlier_file_and_no_temporary(inputs, monkeypatch, capsys):
    import sgi2v.video

    image, traj, out = inputs
    (out / "p.mp4").write_bytes(b"earlier")

    def broken(path, frames, fps, preset="medium"):
        with open(path, "wb") as handle:
            handle.write(b"half a video")
        raise OSError("disk full")

    monkeypatch.setattr(sgi2v.video, "write_mp4", broken)
    code = main(["preview", str(image), "--traj", str(traj), "-o", str(out / "p.mp4"), "--overwrite", "--width", "128",
                 "--height", "64"])
    assert code == 1 and "disk full" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["p.mp4"] and (out / "p.mp4").read_bytes() == b"earlier"


def test_the_command_imports_no_torch(inputs):
    image, traj, out = inputs
    code = ("import sys; from sgi2v.cli import main; "
            f"rc = main(['preview', {str(image)!r}, '--traj', {str(traj)!r}, '-o', {str(out / 'p.mp4')!r}, "
            "'--width', '128', '--height', '64']); print(rc, 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.split()[-2:] == ["0", "False"], done.stderr
