"""One way from a request to a video: inputs -> prepared inputs -> frames and run record -> files.

Every surface (``sgi2v generate``, ``sgi2v batch``, the web app, Python) goes through these functions:

1. :func:`prepare_inputs` (or :func:`prepare_reference`, :func:`prepare_replay`) reads the image and
   the trajectory, fits both to the output size and checks the boxes. No torch: surfaces call it
   before loading the model, so bad input is reported at once.
2. :func:`check_outputs` checks, also before the model loads, that the outputs can be written.
3. :func:`generate` runs the pipeline and returns the frames and the run record.
4. :func:`write_outputs` writes the video, the overlay, the condition picture and the record under
   temporary names and renames them at the end: a failed run leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import platform
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
from PIL import Image

from .boxes import validate_boxes
from .config import SGI2VConfig
from .fitting import Fit
from .formats import TrajectoryOptions, read_any, resolve_trajectory_options, with_timing
from .images import load_image, to_rgb
from .paths import existing_ancestor, probe_write
from .settings import GenerationSettings, available_cores
from .trajectory import parse_trajectory, read_reference_dir, reference_boxes
from .video import draw_condition, draw_overlay, frames_sha256, to_uint8, write_gif, write_mp4

__all__ = [
    "RECORD_VERSION", "PreparedInputs", "Generation", "Progress", "prepare_inputs", "prepare_reference", "read_record", "record_settings",
    "prepare_replay",
    "output_paths", "check_outputs", "check_output_file", "generate", "write_outputs", "file_sha256", "remove_stale_temporaries",
    "write_atomic", "write_text_atomic", "Timer",
]

RECORD_VERSION = 2
#: The files of one run, by kind, as suffixes of the video's stem.
OUTPUT_SUFFIXES = {"video": ".mp4", "overlay": ".overlay.mp4", "condition": ".condition.png", "gif": ".gif", "record": ".json"}


@dataclass(frozen=True)
class PreparedInputs:
    """An image and its boxes, ready for the pipeline: both at the output size.

    ``boxes`` is ``(N, F, 4)`` ``(x0, y0, x1, y1)`` in output pixels; ``inputs`` is the run record's
    ``inputs`` part (where the image and the trajectory came from, and how the image was fitted).
    """

    image: Image.Image
    boxes: np.ndarray
    labels: tuple[str, ...]
    inputs: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Generation:
    """What :func:`generate` returns: uint8 frames ``(F, H, W, 3)`` and the run record."""

    frames: np.ndarray
    record: dict


@dataclass(frozen=True)
class Progress:
    """Where a running generation is, as :func:`generate` reports it.

    ``phase`` is one of :data:`PHASES`: ``encoding`` (the input image, by CLIP and the VAE),
    ``optimising`` (the latent, before denoising step ``step``: AdamW iteration ``iteration`` of
    ``iterations``), ``denoising`` (step ``step`` of ``steps`` has begun) and ``decoding`` (the
    latent to frames). ``step`` counts from 1; it is 0 where it does not apply.
    """

    phase: str
    step: int = 0
    steps: int = 0
    iteration: int = 0
    iterations: int = 0


#: The phases of one pipeline call, in order (``optimising`` and ``denoising`` alternate).
PHASES = ("encoding", "optimising", "denoising", "decoding")


# -- 1. inputs --------------------------------------------------------------------------------------

def _load_image(image) -> tuple[Image.Image, dict]:
    if isinstance(image, Image.Image):
        pixels = to_rgb(image)
        return pixels, {"image": None, "image_sha256": hashlib.sha256(pixels.tobytes()).hexdigest(), "image_size": list(pixels.size)}
    pixels = load_image(image)
    return pixels, {"image": str(Path(image).resolve()), "image_sha256": file_sha256(image), "image_size": list(pixels.size)}


def _fitted(image: Image.Image, boxes: np.ndarray, settings: GenerationSettings, source: str,
            names: list[str] | None = None, camera: dict | None = None) -> tuple[Image.Image, np.ndarray, Fit]:
    fit = Fit.make(settings.image_fit, image.size, (settings.width, settings.height))
    boxes = fit.boxes(boxes)
    if camera is not None and fit.mode != "stretch":
        # The camera moves the picture the video shows: its box is laid out on the visible part of the image
        # (all of the output after a crop, the picture between the bars after a pad), not on the whole source.
        x0, y0, x1, y1 = fit.placed
        shown = parse_trajectory({"camera": camera}, settings.num_frames, (x1 - x0, y1 - y0), source=source).boxes[0]
        boxes[-1] = shown + np.array([x0, y0, x0, y0], dtype=np.float64)
    try:
        boxes = validate_boxes(boxes, settings.num_frames, settings.height, settings.width, names=names)
    except ValueError as err:
        how = "" if fit.mode == "stretch" else f" (image_fit {fit.mode}: the image was fitted into {fit.placed} of the output, " \
              f"from its region {[round(v, 1) for v in fit.crop]})"
        raise ValueError(f"{source}: {err}{how}") from None
    return fit.image(image), boxes, fit


def _box_names(labels) -> list[str]:
    """How messages call the boxes of a parsed trajectory: ``boxes[i]``, and ``camera`` for the camera's (the last)."""
    last = len(labels) - 1
    return ["camera" if label == "camera" and i == last else f"boxes[{i}]" for i, label in enumerate(labels)]


