"""The ``sgi2v`` command: ``generate`` a video from an image and a trajectory, ``preview`` its motion without a
model, or run the bundled ``demo``."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import logging
import os
import sys
import warnings
from pathlib import Path

from .paths import IN_FILE, IN_FOLDER, MODEL, OUT_FILE, check_path_options, path_option
from .schema import describe, flag, specs
from .settings import DEFAULT_MODEL, XT_MODEL, setting_specs

__all__ = ["main"]

logger = logging.getLogger("sgi2v")

EXAMPLES_DIR = Path(__file__).parent / "examples"
PLUGIN_COMMANDS = {
    "batch": ("sgi2v.batch", "generate many videos from a manifest, on one or many processes (accelerate / torchrun)"),
    "evaluate": ("sgi2v.evaluation.cli", "ObjMC, FID and FVD of generated videos, with a report"),
    "benchmark-prepare": ("sgi2v.evaluation.prepare", "make first frames, trajectories and a manifest from VIPSeg-style videos"),
    "ui": ("sgi2v.ui", "web app: draw boxes and paths on an image and generate the video"),
    "comfyui-install": ("sgi2v.comfyui.install", "install the SG-I2V nodes into a ComfyUI folder (custom_nodes/sgi2v)"),
    "estimate": ("sgi2v.cost.cli", "predict peak device memory and FLOPs per phase and mode, and what fits a memory budget, "
                 "without loading weights (any device, even one this machine lacks)"),
    "train-sprites": ("sgi2v.sprites.cli", "train the small sprites model from scratch (VAE, UNet) on the sprites world"),
}
DEMO_EXAMPLE = "sprites"
DEMO_STEPS = 25
#: The settings ``sgi2v preview`` takes: what decides the frames' size, number, rate and fit, nothing the model reads.
PREVIEW_SETTINGS = ("width", "height", "image_fit", "num_frames", "fps")


class UsageError(ValueError):
    """A problem with the command line or its input files."""


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """``--model`` and ``--xt``: which pipeline to load (not a setting of one video)."""
    g = parser.add_argument_group("model")
    path_option(g.add_argument("--model", default=None, help=f"hub id, local SVD folder, sprites (the small shipped model trained on "
                   f"moving sprites, 128 x 128, offline) or tiny-random (offline, random weights); "
                   f"default {DEFAULT_MODEL} (or {XT_MODEL} with --xt)"), MODEL)
    g.add_argument("--xt", action="store_true", help="use SVD-XT (25 frames)")


def add_input_options(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """``IMAGE`` and the trajectory's options ``--traj`` and ``--reference-dir``; returns the trajectory's group."""
    path_option(parser.add_argument("image", nargs="?", metavar="IMAGE", help="the first frame (any size; resized to --width x --height)"),
                IN_FILE, "image")
    src = parser.add_argument_group("trajectory (one of)")
    path_option(src.add_argument("--traj", help="trajectory file: our JSON (boxes with path, keyframes, static, scale; camera), "
                     "SplineEditor / ATI JSON, Wan-Move tracks (.npy, .npz, .pt) or traj.npy (docs/trajectories.md)"),
                IN_FILE, "trajectory file")
    path_option(src.add_argument("--reference-dir", help="folder in the authors' format: img.png and traj.npy"), IN_FOLDER,
                "reference folder")
    add_trajectory_options(parser.add_argument_group("trajectory file (with --traj)"))
    return src


def add_setting_options(parser: argparse.ArgumentParser, names: tuple[str, ...] | None = None) -> None:
    """One option per setting of :class:`GenerationSettings` and :class:`SGI2VConfig` (or per setting in
    ``names``), derived from their fields: ``--name-in-kebab-case`` plus the older short names. Values are
    checked by :func:`resolve_settings`, with the same messages as a manifest line's or the web form's."""
    groups: dict[str, argparse._ArgumentGroup] = {}
    for name, (field, spec) in setting_specs().items():
        if names is not None and name not in names:
            continue
        group = groups.get(spec.group) or groups.setdefault(spec.group, parser.add_argument_group(spec.group))
        flags = [flag(name)] + [flag(alias) for alias in spec.aliases]
        if spec.kind == "bool":
            group.add_argument(*flags, dest=name, default=None, action=argparse.BooleanOptionalAction,
                               help=describe(name, field, spec))
        else:
            metavar = "|".join(spec.choices) if spec.kind == "choice" and name != "device" else name.upper()
            group.add_argument(*flags, dest=name, default=None, metavar=metavar, help=describe(name, field, spec))


def add_trajectory_options(group: argparse._ArgumentGroup) -> None:
    """``--traj-format``, ``--box-size``, ``--canvas-size``, ``--timing``: derived from
    :class:`sgi2v.formats.TrajectoryOptions`, checked by :func:`sgi2v.formats.resolve_trajectory_options`."""
    from .formats import TrajectoryOptions

    for name, (field, spec) in specs(TrajectoryOptions).items():
        metavar = "|".join(spec.choices) if spec.kind == "choice" else "WxH" if spec.kind == "size" else name.upper()
        group.add_argument(flag(name), dest=name, default=None, metavar=metavar, help=describe(name, field, spec))


def trajectory_values(args: argparse.Namespace) -> dict:
    """The trajectory options given on the command line (those left out are absent)."""
    from .formats import TrajectoryOptions

    return {name: getattr(args, name) for name in specs(TrajectoryOptions) if getattr(args, name, None) is not None}


def setting_values(args: argparse.Namespace) -> dict:
    """The settings given on the command line (those left out are absent)."""
    return {name: getattr(args, name) for name in setting_specs() if getattr(args, name, None) is not None}


def model_name(args: argparse.Namespace) -> str:
    return args.model or (XT_MODEL if args.xt else DEFAULT_MODEL)


class _Parser(argparse.ArgumentParser):
    """argparse with its errors on one line (the usage is one ``--help`` away), exit code 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="sgi2v", description="Trajectory-controlled image-to-video with SG-I2V on Stable Video Diffusion.")
    parser.add_argument("--version", action="version", version=f"sgi2v {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    gen = sub.add_parser("generate", help="make a video from an image and a trajectory",
                         description="Make a video from an image and box trajectories. Writes OUT.mp4, OUT.overlay.mp4, "
                                     "OUT.condition.png and OUT.json (the run record) side by side.")
    src = add_input_options(gen)
    path_option(src.add_argument("--replay", help="a run record OUT.json: redo that run and check frames_sha256"), IN_FILE,
                "run record")
    path_option(gen.add_argument("-o", "--output", help="output video, .mp4 (default with --replay: RECORD.replay.mp4)"),
                OUT_FILE, "output video")
    gen.add_argument("--gif", action="store_true", help="also write OUT.gif")
    gen.add_argument("--overwrite", action="store_true", help="replace the outputs of an earlier run with the same name, "
                     "side files included (without it an existing output is an error)")
    gen.add_argument("--dry-run", action="store_true", help="check the inputs, print the memory and compute plan of the run "
                     "(as `sgi2v estimate`) and exit without loading the model or writing anything")
    add_model_options(gen)
    add_setting_options(gen)

    demo = sub.add_parser("demo", help="run a bundled example end to end with the shipped sprites model, offline",
                          description="Runs a bundled sprites example with the small shipped model (trained on moving sprites), "
                                      "offline, in under a minute on a CPU: SG-I2V's video, plain SVD's from the same noise, and "
                                      "the ObjMC of both measured on the spot by tracking the sprites. The preview written beside "
                                      "them shows the motion the trajectory asks for.")
    path_option(demo.add_argument("-o", "--output", default="sgi2v-demo/demo.mp4", help="output video (default sgi2v-demo/demo.mp4); "
                      "its motion preview goes beside it, as OUT.preview.mp4"), OUT_FILE, "output video")
    demo.add_argument("--example", default=DEMO_EXAMPLE, help=f"bundled example name (default {DEMO_EXAMPLE}): {', '.join(list_examples())}")
    demo.add_argument("--device", default="cpu", help="device (default cpu)")
    path_option(demo.add_argument("--model", default=None, help="sprites (default) or tiny-random (random weights: noise)"), MODEL)
    demo.add_argument("--steps", type=int, default=DEMO_STEPS, help=f"denoising steps (default {DEMO_STEPS})")

    preview = sub.add_parser("preview", help="the motion a trajectory asks for, drawn from the first frame without a model",
                             description="Animates the first frame as the trajectory asks: each box's content moved and scaled "
                                         "along its path, the camera as a pan or zoom of the whole picture, static boxes pinned. "
                                         "Needs no model and no GPU; writes one video.")
    add_input_options(preview)
    path_option(preview.add_argument("-o", "--output", help="output video, .mp4"), OUT_FILE, "output video")
    preview.add_argument("--overwrite", action="store_true", help="replace an existing output")
    preview.add_argument("--xt", action="store_true", help="as many frames as SVD-XT makes (25) unless --num-frames says")
    add_setting_options(preview, PREVIEW_SETTINGS)

    sub.add_parser("examples", help="list the bundled examples and their files")

    # Further commands live in their own modules, each with a light `add_arguments(parser)` (no heavy
    # imports at module level) and `run(args) -> int`.
    for name, (module_name, help_text) in PLUGIN_COMMANDS.items():
        if not _module_exists(module_name):
            continue
        module = importlib.import_module(module_name)
        plugin = sub.add_parser(name, help=help_text, description=module.__doc__)
        module.add_arguments(plugin)
        plugin.set_defaults(handler=module.run)
    return parser


