"""The ``sgi2v`` command: ``generate`` a video from an image and a trajectory, or run the bundled ``demo``."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import logging
import os
import sys
import time
from pathlib import Path

__all__ = ["main"]

logger = logging.getLogger("sgi2v")

EXAMPLES_DIR = Path(__file__).parent / "examples"
PLUGIN_COMMANDS = {
    "batch": ("sgi2v.batch", "generate many videos from a manifest, on one or many processes (accelerate / torchrun)"),
    "evaluate": ("sgi2v.evaluation.cli", "ObjMC, FID and FVD of generated videos, with a report"),
    "benchmark-prepare": ("sgi2v.evaluation.prepare", "make first frames, trajectories and a manifest from VIPSeg-style videos"),
    "ui": ("sgi2v.ui", "web app: draw boxes and paths on an image and generate the video"),
}
DEMO_EXAMPLE = "rocket"


class UsageError(ValueError):
    """A problem with the command line or its input files."""


def _timesteps(text: str) -> tuple[int, ...]:
    """``30-45`` or ``30,35,40`` (or both, comma separated)."""
    values: set[int] = set()
    try:
        for part in filter(None, (p.strip() for p in text.split(","))):
            if "-" in part:
                lo, hi = (int(v) for v in part.split("-", 1))
                values.update(range(min(lo, hi), max(lo, hi) + 1))
            else:
                values.add(int(part))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected timesteps like 30-45 or 30,35,40, got {text!r}") from None
    return tuple(sorted(values, reverse=True))


def _add_model_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model and device")
    g.add_argument("--model", default=None, help="hub id, local SVD folder, or tiny-random (offline, random weights); "
                   "default stabilityai/stable-video-diffusion-img2vid (or -xt with --xt)")
    g.add_argument("--xt", action="store_true", help="use SVD-XT (25 frames)")
    g.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N, mps")
    g.add_argument("--dtype", default="auto", help="auto (fp16 on GPU, fp32 on CPU), fp32, fp16, bf16")
    g.add_argument("--offload", action="store_true", help="model CPU offload: keep only the running model on the GPU")
    g.add_argument("--gradient-checkpointing", action="store_true",
                   help="recompute activations in the optimisation passes: less GPU memory, a little slower")


def _add_generation_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("sampling")
    g.add_argument("--height", type=int, default=None, help="output height in pixels, multiple of 64 (default 576)")
    g.add_argument("--width", type=int, default=None, help="output width in pixels, multiple of 64 (default 1024)")
    g.add_argument("--frames", type=int, default=None, help="frames to generate (default 14, or 25 with --xt)")
    g.add_argument("--steps", type=int, default=None, help="denoising steps (default 50)")
    g.add_argument("--seed", type=int, default=None, help="random seed (default 817)")
    g.add_argument("--fps", type=int, default=None, help="frame rate: SVD conditioning and video (default 7)")
    g.add_argument("--motion-bucket-id", type=int, default=None, help="SVD motion bucket (default 127)")
    g.add_argument("--noise-aug-strength", type=float, default=None, help="noise added to the image (default 0.02)")
    g.add_argument("--min-guidance-scale", type=float, default=None, help="CFG scale at the first frame (default 1.0)")
    g.add_argument("--max-guidance-scale", type=float, default=None, help="CFG scale at the last frame (default 3.0)")
    g.add_argument("--decode-chunk-size", type=int, default=None, help="frames decoded at once (default 8)")
    m = p.add_argument_group("SG-I2V method (defaults: the paper's)")
    m.add_argument("--optimize-timesteps", type=_timesteps, default=None,
                   help="timesteps t = steps - i to optimise at, e.g. 30-45 (default 30-45, rescaled for other --steps)")
    m.add_argument("--iterations", type=int, default=None, help="optimisation iterations per step (default 5; 0 = plain SVD)")
    m.add_argument("--lr", type=float, default=None, help="AdamW learning rate (default 0.21)")
    m.add_argument("--feature-layers", default=None, help="comma-separated spatial transformers (default "
                   "up_blocks.2.attentions.1,up_blocks.2.attentions.2)")
    m.add_argument("--heatmap-sigma", type=float, default=None, help="Gaussian loss weight sigma (default 0.4)")
    m.add_argument("--no-hf-reinit", action="store_true", help="disable high-frequency re-initialisation")
    m.add_argument("--cutoff", type=float, default=None, help="low-pass cutoff of the re-initialisation (default 0.5)")
    m.add_argument("--butterworth-order", type=int, default=None, help="Butterworth filter order (default 4)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sgi2v", description="Trajectory-controlled image-to-video with SG-I2V on Stable Video Diffusion.")
    parser.add_argument("--version", action="version", version=f"sgi2v {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    gen = sub.add_parser("generate", help="make a video from an image and a trajectory",
                         description="Make a video from an image and box trajectories. Writes OUT.mp4, OUT.overlay.mp4, "
                                     "OUT.condition.png and OUT.json (the run record) side by side.")
    gen.add_argument("image", nargs="?", help="the first frame (any size; resized to --width x --height)")
    src = gen.add_argument_group("trajectory (one of)")
    src.add_argument("--traj", help="trajectory JSON file (see README: boxes with path, keyframes, static, scale; camera)")
    src.add_argument("--reference-dir", help="folder in the authors' format: img.png and traj.npy")
    src.add_argument("--replay", help="a run record OUT.json: redo that run and check frames_sha256")
    gen.add_argument("-o", "--output", help="output video, .mp4 (default with --replay: RECORD.replay.mp4)")
    gen.add_argument("--gif", action="store_true", help="also write OUT.gif")
    _add_model_options(gen)
    _add_generation_options(gen)

    demo = sub.add_parser("demo", help="run a bundled example end to end with the tiny offline model",
                          description="Runs a bundled example with the tiny random-weight model: checks the whole tool offline "
                                      "in well under a minute on a CPU. The video is noise: the weights are random.")
    demo.add_argument("-o", "--output", default="sgi2v-demo/demo.mp4", help="output video (default sgi2v-demo/demo.mp4)")
    demo.add_argument("--example", default=DEMO_EXAMPLE, help=f"bundled example name (default {DEMO_EXAMPLE}): {', '.join(list_examples())}")
    demo.add_argument("--device", default="cpu", help="device (default cpu)")

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


def _config_from_args(args, steps: int):
    from .config import SGI2VConfig

    config = SGI2VConfig()
    if args.optimize_timesteps is None:
        config = config.scaled_to_steps(steps)
    changes = {
        "optimize_timesteps": args.optimize_timesteps, "iterations": args.iterations, "learning_rate": args.lr,
        "feature_layers": tuple(s.strip() for s in args.feature_layers.split(",") if s.strip()) if args.feature_layers else None,
        "heatmap_sigma": args.heatmap_sigma, "low_pass_cutoff": args.cutoff, "butterworth_order": args.butterworth_order,
        "high_frequency_reinit": False if args.no_hf_reinit else None,
    }
    return config.replace(**{k: v for k, v in changes.items() if v is not None})


def _settings_from_args(args, default_frames: int):
    from .runner import Settings

    values = {
        "height": args.height, "width": args.width, "num_frames": args.frames or default_frames,
        "num_inference_steps": args.steps, "seed": args.seed, "fps": args.fps, "motion_bucket_id": args.motion_bucket_id,
        "noise_aug_strength": args.noise_aug_strength, "min_guidance_scale": args.min_guidance_scale,
        "max_guidance_scale": args.max_guidance_scale, "decode_chunk_size": args.decode_chunk_size,
        "gradient_checkpointing": args.gradient_checkpointing or None,
    }
    settings = Settings(**{k: v for k, v in values.items() if v is not None})
    for name in ("height", "width"):
        value = getattr(settings, name)
        if value <= 0 or value % 64:
            raise UsageError(f"--{name} must be a positive multiple of 64, got {value}")
    if settings.num_frames < 2:
        raise UsageError(f"--frames must be at least 2, got {settings.num_frames}")
    if settings.num_inference_steps < 1:
        raise UsageError(f"--steps must be at least 1, got {settings.num_inference_steps}")
    if settings.fps < 1 or settings.decode_chunk_size < 1:
        raise UsageError("--fps and --decode-chunk-size must be at least 1")
    return settings


def _prepare_inputs(args, settings):
    """(resized image, boxes (N, F, 4) in output pixels, labels, inputs record)."""
    from .runner import file_sha256, load_inputs
    from .trajectory import load_reference_dir

    if args.reference_dir:
        if args.traj or args.image:
            raise UsageError("--reference-dir brings its own image and trajectory: give no IMAGE or --traj with it")
        image, boxes = load_reference_dir(args.reference_dir, settings.width, settings.height, settings.num_frames)
        folder = Path(args.reference_dir).resolve()
        inputs = {"reference_dir": str(folder), "image": str(folder / "img.png"), "image_sha256": file_sha256(folder / "img.png"),
                  "traj_npy_sha256": file_sha256(folder / "traj.npy")}
        return image, boxes, [f"box {i}" for i in range(len(boxes))], inputs
    if not args.image or not args.traj:
        raise UsageError("give IMAGE and --traj FILE.json, or --reference-dir DIR, or --replay RECORD.json")
    return load_inputs(args.image, args.traj, settings)


def _generate(args) -> int:
    import numpy as np
    import torch

    from .config import SGI2VConfig
    from .models import DEFAULT_MODEL, XT_MODEL, load_pipeline, resolve_device, resolve_dtype
    from .runner import Settings, Timer, file_sha256, generate_frames, output_paths, run_record, write_outputs
    from .trajectory import load_image

    timer = Timer()
    replay = None
    if args.replay:
        if args.image or args.traj or args.reference_dir:
            raise UsageError("--replay takes everything from the record: give no IMAGE, --traj or --reference-dir with it")
        replay = _read_record(args.replay)
        settings = Settings.from_dict(replay["settings"])
        config = SGI2VConfig.from_dict(replay["config"])
        model = args.model or replay["model"]
        device = resolve_device(args.device if args.device != "auto" else replay["device"])
        dtype = resolve_dtype(args.dtype if args.dtype != "auto" else {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}[replay["dtype"]], device)
        offload = args.offload or replay.get("offload", False)
        image_path = replay["inputs"]["image"]
        if not Path(image_path).is_file():
            raise UsageError(f"{args.replay}: its input image {image_path} no longer exists")
        if file_sha256(image_path) != replay["inputs"]["image_sha256"]:
            raise UsageError(f"{args.replay}: its input image {image_path} has changed since the run (SHA-256 differs)")
        image = load_image(image_path).resize((settings.width, settings.height), resample=3)
        boxes = np.asarray(replay["boxes"], dtype=np.float64)
        labels, inputs = replay.get("labels", []), replay["inputs"]
        out = args.output or str(Path(args.replay).with_suffix("")) + ".replay.mp4"
    else:
        if not args.output:
            raise UsageError("give the output video with -o OUT.mp4")
        model = args.model or (XT_MODEL if args.xt else DEFAULT_MODEL)
        settings = _settings_from_args(args, 25 if args.xt else 14)
        config = _config_from_args(args, settings.num_inference_steps)
        device = resolve_device(args.device)
        dtype = resolve_dtype(args.dtype, device)
        offload = args.offload
        image, boxes, labels, inputs = _prepare_inputs(args, settings)
        out = args.output
    paths = output_paths(out, gif=args.gif)
    from .boxes import validate_boxes

    validate_boxes(boxes, settings.num_frames, settings.height, settings.width)

    with timer("load"):
        pipe = load_pipeline(model, device=device, dtype=dtype, num_frames=settings.num_frames, offload=offload)
    pipe.set_progress_bar_config(desc="sgi2v", leave=False, disable=not sys.stderr.isatty() and os.environ.get("SGI2V_PROGRESS") != "1")
    with timer("generate"):
        frames, losses = generate_frames(pipe, image, boxes, config, settings)
    with timer("write"):
        record = run_record(inputs=inputs, model=model, device=device, dtype=dtype, offload=offload, settings=settings,
                            config=config, boxes=boxes, labels=labels, frames=frames, losses=losses,
                            timings={**timer.times, "total": sum(timer.times.values())})
        if replay is not None:
            record["replay_of"] = str(Path(args.replay).resolve())
        write_outputs(paths, frames, image, boxes, record, settings.fps)
    total = sum(timer.times.values())
    print(f"wrote {paths['video']} ({frames.shape[0]} frames, {frames.shape[2]}x{frames.shape[1]}, model {model}, {device}) "
          f"in {total:.1f} s [load {timer.times['load']:.1f} s, generate {timer.times['generate']:.1f} s, write {timer.times['write']:.1f} s]")
    if replay is not None:
        if record["frames_sha256"] != replay["frames_sha256"]:
            print(f"sgi2v: error: replay produced different frames: frames_sha256 {record['frames_sha256']} != recorded "
                  f"{replay['frames_sha256']}", file=sys.stderr)
            return 1
        print(f"replay reproduced frames_sha256 {record['frames_sha256']}")
    return 0


def _read_record(path: str) -> dict:
    try:
        record = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UsageError(f"{path}: run record not found") from None
    except (OSError, ValueError) as err:
        raise UsageError(f"{path}: not a readable run record: {err}") from None
    needed = ("settings", "config", "model", "device", "dtype", "inputs", "boxes", "frames_sha256")
    if not isinstance(record, dict) or any(k not in record for k in needed):
        raise UsageError(f"{path}: not an sgi2v run record (needs {', '.join(needed)})")
    return record


def _demo(args) -> int:
    from .testing import TINY_MODEL_ID

    image, traj = example_files(args.example)
    argv = ["generate", str(image), "--traj", str(traj), "-o", args.output, "--model", TINY_MODEL_ID,
            "--device", args.device, "--height", "128", "--width", "256", "--steps", "10"]
    print(f"demo: example {args.example!r} with the tiny RANDOM-weight model (offline check of the tool; the video is noise)")
    return _run(build_parser().parse_args(argv))


def _examples(args) -> int:
    for name in list_examples():
        image, traj = example_files(name)
        print(f"{name}: {image} {traj}")
    return 0


def _run(args) -> int:
    handler = getattr(args, "handler", None) or {"generate": _generate, "demo": _demo, "examples": _examples}[args.command]
    return handler(args)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="sgi2v: %(message)s")
    _quiet_libraries()
    from .models import ModelError

    try:
        return _run(args)
    except KeyboardInterrupt:
        print("sgi2v: interrupted", file=sys.stderr)
        return 130
    except (UsageError, ValueError, FileNotFoundError) as err:
        print(f"sgi2v: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except (ModelError, OSError, RuntimeError) as err:
        if os.environ.get("SGI2V_DEBUG"):
            raise
        print(f"sgi2v: error: {_one_line(err)}", file=sys.stderr)
        return 1
    except Exception as err:  # a bug: still one line, the traceback on request
        if os.environ.get("SGI2V_DEBUG"):
            raise
        print(f"sgi2v: error: {type(err).__name__}: {_one_line(err)} (set SGI2V_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1


def _one_line(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    if isinstance(err, FileNotFoundError) and err.filename and str(err.filename) not in text:
        text = f"{err.filename}: {text}"
    return " ".join(text.split())


def _quiet_libraries() -> None:
    """Library chatter (torchvision fallbacks, float32 casting notes) is not for the command's user."""
    import warnings

    warnings.filterwarnings("ignore")
    for name in ("transformers", "diffusers"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        import diffusers.utils.logging as dl
        import transformers.utils.logging as tl

        tl.set_verbosity_error()
        dl.set_verbosity_error()
    except Exception:  # pragma: no cover - logging helpers moved
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