def prepare_inputs(image: str | os.PathLike | Image.Image, trajectory: str | os.PathLike | dict, settings: GenerationSettings,
                   *, source: str | None = None,
                   trajectory_options: TrajectoryOptions | Mapping[str, Any] | None = None) -> PreparedInputs:
    """Read an image and its trajectory and bring both to the output size of ``settings``.

    Args:
        image: an image file (any size and Pillow mode), or an image in memory.
        trajectory: a trajectory file of any format of :mod:`sgi2v.formats` (SplineEditor / ATI JSON,
            Wan-Move tracks, the authors' ``traj.npy``, our JSON), or our decoded JSON object
            (coordinates in the image's pixels).
        settings: the output size, number of frames and ``image_fit``.
        source: the name of an inline trajectory in messages (default ``trajectory``).
        trajectory_options: how a file is read (:class:`sgi2v.formats.TrajectoryOptions`, or its
            ``name -> value`` pairs): format, box size, canvas size, timing. Default: the format from the
            file, the canvas of the image's size, ``time`` timing. The record's ``inputs`` keep the
            converted trajectory and, under ``trajectory_conversion``, how it was converted and resampled.

    Raises ``ValueError`` (or ``FileNotFoundError``) whose message starts with the file or source.
    """
    if not isinstance(trajectory_options, TrajectoryOptions):
        trajectory_options = resolve_trajectory_options(trajectory_options or {}, source=source or "trajectory options")
    pixels, inputs = _load_image(image)
    options = trajectory_options
    if isinstance(trajectory, dict):
        source, trajectory_data = source or "trajectory", trajectory
        if options.timing != "time":
            trajectory_data = with_timing(trajectory_data, options.timing)
    else:
        source = str(trajectory)
        trajectory_data, conversion = read_any(
            trajectory, format=options.traj_format, num_frames=settings.num_frames, image_size=pixels.size,
            box_size=options.box_size, canvas_size=options.canvas_size, timing=options.timing)
        inputs["trajectory_file"] = str(Path(trajectory).resolve())
        inputs["trajectory_conversion"] = conversion
    parsed = parse_trajectory(trajectory_data, settings.num_frames, pixels.size, source=source)
    inputs["trajectory"] = trajectory_data
    camera = trajectory_data.get("camera") if isinstance(trajectory_data, dict) else None
    prepared, boxes, fit = _fitted(pixels, parsed.boxes, settings, source, _box_names(parsed.labels), camera)
    inputs["fit"] = fit.to_dict()
    return PreparedInputs(prepared, boxes, tuple(parsed.labels), inputs)


