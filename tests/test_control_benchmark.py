"""benchmarks/control.py without generating: tabulating kept results, and refusing to mix models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sgi2v.sprites.control import make_cases, measure
from sgi2v.sprites.scene import render_sprites


@pytest.fixture(scope="module")
def control(load_benchmark):
    return load_benchmark("control.py")


def _kept_folder(tmp_path: Path, sha: str | None) -> Path:
    """Two straight cases kept as an older run wrote them (no ``progress``): "plain" stands still, "sgi2v"
    follows its targets."""
    out = tmp_path / "results"
    out.mkdir()
    lines = []
    for case in make_cases(5)[::4]:  # cases 0 and 4: straight, one and two sprites
        scene, idx = case.scene, list(case.sprites)
        background = np.repeat(scene.frames[:1].astype(float), 14, axis=0)
        background[:] = scene.frames[0][~scene.visible[:, 0].any(0)].mean(0)
        follows, _ = render_sprites(background, case.boxes.astype(np.float32), scene.colors[idx],
                                    [scene.shapes[i] for i in idx])
        for row, frames in (("plain", np.repeat(follows[:1], 14, axis=0)), ("sgi2v", follows)):
            result = measure(frames, case)
            for s in result["sprites"]:
                del s["progress"]
            result.update(row=row, case=case.index, kind=case.kind, controlled=len(idx), seed=case.seed, seconds=1.0,
                          frames_sha256="0" * 64, loss_drop=None if row == "plain" else 0.05)
            lines.append(json.dumps(result))
    (out / "cases.jsonl").write_text("\n".join(lines) + "\n")
    (out / "control.json").write_text(json.dumps({"model": "sprites", "model_sha256": sha,
                                                  "machine": {"processor": "the machine that ran them"},
                                                  "seconds_this_run": 12.5}))
    return out


def test_a_finished_folder_is_tabulated_again_without_a_model(control, tmp_path, monkeypatch):
    out = _kept_folder(tmp_path, "f" * 64)
    monkeypatch.setattr("sgi2v.loading.load_pipeline", lambda *a, **k: pytest.fail("no model is needed"))
    # Cases 0 and 4 are kept; asking for the first 5 of the main rows would run cases 1-3, so name none.
    for case in (1, 2, 3):
        with (out / "cases.jsonl").open("a") as fh:
            for row in ("plain", "sgi2v"):
                fh.write(json.dumps({"row": row, "case": case, "kind": "x", "objmc_px": float("nan"), "sprites": [],
                                     "seconds": 1.0, "loss_drop": None}) + "\n")
    assert control.main(["--out", str(out), "--cases", "5", "--rows", "main", "--threads", "1"]) == 0
    report = json.loads((out / "control.json").read_text())
    assert report["model_sha256"] == "f" * 64 and report["machine"] == {"processor": "the machine that ran them"}
    assert report["seconds_this_run"] == 12.5
    summary = report["summary"]
    assert abs(summary["sgi2v"]["all"]["progress"] - 1) < 0.05 and abs(summary["plain"]["all"]["progress"]) < 0.05
    # Cases 1-3 have no measure: the mean and the median are over cases 0 and 4 alone
    kept = [json.loads(line) for line in (out / "cases.jsonl").read_text().splitlines()]
    plain = sorted(r["objmc_px"] for r in kept if r["row"] == "plain" and r["case"] in (0, 4))
    assert summary["plain"]["all"]["objmc_median_px"] == pytest.approx(np.mean(plain))
    table = (out / "control.md").read_text()
    assert "| progress |" in table.splitlines()[0] and "| median (all) |" in table.splitlines()[0]
    row = next(line for line in table.splitlines() if line.startswith("| plain |")).split(" | ")
    assert row[4] == f"{summary['plain']['all']['objmc_median_px']:.2f}"


def test_results_of_another_model_are_not_resumed(control, tmp_path, monkeypatch, capsys):
    out = _kept_folder(tmp_path, "e" * 64)
    monkeypatch.setattr("sgi2v.loading.load_pipeline", lambda *a, **k: pytest.fail("refused before loading"))
    with pytest.raises(SystemExit) as exit_:
        control.main(["--out", str(out), "--cases", "6", "--rows", "main"])  # cases 1-3 and 5 are still to run
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"{out}: its results were made by a model with SHA-256 eeeeeeeeeeee" in err and "give another --out" in err


def test_an_enlarged_case_is_the_same_case_in_proportion(load_benchmark):
    module = load_benchmark("control_scale.py")
    case = make_cases(2)[1]  # curved
    big = module.enlarged(case, 2)
    assert big.image.shape == (256, 256, 3) and np.array_equal(big.boxes, case.boxes * 2)
    assert np.allclose(big.scene.sizes, case.scene.sizes * 2)
    # A video standing still on its first frame: off its path by twice as many pixels, and no progress at either size
    small, large = (measure(np.repeat(c.scene.frames[:1], 14, axis=0), c) for c in (case, big))
    assert abs(large["objmc_px"] / 2 - small["objmc_px"]) < 0.5, (small["objmc_px"], large["objmc_px"])
    assert abs(large["sprites"][0]["progress"]) < 0.05 and large["sprites"][0]["found"] == 1.0


def test_the_sprite_size_range_is_checked_before_any_model_loads(control, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("sgi2v.loading.load_pipeline", lambda *a, **k: pytest.fail("refused before loading"))
    for value, message in [("40", "--sprite-sizes: expected two numbers MIN,MAX, got '40'"),
                           ("8,2", "error: --sprite-sizes: expected 4 <= min <= max, got 8, 2"),
                           ("32,70", "--sprite-sizes: scenes with sprites up to 70 px need at least 140 x 140 pixels, got 128 x 128")]:
        with pytest.raises(SystemExit) as exit_:
            control.main(["--out", str(tmp_path / "r"), "--rows", "main", "--sprite-sizes", value])
        assert exit_.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_cases_of_another_sprite_size_range_are_not_resumed(control, tmp_path, monkeypatch, capsys):
    out = _kept_folder(tmp_path, None)  # a model without a SHA-256 (a folder): only the world is compared
    monkeypatch.setattr("sgi2v.loading.load_pipeline", lambda *a, **k: pytest.fail("refused before loading"))
    with pytest.raises(SystemExit) as exit_:
        control.main(["--out", str(out), "--cases", "6", "--rows", "main", "--sprite-sizes", "32,64"])
    assert exit_.value.code == 2
    assert "its cases come from scenes with sprite sizes of the world, not 32,64; give another --out" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:  # nothing left to run: still not measured against other scenes
        control.main(["--out", str(out), "--cases", "1", "--rows", "main", "--sprite-sizes", "32,64"])
    assert exit_.value.code == 2 and "not 32,64; give another --out" in capsys.readouterr().err


def test_the_grid_shows_every_row_whose_frames_were_kept_for_all_its_cases(control, tmp_path):
    from PIL import Image

    assert control.frames_name("plain", 3) == "plain-003.npy" and control.frames_name("sgi2v", 12) == "sgi2v-012.npy"
    shifted = next(row for row, (_, _, every) in control.ROWS.items() if every and row not in ("plain", "sgi2v"))
    assert control.frames_name(shifted, 0).endswith("-000.npy") and " " not in control.frames_name(shifted, 0)
    cases = make_cases(2)
    (tmp_path / "frames").mkdir()
    for case in cases:
        for row in ("plain", "sgi2v"):
            np.save(tmp_path / "frames" / control.frames_name(row, case.index), np.zeros((14, 128, 128, 3), np.uint8))
    control.grid([], cases, tmp_path, count=2)
    three = Image.open(tmp_path / "control_grid.png").size
    np.save(tmp_path / "frames" / control.frames_name(shifted, 0), np.zeros((14, 128, 128, 3), np.uint8))
    control.grid([], cases, tmp_path, count=2)  # kept for case 0 only: not shown
    assert Image.open(tmp_path / "control_grid.png").size == three
    np.save(tmp_path / "frames" / control.frames_name(shifted, 1), np.zeros((14, 128, 128, 3), np.uint8))
    control.grid([], cases, tmp_path, count=2)
    four = Image.open(tmp_path / "control_grid.png").size
    assert four[1] == three[1] and four[0] > three[0] * 4 / 3 - 20, (three, four)


def test_the_summary_gives_the_median_beside_the_mean_of_the_measured_cases():
    from sgi2v.sprites.control import summarise

    results = [{"objmc_px": v, "sprites": []} for v in (1.0, 2.0, 30.0, float("nan"))]
    s = summarise(results)
    assert s["objmc_px"] == pytest.approx(11.0) and s["objmc_median_px"] == 2.0
    assert s["measured"] == 3 and s["not_found_cases"] == 1


def test_the_ratio_comes_with_an_interval_over_the_cases(control):
    def pairs(plain, sgi2v):
        return [({"objmc_px": p}, {"objmc_px": s}) for p, s in zip(plain, sgi2v)]

    halved = control.ratio_interval(pairs([10.0, 20.0, 4.0, float("nan")], [5.0, 10.0, 2.0, 1.0]))
    assert halved["measured"] == 3 and halved["ratio"] == pytest.approx(0.5)
    assert halved["ratio_low"] == pytest.approx(0.5) and halved["ratio_high"] == pytest.approx(0.5)
    # One case far off decides the mean: the interval says how much
    mixed = control.ratio_interval(pairs([10.0] * 12, [3.0] * 11 + [40.0]))
    assert mixed["ratio"] == pytest.approx((33 + 40) / 120)
    assert mixed["ratio_low"] == pytest.approx(0.3) and 1.0 < mixed["ratio_high"] < 1.3  # 3 of the 40s: 1.225
    assert control.ratio_interval(pairs([10.0] * 12, [3.0] * 11 + [40.0])) == mixed  # seeded
    assert control.ratio_interval([])["measured"] == 0


def test_runs_are_compared_case_by_case_on_the_cases_measured_in_all(load_benchmark):
    compare = load_benchmark("control_compare.py")

    def kept(plain, sgi2v):
        return {(row, c): {"objmc_px": v} for row, values in (("plain", plain), ("sgi2v", sgi2v))
                for c, v in enumerate(values)}

    nan = float("nan")
    reference = kept([10.0, 20.0, 8.0, 12.0, 9.0], [5.0, 10.0, 4.0, 6.0, 3.0])
    other = kept([10.0, 20.0, 8.0, 12.0, nan], [7.0, 12.0, 6.0, 8.0, 1.0])  # case 4 unmeasured: left out of both
    report = compare.compare({"a": reference, "b": other})
    assert report["cases"] == [0, 1, 2, 3]
    against = report["runs"]["b"]["against_reference"]
    assert against["sgi2v"]["mean"] == 2.0 and against["sgi2v"]["low"] == 2.0 and against["sgi2v"]["median_abs"] == 2.0
    assert against["plain"]["mean"] == 0.0
    assert abs(against["plain"]["correlation"] - 1) < 1e-12  # the same plain errors
    assert abs(against["sgi2v"]["correlation"] - 1) < 1e-12  # shifted by 2 px on every case: the same cases are hard
    assert report["runs"]["a"]["ratio"]["ratio"] == 25 / 50 and report["runs"]["b"]["ratio"]["ratio"] == 33 / 50
    assert abs(report["ratio_spread"]["mean"] - 0.58) < 1e-12
    mixed = compare.paired_difference([0.0] * 10, [1.0] * 9 + [-20.0])
    assert mixed["low"] < mixed["mean"] < mixed["high"] and mixed["median_abs"] == 1.0
    assert abs(compare.paired_difference([1.0, 2.0, 3.0], [3.0, 2.0, 1.0])["correlation"] + 1) < 1e-12


def test_compare_reads_result_folders_and_refuses_a_folder_without_results(load_benchmark, tmp_path, capsys):
    compare = load_benchmark("control_compare.py")
    a = _kept_folder(tmp_path, "a" * 64)
    b = tmp_path / "other"
    a.rename(b)
    a = _kept_folder(tmp_path, "a" * 64)
    assert compare.main([str(a), str(b), "--cases", "5", "--json", str(tmp_path / "c.json")]) == 0
    report = json.loads((tmp_path / "c.json").read_text())
    assert report["cases"] == [0, 4] and report["runs"]["other"]["against_reference"]["sgi2v"]["mean"] == 0.0
    assert "2 cases measured in every run" in capsys.readouterr().out
    with pytest.raises(SystemExit) as err:
        compare.main([str(a), str(tmp_path)])
    assert err.value.code == 2 and f"{tmp_path}: no cases.jsonl" in capsys.readouterr().err


def test_another_set_of_held_out_cases_is_checked_before_any_model_loads_and_not_mixed(control, tmp_path, monkeypatch,
                                                                                        capsys):
    monkeypatch.setattr("sgi2v.loading.load_pipeline", lambda *a, **k: pytest.fail("refused before loading"))
    with pytest.raises(SystemExit) as exit_:
        control.main(["--out", str(tmp_path / "r"), "--rows", "main", "--first-seed", "1199"])
    assert exit_.value.code == 2
    assert "--first-seed: 1199 is a training scene's seed (those are below 1,000,000)" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
    out = _kept_folder(tmp_path, None)  # the benchmark's own cases, kept by a run that did not record the seed
    with pytest.raises(SystemExit) as exit_:
        control.main(["--out", str(out), "--cases", "6", "--rows", "main", "--first-seed", "1100000"])
    assert exit_.value.code == 2
    assert "its cases come from held-out seeds 1,001,000 on, not 1,100,000; give another --out" in capsys.readouterr().err
    # Other seeds give other scenes of the same kinds
    mine, other = make_cases(4), make_cases(4, first_seed=1_100_000)
    assert [c.kind for c in mine] == [c.kind for c in other]
    assert all(a.seed != b.seed and not np.array_equal(a.image, b.image) for a, b in zip(mine, other))


def test_runs_on_different_held_out_cases_are_not_compared(load_benchmark, tmp_path, capsys):
    compare = load_benchmark("control_compare.py")
    a = _kept_folder(tmp_path, "a" * 64)
    b = tmp_path / "other"
    a.rename(b)
    report = json.loads((b / "control.json").read_text())
    (b / "control.json").write_text(json.dumps({**report, "first_seed": 1_100_000}))
    a = _kept_folder(tmp_path, "a" * 64)
    with pytest.raises(SystemExit) as err:
        compare.main([str(a), str(b), "--cases", "5"])
    assert err.value.code == 2 and "different held-out seeds" in capsys.readouterr().err


def test_other_noise_for_the_same_cases_is_checked_early_and_not_mixed(control, tmp_path, monkeypatch, capsys):
    case = make_cases(3)[2]
    assert control._settings("sgi2v", case, "sprites")[0].seed == 1002
    assert control._settings("sgi2v", case, "sprites", noise_seed=2000)[0].seed == 2002
    monkeypatch.setattr("sgi2v.loading.load_pipeline", lambda *a, **k: pytest.fail("refused before loading"))
    with pytest.raises(SystemExit) as exit_:
        control.main(["--out", str(tmp_path / "r"), "--rows", "main", "--noise-seed", "-1"])
    assert exit_.value.code == 2 and "--noise-seed: expected a seed of 0 or more, got -1" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
    out = _kept_folder(tmp_path, None)  # generated from seeds 1000 + case, by a run that did not record it
    with pytest.raises(SystemExit) as exit_:
        control.main(["--out", str(out), "--cases", "6", "--rows", "main", "--noise-seed", "2000"])
    assert exit_.value.code == 2
    assert "its videos were generated from seeds 1000 + case, not 2000 + case; give another --out" in \
        capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:  # nothing left to run: still not tabulated as if made from that noise
        control.main(["--out", str(out), "--cases", "1", "--rows", "main", "--noise-seed", "2000"])
    assert exit_.value.code == 2 and "not 2000 + case" in capsys.readouterr().err
