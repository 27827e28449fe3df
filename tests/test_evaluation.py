"""Evaluation: ObjMC, Frechet distance, FID/FVD plumbing, `sgi2v evaluate` and `sgi2v benchmark-prepare`.

Videos are synthetic, made here with known motion. Networks used here have RANDOM weights (no
real weights can be loaded in tests): their FID/FVD values only check the plumbing and are no
real scores.
"""

import json

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from sgi2v.cli import main
from sgi2v.evaluation import (EvaluationError, I3D, I3DFeatures, InceptionFeatures, LucasKanadeTracker,
                              WeightsError, box_query_points, feature_statistics, fid_from_features, frechet_distance, frechet_distance_from_features,
                              fvd_from_features, mask_query_point, objmc, objmc_pooled)
from sgi2v.video import write_mp4

H, W, F = 96, 128, 8


def texture(shape, seed, sigma=1.5):
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.random(shape).astype(np.float32) * 255, (0, 0), sigma)


def moving_patch_video(path, height=H, width=W, patch=40, seed=0):
    """A textured square patch whose centre sits at ``path[f]`` (sub-pixel) over a dim textured background."""
    background = texture((height, width, 3), seed + 1) / 3
    tile = texture((patch, patch, 3), seed)
    frames = []
    for x, y in path:
        move = np.float32([[1, 0, x - (patch - 1) / 2], [0, 1, y - (patch - 1) / 2]])
        moved = cv2.warpAffine(tile, move, (width, height), flags=cv2.INTER_LINEAR)
        alpha = cv2.warpAffine(np.ones((patch, patch), np.float32), move, (width, height), flags=cv2.INTER_LINEAR)[..., None]
        frames.append(np.clip(background * (1 - alpha) + moved * alpha, 0, 255).round().astype(np.uint8))
    return np.stack(frames)


def known_path(frames=F, start=(40.0, 36.0)):
    t = np.arange(frames, dtype=np.float64)
    return np.stack([start[0] + 4.3 * t, start[1] + 2.2 * t + 3 * np.sin(t)], axis=1)


# --- ObjMC ---------------------------------------------------------------------------------------


def test_patch_moved_along_known_path_is_tracked_within_half_a_pixel():
    path = known_path()
    video = moving_patch_video(path)
    error = objmc(video, path[None])
    assert error < 0.5
    tracks = LucasKanadeTracker().track(video, path[None, 0])
    assert not tracks.failed.any() and tracks.occluded is None and np.abs(tracks.points[0] - path).max() < 0.5


def test_motion_offset_from_the_targets_gives_the_offset_back():
    path = known_path()
    video = moving_patch_video(path)
    offset = np.array([3.0, 4.0])  # 5 px from frame 1 on; frame 0 (the query) has no error by construction
    targets = path.copy()
    targets[1:] += offset
    expected = 5.0 * (F - 1) / F
    assert objmc(video, targets[None]) == pytest.approx(expected, abs=0.3)


class HoldTracker:
    """A stand-in tracker that never moves its points: distances are then known exactly."""

    name = "hold"

    def track(self, video, queries):
        q = np.asarray(queries, dtype=np.float64)
        return np.repeat(q[:, None], len(video), axis=1), np.ones((len(q), len(video)), bool)


def test_pooled_objmc_is_the_mean_over_all_points_of_all_videos():
    video_a = np.zeros((4, 20, 30, 3), np.uint8)
    video_b = np.zeros((3, 20, 30, 3), np.uint8)
    steps_a = np.arange(4)[:, None] * np.array([1.0, 0.0])  # distances 0, 1, 2, 3 (one object)
    steps_b = np.arange(3)[:, None] * np.array([0.0, 2.0])  # distances 0, 2, 4 (two objects)
    targets_a = (np.array([5.0, 5.0]) + steps_a)[None]
    targets_b = np.stack([np.array([5.0, 5.0]) + steps_b, np.array([9.0, 3.0]) + steps_b])
    result = objmc_pooled([video_a, video_b], [targets_a, targets_b], tracker=HoldTracker())
    assert result.per_video == pytest.approx((1.5, 2.0))
    assert result.num_points == (4, 6)
    assert result.pooled == pytest.approx((0 + 1 + 2 + 3 + 2 * (0 + 2 + 4)) / 10)
    assert result.per_video_mean == pytest.approx(1.75)
    assert result.failed_fraction == 0 and result.occluded_fraction is None  # a (points, valid) pair: occlusion unknown