def prepare_reference(directory: str | os.PathLike, settings: GenerationSettings) -> PreparedInputs:
    """The authors' folder format (``img.png``, ``traj.npy``), converted exactly as their tool does for
    ``image_fit`` ``stretch`` (float32 arithmetic), fitted like any other input otherwise."""
    folder = Path(directory)
    original, raw = read_reference_dir(folder, settings.num_frames)
    source = str(folder / "traj.npy")
    if settings.image_fit == "stretch":  # the authors' float32 conversion, unchanged
        fit = Fit.make("stretch", original.size, (settings.width, settings.height))
        image, boxes = fit.image(original), reference_boxes(raw, original.size, settings.width, settings.height)
        try:
            boxes = validate_boxes(boxes, settings.num_frames, settings.height, settings.width)
        except ValueError as err:
            raise ValueError(f"{source}: {err}") from None
    else:
        file_boxes = reference_boxes(raw, original.size, *original.size)  # in the file's pixels
        image, boxes, fit = _fitted(original, file_boxes, settings, source)
    folder = folder.resolve()
    inputs = {"reference_dir": str(folder), "image": str(folder / "img.png"), "image_sha256": file_sha256(folder / "img.png"),
              "image_size": list(fit.source), "traj_npy_sha256": file_sha256(folder / "traj.npy"), "fit": fit.to_dict()}
    return PreparedInputs(image, boxes, tuple(f"box {i}" for i in range(len(boxes))), inputs)


def read_record(path: str | os.PathLike) -> dict:
    """A run record, checked for the parts a replay needs."""
    path = Path(path)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: run record not found") from None
    except (OSError, ValueError, RecursionError) as err:
        raise ValueError(f"{path}: not a readable run record: {' '.join(str(err).split()) or type(err).__name__}") from None
    needed = ("settings", "config", "model", "inputs", "boxes", "frames_sha256")
    if not isinstance(record, dict) or any(k not in record for k in needed):
        raise ValueError(f"{path}: not an sgi2v run record (needs {', '.join(needed)})")
    return record


def record_settings(record: dict) -> dict:
    """The flat settings of a record (both layouts: version 1 kept device, dtype, offload outside ``settings``)."""
    values = dict(record["settings"])
    if record.get("sgi2v_record", 1) < 2:
        values.update({k: record[k] for k in ("device", "dtype", "offload") if k in record})
    return {**values, **record["config"]}


def prepare_replay(record: dict, source: str, settings: GenerationSettings) -> PreparedInputs:
    """The inputs of a recorded run: its image (unchanged since, by SHA-256), fitted as recorded, and its boxes."""
    inputs = record["inputs"]
    image_path = inputs.get("image")
    if not image_path or not Path(image_path).is_file():
        raise ValueError(f"{source}: its input image {image_path} no longer exists")
    if file_sha256(image_path) != inputs.get("image_sha256"):
        raise ValueError(f"{source}: its input image {image_path} has changed since the run (SHA-256 differs)")
    original = load_image(image_path)
    boxes = np.asarray(record["boxes"], dtype=np.float64)
    try:
        boxes = validate_boxes(boxes, settings.num_frames, settings.height, settings.width)
    except ValueError as err:
        raise ValueError(f"{source}: boxes: {err}") from None
    fit = Fit.make(settings.image_fit, original.size, (settings.width, settings.height))
    return PreparedInputs(fit.image(original), boxes, tuple(record.get("labels", [])), inputs)


# -- 2. outputs -------------------------------------------------------------------------------------

def output_paths(out: str | os.PathLike, gif: bool = False) -> dict[str, Path]:
    """Where the files of a run whose video is ``out`` (``.mp4``) go, by kind."""
    out = Path(out)
    if out.suffix.lower() != ".mp4":
        raise ValueError(f"{out}: the output video must end in .mp4")
    stem = str(out)[: -len(out.suffix)]
    return {kind: Path(stem + suffix) for kind, suffix in OUTPUT_SUFFIXES.items() if gif or kind != "gif"}


def _full_set(paths: dict[str, Path]) -> list[Path]:
    """Every file a run with this video could have written (the GIF too), for overwriting and cleaning."""
    return list(output_paths(paths["video"], gif=True).values())


def check_outputs(paths: dict[str, Path], overwrite: bool = False) -> None:
    """Before any heavy work: the outputs can be written, and do not exist unless ``overwrite``.

    Raises ``ValueError`` naming the path: a folder where a file goes, an existing output (without
    ``overwrite``), a parent that is not a folder, or a folder where nothing can be written.
    """
    files = _full_set(paths)
    _check_writable(files, overwrite, f"the whole set of outputs ({', '.join(p.name for p in files)})")