def _module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # its parent package is absent
        return False


def _version() -> str:
    from . import __version__

    return __version__


def list_examples() -> list[str]:
    return sorted(p.name for p in EXAMPLES_DIR.iterdir() if (p / "trajectory.json").is_file()) if EXAMPLES_DIR.is_dir() else []


def example_files(name: str) -> tuple[Path, Path]:
    folder = EXAMPLES_DIR / name
    if not (folder / "trajectory.json").is_file():
        raise UsageError(f"unknown example {name!r}; bundled: {', '.join(list_examples())}")
    image = next(p for p in sorted(folder.iterdir()) if p.stem == "image")
    return image, folder / "trajectory.json"


#: Settings a replay may change: they decide where and how fast it runs, not what it computes.
REPLAY_OVERRIDES = ("device", "dtype", "offload", "threads", "gradient_checkpointing")


def _request(args):
    """(model, settings, config, prepared inputs, output paths, extra record entries) of ``generate``, all
    checked before anything heavy is imported."""
    from .generation import check_outputs, output_paths, prepare_replay, read_record, record_settings
    from .settings import resolve_settings

    given = setting_values(args)
    _check_trajectory_options(args)
    if args.replay:
        if args.image or args.traj or args.reference_dir:
            raise UsageError("--replay takes everything from the record: give no IMAGE, --traj or --reference-dir with it")
        changed = sorted(set(given) - set(REPLAY_OVERRIDES))
        if changed or args.xt:
            raise UsageError(f"--replay redoes the recorded run: {flag(changed[0]) if changed else '--xt'} cannot change it "
                             f"(only --model, {', '.join(flag(n) for n in REPLAY_OVERRIDES)} may be given)")
        record = read_record(args.replay)
        model = args.model or record["model"]
        recorded = record_settings(record)
        settings, config = resolve_settings({**recorded, **given}, model=model, source=args.replay)
        prepared = prepare_replay(record, args.replay, settings)
        out = args.output or str(Path(args.replay).with_suffix("")) + ".replay.mp4"
        extra = {"replay_of": str(Path(args.replay).resolve())}
    else:
        model = model_name(args)
        settings, config = resolve_settings(given, model=model, source="")
        prepared = _inputs(args, settings)
        if not args.output:
            raise UsageError("give the output video with -o OUT.mp4")
        out, record, extra = args.output, None, {}
    paths = output_paths(out, gif=args.gif)
    check_outputs(paths, overwrite=args.overwrite)
    return model, settings, config, prepared, paths, record, extra


