"""``sgi2v batch``: one process and two (torchrun) give the same frames; resuming; failures; manifest checks."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sgi2v.batch import derive_seed, is_complete
from sgi2v.cli import main

FAST = ["--model", "tiny-random", "--height", "64", "--width", "128", "--num-frames", "4", "--num-inference-steps", "3",
        "--optimize-timesteps", "2", "--iterations", "1", "--device", "cpu"]
# Nothing about threads in the environment: torchrun sets OMP_NUM_THREADS=1 in its processes, and the
# frames must still equal those of one process, because every process uses the `threads` setting.
ENV = {k: v for k, v in dict(os.environ, HF_HUB_OFFLINE="1").items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
GOOD = [
    {"id": "a", "image": "in.png", "traj": "traj.json"},
    {"id": "b", "image": "in.png", "traj": {"boxes": [{"box": [60, 5, 90, 40], "static": True}]}},
    {"id": "c-1.x", "image": "in.png", "traj": "traj.json", "seed": 5, "steps": 4, "optimize_timesteps": [3], "hf_reinit": False},
]
BAD = [
    {"id": "missing", "image": "missing.png", "traj": "traj.json"},
    "{not json",
    {"id": "flipped", "image": "in.png", "traj": {"boxes": [{"box": [30, 10, 20, 20], "static": True}]}},
]
SUMMARY = re.compile(r"^batch: (\d+) done, (\d+) skipped \(already complete\), (\d+) failed, of (\d+) samples", re.M)


def _write_inputs(folder: Path, lines) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.random.RandomState(0).rand(50, 100, 3) * 255).astype(np.uint8)).save(folder / "in.png")
    (folder / "traj.json").write_text(json.dumps({"boxes": [{"box": [10, 10, 40, 30], "path": [[25, 20], [55, 25]]}]}))
    manifest = folder / "manifest.jsonl"
    text = "# a comment, then a blank line\n\n" + "".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines)
    manifest.write_text(text)
    return manifest


def _batch(manifest: Path, out: Path, processes: int = 1, **popen):
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)] if processes > 1 else [sys.executable]
    cmd = [*launcher, "-m", "sgi2v", "batch", str(manifest), "-o", str(out), *FAST]
    if popen:
        return subprocess.Popen(cmd, **{"env": ENV, **popen})
    return subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=600)


def _counts(stdout: str) -> tuple[int, int, int, int]:
    found = SUMMARY.findall(stdout)
    assert len(found) == 1, stdout  # one summary, from the first process only
    return tuple(int(v) for v in found[0])


def _records(out: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in out.glob("*.json")}


def _temporaries(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if ".tmp" in p.name)


def _failures(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """The mixed manifest (3 good samples, 3 bad lines) run by one process."""
    folder = tmp_path_factory.mktemp("single")
    manifest = _write_inputs(folder, GOOD + BAD)
    out = folder / "out"
    result = _batch(manifest, out)
    return manifest, out, result


def test_bad_lines_are_reported_and_the_others_finish(single):
    manifest, out, result = single
    assert result.returncode == 1, result.stderr
    assert _counts(result.stdout) == (3, 0, 3, 6)
    assert "Traceback" not in result.stderr
    names = sorted(p.name for p in out.iterdir())
    for sample in GOOD:
        assert {f"{sample['id']}{s}" for s in (".mp4", ".overlay.mp4", ".condition.png", ".json")} <= set(names)
        assert is_complete(out, sample["id"])
    assert not any(n.startswith(("missing.", "flipped.")) for n in names)
    assert _temporaries(out) == []

    failures = _failures(out)
    assert [(f["id"], f["line"]) for f in failures] == [("missing", 6), (None, 7), ("flipped", 8)]
    assert "missing.png: image not found" in failures[0]["error"]
    assert "malformed JSON" in failures[1]["error"]
    assert "needs x1 > x0" in failures[2]["error"]
    assert all("\n" not in f["error"] and f["manifest"] == str(manifest) for f in failures)

    records = _records(out)
    assert set(records) == {"a", "b", "c-1.x"}
    assert records["a"]["settings"]["seed"] == derive_seed("a") and records["a"]["batch"]["seed_from"] == "id"
    assert records["b"]["settings"]["seed"] == derive_seed("b")
    assert records["c-1.x"]["settings"]["seed"] == 5 and records["c-1.x"]["batch"]["seed_from"] == "manifest"
    assert records["c-1.x"]["settings"]["num_inference_steps"] == 4 and records["c-1.x"]["config"]["optimize_timesteps"] == [3]
    assert records["c-1.x"]["config"]["high_frequency_reinit"] is False and records["a"]["config"]["high_frequency_reinit"] is True
    assert records["a"]["batch"]["line"] == 3 and records["a"]["inputs"]["trajectory_file"] == str(manifest.parent / "traj.json")
    assert records["b"]["inputs"]["trajectory"] == GOOD[1]["traj"] and "trajectory_file" not in records["b"]["inputs"]
    assert records["a"]["inputs"]["image"] == str(manifest.parent / "in.png")
    np.testing.assert_allclose(records["a"]["boxes"][0][0], [12.8, 12.8, 51.2, 38.4])  # 100x50 image -> 128x64 output
    assert len({r["frames_sha256"] for r in records.values()}) == 3


def test_two_processes_give_the_same_frames_as_one(single, tmp_path):
    manifest, out_one, _ = single
    out_two = tmp_path / "out"
    result = _batch(manifest, out_two, processes=2)
    assert result.returncode == 1, result.stderr  # the same bad lines fail
    assert _counts(result.stdout) == (3, 0, 3, 6)
    one, two = _records(out_one), _records(out_two)
    assert set(two) == set(one) == {"a", "b", "c-1.x"}
    for sample_id in one:
        assert two[sample_id]["frames_sha256"] == one[sample_id]["frames_sha256"], sample_id
        assert two[sample_id]["settings"] == one[sample_id]["settings"]
    assert {r["batch"]["process"] for r in two.values()} == {0, 1}  # the work was really split
    assert all(r["batch"]["processes"] == 2 for r in two.values())
    # Failures found by both processes end up in one file.
    assert sorted((f["id"] or "", f["line"]) for f in _failures(out_two)) == [("", 7), ("flipped", 8), ("missing", 6)]
    assert {f["rank"] for f in _failures(out_two)} == {0, 1}
    assert _temporaries(out_two) == []


def test_rerun_skips_finished_samples_and_clears_fixed_failures(single, tmp_path):
    manifest, out_one, _ = single
    folder = tmp_path / "copy"
    shutil.copytree(manifest.parent, folder)
    out = folder / "out"
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.name != "failures.jsonl"}
    shutil.copy(folder / "in.png", folder / "missing.png")  # the missing image now exists
    result = _batch(folder / "manifest.jsonl", out)
    assert result.returncode == 1, result.stderr  # two lines are still bad
    assert _counts(result.stdout) == (1, 3, 2, 6)
    for name, content in before.items():
        assert (out / name).read_bytes() == content, f"{name} was rewritten"
    assert is_complete(out, "missing")
    # Failures of this manifest are judged again; the copied file's line without an id belongs to the original manifest.
    assert [(f["id"], f["line"], f["manifest"]) for f in _failures(out)] == [
        (None, 7, str(manifest)), (None, 7, str(folder / "manifest.jsonl")), ("flipped", 8, str(folder / "manifest.jsonl"))]
    assert _records(out)["missing"]["settings"]["seed"] == derive_seed("missing")


def test_killed_run_resumes_without_loss_or_repetition(single, tmp_path):
    _, out_one, _ = single
    manifest = _write_inputs(tmp_path, GOOD)
    out = tmp_path / "out"
    ids = [s["id"] for s in GOOD]
    process = _batch(manifest, out, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not any(is_complete(out, i) for i in ids):
            assert process.poll() is None, "the run ended before it could be interrupted"
            assert time.monotonic() < deadline, "no sample finished in time"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    finished = [i for i in ids if is_complete(out, i)]
    assert 1 <= len(finished) < len(ids), finished
    first = {i: (out / f"{i}.json").read_bytes() for i in finished}
    unfinished = [i for i in ids if i not in finished]
    # What a kill while writing leaves: a temporary file, and a video without its record.
    (out / f".{unfinished[0]}.mp4.tmp999999").write_bytes(b"partial")
    (out / f"{unfinished[0]}.mp4").write_bytes(b"partial")

    result = _batch(manifest, out)
    assert result.returncode == 0, result.stderr
    assert _counts(result.stdout) == (len(unfinished), len(finished), 0, len(ids))
    assert all((out / f"{i}.json").read_bytes() == content for i, content in first.items())  # not redone
    assert _temporaries(out) == []
    assert not (out / "failures.jsonl").exists()
    records = _records(out)
    assert sorted(records) == sorted(ids)
    reference = _records(out_one)
    assert {i: r["frames_sha256"] for i, r in records.items()} == {i: reference[i]["frames_sha256"] for i in ids}
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{i}{s}" for i in ids for s in (".mp4", ".overlay.mp4", ".condition.png", ".json"))

    again = _batch(manifest, out)
    assert again.returncode == 0 and _counts(again.stdout) == (0, 3, 0, 3)


# Loaded by every Python process started with its folder first on PYTHONPATH: the first rename of a video into
# place (its record not yet written) writes a marker naming the process and waits there, so that the test can
# SIGKILL that torchrun rank in the middle of writing a sample's outputs.
_PAUSE_AT_WRITE = """
import os, time
_replace = os.replace
_paused = []
def replace(src, dst, *args, **kwargs):
    result = _replace(src, dst, *args, **kwargs)
    if str(dst).endswith(".mp4") and ".overlay." not in str(dst) and not _paused:
        _paused.append(dst)
        marker = os.path.join(os.environ["SGI2V_PAUSE_DIR"], f"writing-{os.getpid()}")
        with open(marker + ".tmp", "w") as f:
            f.write(str(dst))
        _replace(marker + ".tmp", marker)
        time.sleep(120)
    return result