def test_query_points_box_centre_and_mask_point_farthest_from_the_edge():
    assert box_query_points([[10, 20, 30, 60]]).tolist() == [[20.0, 40.0]]
    mask = np.zeros((40, 60), bool)
    mask[5:12, 5:12] = True  # small square
    mask[10:31, 30:51] = True  # bigger square: its centre (x 40, y 20) is farthest from any edge
    assert mask_query_point(mask).tolist() == [40.0, 20.0]
    ring = np.zeros((41, 41), bool)  # a thick ring: the centre is outside the mask, the answer lies in the band
    yy, xx = np.mgrid[:41, :41]
    ring[(np.hypot(xx - 20, yy - 20) <= 18) & (np.hypot(xx - 20, yy - 20) >= 8)] = True
    x, y = mask_query_point(ring).astype(int)
    assert ring[y, x] and 11 <= np.hypot(x - 20, y - 20) <= 15
    with pytest.raises(EvaluationError, match="empty"):
        mask_query_point(np.zeros((5, 5)))


@pytest.mark.parametrize("points, message", [
    (np.zeros((F, 2)), r"shape \(N, F, 2\)"),
    (np.zeros((1, F, 3)), r"shape \(N, F, 2\)"),
    (np.zeros((1, F - 1, 2)), "7 frames per path but the video has 8"),
    (np.full((1, F, 2), 10.0) + np.array([0, 200.0]) * (np.arange(F) == 3)[:, None], "object 0 at frame 3.*outside the 128x96 frame"),
    (np.full((1, F, 2), np.nan), "NaN"),
])
def test_bad_target_points_are_refused_with_a_clear_message(points, message):
    video = np.zeros((F, H, W, 3), np.uint8)
    with pytest.raises(EvaluationError, match=message):
        objmc(video, points)


def test_bad_videos_are_refused():
    with pytest.raises(EvaluationError, match="uint8"):
        objmc(np.zeros((F, H, W, 3), np.float32), np.zeros((1, F, 2)))
    with pytest.raises(EvaluationError, match=r"\(F, H, W, 3\)"):
        objmc(np.zeros((F, H, W), np.uint8), np.zeros((1, F, 2)))


# --- Frechet distance ----------------------------------------------------------------------------


def test_frechet_distance_matches_scipy_sqrtm_and_the_diagonal_closed_form():
    from scipy import linalg

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(50, 6)), rng.normal(size=(40, 6)) @ rng.normal(size=(6, 6)) + 1.5
    mu1, s1 = feature_statistics(a)
    mu2, s2 = feature_statistics(b)
    root = linalg.sqrtm(s1 @ s2).real  # the classic route, independent of the eigenvalue route used here
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(root)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9)
    d1, d2 = rng.uniform(0.1, 3, 5), rng.uniform(0.1, 3, 5)  # diagonal covariances: sum (sqrt(d1) - sqrt(d2))^2
    m1, m2 = rng.normal(size=5), rng.normal(size=5)
    closed = np.sum((m1 - m2) ** 2) + np.sum((np.sqrt(d1) - np.sqrt(d2)) ** 2)
    assert frechet_distance(m1, np.diag(d1), m2, np.diag(d2)) == pytest.approx(closed, rel=1e-12)
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(EvaluationError, match="at least 2 samples"):
        feature_statistics(a[:1])


