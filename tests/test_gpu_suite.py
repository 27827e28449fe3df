"""benchmarks/gpu/run.sh --cpu-smoke: the GPU suite end to end on the CPU at a tiny size, so that it is known to
work before any GPU time is spent."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


ALL_CASES = ["plain", "sgi2v", "time", "mode:none:4f", "mode:checkpointing:4f", "mode:offload:4f", "mode:offload+checkpointing:4f",
             "mode:none:6f", "mode:checkpointing:6f", "compile"]
# The whole runs and a tracked case without and with both offload and checkpointing: the other modes and the second
# frame count repeat these paths. The compiled step ("compile", 15-20 s of tracing here) is left to the slow test
# below, run before a GPU session; the pipeline's compile=True is tested in test_precision.py.
SHORT_CASES = ["plain", "sgi2v", "time", "mode:none:4f", "mode:offload+checkpointing:4f"]


def _smoke(tmp_path, cases):
    out = tmp_path / "suite.json"
    env = {**os.environ, "PYTHON": sys.executable}
    env.pop("OUT", None)
    command = ["bash", str(ROOT / "benchmarks" / "gpu" / "run.sh"), "--cpu-smoke", "--out", str(out)]
    if cases != ALL_CASES:
        command += ["--cases", *cases]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    suite = json.loads(out.read_text())
    names = [c["case"] for c in suite["cases"]]
    assert names == cases
    assert suite["skipped"] == [] and not any("error" in c for c in suite["cases"])
    by_name = {c["case"]: c for c in suite["cases"]}
    for name, case in by_name.items():
        if name == "compile":
            assert case["max_abs_diff"] <= 1e-4 * max(1.0, case["eager_max_abs"])
            continue
        if name == "time":  # the prediction of the two whole runs, set beside their measured walls
            assert set(case["ratios"]["predicted_over_measured"]) == {"plain", "sgi2v"}
            assert 0 < case["predicted_s"]["plain"] < case["predicted_s"]["sgi2v"]
            assert case["passes"] == by_name["sgi2v"]["phase_calls"]["optimize_pass"]
            continue
        assert case["finite"] and set(case["phase_seconds"]) == {"encode", "denoise_step", "optimize_pass", "decode"} \
            or name == "plain" and case["finite"]
        if name.startswith("mode:"):
            for phase, ratio in case["ratios"]["tracked"].items():
                assert 0.85 < ratio < 1.15, (name, phase, ratio)
    plain = by_name["plain"]
    assert plain["predicted_peak_bytes"] == max(v for k, v in plain["predicted_phase_bytes"].items() if k != "optimize_pass")
    assert by_name["sgi2v"]["phase_calls"]["optimize_pass"] > 0 and by_name["sgi2v"]["phase_calls"]["denoise_step"] == 4


def test_gpu_suite_cpu_smoke(tmp_path):
    _smoke(tmp_path, SHORT_CASES)


@pytest.mark.slow
def test_gpu_suite_cpu_smoke_every_default_case(tmp_path):
    """The default case list as the GPU runs it (about a minute on 2 CPU cores)."""
    _smoke(tmp_path, ALL_CASES)


def test_a_plain_run_is_predicted_without_the_optimisation_pass(load_benchmark):
    from sgi2v import SGI2VConfig

    suite = load_benchmark("gpu/suite.py")
    plan = {"phases": {"encode": {"peak_bytes": 5}, "denoise_step": {"peak_bytes": 8},
                       "optimize_pass": {"peak_bytes": 44}, "decode": {"peak_bytes": 13}}}
    assert suite.predicted_peak_bytes(plan, SGI2VConfig(iterations=0)) == 13
    assert suite.predicted_peak_bytes(plan, SGI2VConfig()) == 44


def test_a_card_budget_leaves_the_allocator_the_budget_less_the_context(load_benchmark):
    suite = load_benchmark("gpu/suite.py")
    GiB = 2**30
    # a 16 GiB card modelled on a 140 GiB one whose CUDA context holds 0.75 GiB outside the allocator
    fraction = suite.allocator_fraction(16 * GiB, 140 * GiB, 3 * GiB // 4)
    assert fraction * 140 * GiB == pytest.approx(15.25 * GiB)
    with pytest.raises(ValueError, match="cannot be modelled"):
        suite.allocator_fraction(160 * GiB, 140 * GiB, 0)
    with pytest.raises(ValueError, match="cannot be modelled"):
        suite.allocator_fraction(GiB // 2, 140 * GiB, GiB)


def test_an_unknown_case_name_is_refused_before_any_work(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable}
    env.pop("OUT", None)
    out = tmp_path / "suite.json"
    result = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu" / "run.sh"), "--cpu-smoke", "--out", str(out),
                             "--cases", "sgi2v", "budget:16GiB:nonsense:4f"], capture_output=True, text=True, env=env,
                            timeout=300)
    assert result.returncode == 2
    assert "unknown case 'budget:16GiB:nonsense:4f'" in result.stderr and "sgi2v:compiled" in result.stderr
    assert not out.exists()