def _check_trajectory_options(args) -> None:
    traj_given = trajectory_values(args)
    if traj_given and not args.traj:
        raise UsageError(f"{flag(next(iter(traj_given)))} says how to read --traj FILE: give it with --traj only")


def _inputs(args, settings):
    """The prepared inputs of ``IMAGE --traj FILE`` or ``--reference-dir DIR`` (``generate`` and ``preview``)."""
    from .generation import prepare_inputs, prepare_reference

    _check_trajectory_options(args)
    if args.reference_dir:
        if args.traj or args.image:
            raise UsageError("--reference-dir brings its own image and trajectory: give no IMAGE or --traj with it")
        return prepare_reference(args.reference_dir, settings)
    if not args.image or not args.traj:
        replay = ", or --replay RECORD.json" if "replay" in args else ""
        raise UsageError(f"give IMAGE and --traj FILE.json, or --reference-dir DIR{replay}")
    from .formats import resolve_trajectory_options

    options = resolve_trajectory_options(trajectory_values(args), source="")
    return prepare_inputs(args.image, args.traj, settings, trajectory_options=options)


def _preview(args) -> int:
    """``sgi2v preview``: checked like ``generate``'s request, then rendered and written under a temporary name."""
    from .generation import Timer, check_output_file
    from .preview import preview_prepared, write_preview
    from .settings import resolve_settings

    timer = Timer()
    with timer("prepare"):
        settings, _ = resolve_settings(setting_values(args), model=XT_MODEL if args.xt else DEFAULT_MODEL, source="")
        prepared = _inputs(args, settings)
        if not args.output:
            raise UsageError("give the output video with -o PREVIEW.mp4")
        path = check_output_file(args.output, overwrite=args.overwrite)
    with timer("render"):
        frames = preview_prepared(prepared)
    with timer("write"):
        path.parent.mkdir(parents=True, exist_ok=True)
        write_preview(path, frames, settings.fps)
    print(f"wrote {path} ({frames.shape[0]} frames, {frames.shape[2]}x{frames.shape[1]}, preview of the motion, no model) "
          f"in {timer.total:.1f} s [render {timer.times['render']:.2f} s, write {timer.times['write']:.2f} s]")
    return 0