@pytest.mark.parametrize("samples", [(7, 9), (40, 35)])
def test_frechet_distance_from_features_low_rank_route_matches_scipy(samples):
    from scipy import linalg

    rng = np.random.default_rng(1)
    a = rng.normal(size=(samples[0], 16))
    b = rng.normal(size=(samples[1], 16)) * rng.uniform(0.5, 2, 16) + 0.3
    mu1, s1 = feature_statistics(a)
    mu2, s2 = feature_statistics(b)
    root = linalg.sqrtm(s1 @ s2).real
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(root)
    assert frechet_distance_from_features(a, b) == pytest.approx(expected, rel=1e-6)
    assert frechet_distance_from_features(a, a.copy()) == pytest.approx(0.0, abs=1e-9)


# --- FID / FVD plumbing (RANDOM weights: not real scores) ----------------------------------------


def test_fid_and_fvd_plumbing_with_random_weight_networks():
    videos = [moving_patch_video(known_path(4, start=(40.0 + 5 * i, 30.0)), 64, 96, patch=30, seed=i) for i in range(3)]
    others = [np.ascontiguousarray(255 - v[:, ::-1]) for v in videos]
    inception = InceptionFeatures.random_weights(device="cpu", size=75)  # RANDOM weights, small input: plumbing only
    assert not inception.real_weights and "random" in inception.source
    frames = np.concatenate(videos)
    feats = inception(frames)
    assert feats.shape == (12, 2048) and np.isfinite(feats).all()
    assert fid_from_features(feats, feats.copy()) == pytest.approx(0.0, abs=1e-6)
    assert fid_from_features(feats, inception(np.concatenate(others))) > 1e-3
    i3d = I3DFeatures.random_weights(device="cpu", size=64)  # RANDOM weights: plumbing only
    logits = np.stack([i3d(v) for v in videos])
    assert logits.shape == (3, 400) and np.isfinite(logits).all()
    assert fvd_from_features(logits, np.stack([i3d(v.copy()) for v in videos])) == pytest.approx(0.0, abs=1e-6)
    assert fvd_from_features(logits, np.stack([i3d(v) for v in others])) > 1e-6


def test_weight_files_load_by_parameter_name_and_bad_files_are_named(tmp_path):
    torch.manual_seed(0)
    net = I3D()
    path = tmp_path / "i3d_random.pt"  # a RANDOM-weight state dict saved like a converted checkpoint
    torch.save({f"module.{k}": v for k, v in net.state_dict().items()}, path)
    loaded = I3DFeatures(path, device="cpu", size=64)
    video = moving_patch_video(known_path(4), 64, 96, patch=30)
    assert np.allclose(loaded(video), I3DFeatures(None, device="cpu", size=64, _model=net)(video), atol=1e-5)
    assert "Mixed_4f.b2b.conv3d.weight" in net.state_dict() and net.state_dict()["logits.conv3d.bias"].shape == (400,)
    with pytest.raises(WeightsError, match="nothing.pth: FVD I3D weight file not found"):
        I3DFeatures(tmp_path / "nothing.pth", device="cpu")
    with pytest.raises(WeightsError, match="pt_inception.*not found"):
        InceptionFeatures(tmp_path / "pt_inception-2015-12-05-6726825d.pth", device="cpu")
    wrong = tmp_path / "wrong.pth"
    torch.save({"conv.weight": torch.zeros(3)}, wrong)
    with pytest.raises(WeightsError, match="wrong.pth: does not fit the FID Inception-v3 architecture"):
        InceptionFeatures(wrong, device="cpu")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="junk.pth: not a readable FVD I3D weight file"):
        I3DFeatures(junk, device="cpu")


# --- sgi2v evaluate ------------------------------------------------------------------------------


def make_generated(folder, key, path, frames=F, seed=0, record=True):
    """A generated-video folder entry: <key>.mp4 and a run record with the target boxes."""
    folder.mkdir(parents=True, exist_ok=True)
    video = moving_patch_video(path, seed=seed)
    write_mp4(folder / f"{key}.mp4", video, fps=7)
    write_mp4(folder / f"{key}.overlay.mp4", video, fps=7)  # must be ignored
    if record:
        boxes = np.concatenate([path - 20, path + 20], axis=1)[None]
        (folder / f"{key}.json").write_text(json.dumps({"boxes": boxes.tolist(), "inputs": {"image_size": [W * 2, H * 2]}}))
    return video


