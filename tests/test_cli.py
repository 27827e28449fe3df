import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sgi2v.cli import main
from sgi2v.video import frames_sha256, read_video

FAST = ["--model", "tiny-random", "--height", "64", "--width", "128", "--frames", "4", "--steps", "3",
        "--optimize-timesteps", "2", "--iterations", "2", "--device", "cpu"]


def test_generate_writes_everything_and_replay_reproduces(inputs, capsys):
    image, traj, out = inputs
    video = out / "v.mp4"
    assert main(["generate", str(image), "--traj", str(traj), "-o", str(video), "--gif", *FAST]) == 0
    assert "wrote" in capsys.readouterr().out
    names = sorted(p.name for p in out.iterdir())
    assert names == ["v.condition.png", "v.gif", "v.json", "v.mp4", "v.overlay.mp4"]
    frames = read_video(video)
    assert frames.shape == (4, 64, 128, 3)
    assert read_video(out / "v.overlay.mp4").shape == (4, 64, 128, 3)
    assert Image.open(out / "v.condition.png").size == (128, 64)
    record = json.loads((out / "v.json").read_text())
    assert record["frames_shape"] == [4, 64, 128, 3]
    assert len(record["frames_sha256"]) == 64
    from sgi2v.generation import file_sha256

    assert record["video_sha256"] == file_sha256(video)  # the record names the very file beside it
    assert record["settings"]["seed"] == 817 and record["config"]["optimize_timesteps"] == [2]
    assert np.array(record["boxes"]).shape == (2, 4, 4)
    np.testing.assert_allclose(record["boxes"][0][0], [12.8, 12.8, 51.2, 38.4])  # rescaled 100x50 -> 128x64
    assert set(record["versions"]) >= {"torch", "diffusers", "transformers", "sgi2v"}
    assert {"load", "generate", "total"} <= set(record["timings"])  # writing happens after the record is made
    assert list(record["losses"]) == ["2"]

    assert main(["generate", "--replay", str(out / "v.json")]) == 0
    assert "replay reproduced frames_sha256 " + record["frames_sha256"] in capsys.readouterr().out
    replayed = json.loads((out / "v.replay.json").read_text())
    assert replayed["frames_sha256"] == record["frames_sha256"]


def test_replay_detects_different_frames(inputs, capsys):
    image, traj, out = inputs
    assert main(["generate", str(image), "--traj", str(traj), "-o", str(out / "v.mp4"), *FAST]) == 0
    record = json.loads((out / "v.json").read_text())
    record["frames_sha256"] = "0" * 64
    (out / "v.json").write_text(json.dumps(record))
    assert main(["generate", "--replay", str(out / "v.json")]) == 1
    assert "replay produced different frames" in capsys.readouterr().err


def test_sha_is_of_the_frames_as_uint8(inputs):
    image, traj, out = inputs
    assert main(["generate", str(image), "--traj", str(traj), "-o", str(out / "v.mp4"), *FAST, "--iterations", "0"]) == 0
    record = json.loads((out / "v.json").read_text())
    import torch

    from sgi2v import SGI2VConfig
    from sgi2v.generation import _torch_threads
    from sgi2v.testing import tiny_pipeline
    from sgi2v.video import to_uint8

    pipe = tiny_pipeline(num_frames=4)
    settings = record["settings"]
    img = Image.open(image).convert("RGB").resize((128, 64), resample=3)
    with _torch_threads(settings["threads"]):  # the CLI's thread count (every core), whatever OMP_NUM_THREADS says
        out = pipe(img, np.array(record["boxes"]), config=SGI2VConfig.from_dict(record["config"]), height=64, width=128,
                   num_frames=4, num_inference_steps=3, generator=torch.Generator("cpu").manual_seed(settings["seed"]),
                   output_type="np", fps=settings["fps"], motion_bucket_id=settings["motion_bucket_id"],
                   noise_aug_strength=settings["noise_aug_strength"], decode_chunk_size=settings["decode_chunk_size"])
    frames = to_uint8(out.frames[0])
    assert frames.dtype == np.uint8 and frames_sha256(frames) == record["frames_sha256"]