def _generate(args) -> int:
    from .generation import Timer

    timer = Timer()
    with timer("prepare"):
        model, settings, config, prepared, paths, replayed, extra = _request(args)
    if args.dry_run:
        from .cost.cli import plan_for
        from .cost.plan import format_plan

        plan = plan_for(model, settings, config)
        print(format_plan(plan))
        print(f"this run would use: {plan['chosen']} (dry run: nothing generated or written)")
        return 0
    # Everything is checked: only now load torch, diffusers and the model.
    from .generation import generate, write_outputs
    from .loading import load_pipeline, resolve_device, resolve_dtype

    device = resolve_device(settings.device)
    dtype = resolve_dtype(settings.dtype, device, model)
    with timer("load"):
        pipe = load_pipeline(model, device=device, dtype=dtype, num_frames=settings.num_frames, offload=settings.offload)
    pipe.set_progress_bar_config(desc="sgi2v", leave=False, disable=not sys.stderr.isatty() and os.environ.get("SGI2V_PROGRESS") != "1")
    with timer("generate"):
        generation = generate(prepared, settings, config, pipe, model=model, extra=extra)
    with timer("write"):
        generation.record["timings"] = {**{k: round(v, 3) for k, v in timer.times.items()}, "total": round(timer.total, 3)}
        write_outputs(paths, generation, prepared, settings.fps, overwrite=args.overwrite)
    frames = generation.frames
    print(f"wrote {paths['video']} ({frames.shape[0]} frames, {frames.shape[2]}x{frames.shape[1]}, model {model}, {device}) "
          f"in {timer.total:.1f} s [load {timer.times['load']:.1f} s, generate {timer.times['generate']:.1f} s, "
          f"write {timer.times['write']:.1f} s]")
    if replayed is not None:
        if generation.record["frames_sha256"] != replayed["frames_sha256"]:
            print(f"sgi2v: error: replay produced different frames: frames_sha256 {generation.record['frames_sha256']} != "
                  f"recorded {replayed['frames_sha256']}", file=sys.stderr)
            return 1
        print(f"replay reproduced frames_sha256 {generation.record['frames_sha256']}")
    return 0