def test_evaluate_end_to_end_writes_the_report(tmp_path, capsys):
    gen, ref, traj, out = tmp_path / "gen", tmp_path / "ref", tmp_path / "traj", tmp_path / "report"
    paths = {"a": known_path(), "b": known_path(start=(50.0, 40.0))}
    for i, (key, path) in enumerate(paths.items()):
        video = make_generated(gen, key, path, seed=i)
        ref.mkdir(exist_ok=True)
        write_mp4(ref / f"{key}.mp4", video, fps=7)
        traj.mkdir(exist_ok=True)
    # 'a': an sgi2v trajectory file in the pixels of the (2x larger) input image; 'b': a points file, offset 5 px.
    (traj / "a.json").write_text(json.dumps({"boxes": [{"box": (np.r_[paths["a"][0] - 10, paths["a"][0] + 10] * 2).tolist(),
                                                        "path": (paths["a"] * 2).tolist()}]}))
    shifted = paths["b"].copy()
    shifted[1:] += [3.0, 4.0]
    (traj / "b.json").write_text(json.dumps({"size": [W, H], "points": [shifted.tolist()]}))
    code = main(["evaluate", "--generated", str(gen), "--reference", str(ref), "--trajectories", str(traj), "-o", str(out)])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    per = {v["id"]: v["objmc"] for v in report["videos"]}
    assert per["a"] < 0.6 and per["b"] == pytest.approx(5.0 * (F - 1) / F, abs=0.5)
    assert report["metrics"]["objmc"]["value"] == pytest.approx((per["a"] + per["b"]) / 2)
    assert report["metrics"]["fid"] == {"value": None, "skipped": "no FID weight file given"}
    table = (out / "report.md").read_text()
    assert "| Method | FID ↓ | FVD ↓ | ObjMC ↓ |" in table and "| SG-I2V | n/a | n/a |" in table and "not computed" in table
    assert sorted(p.name for p in (out / "paths").iterdir()) == ["a.png", "b.png"]
    assert Image.open(out / "paths" / "a.png").size == (3 * W, H)
    assert "ObjMC" in capsys.readouterr().out
    # Without --trajectories the run records' boxes are the targets.
    assert main(["evaluate", "--generated", str(gen), "-o", str(tmp_path / "r2"), "--no-pictures"]) == 0
    assert json.loads((tmp_path / "r2" / "report.json").read_text())["metrics"]["objmc"]["value"] < 0.6


