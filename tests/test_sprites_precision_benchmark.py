"""benchmarks/sprites_precision.py end to end on the tiny random model: what it replays, and its stage comparison."""

from __future__ import annotations

import json
import math
import sys


def test_precision_benchmark_replays_the_runs_own_unet_calls_and_compares_each_stage(load_benchmark, tmp_path, monkeypatch):
    precision = load_benchmark("sprites_precision.py")
    control = load_benchmark("control.py")
    monkeypatch.setattr(sys, "path", list(sys.path))  # the script puts benchmarks/ on it
    monkeypatch.setitem(sys.modules, "control", control)  # what the script imports, with its plain row cut to 8 steps
    monkeypatch.setitem(control.ROWS, "plain", ({"iterations": 0}, 8, True))
    from sgi2v.sprites import control as cases

    # the case the script draws, with 4 frames instead of 14: half-precision convolutions are slow on a CPU, and
    # nothing checked here depends on the frame count (at 64 x 64 the tiny model's bfloat16 error nears 0.1)
    make_cases = cases.make_cases
    monkeypatch.setattr(cases, "make_cases", lambda count, **kw: make_cases(count, num_frames=4, **kw))
    out = tmp_path / "precision.json"
    assert precision.main(["--model", "tiny-random", "--case", "0", "--threads", "2", "--stages", "--json", str(out)]) == 0
    report = json.loads(out.read_text())

    # the run calls the UNet once a step (guidance batches both halves): every seventh call and the last are replayed
    assert report["unet_calls"] == 8
    assert [row["call"] for row in report["rows"]] == [0, 7]
    noise = [row["c_noise"] for row in report["rows"]]
    assert noise[0] > noise[1]  # the replayed calls are the run's, from the noisiest down
    for row in report["rows"]:
        for key in ("float16 default", "float16 math", "bfloat16 default", "bfloat16 math"):
            assert 0 < row[key] < 0.1, (row["call"], key, row[key])  # a half copy is near float32's, not equal
        assert row["bfloat16 default"] > row["float16 default"]  # bfloat16 keeps 8 bits of mantissa, float16 11
    assert report["largest_activations"] and all(v > 0 for v in report["largest_activations"].values())

    stages = report["stages"]
    # the tiny random model draws no sprite, so its ObjMC is NaN: the same NaN in both places
    same = stages["float32"]["objmc_px"], report["plain_objmc_px"]
    assert same[0] == same[1] or all(math.isnan(v) for v in same)
    for dtype in ("float16", "bfloat16"):
        row = stages[dtype]
        assert isinstance(row["objmc_px"], float)
        assert row["unet"]["calls"] == 8 and row["vae.encoder"]["calls"] == 1 and row["vae.decoder"]["calls"] >= 1
        # the image encoder sees the same picture in both runs, so its first call within the half-precision run is
        # the network alone on float32's recorded inputs: a check that the hooks recorded the matching calls (the
        # VAE's input is noise-augmented, and the noise is drawn in the run's own precision)
        assert row["image_encoder"]["in_run_first"] == row["image_encoder"]["alone_first"] > 0
        for stage in ("vae.encoder", "unet", "vae.decoder"):
            assert 0 < row[stage]["alone_first"] < 0.1 and 0 < row[stage]["in_run_last"] < 0.1, (dtype, stage, row[stage])
        assert row["unet_first_inputs"]["conditioning_latent"] > 0  # the half-precision VAE's latent differs
