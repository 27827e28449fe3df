"""The Gradio app of ``sgi2v ui``: the page, its event handlers, the pipeline cache and one generation.

The generation itself (:func:`generate_video`) is plain Python on :mod:`sgi2v.runner`, so the files
it writes are those of ``sgi2v generate``: ``NAME.mp4``, ``NAME.overlay.mp4``, ``NAME.condition.png``
and the run record ``NAME.json``, plus the trajectory ``NAME.trajectory.json`` (documented format, in
pixels of ``NAME.input.png``, the prepared input), so that
``sgi2v generate NAME.input.png --traj NAME.trajectory.json`` redoes the run from the command line.
"""

import argparse
import contextlib
import dataclasses
import functools
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image

from ..config import SGI2VConfig
from ..models import DEFAULT_MODEL, XT_MODEL, load_pipeline, resolve_device, resolve_dtype
from ..runner import Settings, Timer, file_sha256, generate_frames, output_paths, run_record, write_outputs
from ..testing import TINY_MODEL_ID
from ..trajectory import DEFAULT_PAN_AMOUNT, TrajectoryError, load_image, load_reference_dir
from .state import PAN_CHOICES, Drawing, Fit, display_scale, fit_image, render

__all__ = ["PipelineCache", "Session", "UIError", "generate_video", "build_app", "launch"]

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
TRAJECTORY_SUFFIXES = (".json", ".npy", *IMAGE_SUFFIXES)
MAX_TRAJECTORY_BYTES = 5 << 20


class UIError(ValueError):
    """A problem the page's user can fix; its message is shown in the page."""


class PipelineCache:
    """Loaded pipelines by (model, device, dtype, offload); keeps the ``capacity`` most recently used.

    A capacity of 1 (the default) frees a model's memory before another one is loaded: two SVD
    pipelines rarely fit on one GPU at once.
    """

    def __init__(self, loader: Callable[..., Any] = load_pipeline, capacity: int = 1):
        self.loader = loader
        self.capacity = capacity
        self.loads = 0
        self._pipes: dict[tuple, Any] = {}
        self._lock = threading.Lock()

    def get(self, model: str, device: torch.device, dtype: torch.dtype, num_frames: int, offload: bool = False):
        """The pipeline for these settings, loading it the first time."""
        key = (model, str(device), str(dtype), bool(offload))
        with self._lock:
            if key in self._pipes:
                self._pipes[key] = self._pipes.pop(key)  # most recently used last
                return self._pipes[key]
            while self._pipes and len(self._pipes) >= self.capacity:
                old = next(iter(self._pipes))
                logger.info("unloading %s", old[0])
                del self._pipes[old]
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
            logger.info("loading %s on %s (%s)%s", model, device, str(dtype).replace("torch.", ""), ", CPU offload" if offload else "")
            pipe = self.loader(model, device=device, dtype=dtype, num_frames=num_frames, offload=offload)
            self.loads += 1
            self._pipes[key] = pipe
            return pipe


@dataclass
class Session:
    """One browser session: the uploaded image, its prepared form and the drawing on it."""

    original: Image.Image | None = None
    prepared: Image.Image | None = None
    fit: Fit | None = None
    drawing: Drawing = field(default_factory=Drawing)
    runs: int = 0

    def set_image(self, image: Image.Image, width: int, height: int) -> None:
        """A new upload: prepare it for the output size; the drawing starts empty."""
        self.original = image.convert("RGB")
        self.prepared, self.fit = fit_image(self.original, width, height)
        self.drawing = Drawing(width=int(width), height=int(height))

    def resize(self, width: int, height: int) -> None:
        """Another output size: prepare the image again and move the drawing with it."""
        if self.original is None:
            self.drawing.width, self.drawing.height = int(width), int(height)
            return
        prepared, fit = fit_image(self.original, width, height)
        self.drawing.refit(self.fit, fit)
        self.prepared, self.fit = prepared, fit