def test_evaluate_bad_input_one_line_error_and_no_output(tmp_path, capsys):
    gen, ref, out = tmp_path / "gen", tmp_path / "ref", tmp_path / "report"
    video = make_generated(gen, "a", known_path())
    make_generated(gen, "b", known_path(start=(50.0, 40.0)))
    ref.mkdir()
    write_mp4(ref / "a.mp4", video[:-2], fps=7)  # shorter than the generated video
    write_mp4(ref / "b.mp4", video, fps=7)
    weights = tmp_path / "i3d.pt"
    torch.save(I3D().state_dict(), weights)  # RANDOM weights; the run must fail before any score
    code = main(["evaluate", "--generated", str(gen), "--reference", str(ref), "--fvd-weights", str(weights), "-o", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "a.mp4" in err and "6 frames" in err and "Traceback" not in err
    assert not out.exists() and not list(tmp_path.glob(".report*"))
    code = main(["evaluate", "--generated", str(gen), "--reference", str(ref), "--fid-weights", str(tmp_path / "pt_inception.pth"), "-o", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "pt_inception.pth: FID weight file not found" in err and not out.exists()
    (gen / "b.json").write_text("{broken")
    assert main(["evaluate", "--generated", str(gen), "-o", str(out)]) == 2
    assert "b.json: malformed JSON" in capsys.readouterr().err
    (gen / "b.json").write_text(json.dumps({"boxes": [[[500, 500, 520, 520]] * F]}))
    assert main(["evaluate", "--generated", str(gen), "-o", str(out)]) == 2
    assert "b.json boxes: point of object 0 at frame 0" in capsys.readouterr().err and not out.exists()


# --- sgi2v benchmark-prepare ---------------------------------------------------------------------


def test_benchmark_prepare_on_a_vipseg_like_folder(tmp_path):
    root, out = tmp_path / "VIPSeg", tmp_path / "bench"
    palette = [0, 0, 0, 200, 30, 30, 30, 200, 30] + [0] * (256 * 3 - 9)
    truth = {}
    for v in range(2):
        path = known_path(10, start=(40.0 + 8 * v, 40.0))
        video = moving_patch_video(path, seed=v)
        frames_dir, masks_dir = root / "imgs" / f"vid{v}", root / "panomasks" / f"vid{v}"
        frames_dir.mkdir(parents=True)
        masks_dir.mkdir(parents=True)
        for f, frame in enumerate(video):
            Image.fromarray(frame).save(frames_dir / f"{f:05d}.png")  # lossless, so the tracks are exact
        mask = np.zeros((H, W), np.uint8)
        x, y = path[0].round().astype(int)
        mask[y - 15:y + 16, x - 15:x + 16] = 1  # the moving patch
        mask[2:6, 2:6] = 2  # an object too small to keep
        image = Image.fromarray(mask, mode="P")
        image.putpalette(palette)
        image.save(masks_dir / "00000.png")
        truth[f"vid{v}"] = path
    code = main(["benchmark-prepare", str(root), "-o", str(out), "--frames", "8", "--width", str(W), "--height", str(H)])
    assert code == 0
    lines = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert lines == [{"id": f"vid{v}", "image": f"images/vid{v}.png", "traj": f"trajectories/vid{v}.json"} for v in range(2)]
    from sgi2v.trajectory import load_trajectory

    for entry in lines:
        assert Image.open(out / entry["image"]).size == (W, H)
        trajectory = load_trajectory(out / entry["traj"], 8, (W, H))
        assert trajectory.boxes.shape == (1, 8, 4)  # the small object is left out
        centres = trajectory.centers()[0]
        motion = truth[entry["id"]][:8] - truth[entry["id"]][0]
        assert np.abs((centres - centres[0]) - motion).max() < 0.5
    # The real clips follow their own trajectories: ObjMC of the references is about zero.
    code = main(["evaluate", "--generated", str(out / "reference"), "--trajectories", str(out / "trajectories"),
                 "-o", str(tmp_path / "self"), "--no-pictures"])
    assert code == 0
    assert json.loads((tmp_path / "self" / "report.json").read_text())["metrics"]["objmc"]["value"] < 1.0


def test_evaluate_fid_fvd_path_with_random_weight_networks_is_marked_as_such(tmp_path):
    """evaluate()'s FID/FVD path with RANDOM-weight networks given as extractors: the report must say so."""
    from sgi2v.evaluation import evaluate, write_report

    gen, ref = tmp_path / "gen", tmp_path / "ref"
    ref.mkdir()
    for i, key in enumerate(("a", "b")):
        video = make_generated(gen, key, known_path(start=(40.0 + 6 * i, 36.0)), seed=i)
        write_mp4(ref / f"{key}.mp4", video, fps=7)
    result = evaluate(gen, ref, fid_weights=InceptionFeatures.random_weights(device="cpu", size=75),
                      fvd_weights=I3DFeatures.random_weights(device="cpu", size=64), device="cpu", pictures=False)
    write_report(result, tmp_path / "out")
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    for key, samples in (("fid", 2 * F), ("fvd", 2)):
        metric = report["metrics"][key]
        assert metric["random_weights"] is True and metric["samples"] == {"generated": samples, "reference": samples}
        assert metric["value"] >= 0 and report["protocols"][key]["weights_sha256"] is None
    assert result.fid.value == report["metrics"]["fid"]["value"] and result.fid.generated_samples == 2 * F
    assert any("random-weight I3D" in w for w in report["warnings"])
    assert "(random weights)" in (tmp_path / "out" / "report.md").read_text()