def _demo(args) -> int:
    from .settings import SPRITES_MODEL, TINY_MODEL_ID, native_size

    from .generation import output_paths

    if not args.output.strip():
        raise UsageError("-o/--output: empty; give the demo's video as a file name ending in .mp4 (default sgi2v-demo/demo.mp4)")
    try:
        output_paths(args.output)
    except ValueError as err:
        raise UsageError(f"-o/--output: {err}") from None
    image, traj = example_files(args.example)
    model = args.model or SPRITES_MODEL
    sprites = image.parent / "sprites.json"
    inputs = [str(image), "--traj", str(traj), "--overwrite"]
    steps = []
    if model == TINY_MODEL_ID:
        inputs += ["--height", "128", "--width", "256"]
        steps = ["--num-inference-steps", "10"]
        print(f"demo: example {args.example!r} with the tiny RANDOM-weight model (offline check of the tool; the video is noise)")
    else:
        steps = ["--num-inference-steps", str(args.steps)]
        print(f"demo: example {args.example!r} with the model {model}, {args.steps} steps, plain SVD and SG-I2V")
    preview = str(Path(args.output).with_suffix(".preview.mp4"))
    plain = str(Path(args.output).with_suffix(".plain.mp4"))
    common = ["--model", model, "--device", args.device, *steps]
    code = _run(build_parser().parse_args(["generate", *inputs, "-o", args.output, *common]))
    measured = code == 0 and model != TINY_MODEL_ID and sprites.is_file()
    if measured:
        code = _run(build_parser().parse_args(["generate", *inputs, "-o", plain, *common, "--iterations", "0"]))
    if model != TINY_MODEL_ID and "--height" not in inputs:  # the preview knows no model: give it the model's size
        height, width = native_size(model)
        inputs += ["--height", str(height), "--width", str(width)]
    code = code or _run(build_parser().parse_args(["preview", *inputs, "-o", preview]))
    if code:
        return code
    if model == TINY_MODEL_ID:
        print(f"demo: {args.output} is the tiny random model's video: noise, its weights are random")
    else:
        print(f"demo: {args.output} is SG-I2V's video; {Path(args.output).with_suffix('.overlay.mp4')} shows the target boxes on it")
    if measured:
        print(f"demo: {plain} is plain SVD from the same noise (--iterations 0)")
        for line in _demo_objmc(sprites, {"SG-I2V": args.output, "plain SVD": plain}):
            print(f"demo: {line}")
    print(f"demo: {preview} is the preview: the motion the trajectory asks for, drawn from the first frame without a model")
    return 0


def _demo_objmc(sprites: Path, videos: dict[str, str]) -> list[str]:
    """ObjMC of each video, measured here: the example's sprites tracked by colour in the MP4 read back."""
    import json

    import numpy as np

    from .sprites.control import measure_boxes
    from .video import read_video

    meta = json.loads(sprites.read_text())["sprites"]
    lines = []
    for name, video in videos.items():
        record = json.loads(Path(video).with_suffix(".json").read_text())
        boxes = np.asarray(record["boxes"], dtype=np.float64)
        result = measure_boxes(read_video(video), boxes, [m["color"] for m in meta], [m["shape"] for m in meta],
                               [m["size"] for m in meta])
        found = np.nanmean([s["found"] for s in result["sprites"]])
        lines.append(f"{name:10s} ObjMC {result['objmc_px']:5.1f} px (mean distance of the tracked sprites from their "
                     f"target paths; found in {100 * found:.0f} % of the frames)")
    return lines


