"""benchmarks/gpu/run.sh --cpu-smoke: the GPU suite end to end on the CPU at a tiny size, so that it is known to
work before any GPU time is spent."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_suite_cpu_smoke(tmp_path):
    out = tmp_path / "suite.json"
    env = {**os.environ, "PYTHON": sys.executable}
    env.pop("OUT", None)
    result = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu" / "run.sh"), "--cpu-smoke", "--out", str(out)],
                            capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    suite = json.loads(out.read_text())
    names = [c["case"] for c in suite["cases"]]
    assert names == ["plain", "sgi2v", "mode:none:4f", "mode:checkpointing:4f", "mode:offload:4f",
                     "mode:offload+checkpointing:4f", "mode:none:6f", "mode:checkpointing:6f", "compile"]
    assert suite["skipped"] == [] and not any("error" in c for c in suite["cases"])
    for case in suite["cases"][:-1]:
        assert case["finite"] and set(case["phase_seconds"]) == {"encode", "denoise_step", "optimize_pass", "decode"} \
            or case["case"] == "plain" and case["finite"]
    for case in suite["cases"][2:-1]:
        for phase, ratio in case["ratios"]["tracked"].items():
            assert 0.85 < ratio < 1.15, (case["case"], phase, ratio)
    sgi2v = suite["cases"][1]
    assert sgi2v["phase_calls"]["optimize_pass"] > 0 and sgi2v["phase_calls"]["denoise_step"] == 4
    compiled = suite["cases"][-1]
    assert compiled["max_abs_diff"] <= 1e-4 * max(1.0, compiled["eager_max_abs"])