def check_output_file(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """:func:`check_outputs` for a command that writes one ``.mp4`` file (``sgi2v preview``); returns its path."""
    path = output_paths(path)["video"]
    _check_writable([path], overwrite, "it")
    return path


def _check_writable(files: list[Path], overwrite: bool, replaced: str) -> None:
    for path in files:
        if path.is_dir():
            raise ValueError(f"{path}: is a folder; give the output video as a file name ending in .mp4")
        if path.exists() and not overwrite:
            raise ValueError(f"{path}: exists; pass --overwrite to replace {replaced}")
    parent = files[0].parent
    existing = existing_ancestor(parent)
    if not existing.is_dir():
        raise ValueError(f"{parent}: cannot hold the outputs: {existing} is not a folder")
    try:
        probe_write(existing)
    except OSError as err:
        raise ValueError(f"{parent}: cannot write the outputs there ({err.strerror or err})") from None


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(temporary)`` and rename the temporary file to ``path``: readers see the old file or the
    whole new one, and a failed write leaves nothing behind."""
    temporary = _temporary(path)
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str) -> None:
    """Write a text file under a temporary name and rename it: readers see the old file or the whole new one."""
    write_atomic(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))


def remove_stale_temporaries(paths: dict[str, Path]) -> list[Path]:
    """Remove temporary files of these outputs left by a run that was killed while writing
    (those of processes that no longer exist). Returns what was removed."""
    removed = []
    for path in _full_set(paths):
        folder = path.parent
        if not folder.is_dir():
            continue
        pattern = re.compile(re.escape(f".{path.name}.tmp") + r"(\d+)")
        for candidate in folder.iterdir():
            match = pattern.fullmatch(candidate.name)
            if match and not _alive(int(match.group(1))):
                candidate.unlink(missing_ok=True)
                removed.append(candidate)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def write_outputs(paths: dict[str, Path], generation: Generation, prepared: PreparedInputs, fps: float,
                  overwrite: bool = False) -> None:
    """Write every output under a temporary name, then rename them all (the record last: it marks completion, and
    holds the video file's SHA-256 as ``video_sha256``).

    On failure the temporaries are removed and nothing else changes. With ``overwrite``, files of an
    earlier run with the same name that this run does not write (an old GIF) are removed at the end.
    """
    remove_stale_temporaries(paths)
    temporary = {kind: _temporary(path) for kind, path in paths.items()}
    frames = generation.frames
    record = dict(generation.record, outputs={k: p.name for k, p in paths.items() if k != "record"})
    writers = {
        "video": lambda: write_mp4(temporary["video"], frames, fps),
        "overlay": lambda: write_mp4(temporary["overlay"], draw_overlay(frames, prepared.boxes), fps),
        "condition": lambda: draw_condition(prepared.image, prepared.boxes).save(temporary["condition"], format="PNG"),
        "gif": lambda: write_gif(temporary["gif"], frames, fps),
        "record": lambda: temporary["record"].write_text(
            json.dumps(dict(record, video_sha256=file_sha256(temporary["video"])), indent=2) + "\n", encoding="utf-8"),
    }
    kind = "video"
    try:
        paths["video"].parent.mkdir(parents=True, exist_ok=True)
        for kind in OUTPUT_SUFFIXES:
            if kind in paths:
                writers[kind]()
        for kind in OUTPUT_SUFFIXES:
            if kind in paths:
                os.replace(temporary[kind], paths[kind])
    except OSError as err:  # the disk is full, the folder went away...: name the output, not its temporary
        raise OSError(err.errno, f"{paths[kind]}: cannot write it: {err.strerror or err}") from None
    finally:
        for tmp in temporary.values():
            tmp.unlink(missing_ok=True)
    if overwrite:
        written = set(paths.values())
        for path in _full_set(paths):
            if path not in written:
                path.unlink(missing_ok=True)


# -- 3. generation ----------------------------------------------------------------------------------

def generate(prepared: PreparedInputs, settings: GenerationSettings, config: SGI2VConfig, pipe, *, model: str,
             callback_on_step_end: Callable | None = None, extra: dict | None = None,
             progress: Callable[[Progress], None] | None = None) -> Generation:
    """Run the pipeline on prepared inputs; returns the uint8 frames ``(F, H, W, 3)`` and the run record.

    The seed drives a CPU generator, so the same seed gives the same initial noise on every device.
    torch uses ``settings.threads`` CPU threads during the call (default: every core this process
    may use), which the frames depend on when running on the CPU; the record holds the number. ``extra`` is merged
    into the record (e.g. the batch's part). ``progress`` is called with a :class:`Progress` as each
    phase, optimisation iteration and denoising step begins; it only observes (the frames are the same
    bit for bit with or without it).
    """
    import torch

    timer = Timer()
    threads = settings.threads or available_cores()
    device = getattr(pipe, "_execution_device", None) or pipe.device
    used = settings.replace(device=str(device), dtype=str(pipe.unet.dtype).replace("torch.", ""), threads=threads)
    generator = torch.Generator("cpu").manual_seed(settings.seed)
    if settings.compile:
        pipe.compile_unet()
    watching = _phases(pipe, settings.num_inference_steps, config.iterations, progress) if progress else contextlib.nullcontext()
    with timer("generate"), _torch_threads(threads), watching:
        out = pipe(
            prepared.image, prepared.boxes, config=config, height=settings.height, width=settings.width,
            num_frames=settings.num_frames, num_inference_steps=settings.num_inference_steps,
            min_guidance_scale=settings.min_guidance_scale, max_guidance_scale=settings.max_guidance_scale, fps=settings.fps,
            motion_bucket_id=settings.motion_bucket_id, noise_aug_strength=settings.noise_aug_strength,
            decode_chunk_size=settings.decode_chunk_size, generator=generator, output_type="np",
            gradient_checkpointing=settings.checkpointing, callback_on_step_end=callback_on_step_end,
        )
    frames = to_uint8(out.frames[0])
    record = {
        "sgi2v_record": RECORD_VERSION,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "inputs": prepared.inputs,
        "model": model,
        "model_sha256": _model_sha256(model),
        "settings": used.to_dict(),
        "config": config.to_dict(),
        "labels": list(prepared.labels),
        "boxes": np.asarray(prepared.boxes, dtype=np.float64).tolist(),
        "frames_shape": list(frames.shape),
        "frames_sha256": frames_sha256(frames),
        "losses": {str(t): v for t, v in out.losses.items()},
        "timings": {k: round(v, 3) for k, v in timer.times.items()},
        "versions": versions(),
        **(extra or {}),
    }
    return Generation(frames, record)


@contextlib.contextmanager
def _phases(pipe, steps: int, iterations: int, report: Callable[[Progress], None]):
    """Report the phases of one pipeline call from forward pre-hooks on its UNet and VAE decoder, removed afterwards.

    The UNet runs once per denoising step without gradients and once per optimisation iteration with
    them (the latent is optimised before the step it belongs to); the decoder runs only at the end.
    The hooks read nothing and change nothing.
    """
    import torch

    done = {"steps": 0, "iteration": 0, "decoding": False}

    def on_unet(module, args):
        if torch.is_grad_enabled():
            done["iteration"] += 1
            report(Progress("optimising", done["steps"] + 1, steps, done["iteration"], iterations))
        else:
            done["steps"] += 1
            done["iteration"] = 0
            report(Progress("denoising", done["steps"], steps))

    def on_decoder(module, args):
        if not done["decoding"]:
            done["decoding"] = True
            report(Progress("decoding", steps, steps))

    report(Progress("encoding", 0, steps))
    handles = [pipe.unet.register_forward_pre_hook(on_unet), pipe.vae.decoder.register_forward_pre_hook(on_decoder)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextlib.contextmanager
def _torch_threads(threads: int):
    """torch's intra-op thread count set for the block; the caller's process is left as it was."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _model_sha256(model: str) -> str | None:
    from .loading import model_sha256

    return model_sha256(model)


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, hex (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def versions() -> dict[str, Any]:
    import diffusers
    import PIL
    import torch
    import transformers

    from . import __version__

    return {
        "sgi2v": __version__, "python": platform.python_version(), "torch": torch.__version__,
        "diffusers": diffusers.__version__, "transformers": transformers.__version__,
        "numpy": np.__version__, "pillow": PIL.__version__, "platform": platform.platform(),
    }


class Timer:
    """Wall-clock seconds of named phases."""

    def __init__(self):
        self.times: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.times[name] = self.times.get(name, 0.0) + time.perf_counter() - start

    @property
    def total(self) -> float:
        return sum(self.times.values())
