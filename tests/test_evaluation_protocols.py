"""Evaluation protocols: every CoTracker kind, occlusion versus tracking failure, the FVD resize modes,
the Python API against the command line, pooled ObjMC through evaluate(), and odd frame sizes in
every video writer.

Networks here have RANDOM weights: their numbers check code paths, they are no scores.
"""

import hashlib
import json

import numpy as np
import pytest
import torch
from PIL import Image

from sgi2v.cli import main
from sgi2v.evaluation import (COTRACKER_VARIANTS, EvaluationError, I3D, I3DFeatures, Tracks, WeightsError,
                              cotracker_variant, evaluate, objmc_distances, objmc_pooled, write_report)
from sgi2v.video import draw_overlay, read_video, write_gif, write_mp4

from test_evaluation import F, H, W, known_path, make_generated, moving_patch_video


# --- CoTracker: every released kind, chosen from the checkpoint ----------------------------------


def fake_state(v2: bool, window: int) -> dict:
    """Just the keys that tell the kinds apart (no package needed)."""
    keys = {"time_emb": torch.zeros(1, window, 456 if v2 else 1110), "fnet.conv1.weight": torch.zeros(1)}
    if not v2:
        keys["corr_mlp.fc1.weight"] = torch.zeros(1)
    return keys


@pytest.mark.parametrize("v2, window, name", [(False, 60, "cotracker3-offline"), (False, 16, "cotracker3-online"),
                                              (True, 8, "cotracker2"), (True, 16, "cotracker2.1")])
def test_cotracker_kind_is_read_from_the_checkpoint_keys_and_window(v2, window, name):
    variant = cotracker_variant(fake_state(v2, window))
    assert variant.name == name and variant.window == window and variant.v2 == v2
    assert variant.online == (name == "cotracker3-online")


def test_cotracker_checkpoint_of_no_released_kind_is_refused():
    with pytest.raises(WeightsError, match="ck.pth: a CoTracker3 checkpoint with window 12, which is none of the released kinds"):
        cotracker_variant(fake_state(False, 12), "ck.pth")


def cotracker_package():
    try:
        from cotracker.models.build_cotracker import build_cotracker
    except ImportError:
        pytest.skip("the cotracker package is not installed (pip install it from github.com/facebookresearch/co-tracker)")
    return build_cotracker


def random_checkpoint(tmp_path, variant):
    """A RANDOM-weight checkpoint built from the package's own model class, saved as the release saves it."""
    build_cotracker = cotracker_package()
    torch.manual_seed(0)
    model = build_cotracker(None, offline=not variant.online, window_len=variant.window, v2=variant.v2)
    path = tmp_path / variant.files[0]
    torch.save(model.state_dict(), path)
    return path