os.replace = replace
"""


def test_a_rank_killed_mid_write_leaves_nothing_a_resume_accepts(single, tmp_path):
    _, out_one, _ = single
    manifest = _write_inputs(tmp_path, GOOD)
    out, hooks = tmp_path / "out", tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(_PAUSE_AT_WRITE)
    env = dict(ENV, PYTHONPATH=os.pathsep.join([str(hooks), ENV.get("PYTHONPATH", "")]), SGI2V_PAUSE_DIR=str(hooks))
    process = _batch(manifest, out, processes=2, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + 300
        while not (markers := sorted(hooks.glob("writing-*[0-9]"))):
            assert process.poll() is None, "the run ended before a rank wrote a video"
            assert time.monotonic() < deadline, "no rank wrote a video in time"
            time.sleep(0.02)
        video = Path(markers[0].read_text())
        os.kill(int(markers[0].name.split("-")[1]), signal.SIGKILL)  # that rank, between its video and its record
        assert process.wait(timeout=120) != 0  # torchrun stops the other rank and reports the failure
    finally:
        process.kill()
        process.wait()
    assert video.exists() and not is_complete(out, video.stem)  # a video without its record: not accepted

    result = _batch(manifest, out)
    assert result.returncode == 0, result.stderr
    assert _temporaries(out) == []
    records = _records(out)
    reference = _records(out_one)
    assert {i: r["frames_sha256"] for i, r in records.items()} == {s["id"]: reference[s["id"]]["frames_sha256"] for s in GOOD}
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{s['id']}{x}" for s in GOOD
                                                         for x in (".mp4", ".overlay.mp4", ".condition.png", ".json"))


@pytest.mark.parametrize(
    "lines, message",
    [
        ([{"id": "a", "image": "i.png", "traj": "t.json"}, {"id": "a", "image": "j.png", "traj": "t.json"}],
         r"line 2: duplicate id 'a', first on line 1$"),
        ([{"id": "Cat", "image": "i.png", "traj": "t.json"}, {"id": "cat", "image": "i.png", "traj": "t.json"}],
         r"line 2: duplicate id 'cat' \(same file names as 'Cat' on case-insensitive file systems\)"),
        ([{"id": "a", "image": "i.png", "traj": "t.json", "step": 4}], r"line 1 \(id 'a'\): unknown key 'step' \(allowed: "),
        ([{"id": "../evil", "image": "i.png", "traj": "t.json"}], r"line 1: id '../evil' is not a safe file name"),
        ([{"id": "a.overlay", "image": "i.png", "traj": "t.json"}], r"id 'a.overlay' is not a safe file name"),
        ([{"id": 3, "image": "i.png", "traj": "t.json"}], r"line 1: id must be a string, got 3"),
        ([{"image": "i.png", "traj": "t.json"}], r"line 1: missing 'id'"),
        ([{"id": "a", "image": "i.png"}], r"line 1 \(id 'a'\): missing 'traj'"),
        (["# only a comment", ""], r"no samples"),
        (None, r"manifest not found"),
    ],
)
def test_manifest_errors_are_one_line_and_write_nothing(lines, message, tmp_path, capsys):
    manifest = tmp_path / "m.jsonl"
    if lines is not None:
        manifest.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    out = tmp_path / "out"
    assert main(["batch", str(manifest), "-o", str(out), *FAST]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    where = "MANIFEST: " if lines is None else ""  # a missing manifest is refused as the argument it is
    assert len(err) == 1 and err[0].startswith(f"sgi2v: error: {where}{manifest}"), err
    assert re.search(message, err[0]), err[0]
    assert not out.exists()


def test_is_complete_needs_the_record_and_every_listed_file(tmp_path):
    assert not is_complete(tmp_path, "x")
    (tmp_path / "x.json").write_text(json.dumps({"frames_sha256": "0" * 64, "outputs": {"video": "x.mp4", "overlay": "x.overlay.mp4"}}))
    (tmp_path / "x.mp4").write_bytes(b"v")
    assert not is_complete(tmp_path, "x")
    (tmp_path / "x.overlay.mp4").write_bytes(b"v")
    assert is_complete(tmp_path, "x")
    (tmp_path / "x.json").write_text("{truncated")
    assert not is_complete(tmp_path, "x")


def test_seed_depends_on_the_id_only():
    assert derive_seed("cat") == derive_seed("cat")
    assert derive_seed("cat") != derive_seed("cat2")
    assert 0 <= derive_seed("cat") < 2**32


def test_a_model_that_cannot_load_stops_the_run_with_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    manifest = _write_inputs(tmp_path, GOOD[:1])
    out = tmp_path / "out"
    fast = [a for a in FAST if a != "tiny-random"]
    fast[fast.index("--model") + 1:fast.index("--model") + 1] = ["stabilityai/stable-video-diffusion-img2vid"]
    assert main(["batch", str(manifest), "-o", str(out), *fast]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "hub is unreachable and the model is not in the local cache" in err[0], err
    assert not out.exists()


def test_a_full_disk_fails_that_sample_alone_leaves_nothing_and_a_rerun_finishes(tmp_path, capsys, monkeypatch):
    """The writer meets ENOSPC (injected) for one sample: that sample fails with one line naming its file and
    the cause, leaves no partial video, record or temporary; the others finish; once there is room again a
    rerun makes only the missing one."""
    import errno

    import sgi2v.generation as generation

    manifest = _write_inputs(tmp_path / "in", GOOD)
    out = tmp_path / "out"
    real = generation.write_mp4

    def full_disk(path, *args, **kwargs):
        if Path(path).name.startswith(".b.mp4"):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(generation, "write_mp4", full_disk)
    assert main(["batch", str(manifest), "-o", str(out), *FAST]) == 1
    text = capsys.readouterr().out
    assert _counts(text) == (2, 0, 1, 3)
    failure = json.loads((out / "failures.jsonl").read_text())
    assert failure["id"] == "b" and str(out / "b.mp4") in failure["error"] and "No space left on device" in failure["error"]
    assert "\n" not in failure["error"] and ".tmp" not in failure["error"]
    assert not [p for p in out.iterdir() if p.name.startswith(("b.", ".b."))]  # nothing of b, no temporary
    assert is_complete(out, "a") and is_complete(out, "c-1.x")
    monkeypatch.setattr(generation, "write_mp4", real)  # room again
    assert main(["batch", str(manifest), "-o", str(out), *FAST]) == 0
    assert _counts(capsys.readouterr().out) == (1, 2, 0, 3)
    assert is_complete(out, "b") and not (out / "failures.jsonl").exists()


def test_an_unreadable_image_halfway_is_that_samples_failure_alone(tmp_path, capsys):
    folder = tmp_path / "in"
    manifest = _write_inputs(folder, [GOOD[0], {"id": "corrupt", "image": "corrupt.png", "traj": "traj.json"}, GOOD[1]])
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a picture" * 10)
    out = tmp_path / "out"
    assert main(["batch", str(manifest), "-o", str(out), *FAST]) == 1
    assert _counts(capsys.readouterr().out) == (2, 0, 1, 3)
    failure = json.loads((out / "failures.jsonl").read_text())
    assert failure["id"] == "corrupt" and "corrupt.png" in failure["error"] and "\n" not in failure["error"]
    assert is_complete(out, "a") and is_complete(out, "b")
    assert not [p for p in out.iterdir() if p.name.startswith(("corrupt.", ".corrupt."))]