def _examples(args) -> int:
    for name in list_examples():
        image, traj = example_files(name)
        print(f"{name}: {image} {traj}")
    return 0


def _run(args) -> int:
    handler = getattr(args, "handler", None) or {"generate": _generate, "preview": _preview, "demo": _demo,
                                                 "examples": _examples}[args.command]
    return handler(args)


def main(argv: list[str] | None = None) -> int:
    # Library chatter is not for the command's user; set before those libraries load (they read it then).
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="sgi2v: %(message)s")
    try:
        _refuse_empty_values(parser, args)
        check_path_options(_command_parser(parser, args), args)
        with _quiet_warnings():
            code = _run(args)
        sys.stdout.flush()  # output that a closed pipe refuses shows here, not as a report at the interpreter's exit
        return code
    except KeyboardInterrupt:
        print("sgi2v: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if isinstance(err, BrokenPipeError) and _stdout_closed():
            # The reader of our output has gone (`sgi2v examples | head -1`): stop quietly, as a process ended by
            # SIGPIPE does (another broken pipe, ffmpeg's say, is an error like any other).
            with contextlib.suppress(OSError, ValueError, AttributeError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 141
        code = exit_code(err)
        if code == 1 and os.environ.get("SGI2V_DEBUG"):
            raise
        print(f"sgi2v: error: {one_line(err)}", file=sys.stderr)
        return code


def _stdout_closed() -> bool:
    """Whether standard output is a pipe whose reader has gone (POSIX)."""
    import select

    try:
        fd = sys.stdout.fileno()
        poller = select.poll()
    except (AttributeError, OSError, ValueError):
        return False
    poller.register(fd, select.POLLOUT)
    return any(events & select.POLLERR for _, events in poller.poll(0))


def _refuse_empty_values(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """An option or argument given as an empty string (an unset shell variable, say) is an error naming it,
    for every command: no command reads an empty value as "not given"."""
    command = _command_parser(parser, args)
    for action in command._actions:
        if action.nargs == 0 or action.dest in ("help", "command"):
            continue
        value = getattr(args, action.dest, None)
        values = value if isinstance(value, list) else [value]
        if value is not action.default and any(isinstance(v, str) and not v.strip() for v in values):
            if action.option_strings:
                raise UsageError(f"{'/'.join(action.option_strings)}: empty value; give one, or leave the option out")
            raise UsageError(f"{action.dest.upper()}: empty; give a value")


def _command_parser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The parser of the command ``args`` were parsed for."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[args.command]


def exit_code(err: BaseException) -> int:
    """2 for bad input (the user can fix the command or its files), 1 for model, device and other problems."""
    if isinstance(err, (UsageError, ValueError, FileNotFoundError)):
        return 2
    return 1


def one_line(err: BaseException) -> str:
    """An error as one line: the message (with the file for a missing file); the type for unexpected errors."""
    text = " ".join(str(err).split()) or type(err).__name__
    if isinstance(err, FileNotFoundError) and err.filename and str(err.filename) not in text:
        text = f"{err.filename}: {text}"
    if not isinstance(err, (ValueError, OSError, RuntimeError)):
        text = f"{type(err).__name__}: {text} (set SGI2V_DEBUG=1 for the traceback)"
    return text


@contextlib.contextmanager
def _quiet_warnings():
    """Hide the libraries' notes that say nothing to the command's user, only these and only for this command."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torchvision.*")
        warnings.filterwarnings("ignore", message=r".*should be kept in float32.*")
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"(diffusers|transformers|accelerate)\b")
        yield


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