@pytest.mark.parametrize("variant", COTRACKER_VARIANTS, ids=lambda v: v.name)
def test_each_cotracker_kind_loads_into_its_own_predictor_and_window(tmp_path, variant):
    path = random_checkpoint(tmp_path, variant)
    from cotracker.predictor import CoTrackerOnlinePredictor, CoTrackerPredictor

    from sgi2v.evaluation import CoTrackerTracker

    tracker = CoTrackerTracker(path, device="cpu", resolution=(64, 96))
    assert tracker.variant == variant
    assert type(tracker.model) is (CoTrackerOnlinePredictor if variant.online else CoTrackerPredictor)
    assert tracker.model.model.window_len == variant.window and tracker.model.v2 == variant.v2
    described = tracker.describe()
    assert described["variant"] == variant.name and described["checkpoint_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow  # minutes on a shared CPU: the models have 25 M (CoTracker3) and 51 M (CoTracker2) parameters
@pytest.mark.parametrize("variant", COTRACKER_VARIANTS, ids=lambda v: v.name)
def test_each_cotracker_kind_tracks_with_random_weights(tmp_path, variant):
    from sgi2v.evaluation import CoTrackerTracker

    tracker = CoTrackerTracker(random_checkpoint(tmp_path, variant), device="cpu", resolution=(64, 96))
    frames = 10  # longer than the online model's step of 8: two chunks
    video = moving_patch_video(known_path(frames), patch=30)
    queries = np.array([[40.0, 36.0], [70.0, 50.0]])
    tracks = tracker.track(video, queries)
    assert tracks.points.shape == (2, frames, 2) and tracks.failed.shape == tracks.occluded.shape == (2, frames)
    assert np.allclose(tracks.points[:, 0], queries) and not tracks.occluded[:, 0].any()
    outside = (tracks.points[..., 0] < 0) | (tracks.points[..., 0] > W) | (tracks.points[..., 1] < 0) | (tracks.points[..., 1] > H)
    assert np.array_equal(tracks.failed, outside)  # failure means leaving the frame; occlusion is reported apart


def test_cotracker_checkpoint_of_the_wrong_shape_names_the_file(tmp_path):
    build_cotracker = cotracker_package()
    from sgi2v.evaluation import CoTrackerTracker

    state = build_cotracker(None, offline=True, window_len=60).state_dict()
    state["corr_mlp.fc1.weight"] = torch.zeros(3, 3)
    torch.save({"model": state}, tmp_path / "broken.pth")  # the "model" wrapper is accepted
    with pytest.raises(WeightsError, match="broken.pth: does not fit the cotracker3-offline model"):
        CoTrackerTracker(tmp_path / "broken.pth", device="cpu")


# --- occlusion and tracking failure are counted apart ---------------------------------------------


class ScriptedTracker:
    """Returns fixed positions with given occlusion and failure flags (a stand-in with a known answer)."""

    name = "scripted"

    def __init__(self, occluded_at, failed_at):
        self.occluded_at, self.failed_at = occluded_at, failed_at

    def track(self, video, queries):
        n, f = len(queries), len(video)
        occluded, failed = np.zeros((n, f), bool), np.zeros((n, f), bool)
        occluded[0, self.occluded_at] = True
        failed[0, self.failed_at] = True
        return Tracks(np.repeat(np.asarray(queries, float)[:, None], f, axis=1), failed, occluded)


def test_occlusion_and_tracking_failure_are_reported_separately():
    video = np.zeros((F, 20, 30, 3), np.uint8)
    targets = np.full((2, F, 2), 10.0)
    result = objmc_pooled([video], [targets], tracker=ScriptedTracker(occluded_at=[1, 2, 3], failed_at=[5]))
    assert result.occluded_fraction == pytest.approx(3 / (2 * F)) and result.failed_fraction == pytest.approx(1 / (2 * F))


def test_lucas_kanade_marks_a_point_that_leaves_the_frame_as_failed_and_knows_no_occlusion():
    path = np.stack([40.0 + 20 * np.arange(F), np.full(F, 48.0)], axis=1)  # leaves the 128 px wide frame at frame 5
    video = moving_patch_video(np.clip(path, 0, 400), patch=30)
    m = objmc_distances(video, np.clip(path, 0, W)[None])
    assert m.tracks.occluded is None and m.tracks.failed[0, -1] and not m.tracks.failed[0, 0]
    assert (m.tracks.points[0, :, 0] <= W).all()


# --- FVD resize modes on a 16:9 clip ----------------------------------------------------------------


def wide_clips():
    """Two 16:9 clips (72 x 128) that agree in a central band wider than the 72 x 72 centre and differ at the sides."""
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (4, 72, 128, 3), dtype=np.uint8)
    b = a.copy()
    b[:, :, :20] = 255 - b[:, :, :20]
    b[:, :, -20:] = 0
    return a, b


def test_fvd_center_crop_sees_only_the_centre_and_stretch_sees_the_whole_frame():
    a, b = wide_clips()
    # size 36: the clip is halved to 36 x 64 and columns 14..49 are kept; they come from input columns 28..99,
    # which the two clips share, so the cropped features must be identical and the stretched ones must not be.
    crop = I3DFeatures.random_weights(device="cpu", size=36, resize="center-crop")
    stretch = I3DFeatures.random_weights(device="cpu", size=36, resize="stretch")
    assert np.array_equal(crop(a), crop(b))
    assert not np.allclose(stretch(a), stretch(b))
    assert not np.allclose(crop(a), stretch(a))
    assert crop.protocol()["resize"] == "center-crop" and stretch.protocol()["resize"] == "stretch"
    with pytest.raises(EvaluationError, match="FVD resize: expected one of stretch, center-crop, got 'squash'"):
        I3DFeatures.random_weights(device="cpu", resize="squash")


def test_stretch_is_the_default_and_unchanged():
    a, _ = wide_clips()
    default = I3DFeatures.random_weights(device="cpu", size=36)
    x = torch.from_numpy(a).permute(0, 3, 1, 2).float()
    x = torch.nn.functional.interpolate(x, size=(36, 36), mode="bilinear", align_corners=False) / 127.5 - 1
    with torch.no_grad():
        expected = default.model(x.permute(1, 0, 2, 3)[None]).numpy().reshape(-1)
    assert default.resize == "stretch" and np.array_equal(default(a), expected.astype(np.float64))


def wide_folders(tmp_path):
    gen, ref = tmp_path / "gen", tmp_path / "ref"
    gen.mkdir()
    ref.mkdir()
    path = known_path(4, start=(60.0, 36.0))
    for i in range(2):
        a, b = wide_clips()
        write_mp4(gen / f"v{i}.mp4", np.roll(a, i, axis=0), fps=7)
        write_mp4(ref / f"v{i}.mp4", np.roll(b, i, axis=0), fps=7)
        boxes = np.concatenate([path - 10, path + 10], axis=1)[None]
        (gen / f"v{i}.json").write_text(json.dumps({"boxes": boxes.tolist()}))
    return gen, ref