@dataclass(frozen=True)
class AppConfig:
    """What the server decides, not the page: the models on offer, device, dtype, where files go."""

    models: tuple[str, ...]
    device: torch.device
    dtype: torch.dtype
    root: Path  # per-session folders are made under it

    def session_dir(self, session_hash: str | None) -> Path:
        name = "".join(c for c in (session_hash or "local") if c.isalnum() or c in "-_")[:64] or "local"
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        return path


# -- settings ---------------------------------------------------------------------------------------

def _int(value, name: str) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise UIError(f"{name}: expected a whole number, got {value!r}") from None
    if not number.is_integer():
        raise UIError(f"{name}: expected a whole number, got {value!r}")
    return int(number)


def _float(value, name: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise UIError(f"{name}: expected a number, got {value!r}") from None


def settings_and_config(values: dict) -> tuple[Settings, SGI2VConfig]:
    """The page's settings -> validated :class:`Settings` and :class:`SGI2VConfig` (as ``sgi2v generate`` builds them)."""
    from ..cli import UsageError, _config_from_args, _settings_from_args, _timesteps

    timesteps = str(values.get("optimize_timesteps") or "").strip()
    try:
        parsed_timesteps = _timesteps(timesteps) if timesteps else None
    except argparse.ArgumentTypeError as err:
        raise UIError(f"optimise at timesteps: {err}") from None
    args = argparse.Namespace(
        height=_int(values["height"], "height"), width=_int(values["width"], "width"), frames=_int(values["frames"], "frames"),
        steps=_int(values["steps"], "steps"), seed=_int(values["seed"], "seed"), fps=_int(values["fps"], "fps"),
        motion_bucket_id=_int(values["motion_bucket_id"], "motion bucket id"),
        noise_aug_strength=_float(values["noise_aug_strength"], "noise augmentation"),
        min_guidance_scale=_float(values["min_guidance_scale"], "min guidance scale"),
        max_guidance_scale=_float(values["max_guidance_scale"], "max guidance scale"),
        decode_chunk_size=_int(values["decode_chunk_size"], "decode chunk size"),
        gradient_checkpointing=bool(values.get("gradient_checkpointing")),
        optimize_timesteps=parsed_timesteps, iterations=_int(values["iterations"], "iterations"),
        lr=_float(values["learning_rate"], "learning rate"), feature_layers=str(values.get("feature_layers") or "") or None,
        heatmap_sigma=_float(values["heatmap_sigma"], "heatmap sigma"), cutoff=_float(values["low_pass_cutoff"], "low-pass cutoff"),
        butterworth_order=_int(values["butterworth_order"], "Butterworth order"),
        no_hf_reinit=not values.get("high_frequency_reinit", True),
    )
    try:
        settings = _settings_from_args(args, args.frames)
        config = _config_from_args(args, settings.num_inference_steps)
    except (UsageError, ValueError) as err:
        raise UIError(str(err).replace("--", "")) from None
    return settings, config


# -- one generation ---------------------------------------------------------------------------------

def generate_video(session: Session, values: dict, app: AppConfig, cache: PipelineCache, out_dir: Path,
                   progress: Callable[[int, int, str], None] | None = None) -> dict[str, Path]:
    """Generate the video of the session's drawing and write the same files as ``sgi2v generate``.

    Args:
        session: the uploaded image and the drawing.
        values: the page's settings by name (``model``, ``frames``, ``width``, ... see :func:`build_app`).
        app: models on offer, device, dtype.
        cache: where pipelines are kept between runs.
        out_dir: the session's own folder; each run gets a new ``run-NNN`` folder in it.
        progress: called with (done, total, description) as the denoising advances.

    Returns:
        Paths by kind: ``video``, ``overlay``, ``condition``, ``record``, ``trajectory``, ``input``.
    """
    from ..boxes import validate_boxes

    timer = Timer()
    report = progress or (lambda done, total, desc: None)
    if session.prepared is None:
        raise UIError("Upload an image first.")
    drawing = session.drawing
    if not drawing.boxes and not drawing.camera:
        raise UIError("Draw at least one box (two clicks on the image), or choose a camera motion.")
    model = values.get("model")
    if model not in app.models:
        raise UIError(f"unknown model {model!r}: choose one of {', '.join(app.models)}")
    settings, config = settings_and_config(values)
    if (settings.width, settings.height) != session.prepared.size:
        raise UIError(f"the image is prepared at {session.prepared.size[0]}x{session.prepared.size[1]} but the size is "
                      f"{settings.width}x{settings.height}: set the size again")
    try:
        trajectory = drawing.trajectory(settings.num_frames)
    except TrajectoryError as err:
        raise UIError(str(err)) from None
    boxes = validate_boxes(trajectory.boxes, settings.num_frames, settings.height, settings.width)
    offload = bool(values.get("offload"))

    trajectory_json = drawing.to_json()

    report(0, settings.num_inference_steps, f"loading {model}")
    with timer("load"):
        pipe = cache.get(model, app.device, app.dtype, settings.num_frames, offload)

    def on_step_end(pipeline, step: int, timestep, tensors: dict) -> dict:
        report(step + 1, settings.num_inference_steps, "denoising")
        return {}

    with timer("generate"):
        frames, losses = generate_frames(functools.partial(pipe, callback_on_step_end=on_step_end), session.prepared,
                                         boxes, config, settings)
    report(settings.num_inference_steps, settings.num_inference_steps, "writing the videos")
    number = session.runs + 1
    run_dir = Path(out_dir) / f"run-{number:03d}"
    stem = f"sgi2v-{number:03d}"
    paths = output_paths(run_dir / f"{stem}.mp4")
    input_path, trajectory_path = run_dir / f"{stem}.input.png", run_dir / f"{stem}.trajectory.json"
    try:
        with timer("write"):
            run_dir.mkdir(parents=True, exist_ok=True)
            session.prepared.save(input_path, format="PNG")
            trajectory_path.write_text(json.dumps(trajectory_json, indent=2) + "\n")
            inputs = {"image": str(input_path.resolve()), "image_sha256": file_sha256(input_path), "image_size": list(session.prepared.size),
                      "trajectory_file": str(trajectory_path.resolve()), "trajectory": trajectory_json,
                      "uploaded_image_size": list(session.original.size), "crop": [round(v, 3) for v in session.fit.crop]}
            record = run_record(inputs=inputs, model=model, device=app.device, dtype=app.dtype, offload=offload, settings=settings,
                                config=config, boxes=boxes, labels=list(trajectory.labels), frames=frames, losses=losses,
                                timings={**timer.times, "total": sum(timer.times.values())})
            write_outputs(paths, frames, session.prepared, boxes, record, settings.fps)
    except BaseException:
        shutil.rmtree(run_dir, ignore_errors=True)  # a failed run leaves nothing behind
        raise
    session.runs = number
    logger.info("wrote %s in %.1f s", paths["video"], sum(timer.times.values()))
    return {**paths, "trajectory": trajectory_path, "input": input_path}


# -- loading files ----------------------------------------------------------------------------------

def load_files(session: Session, files: list[str], frames: int, width: int, height: int, scratch: Path) -> tuple[str, int]:
    """Load a trajectory JSON, or a reference folder's ``img.png`` and ``traj.npy`` (both given), into the session.

    ``files`` are paths of uploads the server received. A trajectory JSON's coordinates are in the
    uploaded image's pixels, so the image comes first; a ``.npy`` brings its image along. Returns a
    message for the page and the number of frames to use.
    """
    files = [Path(f) for f in files or []]
    by_suffix: dict[str, list[Path]] = {}
    for f in files:
        if f.suffix.lower() not in TRAJECTORY_SUFFIXES:
            raise UIError(f"{f.name}: not a trajectory file (give a .json, or img.png and traj.npy)")
        by_suffix.setdefault(".png" if f.suffix.lower() in IMAGE_SUFFIXES else f.suffix.lower(), []).append(f)
    if ".npy" in by_suffix:
        if len(by_suffix[".npy"]) != 1 or len(by_suffix.get(".png", [])) != 1 or ".json" in by_suffix:
            raise UIError("for the reference format give exactly two files: img.png and traj.npy")
        folder = Path(tempfile.mkdtemp(prefix="reference-", dir=scratch))
        try:
            shutil.copyfile(by_suffix[".png"][0], folder / "img.png")
            shutil.copyfile(by_suffix[".npy"][0], folder / "traj.npy")
            try:
                shape = np.load(folder / "traj.npy", mmap_mode="r", allow_pickle=False).shape
            except (ValueError, OSError) as err:
                raise UIError(f"{by_suffix['.npy'][0].name}: not a readable .npy array: {err}") from None
            if len(shape) != 3 or shape[1] < 3:
                raise UIError(f"{by_suffix['.npy'][0].name}: expected an array of shape (N, 2 + F, 2), got {shape}")
            num_frames = shape[1] - 2
            original = load_image(folder / "img.png")
            _, boxes = load_reference_dir(folder, original.size[0], original.size[1], num_frames)
        except (TrajectoryError, ValueError, FileNotFoundError) as err:
            raise UIError(str(err).replace(str(folder) + os.sep, "")) from None
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        session.set_image(original, width, height)
        session.drawing = Drawing.from_boxes(boxes, session.fit)
        return f"Loaded {len(boxes)} boxes over {num_frames} frames with their image.", num_frames
    if len(by_suffix.get(".json", [])) != 1 or len(files) != 1:
        raise UIError("give one trajectory .json, or the two files img.png and traj.npy of the reference format")
    if session.original is None:
        raise UIError("Upload the image first: a trajectory file's coordinates are in its pixels.")
    path = by_suffix[".json"][0]
    if path.stat().st_size > MAX_TRAJECTORY_BYTES:
        raise UIError(f"{path.name}: too large for a trajectory file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise UIError(f"{path.name}: not valid JSON: {err}") from None
    if isinstance(data, dict) and isinstance(data.get("num_frames"), int) and data["num_frames"] >= 2:
        frames = data["num_frames"]
    try:
        drawing = Drawing.from_json(data, frames, session.fit, session.original.size, source=path.name)
    except TrajectoryError as err:
        raise UIError(str(err)) from None
    session.drawing = drawing
    camera = f" and a camera motion" if drawing.camera else ""
    return f"Loaded {len(drawing.boxes)} boxes{camera} from {path.name}.", frames


# -- the page ---------------------------------------------------------------------------------------

CSS = """
#canvas img { cursor: crosshair; }
#run-status.error, #status.error { color: #c62828; }
"""

HELP = """**Draw:** click two opposite corners of a box, then click the points its centre should go through
(first point at frame 0: the box's centre; the last at the last frame). **New box** starts another one.
Each box has its own colour and number. A *static* box keeps its content still (an anchor)."""


def _default(cls, name: str):
    return next(f.default for f in dataclasses.fields(cls) if f.name == name)


def build_app(model: str | None = None, device: torch.device | str | None = None, dtype: torch.dtype | str | None = None,
              cache: PipelineCache | None = None, root: str | os.PathLike | None = None):
    """The Gradio Blocks app.

    Args:
        model: the model selected at start (hub id, local folder or ``tiny-random``); offered beside
            the SVD and SVD-XT hub ids and ``tiny-random``. The page can choose only among these.
        device, dtype: where and in what precision to run (``auto`` by default, as the command line).
        cache: pipeline cache shared by all sessions (a new one by default).
        root: folder for the sessions' outputs (a new temporary folder by default).

    Returns:
        The ``gradio.Blocks``; its ``sgi2v`` attribute holds the :class:`AppConfig` and its
        ``sgi2v_cache`` the :class:`PipelineCache`.
    """
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr

    device = resolve_device(device) if isinstance(device, str) or device is None else torch.device(device)
    if dtype is None or isinstance(dtype, str):
        dtype = resolve_dtype(dtype or "auto", device)
    models = tuple(dict.fromkeys([m for m in (model, DEFAULT_MODEL, XT_MODEL, TINY_MODEL_ID) if m]))
    start_model = model or DEFAULT_MODEL
    root = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="sgi2v-ui-"))
    root.mkdir(parents=True, exist_ok=True)
    app = AppConfig(models=models, device=device, dtype=dtype, root=root.resolve())
    cache = cache or PipelineCache()
    default_config = SGI2VConfig()

    def view(session: Session, frames, message: str | None, error: bool = False):
        """Outputs shared by every editing event: state, canvas, box picker, static box, status (kept when ``message`` is None)."""
        drawing = session.drawing
        try:
            num_frames = max(2, int(frames))
        except (TypeError, ValueError):
            num_frames = _default(Settings, "num_frames")
        canvas = render(session.prepared, drawing, num_frames, display_scale(session.prepared.size)) if session.prepared is not None else None
        selected = drawing.selected
        static = drawing.boxes[selected].static if selected is not None else False
        text = f"**Error:** {message}" if error else message
        status_update = gr.update() if message is None else gr.update(value=text, elem_classes=["error"] if error else [])
        return session, canvas, gr.update(choices=drawing.choices(), value=selected), gr.update(value=static), status_update

    def edit(action: Callable[[Session], str | None]):
        def handler(session: Session, frames):
            try:
                message = action(session)
            except (UIError, ValueError) as err:
                return view(session, frames, str(err), error=True)
            return view(session, frames, message)

        return handler

    with gr.Blocks(title="SG-I2V: draw the motion", analytics_enabled=False, delete_cache=(3600, 24 * 3600)) as demo:
        state = gr.State(Session())
        gr.Markdown("## SG-I2V: image to video along drawn paths\n" + HELP)
        with gr.Row():
            with gr.Column(scale=3):
                canvas = gr.Image(label="Click on the image to draw", type="pil", format="png", interactive=False,
                                  buttons=[], elem_id="canvas", height=480)
                status = gr.Markdown("Upload an image to start.", elem_id="status")
                with gr.Row():
                    new_box = gr.Button("New box", elem_id="new-box", size="sm")
                    undo = gr.Button("Undo last point", elem_id="undo", size="sm")
                    delete = gr.Button("Delete box", elem_id="delete-box", size="sm")
                    clear = gr.Button("Clear all", elem_id="clear", size="sm", variant="stop")
                with gr.Row():
                    box_pick = gr.Dropdown(label="Selected box (clicks extend its path)", choices=[], value=None,
                                           type="value", elem_id="box-pick", interactive=True)
                    static = gr.Checkbox(label="Static: its content stays still", value=False, elem_id="static")
                with gr.Row():
                    pan = gr.Radio(PAN_CHOICES, value="none", label="Camera pan (the scene moves the other way)", elem_id="pan")
                    pan_amount = gr.Slider(0.05, 0.75, value=DEFAULT_PAN_AMOUNT, step=0.05, label="Pan amount (fraction of the image)")
                    zoom = gr.Slider(0.5, 2.0, value=1.0, step=0.05, label="Camera zoom by the last frame (>1 in, <1 out)")
            with gr.Column(scale=2):
                upload = gr.Image(label="Image (cropped to the output's aspect and resized)", type="pil", sources=["upload", "clipboard"],
                                  elem_id="upload", height=220)
                traj_files = gr.File(label="Load a trajectory .json, or img.png + traj.npy", file_count="multiple",
                                     file_types=list(TRAJECTORY_SUFFIXES), elem_id="traj-files", height=120)
                with gr.Group():
                    model_box = gr.Dropdown(list(models), value=start_model, label="Model", elem_id="model")
                    with gr.Row():
                        width = gr.Number(_default(Settings, "width"), label="Width", precision=0, minimum=64, step=64, elem_id="width")
                        height = gr.Number(_default(Settings, "height"), label="Height", precision=0, minimum=64, step=64, elem_id="height")
                    with gr.Row():
                        frames = gr.Number(25 if start_model == XT_MODEL else _default(Settings, "num_frames"), label="Frames (14: SVD, 25: SVD-XT)",
                                           precision=0, minimum=2, maximum=64, elem_id="frames")
                        steps = gr.Number(_default(Settings, "num_inference_steps"), label="Steps", precision=0, minimum=1, elem_id="steps")
                        seed = gr.Number(_default(Settings, "seed"), label="Seed", precision=0, minimum=0, elem_id="seed")
                    with gr.Row():
                        offload = gr.Checkbox(False, label="Model CPU offload (less GPU memory)", elem_id="offload")
                        checkpointing = gr.Checkbox(False, label="Gradient checkpointing")
                with gr.Accordion("SG-I2V method (defaults: the paper's)", open=False):
                    timesteps = gr.Textbox("", label="Optimise at timesteps", placeholder="empty: 30-45 of 50 steps, rescaled to the steps",
                                           elem_id="timesteps")
                    iterations = gr.Number(default_config.iterations, label="Iterations per step (0: plain SVD)", precision=0, minimum=0,
                                           elem_id="iterations")
                    lr = gr.Number(default_config.learning_rate, label="Learning rate")
                    layers = gr.Textbox(",".join(default_config.feature_layers), label="Feature layers", elem_id="layers")
                    sigma = gr.Number(default_config.heatmap_sigma, label="Heatmap sigma")
                    hf_reinit = gr.Checkbox(default_config.high_frequency_reinit, label="High-frequency re-initialisation")
                    cutoff = gr.Number(default_config.low_pass_cutoff, label="Low-pass cutoff")
                    order = gr.Number(default_config.butterworth_order, label="Butterworth order", precision=0, minimum=1)
                with gr.Accordion("Stable Video Diffusion", open=False):
                    fps = gr.Number(_default(Settings, "fps"), label="Frames per second", precision=0, minimum=1)
                    bucket = gr.Number(_default(Settings, "motion_bucket_id"), label="Motion bucket id", precision=0)
                    noise_aug = gr.Number(_default(Settings, "noise_aug_strength"), label="Noise augmentation")
                    min_cfg = gr.Number(_default(Settings, "min_guidance_scale"), label="Min guidance scale")
                    max_cfg = gr.Number(_default(Settings, "max_guidance_scale"), label="Max guidance scale")
                    chunk = gr.Number(_default(Settings, "decode_chunk_size"), label="Decode chunk size", precision=0, minimum=1)
                gr.Markdown(f"Device: `{device}`, dtype: `{str(dtype).replace('torch.', '')}` (set when the server starts).")
        generate = gr.Button("Generate", variant="primary", elem_id="generate")
        run_status = gr.Markdown("", elem_id="run-status")
        with gr.Row():
            video = gr.Video(label="Video", elem_id="video", interactive=False, autoplay=True, loop=True)
            overlay = gr.Video(label="Video with the target boxes", elem_id="overlay", interactive=False, autoplay=True, loop=True)
        downloads = gr.File(label="Downloads: trajectory JSON, run record, prepared input", file_count="multiple",
                            interactive=False, elem_id="downloads")

        view_outputs = [state, canvas, box_pick, static, status]
        light = dict(concurrency_limit=None, show_progress="hidden")

        def on_upload(session: Session, image, frames, w, h):
            if image is None:
                return view(Session(), frames, "Upload an image to start.")
            try:
                session.set_image(image, _size(w, "width"), _size(h, "height"))
            except UIError as err:
                return view(session, frames, str(err), error=True)
            return view(session, frames, f"Image prepared at {session.prepared.size[0]}x{session.prepared.size[1]}: "
                                         "click two opposite corners of a box.")

        upload.upload(on_upload, [state, upload, frames, width, height], view_outputs, **light)
        upload.clear(on_upload, [state, upload, frames, width, height], view_outputs, **light)

        def on_size(session: Session, frames, w, h):
            try:
                size = (_size(w, "width"), _size(h, "height"))
            except UIError as err:
                return view(session, frames, str(err), error=True)
            if session.prepared is not None and session.prepared.size == size:
                return view(session, frames, None)
            session.resize(*size)
            return view(session, frames, f"Output size {size[0]}x{size[1]}; the boxes moved with the image.")

        for box in (width, height):
            box.change(on_size, [state, frames, width, height], view_outputs, **light)
        frames.change(edit(lambda s: None), [state, frames], view_outputs, **light)

        def on_click(session: Session, frames, evt: gr.SelectData):
            if session.prepared is None:
                return view(session, frames, "Upload an image first.", error=True)
            scale = display_scale(session.prepared.size)  # the page shows small images enlarged
            x, y = evt.index
            return view(session, frames, session.drawing.click(x / scale, y / scale))

        canvas.select(on_click, [state, frames], view_outputs, **light)
        new_box.click(edit(lambda s: s.drawing.new_box()), [state, frames], view_outputs, **light)
        undo.click(edit(lambda s: s.drawing.undo()), [state, frames], view_outputs, **light)
        delete.click(edit(lambda s: s.drawing.delete()), [state, frames], view_outputs, **light)
        clear.click(lambda s, f: (*view(_cleared(s), f, "Cleared: click two opposite corners to draw a box."), "none", 1.0),
                    [state, frames], [*view_outputs, pan, zoom], **light)

        def on_pick(session: Session, frames, index):
            return view(session, frames, session.drawing.select(None if index is None else int(index)))

        box_pick.input(on_pick, [state, frames, box_pick], view_outputs, **light)

        def on_static(session: Session, frames, value):
            return view(session, frames, session.drawing.set_static(bool(value)))

        static.input(on_static, [state, frames, static], view_outputs, **light)

        def on_camera(session: Session, frames, direction, amount, factor):
            try:
                return view(session, frames, session.drawing.set_camera(direction, amount, factor))
            except ValueError as err:
                return view(session, frames, str(err), error=True)

        for control in (pan, pan_amount, zoom):
            control.input(on_camera, [state, frames, pan, pan_amount, zoom], view_outputs, **light)

        def on_model(name, current):
            return 25 if name == XT_MODEL else 14 if name == DEFAULT_MODEL else current

        model_box.input(on_model, [model_box, frames], [frames], **light)

        def on_files(session: Session, files, frames_value, w, h, request: gr.Request):
            if not files:
                return (*view(session, frames_value, None), gr.update(), gr.update(), gr.update(), gr.update())
            try:
                count = _int(frames_value, "frames")
                scratch = app.session_dir(request.session_hash if request else None)
                message, count = load_files(session, [str(f) for f in files], count, _size(w, "width"), _size(h, "height"), scratch)
            except UIError as err:
                return (*view(session, frames_value, str(err), error=True), gr.update(), gr.update(), gr.update(), gr.update())
            camera = session.drawing.camera
            named = isinstance(camera.get("pan"), str)
            return (*view(session, count, message), count, session.original,
                    camera.get("pan") if named else "none", camera.get("zoom", 1.0))

        traj_files.upload(on_files, [state, traj_files, frames, width, height],
                          [*view_outputs, frames, upload, pan, zoom], **light)

        setting_inputs = dict(model=model_box, frames=frames, width=width, height=height, steps=steps, seed=seed, offload=offload,
                              gradient_checkpointing=checkpointing, optimize_timesteps=timesteps, iterations=iterations,
                              learning_rate=lr, feature_layers=layers, heatmap_sigma=sigma, high_frequency_reinit=hf_reinit,
                              low_pass_cutoff=cutoff, butterworth_order=order, fps=fps, motion_bucket_id=bucket,
                              noise_aug_strength=noise_aug, min_guidance_scale=min_cfg, max_guidance_scale=max_cfg,
                              decode_chunk_size=chunk)
        names = list(setting_inputs)

        def on_generate(session: Session, *values, request: gr.Request = None, progress=gr.Progress()):
            settings = dict(zip(names, values))
            start = time.perf_counter()

            def report(done: int, total: int, desc: str) -> None:
                progress((done, total), desc=desc, unit="steps")

            try:
                out_dir = app.session_dir(request.session_hash if request else None)
                paths = generate_video(session, settings, app, cache, out_dir, report)
            except Exception as err:  # shown in the page; the app keeps serving
                if not isinstance(err, (UIError, TrajectoryError)):
                    logger.exception("generation failed")
                return session, None, None, None, gr.update(value=f"**Error:** {_one_line(err)}", elem_classes=["error"])
            message = (f"Done in {time.perf_counter() - start:.1f} s: {paths['video'].name} "
                       f"({settings['frames']} frames, {settings['width']}x{settings['height']}, {settings['model']}).")
            files = [str(paths[k]) for k in ("trajectory", "record", "input", "condition")]
            return session, str(paths["video"]), str(paths["overlay"]), files, gr.update(value=message, elem_classes=[])

        generate.click(on_generate, [state, *setting_inputs.values()], [state, video, overlay, downloads, run_status],
                       concurrency_limit=1, concurrency_id="device", show_progress_on=[video], scroll_to_output=False)

        def on_unload(request: gr.Request):
            if request is not None and request.session_hash:
                shutil.rmtree(app.root / "".join(c for c in request.session_hash if c.isalnum() or c in "-_")[:64],
                              ignore_errors=True)

        demo.unload(on_unload)
    demo.sgi2v = app
    demo.sgi2v_cache = cache
    return demo