def test_reference_dir(tmp_path):
    folder = tmp_path / "ref"
    folder.mkdir()
    Image.fromarray((np.random.RandomState(1).rand(90, 160, 3) * 255).astype(np.uint8)).save(folder / "img.png")
    centers = np.array([[[40 + 5 * f, 45] for f in range(4)]], dtype=np.float64)
    np.save(folder / "traj.npy", np.concatenate([np.array([[[20, 30], [60, 60]]]), centers], axis=1))
    out = tmp_path / "r.mp4"
    assert main(["generate", "--reference-dir", str(folder), "-o", str(out), *FAST]) == 0
    record = json.loads((tmp_path / "r.json").read_text())
    np.testing.assert_allclose(record["boxes"][0][3], [(20 + 15) * 0.8, 30 * 64 / 90, (60 + 15) * 0.8, 60 * 64 / 90], rtol=1e-6)


def _bad(tmp_path, name, content):
    p = tmp_path / name
    p.write_text(content) if isinstance(content, str) else np.save(p, content)
    return p


@pytest.mark.parametrize(
    "case, message, code",
    [
        ("missing image", "image not found", 2),
        ("not an image", "not an image file", 2),
        ("malformed json", "malformed JSON at line 1", 2),
        ("bad field", r"boxes\[0\].path\[0\]: expected a point", 2),
        ("outside", "not inside the 100x50 image", 2),
        ("flipped", "needs x1 > x0", 2),
        ("nan", "expected a finite number, got nan", 2),
        ("npy shape", r"shape \(N, 2 \+ F, 2\)", 2),
        ("unknown model", "--model: no such model!: unknown model; give a hub id", 2),
        ("not svd folder", "--model: .*: not a diffusers model folder", 2),
        ("hub offline", "hub is unreachable and the model is not in the local cache", 1),
        ("cuda absent", "CUDA is not available", 1),
        ("frames", "3 frames per path but 4", 2),
        ("size", "height: expected an integer from 64 to 4096, a multiple of 64, got 100", 2),
    ],
)
def test_bad_input_one_line_no_files(case, message, code, inputs, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    image, traj, out = inputs
    args = [str(image), "--traj", str(traj)]
    extra = []
    if case == "missing image":
        args[0] = str(tmp_path / "none.png")
    elif case == "not an image":
        args[0] = str(_bad(tmp_path, "fake.png", "hello"))
    elif case == "malformed json":
        args[2] = str(_bad(tmp_path, "t.json", "{boxes: 1}"))
    elif case == "bad field":
        args[2] = str(_bad(tmp_path, "t.json", '{"boxes": [{"box": [1, 1, 5, 5], "path": [3]}]}'))
    elif case == "outside":
        args[2] = str(_bad(tmp_path, "t.json", '{"boxes": [{"box": [80, 10, 120, 20], "static": true}]}'))
    elif case == "flipped":
        args[2] = str(_bad(tmp_path, "t.json", '{"boxes": [{"box": [30, 10, 20, 20], "static": true}]}'))
    elif case == "nan":
        args[2] = str(_bad(tmp_path, "t.json", '{"boxes": [{"box": [1, 1, 5, NaN], "static": true}]}'))
    elif case in ("npy shape", "frames"):
        folder = tmp_path / "ref"
        folder.mkdir()
        Image.new("RGB", (100, 50)).save(folder / "img.png")
        np.save(folder / "traj.npy", np.zeros((1, 4)) if case == "npy shape" else np.ones((1, 5, 2)))
        args = ["--reference-dir", str(folder)]
    elif case == "unknown model":
        extra = ["--model", "no such model!"]
    elif case == "not svd folder":
        extra = ["--model", str(tmp_path)]
    elif case == "hub offline":
        extra = ["--model", "stabilityai/stable-video-diffusion-img2vid"]
    elif case == "cuda absent":
        extra = ["--device", "cuda"]
    elif case == "size":
        extra = ["--height", "100"]
    fast = list(FAST)
    for flag in ("--model", "--device", "--height"):
        if flag in extra:
            i = fast.index(flag)
            del fast[i:i + 2]
    code_got = main(["generate", *args, "-o", str(out / "v.mp4"), *fast, *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code_got == code
    assert len(err) == 1 and err[0].startswith("sgi2v: error: "), err
    assert "Traceback" not in err[0]
    import re

    assert re.search(message, err[0]), err[0]
    assert list(out.iterdir()) == []


def test_console_script_subprocess(tmp_path):
    """The installed entry point: help, and a clean one-line failure with a non-zero exit."""
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    ok = subprocess.run([sys.executable, "-m", "sgi2v", "--help"], capture_output=True, text=True, env=env)
    assert ok.returncode == 0 and "generate" in ok.stdout and "demo" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "sgi2v", "generate", str(tmp_path / "x.png"), "--traj", "t.json", "-o",
                          str(tmp_path / "o.mp4")], capture_output=True, text=True, env=env)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [f"sgi2v: error: IMAGE: {tmp_path / 'x.png'}: image not found"]
    assert sorted(os.listdir(tmp_path)) == []


def test_output_into_a_closed_pipe_ends_quietly():
    """`sgi2v examples | head -1`: once the reader has gone, the command stops without a message (exit 141, as a
    process ended by SIGPIPE). The pipe's reader is closed before the command writes, so it always finds it gone."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run([sys.executable, "-m", "sgi2v", "examples"], stdout=write_end, stderr=subprocess.PIPE,
                                text=True, env=dict(os.environ, HF_HUB_OFFLINE="1"), timeout=120)
    finally:
        os.close(write_end)
    assert (result.returncode, result.stderr) == (141, "")


def test_a_broken_pipe_elsewhere_is_an_error(monkeypatch, capsys):
    """A pipe other than standard output (ffmpeg's, say) breaking is a failure like any other, with its message."""
    import sgi2v.cli as cli

    def broken(args):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(cli, "_run", broken)
    assert main(["examples"]) == 1
    assert capsys.readouterr().err == "sgi2v: error: [Errno 32] Broken pipe\n"


def test_bundled_examples_parse_and_demo_runs(tmp_path, capsys):
    from sgi2v.cli import example_files, list_examples
    from sgi2v.trajectory import load_image, load_trajectory

    names = list_examples()
    assert len(names) >= 3
    labels = set()
    for name in names:
        image, traj = example_files(name)
        t = load_trajectory(traj, 14, load_image(image).size)
        labels.update(t.labels)
    assert "camera" in labels
    # The shipped sprites model, plain SVD beside it; 10 steps instead of the demo's 25 to save 9 s (the default demo
    # is the README's first command, and the held-out check of benchmarks/heldout_cli.py runs the sprites model at 50)
    assert main(["demo", "--steps", "10", "-o", str(tmp_path / "d.mp4")]) == 0
    for name in ("d.mp4", "d.plain.mp4", "d.preview.mp4", "d.overlay.mp4"):
        assert read_video(tmp_path / name).shape == (14, 128, 128, 3)
    out = capsys.readouterr().out
    assert f"{tmp_path / 'd.mp4'} is SG-I2V's video" in out and f"{tmp_path / 'd.plain.mp4'} is plain SVD" in out
    measured = {line.split()[1]: float(line.split("ObjMC")[1].split()[0]) for line in out.splitlines() if "ObjMC" in line}
    assert set(measured) == {"SG-I2V", "plain"} and all(v >= 0 for v in measured.values())
    assert f"{tmp_path / 'd.preview.mp4'} is the preview" in out
    assert main(["demo", "--model", "tiny-random", "-o", str(tmp_path / "t.mp4")]) == 0
    assert read_video(tmp_path / "t.mp4").shape == (14, 128, 256, 3)
    out = capsys.readouterr().out
    assert "RANDOM" in out and f"{tmp_path / 't.mp4'} is the tiny random model's video" in out


@pytest.mark.parametrize("kind, message", [
    ("gated", "gated: accept its licence at https://huggingface.co/owner/model"),
    ("missing", "unknown model 'owner/model' on the Hugging Face hub"),
    ("offline", "hub is unreachable"),
])
def test_hub_errors_are_explained(kind, message, monkeypatch):
    """The classification of hub failures, with the errors huggingface_hub raises (wrapped as diffusers does)."""
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    from sgi2v import SGI2VPipeline
    from sgi2v.loading import ModelError, load_pipeline

    def fake_from_pretrained(*args, **kwargs):
        if kind == "offline":
            raise OSError("Cannot load model owner/model: the model is not fully cached locally")
        cls = GatedRepoError if kind == "gated" else RepositoryNotFoundError
        err = cls.__new__(cls)
        Exception.__init__(err, "401 Client Error")
        try:
            raise err
        except cls as inner:
            raise OSError("owner/model is not a local folder and is not a valid model identifier") from inner

    monkeypatch.setattr(SGI2VPipeline, "from_pretrained", classmethod(lambda cls, *a, **k: fake_from_pretrained()))
    with pytest.raises(ModelError, match=message):
        load_pipeline("owner/model", dtype=__import__("torch").float32)


# -- outputs are checked before the model loads ----------------------------------------------------

def test_outputs_are_checked_first_and_overwrite_replaces_the_whole_set(inputs, tmp_path, capsys):
    image, traj, out = inputs
    video = out / "v.mp4"
    assert main(["generate", str(image), "--traj", str(traj), "-o", str(video), "--gif", *FAST]) == 0
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    capsys.readouterr()
    assert main(["generate", str(image), "--traj", str(traj), "-o", str(video), *FAST]) == 2  # refused, nothing touched
    assert "v.mp4: exists; pass --overwrite to replace the whole set of outputs" in capsys.readouterr().err
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    # A temporary file left by a killed run (its process is gone) is cleaned by the next run.
    stale = out / ".v.mp4.tmp999999999"
    stale.write_bytes(b"half a video")
    assert main(["generate", str(image), "--traj", str(traj), "-o", str(video), *FAST, "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["v.condition.png", "v.json", "v.mp4", "v.overlay.mp4"]  # old GIF gone


@pytest.mark.parametrize("output, message", [
    ("folder", "-o/--output: {target}: is a folder; give the output video as a file name"),
    ("file-parent", "-o/--output: {target}: cannot be created: {target.parent} is a file, not a folder"),
    ("unwritable", "-o/--output: {target}: cannot write the output video in /sys (Permission denied)"),
    ("suffix", "the output video must end in .mp4"),
])
def test_bad_outputs_are_refused_before_the_model_loads(output, message, inputs, tmp_path, capsys, monkeypatch):
    import sgi2v.loading

    image, traj, out = inputs
    monkeypatch.setattr(sgi2v.loading, "load_pipeline", lambda *a, **k: pytest.fail("the model was loaded"))
    target = {"folder": out / "x.mp4", "file-parent": tmp_path / "plain.txt" / "v.mp4", "unwritable": Path("/sys/sgi2v/v.mp4"),
              "suffix": out / "v.avi"}[output]
    (out / "x.mp4").mkdir()
    (tmp_path / "plain.txt").write_text("a file")
    if output == "unwritable" and os.access("/sys", os.W_OK) and Path("/sys").stat().st_uid != 0:
        pytest.skip("no unwritable folder here")
    assert main(["generate", str(image), "--traj", str(traj), "-o", str(target), *FAST]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message.format(target=target) in err[0], err


def test_a_negative_seed_is_refused_by_every_road(inputs, tmp_path, capsys):
    image, traj, out = inputs
    assert main(["generate", str(image), "--traj", str(traj), "-o", str(out / "v.mp4"), *FAST, "--seed", "-1"]) == 2
    cli = capsys.readouterr().err.strip()
    assert cli == "sgi2v: error: seed: expected an integer from 0 to 9.22337e+18, got -1"
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"id": "s", "image": str(image), "traj": str(traj), "seed": -1}) + "\n")
    assert main(["batch", str(manifest), "-o", str(tmp_path / "b"), *FAST]) == 1
    failure = json.loads((tmp_path / "b" / "failures.jsonl").read_text())
    assert failure["error"].endswith(cli.removeprefix("sgi2v: error: "))


def test_replay_uses_the_recorded_thread_count(inputs, capsys):
    """On the CPU the frames depend on torch's thread count; a replay in a process set up otherwise still matches."""
    import torch

    image, traj, out = inputs
    made = {}
    for threads in (1, 2):
        assert main(["generate", str(image), "--traj", str(traj), "-o", str(out / f"t{threads}.mp4"), *FAST,
                     "--threads", str(threads)]) == 0
        record = json.loads((out / f"t{threads}.json").read_text())
        assert record["settings"]["threads"] == threads
        made[threads] = record["frames_sha256"]
    assert made[1] != made[2]  # so the test below can fail
    torch.set_num_threads(1)
    capsys.readouterr()
    assert main(["generate", "--replay", str(out / "t2.json")]) == 0
    assert f"replay reproduced frames_sha256 {made[2]}" in capsys.readouterr().out
    assert main(["generate", "--replay", str(out / "t1.json"), "--num-inference-steps", "5"]) == 2
    assert "--num-inference-steps cannot change it" in capsys.readouterr().err


def test_a_version_1_record_still_replays(inputs, capsys):
    """Records written before the settings schema kept device, dtype and offload outside ``settings`` and a
    boolean gradient_checkpointing; they replay unchanged."""
    image, traj, out = inputs
    assert main(["generate", str(image), "--traj", str(traj), "-o", str(out / "v.mp4"), *FAST]) == 0
    record = json.loads((out / "v.json").read_text())
    settings = record["settings"]
    old = dict(record, sgi2v_record=1, device=settings.pop("device"), dtype=settings.pop("dtype"), offload=settings.pop("offload"))
    for key in ("image_fit", "threads"):
        settings.pop(key)
    settings["gradient_checkpointing"] = False
    (out / "old.json").write_text(json.dumps(old))
    capsys.readouterr()
    assert main(["generate", "--replay", str(out / "old.json")]) == 0
    assert f"replay reproduced frames_sha256 {record['frames_sha256']}" in capsys.readouterr().out


@pytest.mark.parametrize("output,expected", [("", "-o/--output: empty"), ("x.avi", "-o/--output: x.avi: the output video must end in .mp4")])
def test_demo_output_errors_name_the_option_without_a_repr(output, expected, capsys):
    assert main(["demo", "-o", output]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0] and "PosixPath" not in err[0]


# Valid-looking required arguments of each command (nothing is read: an empty value is refused first).
BASE_ARGS = {"generate": ["in.png", "--traj", "t.json", "-o", "o.mp4"], "preview": ["in.png", "--traj", "t.json", "-o", "o.mp4"],
             "batch": ["m.jsonl", "-o", "out"], "evaluate": ["--generated", "g", "-o", "r.json"],
             "benchmark-prepare": ["root", "-o", "out"], "comfyui-install": ["comfy"], "train-sprites": ["-o", "run"]}


def _value_options():
    import argparse

    from sgi2v.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for command, parser in sub.choices.items():
        for action in parser._actions:
            if action.nargs == 0 or action.dest == "help":
                continue
            yield command, action


def _argv_with(command: str, base: list[str], action, value: str) -> list[str]:
    """``command`` with its valid ``base`` arguments, the option or argument under test set to ``value``: an option
    replaces its base value and goes last; an argument takes the place of the base's first argument."""
    argv = list(base)
    if action.option_strings:
        for flag_ in action.option_strings:
            if flag_ in argv:
                del argv[argv.index(flag_):argv.index(flag_) + 2]
        return [command, *argv, action.option_strings[-1], value]
    first = next((i for i, a in enumerate(argv) if not a.startswith("-") and (i == 0 or not argv[i - 1].startswith("-"))),
                 len(argv))
    return [command, *argv[:first], value, *argv[first + 1:]]


def test_every_option_given_an_empty_string_is_one_line_naming_it(capsys):
    """Every command, every option and argument that takes a value: "" gives exit 2 and one line that names it
    (argparse's own errors included: one line, no usage block)."""
    checked = 0
    for command, action in _value_options():
        label = action.option_strings[-1] if action.option_strings else action.dest.upper()
        argv = _argv_with(command, BASE_ARGS.get(command, []), action, "")
        try:
            code = main(argv)
        except SystemExit as exit_:
            code = exit_.code
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert code == 2 and len(err) == 1, (argv, code, err)
        names = [label, *action.option_strings, action.dest.upper()]
        assert any(name in err[0] for name in names) and "Traceback" not in err[0], (argv, err)
        checked += 1
    assert checked > 60


def _path_options():
    """(command, action) of every option and argument marked as a path."""
    for command, action in _value_options():
        if getattr(action, "path_kind", None):
            yield command, action


def _unwritable_folder(tmp_path) -> Path:
    """A folder nothing can be written in: a read-only folder, or (as root, whom permissions do not stop) /sys."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    for candidate in (folder, Path("/sys")):
        try:
            (candidate / "probe").touch()
            (candidate / "probe").unlink()
        except OSError:
            return candidate
    pytest.skip("no unwritable folder on this machine")


def test_the_path_options_are_all_marked():
    """Every option whose help says it takes a file or a folder is checked as a path (the rest are names)."""
    from sgi2v.paths import IN_FILE, IN_FOLDER, MODEL, OUT_FILE, OUT_FOLDER

    names_not_paths = {("benchmark-prepare", "frames_subdir"), ("benchmark-prepare", "masks_subdir"), ("comfyui-install", "name")}
    marked = {(c, a.dest): a.path_kind for c, a in _path_options()}
    for command, action in _value_options():
        text = f"{action.help} {action.metavar}".lower()
        if ("file" in text.split() or "folder" in text or " dir" in f" {text}") and (command, action.dest) not in names_not_paths:
            assert (command, action.dest) in marked, (command, action.dest)
    assert set(marked.values()) == {IN_FILE, IN_FOLDER, OUT_FILE, OUT_FOLDER, MODEL}
    assert len(marked) >= 30


def test_every_path_option_refuses_a_folder_a_missing_path_and_an_unwritable_place(tmp_path, monkeypatch, capsys):
    """Every path option of every command: the wrong kind of thing (a folder for a file, a file for a folder), a
    missing path and, for outputs, a place that cannot be written. Each is exit 2 and one line that begins with the
    option's name, before anything loads; nothing is written."""
    from sgi2v.paths import IN_FILE, IN_FOLDER, MODEL, OUT_FILE, OUT_FOLDER, option_label

    monkeypatch.chdir(tmp_path)
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save("in.png")
    Path("traj.json").write_text(json.dumps({"boxes": [{"box": [1, 1, 9, 9], "path": [[5, 5], [9, 9]]}]}))
    Path("m.jsonl").write_text(json.dumps({"id": "a", "image": "in.png", "traj": "traj.json"}) + "\n")
    for name in ("gen", "root", "comfy/custom_nodes", "a-folder", "empty-model"):
        Path(name).mkdir(parents=True)
    Path("a-file.txt").write_text("x")
    unwritable = _unwritable_folder(tmp_path)
    base = {"generate": ["in.png", "--traj", "traj.json", "-o", "o.mp4"], "preview": ["in.png", "--traj", "traj.json", "-o", "p.mp4"],
            "batch": ["m.jsonl", "-o", "out"], "evaluate": ["--generated", "gen", "-o", "report"], "benchmark-prepare": ["root", "-o", "bench"],
            "comfyui-install": ["comfy"], "train-sprites": ["-o", "run"], "demo": [], "estimate": [], "ui": []}
    cases = {IN_FILE: {"folder": ("a-folder", "is a folder"), "missing": ("nowhere/x.bin", "not found")},
             IN_FOLDER: {"file": ("a-file.txt", "is a file"), "missing": ("nowhere/x", "not found")},
             OUT_FILE: {"folder": ("a-folder", "is a folder"), "missing": ("a-file.txt/x.mp4", "a-file.txt is a file"),
                        "unwritable": (str(unwritable / "x.mp4"), "cannot write")},
             OUT_FOLDER: {"file": ("a-file.txt", "is a file"), "missing": ("a-file.txt/x", "a-file.txt is a file"),
                          "unwritable": (str(unwritable / "x"), "cannot write")},
             MODEL: {"folder": ("empty-model", "not a diffusers model folder"), "missing": ("./nowhere/model", "model folder not found"),
                     "file": ("a-file.txt", "is a file but not a .safetensors"), "missing file": ("x.safetensors", "model file not found")}}
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    checked = 0
    for command, action in _path_options():
        label = option_label(action)
        for case, (value, expected) in cases[action.path_kind].items():
            argv = _argv_with(command, base[command], action, value)
            code = main(argv)
            out, err = capsys.readouterr()
            lines = [line for line in err.splitlines() if line.strip()]
            assert code == 2 and len(lines) == 1, (argv, code, lines)
            assert lines[0].startswith(f"sgi2v: error: {label}: {value}: ") and expected in lines[0], (argv, lines)
            assert "PosixPath" not in lines[0] and "Errno" not in lines[0] and "'" not in lines[0], lines
            checked += 1
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before  # nothing written, not even a folder
    assert checked >= 75


def test_read_only_inputs_are_accepted(tmp_path):
    """An input in a read-only place is fine: only outputs need to be writable."""
    from sgi2v.paths import IN_FILE, IN_FOLDER, check_path

    folder = tmp_path / "ro"
    folder.mkdir()
    (folder / "in.png").write_bytes(b"x")
    (folder / "in.png").chmod(0o444)
    folder.chmod(0o555)
    check_path(IN_FILE, str(folder / "in.png"), "image")
    check_path(IN_FOLDER, str(folder), "folder")


def test_the_latent_window_is_recorded_as_the_steps_it_chose(inputs):
    from sgi2v.config import latent_window

    image, traj, out = inputs
    fast = [v if v != "2" or FAST[i - 1] != "--optimize-timesteps" else "latent" for i, v in enumerate(FAST)]
    assert "latent" in fast
    assert main(["generate", str(image), "--traj", str(traj), "-o", str(out / "l.mp4"), *fast]) == 0
    record = json.loads((out / "l.json").read_text())
    assert record["config"]["optimize_timesteps"] == list(latent_window((8, 16), 3))
    assert list(record["losses"]) == [str(t) for t in latent_window((8, 16), 3)]


def test_cpu_sharing_benchmark_runs_the_bundled_example_and_refuses_an_unknown_setting(load_benchmark, capsys):
    """benchmarks/cpu_sharing.py: its command is a valid `sgi2v generate` of the bundled sprites example (checked by
    the command's own parser), and a setting it does not know stops it before any run."""
    from sgi2v.cli import build_parser

    sharing = load_benchmark("cpu_sharing.py")
    command = sharing._command(Path("out.mp4"), 25)
    assert command[1:3] == ["-m", "sgi2v"] and Path(command[4]).is_file() and Path(command[6]).is_file()
    args = build_parser().parse_args(command[3:])
    assert (args.model, str(args.num_inference_steps)) == ("sprites", "25")
    with pytest.raises(SystemExit) as stopped:
        sharing.main(["--settings", "default,spinning"])
    assert stopped.value.code == 2 and "unknown spinning" in capsys.readouterr().err