def test_stretch_is_the_command_line_default():
    from sgi2v.cli import build_parser

    assert build_parser().parse_args(["evaluate", "--generated", "g", "-o", "o"]).fvd_resize == "stretch"


# --- the Python API and the command line give the same report -------------------------------------


def test_evaluate_from_python_writes_the_same_report_json_as_the_cli(tmp_path):
    """Two 16:9 videos with a RANDOM-weight I3D in a real file: FVD centre-cropped, recorded with the file's hash."""
    gen, ref = wide_folders(tmp_path)
    weights = tmp_path / "i3d.pt"
    torch.manual_seed(0)
    torch.save(I3D().state_dict(), weights)  # RANDOM weights in a real file: not a reference detector
    assert main(["evaluate", "--generated", str(gen), "--reference", str(ref), "--fvd-weights", str(weights),
                 "--fvd-resize", "center-crop", "--device", "cpu", "--name", "Mine", "-o", str(tmp_path / "cli")]) == 0
    result = evaluate(gen, ref, fvd_weights=weights, fvd_resize="center-crop", device="cpu", name="Mine")
    written = write_report(result, tmp_path / "py")
    assert written == tmp_path / "py" / "report.json"
    assert written.read_text() == (tmp_path / "cli" / "report.json").read_text()
    assert (tmp_path / "py" / "report.md").read_text() == (tmp_path / "cli" / "report.md").read_text()
    assert sorted(p.name for p in (tmp_path / "py" / "paths").iterdir()) == ["v0.png", "v1.png"]
    report = json.loads(written.read_text())
    protocol = report["protocols"]["fvd"]
    assert protocol["resize"] == "center-crop" and "centre 224x224" in protocol["preprocessing"]
    assert protocol["weights_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert protocol["reference_detector"] is None and protocol["random_weights"] is False
    assert any("not a known reference FVD detector" in w for w in report["warnings"])
    assert "not a known reference FVD detector" in (tmp_path / "py" / "report.md").read_text()
    assert report["metrics"]["fvd"]["value"] >= 0 and report["metrics"]["fid"] == {"value": None, "skipped": "no FID weight file given"}
    assert report["protocols"]["objmc"]["tracker"]["name"] == "lucas-kanade"


class HoldTracker:
    """Never moves its points: each distance is then |target - target at frame 0|, known exactly."""

    name = "hold"

    def track(self, video, queries):
        q = np.asarray(queries, dtype=np.float64)
        return Tracks(np.repeat(q[:, None], len(video), axis=1), np.zeros((len(q), len(video)), bool))


def test_pooled_objmc_of_evaluate_is_the_mean_over_all_points_of_all_videos(tmp_path):
    gen, traj = tmp_path / "gen", tmp_path / "traj"
    traj.mkdir()
    # video a: one object moving 1 px per frame along x; video b: three objects moving 2 px per frame along y.
    targets = {"a": [[[10.0 + f, 10.0] for f in range(F)]],
               "b": [[[x, 10.0 + 2 * f] for f in range(F)] for x in (20.0, 40.0, 60.0)]}
    for key, points in targets.items():
        make_generated(gen, key, known_path(), record=False)
        (traj / f"{key}.json").write_text(json.dumps({"size": [W, H], "points": points}))
    result = evaluate(gen, trajectories=traj, tracker=HoldTracker(), pictures=False)
    by_hand = [float(f) for f in range(F)] + [2.0 * f for _ in range(3) for f in range(F)]  # every distance
    assert result.objmc.pooled == pytest.approx(sum(by_hand) / len(by_hand))
    assert result.objmc.per_video == pytest.approx(((F - 1) / 2, F - 1))
    assert result.objmc.per_video_mean == pytest.approx(((F - 1) / 2 + (F - 1)) / 2)  # not the pooled value
    assert result.to_json()["metrics"]["objmc"]["value"] == result.objmc.pooled
    assert result.to_json()["protocols"]["objmc"]["tracker"] == {"name": "hold"}


def test_evaluate_refuses_bad_options_before_any_work(tmp_path):
    with pytest.raises(EvaluationError, match="FVD resize: expected one of stretch, center-crop, got 'fit'"):
        evaluate(tmp_path / "nowhere", fvd_resize="fit")
    with pytest.raises(EvaluationError, match="nowhere: generated folder not found"):
        evaluate(tmp_path / "nowhere")


# --- odd frame sizes in every writer ---------------------------------------------------------------


@pytest.mark.parametrize("height, width", [(33, 48), (32, 47), (33, 47)])
def test_write_mp4_refuses_odd_sizes_and_leaves_no_file(tmp_path, height, width):
    frames = np.random.default_rng(0).integers(0, 256, (3, height, width, 3), dtype=np.uint8)
    path = tmp_path / "odd.mp4"
    with pytest.raises(ValueError, match=f"odd.mp4: H.264 MP4 needs an even width and height, got {width}x{height}"):
        write_mp4(path, frames, fps=7)
    assert not path.exists()
    overlay = draw_overlay(frames, np.array([[[2.0, 2.0, 20.0, 20.0]] * 3]))  # the overlay keeps the odd size ...
    assert overlay.shape == frames.shape
    with pytest.raises(ValueError, match="even width and height"):  # ... and is refused by the same writer
        write_mp4(tmp_path / "odd.overlay.mp4", overlay, fps=7)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("height, width", [(33, 48), (32, 47), (33, 47)])
def test_write_gif_writes_odd_sizes(tmp_path, height, width):
    frames = np.zeros((3, height, width, 3), np.uint8)
    frames[1, :, : width // 2] = 255  # two colours only: GIF's palette keeps them exactly
    overlay = draw_overlay(frames, np.array([[[2.0, 2.0, 20.0, 20.0]] * 3]))
    for name, video in (("plain.gif", frames), ("overlay.gif", overlay)):
        write_gif(tmp_path / name, video, fps=7)
        with Image.open(tmp_path / name) as gif:
            assert gif.size == (width, height) and gif.n_frames == 3
            gif.seek(1)
            assert np.array_equal(np.asarray(gif.convert("RGB")), video[1])


def test_even_sizes_round_trip_and_empty_input_is_refused(tmp_path):
    frames = np.random.default_rng(0).integers(0, 256, (3, 34, 46, 3), dtype=np.uint8)
    write_mp4(tmp_path / "even.mp4", frames, fps=7)
    assert read_video(tmp_path / "even.mp4").shape == frames.shape
    for writer, name in ((write_mp4, "empty.mp4"), (write_gif, "empty.gif")):
        with pytest.raises(ValueError, match=rf"{name}: expected frames \(F, H, W, 3\)"):
            writer(tmp_path / name, np.zeros((0, 32, 32, 3), np.uint8), fps=7)
        assert not (tmp_path / name).exists()


def test_benchmark_prepare_refuses_an_odd_size_before_writing_anything(tmp_path, capsys):
    (tmp_path / "root" / "imgs" / "v").mkdir(parents=True)
    (tmp_path / "root" / "panomasks" / "v").mkdir(parents=True)
    code = main(["benchmark-prepare", str(tmp_path / "root"), "-o", str(tmp_path / "bench"), "--width", "127", "--height", "96"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.splitlines() == [err.splitlines()[0]] and "width: must be even" in err and "127" in err
    assert not (tmp_path / "bench").exists()


# --- fid() and fvd() on arrays and folders -----------------------------------------------------------


def test_fid_and_fvd_functions_take_arrays_or_folders_and_agree_with_the_features(tmp_path):
    from sgi2v.evaluation import InceptionFeatures, fid, fid_from_features, fvd, fvd_from_features

    videos = [moving_patch_video(known_path(2, start=(40.0 + 5 * i, 30.0)), 64, 96, patch=30, seed=i) for i in range(3)]
    others = [np.ascontiguousarray(255 - v[:, ::-1]) for v in videos]
    inception = InceptionFeatures.random_weights(device="cpu", size=75)  # RANDOM weights: plumbing only
    i3d = I3DFeatures.random_weights(device="cpu", size=36)
    same = fid(videos, [v.copy() for v in videos], inception)
    assert same.value == pytest.approx(0.0, abs=1e-6) and same.generated_samples == same.reference_samples == 6
    expected = fid_from_features(inception(np.concatenate(videos)), inception(np.concatenate(others)))
    assert fid(videos, others, inception).value == pytest.approx(expected, rel=1e-9)
    folder = tmp_path / "gen"
    folder.mkdir()
    for i, video in enumerate(videos):
        (folder / f"v{i}").mkdir()
        for f, frame in enumerate(video):
            Image.fromarray(frame).save(folder / f"v{i}" / f"{f:02d}.png")  # lossless: the same frames as the arrays
    from_folder = fvd(folder, others, i3d, resize="stretch")
    expected = fvd_from_features(np.stack([i3d(v) for v in videos]), np.stack([i3d(v) for v in others]))
    assert from_folder.value == pytest.approx(expected, rel=1e-9) and from_folder.protocol["resize"] == "stretch"
    assert "random-weight I3D" in from_folder.protocol["warning"]
    with pytest.raises(EvaluationError, match="resize frames by 'stretch', but resize='center-crop' was asked"):
        fvd(videos, others, i3d, resize="center-crop")