def _cleared(session: Session) -> Session:
    session.drawing.clear()
    return session


def _size(value, name: str) -> int:
    size = _int(value, name)
    if size < 64 or size % 64:
        raise UIError(f"{name} must be a positive multiple of 64, got {size}")
    return size


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if isinstance(err, (UIError, TrajectoryError, ValueError)) else f"{type(err).__name__}: {text}"


def launch(model: str | None = None, device: torch.device | str | None = None, dtype: torch.dtype | str | None = None,
           host: str = "127.0.0.1", port: int = 7860, max_file_size: str | int = "25mb", queue_size: int = 20,
           block: bool = True, root: str | os.PathLike | None = None):
    """Build the app, start its queue (one generation at a time) and serve it.

    With ``block=False`` returns the running app at once (``app.close()`` stops it).
    """
    own_root = root is None
    demo = build_app(model=model, device=device, dtype=dtype, root=root)
    demo.queue(max_size=queue_size, default_concurrency_limit=1, api_open=False)
    if host not in ("127.0.0.1", "localhost", "::1"):
        logger.warning("listening on %s: anyone who can reach this address can use the app and its device", host)
    try:
        demo.launch(server_name=host, server_port=port, share=False, inbrowser=False, prevent_thread_lock=not block,
                    max_file_size=max_file_size, allowed_paths=[], ssr_mode=False, mcp_server=False, enable_monitoring=False,
                    run_history=False, footer_links=[], show_error=False, quiet=not block, css=CSS)
    finally:
        if block and own_root:
            with contextlib.suppress(Exception):
                shutil.rmtree(demo.sgi2v.root, ignore_errors=True)
    return demo
