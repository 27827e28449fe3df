"""The Gradio app of ``sgi2v ui``: the page, its event handlers, the pipeline cache and one generation.

The generation itself (:func:`generate_video`) goes through :mod:`sgi2v.generation` like every
other surface, so the files it writes are those of ``sgi2v generate``: ``NAME.mp4``,
``NAME.overlay.mp4``, ``NAME.condition.png`` and the run record ``NAME.json``, plus the uploaded
image ``NAME.input.png`` and the trajectory ``NAME.trajectory.json`` in its pixels (documented
format), so that ``sgi2v generate NAME.input.png --traj NAME.trajectory.json`` with the record's
settings (or ``--replay NAME.json``) redoes the run from the command line.
"""

import asyncio
import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
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
from ..fitting import Fit
from ..generation import Progress, Timer, generate, output_paths, prepare_inputs, write_outputs
from ..loading import DEFAULT_MODEL, SPRITES_MODEL, XT_MODEL, load_pipeline, resolve_device, resolve_dtype
from ..schema import parse_value, specs
from ..settings import TINY_MODEL_ID, GenerationSettings, default_num_frames, native_size, resolve_settings, setting_specs
from ..single_file import is_single_file
from ..images import load_image, to_rgb
from ..formats import TrajectoryOptions, read_any, resolve_trajectory_options
from ..trajectory import TrajectoryError, load_reference_dir, parse_trajectory
from ..preview import preview_prepared, write_preview
from ..video import write_mp4
from .editor import build_editor, read_editor_value, scene_json
from .state import fit_image

__all__ = ["PipelineCache", "Session", "SessionFolders", "UIError", "FramesNeeded", "generate_video", "read_image_upload",
           "load_files", "examples", "load_example", "build_app", "launch", "stop"]

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
TRAJECTORY_SUFFIXES = (".json", ".npy", ".npz", ".pt", ".pth", *IMAGE_SUFFIXES)
#: The bundled examples: one folder each with ``image.jpg`` (or ``image.png``) and ``trajectory.json``.
EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"


class UIError(ValueError):
    """A problem the page's user can fix; its message is shown in the page."""


class FramesNeeded(UIError):
    """A trajectory whose keyframes go past the last frame; ``frames`` is the number of frames it needs."""

    def __init__(self, message: str, frames: int):
        super().__init__(message)
        self.frames = frames


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
    """One browser session: the uploaded image, its prepared form and the trajectory drawn on it.

    ``trajectory`` is the editor's trajectory object (documented format, in the upload's pixels), as
    read at the last Generate; the editor in the page holds the one being edited.
    """

    original: Image.Image | None = None
    prepared: Image.Image | None = None
    fit: Fit | None = None
    trajectory: dict = field(default_factory=lambda: {"boxes": []})
    runs: int = 0
    folder: Path | None = None  # the session's own folder, once it has one (see SessionFolders)
    frames_needed: int | None = None  # the frame count a refused trajectory asked for (the page offers to set it)
    example: str | None = None  # the bundled example last loaded, if the trajectory came from one

    def set_image(self, image: Image.Image, width: int, height: int, image_fit: str = "stretch") -> None:
        """A new upload: prepare it for the output size; the trajectory starts empty."""
        self.original = to_rgb(image)
        self.prepared, self.fit = fit_image(self.original, width, height, image_fit)
        self.trajectory = {"boxes": []}

    def resize(self, width: int, height: int, image_fit: str = "stretch") -> None:
        """Another output size or image fit: prepare the image again (the trajectory, in the upload's pixels, stays)."""
        if self.original is not None:
            self.prepared, self.fit = fit_image(self.original, width, height, image_fit)


class SessionFolders:
    """The browser sessions' own folders under ``root``, one per session, made on first use.

    A folder's name is random (128 bits), not derived from anything a page sends, so the paths one
    page is sent say nothing about another session's files; the app writes a session's files only
    into its own folder. :meth:`remove` is called when the session ends, :meth:`remove_all` when the
    server stops. A session that has ended gets no new folder (an event of its page still in the queue
    then fails with a message instead of leaving a folder behind).
    """

    #: How many ended sessions are remembered (to refuse them a new folder).
    ENDED_MEMORY = 10_000

    def __init__(self, root: Path):
        self.root = Path(root)
        self._folders: dict[str, Path] = {}
        self._ended: dict[str, None] = {}  # ordered: the oldest forgotten first
        self._uploads: dict[str, set[Path]] = {}  # files Gradio received for each session (under root)
        self._lock = threading.Lock()

    def adopt(self, session: str | None, path: str | os.PathLike) -> None:
        """A file the server received for ``session`` (Gradio keeps uploads in folders of their own under the
        root, named by their content): removed with the session, unless another live session uploaded it too."""
        path = Path(path).resolve()
        if session is None or self.root.resolve() not in path.parents:
            return
        with self._lock:
            self._uploads.setdefault(session, set()).add(path)

    def _drop_uploads(self, sessions: list[str]) -> list[Path]:
        """The uploads of ``sessions`` that no other session holds (call with the lock held)."""
        dropped = set().union(*(self._uploads.pop(s, set()) for s in sessions))
        kept = set().union(*self._uploads.values())
        return sorted(dropped - kept)

    def get(self, session: str | None) -> Path:
        """The folder of the session with this id (a browser session's hash); a new one for ``None``.

        Raises :class:`UIError` for a session that has ended.
        """
        key = session or f"anonymous-{secrets.token_hex(8)}"
        with self._lock:
            if key in self._ended:
                raise UIError("This page's session has ended: reload the page.")
            folder = self._folders.get(key)
            if folder is None or not folder.is_dir():
                folder = self.root / f"session-{secrets.token_hex(16)}"
                folder.mkdir(mode=0o700, parents=True)
                self._folders[key] = folder
            return folder

    def remove(self, session: str | None = None, folder: Path | None = None) -> None:
        """Remove a session's folder and everything in it, named by the session's id or by the folder."""
        with self._lock:
            keys = [k for k, f in self._folders.items() if k == session or (folder is not None and f == folder)]
            removed = [self._folders.pop(k) for k in keys]
            uploads = self._drop_uploads([*keys, *([session] if session else [])])
            for key in [*keys, *([session] if session else [])]:
                self._ended[key] = None
            while len(self._ended) > self.ENDED_MEMORY:
                del self._ended[next(iter(self._ended))]
        for path in removed:
            shutil.rmtree(path, ignore_errors=True)
        for path in uploads:
            path.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                path.parent.rmdir()  # Gradio's folder for that file, once empty

    def remove_all(self) -> None:
        """Remove every session's folder (the server stops)."""
        with self._lock:
            removed, self._folders = list(self._folders.values()), {}
        for path in removed:
            shutil.rmtree(path, ignore_errors=True)

    def __len__(self) -> int:
        return len(self._folders)


class ServerStopping(Exception):
    """The server is stopping: the generation in progress ends at its next step and leaves nothing."""


class RunCancelled(Exception):
    """The page cancelled its generation, or was closed: the run ends at its next step and leaves nothing."""


class Cancels:
    """Each session's generations in progress or waiting, so that a cancelled run, or every run of a closed page, ends
    at its next step and gives the device to the next in the queue (the queue cancels its task at once, but the
    thread computing the run goes on until told)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._runs: dict[str | None, set[threading.Event]] = {}

    @contextlib.contextmanager
    def run(self, session: str | None):
        """A run of ``session``: the event that tells it to stop."""
        event = threading.Event()
        with self._lock:
            self._runs.setdefault(session, set()).add(event)
        try:
            yield event
        finally:
            with self._lock:
                runs = self._runs.get(session, set())
                runs.discard(event)
                if not runs:
                    self._runs.pop(session, None)

    def cancel_session(self, session: str | None) -> None:
        """The page of ``session`` was closed: its runs stop."""
        with self._lock:
            for event in self._runs.get(session, ()):
                event.set()


class Runs:
    """The generations, model loads and previews in progress, so that a stopping server can end them (or wait for
    them) before it removes their folders."""

    def __init__(self):
        self.stopping = threading.Event()
        self._count = 0
        self._changed = threading.Condition()

    @contextlib.contextmanager
    def running(self):
        with self._changed:
            self._count += 1
        try:
            yield
        finally:
            with self._changed:
                self._count -= 1
                self._changed.notify_all()

    def check(self) -> None:
        """Raise :class:`ServerStopping` once the server is stopping (called at every step of a generation)."""
        if self.stopping.is_set():
            raise ServerStopping("the server is stopping")

    def stop(self, timeout: float) -> bool:
        """Ask every generation to end and wait up to ``timeout`` s; whether they all ended."""
        self.stopping.set()
        with self._changed:
            return self._changed.wait_for(lambda: self._count == 0, timeout)


@dataclass(frozen=True)
class AppConfig:
    """What the server decides, not the page: the models on offer, device, dtype, where files go."""

    models: tuple[str, ...]
    device: torch.device
    dtype: torch.dtype
    root: Path  # the sessions' folders are made under it
    folders: SessionFolders = field(init=False, repr=False, compare=False)
    runs: Runs = field(init=False, repr=False, compare=False)
    cancels: Cancels = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "folders", SessionFolders(self.root))
        object.__setattr__(self, "runs", Runs())
        object.__setattr__(self, "cancels", Cancels())

    def session_dir(self, session_hash: str | None) -> Path:
        """The session's own folder (see :class:`SessionFolders`)."""
        return self.folders.get(session_hash)


# -- settings ---------------------------------------------------------------------------------------

def form_settings() -> dict:
    """The settings the page has a control for, by name (the server decides device, dtype and threads)."""
    return {name: fs for name, fs in setting_specs().items() if fs[1].form}


def settings_and_config(values: dict, model: str | None = None) -> tuple[GenerationSettings, SGI2VConfig]:
    """The page's values (by setting name) -> validated settings, as every surface reads them.

    An empty text field (timesteps) means the default; a number field sends floats, which are read as
    integers where the setting is one.
    """
    given = {k: v for k, v in values.items() if k in setting_specs() and not (isinstance(v, str) and not v.strip())}
    try:
        return resolve_settings(given, model=model, source="")
    except ValueError as err:
        raise UIError(str(err)) from None


# -- one generation ---------------------------------------------------------------------------------

def generate_video(session: Session, values: dict, app: AppConfig, cache: PipelineCache, out_dir: Path,
                   progress: Callable[[int, int, str], None] | None = None) -> dict[str, Path]:
    """Generate the video of the session's drawing with :func:`sgi2v.generation.generate`, writing the
    files of ``sgi2v generate`` plus the uploaded image and the trajectory in its pixels.

    Args:
        session: the uploaded image and the trajectory drawn on it.
        values: the page's values by setting name, and ``model``.
        app: models on offer, device, dtype.
        cache: where pipelines are kept between runs.
        out_dir: the session's own folder; each run gets a new ``run-NNN`` folder in it.
        progress: called with (done, total, description) as the run advances: ``done`` of ``total`` counts
            the denoising steps and optimisation iterations, the description names the phase (loading the
            model, encoding, optimising the latent at step k of n, denoising step k of n, decoding, writing).

    Returns:
        Paths by kind: ``video``, ``overlay``, ``condition``, ``record``, ``trajectory``, ``input``, and ``tracked``
        (the overlay with the target paths and the paths tracked in the video, :func:`tracked_overlay`) when the
        evaluation extra is installed.
    """
    report = progress or (lambda done, total, desc: None)
    if session.prepared is None:
        raise UIError("Upload an image first.")
    trajectory = session.trajectory
    if not trajectory.get("boxes") and not trajectory.get("camera"):
        raise UIError("Draw at least one box (drag on the image), or choose a camera motion.")
    model = values.get("model")
    if model not in app.models:
        raise UIError(f"unknown model {model!r}: choose one of {', '.join(app.models)}")
    settings, config = settings_and_config(values, model)
    settings = settings.replace(device=str(app.device), dtype=str(app.dtype).replace("torch.", ""))
    if (settings.width, settings.height) != session.prepared.size or settings.image_fit != session.fit.mode:
        raise UIError(f"the image is prepared at {session.prepared.size[0]}x{session.prepared.size[1]} ({session.fit.mode}) but "
                      f"the settings say {settings.width}x{settings.height} ({settings.image_fit}): set the size again")

    number = session.runs + 1
    run_dir = Path(out_dir) / f"run-{number:03d}"
    stem = f"sgi2v-{number:03d}"
    paths = output_paths(run_dir / f"{stem}.mp4")
    input_path, trajectory_path = run_dir / f"{stem}.input.png", run_dir / f"{stem}.trajectory.json"
    timer = Timer()
    try:
        with timer("prepare"):
            run_dir.mkdir(parents=True, exist_ok=True)
            session.original.save(input_path, format="PNG")
            trajectory_path.write_text(json.dumps(trajectory, indent=2) + "\n")
            try:
                prepared = prepare_inputs(input_path, trajectory_path, settings)
            except ValueError as err:
                raise UIError(str(err).replace(str(trajectory_path), "drawing")) from None
        steps = settings.num_inference_steps
        optimised = sum(1 for t in config.optimize_timesteps if 1 <= t <= steps) if config.enabled else 0
        ticks = {"done": 0, "total": steps + optimised * config.iterations}
        report(0, ticks["total"], f"loading the model {model}")
        with timer("load"), app.runs.running():  # a stopping server waits for the load too
            pipe = cache.get(model, app.device, app.dtype, settings.num_frames, settings.offload)
        app.runs.check()

        def on_progress(state: Progress) -> None:  # done: the steps and iterations finished before this one begins
            app.runs.check()
            if state.phase == "decoding":
                ticks["done"] = ticks["total"]
            report(ticks["done"], ticks["total"], progress_text(state))
            if state.phase in ("optimising", "denoising"):
                ticks["done"] = min(ticks["done"] + 1, ticks["total"])

        with timer("generate"), app.runs.running():
            generation = generate(prepared, settings, config, pipe, model=model, progress=on_progress)
        app.runs.check()
        report(ticks["total"], ticks["total"], "writing the videos")
        with timer("write"):
            generation.record["timings"] = {**{k: round(v, 3) for k, v in timer.times.items()}, "total": round(timer.total, 3)}
            write_outputs(paths, generation, prepared, settings.fps)
            extra = {}
            try:
                tracked = tracked_overlay(generation.frames, prepared.boxes, prepared.labels)
            except Exception:  # the tracked paths are an extra: the run's own files are written
                logger.warning("could not track the boxes in the video", exc_info=True)
                tracked = None
            if tracked is not None:
                extra["tracked"] = run_dir / f"{stem}.tracked.mp4"
                write_mp4(extra["tracked"], tracked, settings.fps)
    except BaseException:
        shutil.rmtree(run_dir, ignore_errors=True)  # a failed run leaves nothing behind
        raise
    session.runs = number
    logger.info("wrote %s in %.1f s", paths["video"], timer.total)
    return {**paths, "trajectory": trajectory_path, "input": input_path, **extra}


def tracked_paths(frames: np.ndarray, boxes: np.ndarray, labels: tuple[str, ...] = ()) -> tuple[list[int], np.ndarray, np.ndarray] | None:
    """Where each box's centre went in the generated video, tracked by the evaluation's Lucas-Kanade tracker.

    Args:
        frames: uint8 ``(F, H, W, 3)``.
        boxes: ``(N, F, 4)`` target boxes in output pixels.
        labels: the boxes' labels; the camera's box (labelled ``camera``) is not tracked.

    Returns:
        The indices of the boxes tracked, their tracked centres ``(n, F, 2)`` in pixels and whether each point
        was still reliably tracked ``(n, F)``; ``None`` without the evaluation extra (OpenCV) or with no box to track.
    """
    try:
        import cv2  # the tracker needs it

        from ..evaluation.tracking import LucasKanadeTracker, box_query_points
    except ImportError:
        return None
    del cv2
    chosen = [n for n in range(len(boxes)) if n >= len(labels) or labels[n] != "camera"]
    if not chosen:
        return None
    tracks = LucasKanadeTracker().track(frames, box_query_points(np.asarray(boxes)[chosen, 0]))
    return chosen, tracks.points, ~tracks.failed


def tracked_overlay(frames: np.ndarray, boxes: np.ndarray, labels: tuple[str, ...] = ()) -> np.ndarray | None:
    """The overlay (each target box at its frame) with, for each box, its target path (thin, in its colour) and the
    path its centre took in the video up to the frame (white, dots where tracking was lost); ``None`` without the
    evaluation extra. uint8 ``(F, H, W, 3)``."""
    found = tracked_paths(frames, boxes, labels)
    if found is None:
        return None
    from PIL import ImageDraw

    from ..video import PALETTE, draw_overlay

    chosen, tracks, valid = found
    targets = (np.asarray(boxes)[..., :2] + np.asarray(boxes)[..., 2:]) / 2  # (N, F, 2)
    width = max(1, round(min(frames.shape[1:3]) / 200))
    out = []
    for f, frame in enumerate(draw_overlay(frames, boxes)):
        image = Image.fromarray(frame)
        draw = ImageDraw.Draw(image)
        for k, n in enumerate(chosen):
            draw.line([tuple(p) for p in targets[n]], fill=PALETTE[n % len(PALETTE)], width=width)
            draw.line([tuple(p) for p in tracks[k, : f + 1]], fill=(255, 255, 255), width=width + 1)
            x, y = tracks[k, f]
            r = 2 * width + 1
            draw.ellipse([x - r, y - r, x + r, y + r], fill=(255, 255, 255) if valid[k, f] else None, outline=(255, 255, 255))
        out.append(np.asarray(image))
    return np.stack(out)


def progress_text(state: Progress) -> str:
    """What the page says of a generation's phase."""
    if state.phase == "optimising":
        return (f"optimising the latent: step {state.step} of {state.steps}, "
                f"iteration {state.iteration} of {state.iterations}")
    if state.phase == "denoising":
        return f"denoising: step {state.step} of {state.steps}"
    return {"encoding": "encoding the image", "decoding": "decoding the frames"}.get(state.phase, state.phase)


# -- loading files ----------------------------------------------------------------------------------

def read_image_upload(path: str | os.PathLike) -> Image.Image:
    """An uploaded image file read as every surface reads images (:func:`sgi2v.images.load_image`: any mode,
    EXIF orientation, the pixel limit checked before decoding); a file that is not an image, a truncated
    one or one too large raises :class:`UIError` naming the file (its name only, not the server's folder)."""
    path = Path(path)
    try:
        return load_image(path)
    except (ValueError, FileNotFoundError) as err:
        raise UIError(_one_line(err).replace(str(path.parent) + os.sep, "")) from None


def _frames_needed(data, frames: int, name: str) -> None:
    """Raise :class:`FramesNeeded` if a box's keyframes go past the last of ``frames`` frames."""
    last = -1
    for entry in data.get("boxes", []) if isinstance(data, dict) and isinstance(data.get("boxes"), list) else []:
        keys = entry.get("keyframes") if isinstance(entry, dict) else None
        for key in keys if isinstance(keys, dict) else []:
            with contextlib.suppress(TypeError, ValueError):
                last = max(last, int(key))
    if last >= frames:
        raise FramesNeeded(f"{name}: its keyframes go up to frame {last}, but the video has {frames} frames (0 to {frames - 1}); "
                           f"set the number of frames to {last + 1} or more", last + 1)


def load_files(session: Session, files: list[str], frames: int, width: int, height: int, scratch: Path,
               image_fit: str = "stretch", options: TrajectoryOptions | None = None) -> tuple[str, int, dict]:
    """Read a trajectory JSON, or a reference folder's ``img.png`` and ``traj.npy`` (both given), for the editor.

    ``files`` are paths of uploads the server received. A trajectory JSON's coordinates are in the
    uploaded image's pixels, so the image comes first; it is checked as every surface checks it and
    returned unchanged (what was saved is what is shown). A ``.npy`` brings its image along (set in
    the session) and becomes one ``path`` per box with a point at each frame (the same motion).

    Other formats (SplineEditor / ATI JSON, Wan-Move tracks) are read as ``options`` say (format, box
    size, canvas size, timing: :class:`sgi2v.formats.TrajectoryOptions`, as ``--traj-format`` etc. do).

    Returns:
        A message for the page, the number of frames to use and the trajectory object.
    """
    files = [Path(f) for f in files or []]
    by_suffix: dict[str, list[Path]] = {}
    for f in files:
        if f.suffix.lower() not in TRAJECTORY_SUFFIXES:
            raise UIError(f"{f.name}: not a trajectory file (give a .json, .npy, .npz or .pt, or img.png and traj.npy; docs/trajectories.md)")
        by_suffix.setdefault(".png" if f.suffix.lower() in IMAGE_SUFFIXES else f.suffix.lower(), []).append(f)
    if ".npy" in by_suffix and len(files) > 1:  # a lone .npy is Wan-Move tracks
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
        session.set_image(original, width, height, image_fit)
        session.trajectory = reference_trajectory(boxes)
        return f"Loaded {len(boxes)} boxes over {num_frames} frames with their image.", num_frames, session.trajectory
    if len(files) != 1 or ".png" in by_suffix:
        raise UIError("give one trajectory file (docs/trajectories.md), or the two files img.png and traj.npy of the reference format")
    if session.original is None:
        raise UIError("Upload the image first: a trajectory file's coordinates are in its pixels.")
    path = files[0]
    try:
        options = options or TrajectoryOptions()
        data, _ = read_any(path, format=options.traj_format, num_frames=frames, image_size=session.original.size,
                           box_size=options.box_size, canvas_size=options.canvas_size, timing=options.timing)
    except TrajectoryError as err:
        raise UIError(str(err).replace(str(path), path.name)) from None
    if isinstance(data, dict) and isinstance(data.get("num_frames"), int) and data["num_frames"] >= 2:
        frames = data["num_frames"]
    _frames_needed(data, frames, path.name)
    try:
        parse_trajectory(data, frames, session.original.size, source=path.name)
    except TrajectoryError as err:
        raise UIError(str(err)) from None
    session.trajectory = data
    count = len(data.get("boxes", []))
    what = [f"{count} box{'es' if count != 1 else ''}"] if count else []
    what += ["a camera motion"] if data.get("camera") else []
    return f"Loaded {' and '.join(what) or 'nothing'} from {path.name}.", frames, data


def reference_trajectory(boxes: np.ndarray) -> dict:
    """Per-frame boxes ``(N, F, 4)`` (upload pixels, e.g. a ``traj.npy``) -> a trajectory object with the same motion:
    each box's frame-0 box and its centre at every frame as a ``path`` (``static`` when it never moves)."""
    entries = []
    for track in np.asarray(boxes, dtype=np.float64):
        centres = (track[:, :2] + track[:, 2:]) / 2  # (F, 2)
        entry: dict = {"box": [round(float(v), 2) for v in track[0]]}
        if np.allclose(centres, centres[0], atol=1e-3):
            entry["static"] = True
        else:
            entry["path"] = [[round(float(x), 2), round(float(y), 2)] for x, y in centres]
        entries.append(entry)
    return {"boxes": entries}


def examples(folder: Path = EXAMPLES_DIR) -> list[str]:
    """The names of the bundled examples (folders holding ``image.jpg`` or ``image.png`` and ``trajectory.json``), sorted."""
    return sorted(p.name for p in Path(folder).iterdir() if _example_image(p) is not None and (p / "trajectory.json").is_file())


def _example_image(folder: Path) -> Path | None:
    return next((folder / f"image{ext}" for ext in (".jpg", ".png") if (folder / f"image{ext}").is_file()), None)


def load_example(session: Session, name: str, frames: int, width: int, height: int, scratch: Path,
                 image_fit: str = "stretch", folder: Path = EXAMPLES_DIR) -> tuple[str, int, Path, dict]:
    """Load a bundled example's image and trajectory into the session, as an upload and a loaded trajectory file.

    The image is copied into ``scratch`` (the session's folder, from where the page may be sent it). Returns
    the message for the page, the number of frames to use, the copy of the image and the trajectory object.
    """
    if name not in examples(folder):
        raise UIError(f"unknown example {name!r}: choose one of {', '.join(examples(folder))}")
    source = _example_image(Path(folder) / name)
    image = Path(scratch) / f"example-{name}{source.suffix}"
    shutil.copyfile(source, image)
    session.set_image(read_image_upload(image), width, height, image_fit)
    try:
        message, frames, trajectory = load_files(session, [str(Path(folder) / name / "trajectory.json")], frames, width, height, scratch,
                                     image_fit)
    except FramesNeeded as err:
        raise FramesNeeded(str(err).replace("trajectory.json", f"the example {name!r}"), err.frames) from None
    except UIError as err:
        raise UIError(str(err).replace("trajectory.json", f"the example {name!r}")) from None
    return message.replace("trajectory.json", f"the example {name!r}"), frames, image, trajectory


# -- the page ---------------------------------------------------------------------------------------

CSS = """
#run-status.error, #status.error, #form-status.error { color: #c62828; }
#examples .caption-label { font-size: 0.8em; }
#downloads .label-clear-button, #downloads [aria-label="Remove this file"] { display: none; }
"""

#: Scrolls the page to the results (the progress shows on the video) as soon as Generate is pressed.
SCROLL_TO_RESULTS = "() => { document.getElementById('results')?.scrollIntoView({behavior: 'smooth', block: 'start'}); }"

HELP = """**Draw:** drag on the picture to draw a box, then click the points its centre should go through
(the first at frame 0: the box's centre; the last at the last frame). Each box has its own colour and
number; a *static* box keeps its content still (an anchor). The mouse and keys are listed beside the picture."""


#: The form's sections: the settings' groups, the first open.
OPEN_GROUPS = ("video",)


def setting_controls(gr, model: str) -> dict[str, Any]:
    """One control per setting of :func:`form_settings`, named (``elem_id``) and labelled from its declaration,
    in its group's section, numbers two to a row; returns them by setting name."""
    controls: dict[str, Any] = {}
    groups: dict[str, list] = {}
    for name, (field_, spec) in form_settings().items():
        groups.setdefault(spec.group, []).append((name, field_, spec))
    for group, members in groups.items():
        lines: list[list] = []
        for member in members:
            paired = member[2].kind in ("int", "float", "names", "timesteps")
            if paired and lines and len(lines[-1]) == 1 and lines[-1][0][2].kind in ("int", "float", "names", "timesteps"):
                lines[-1].append(member)
            else:
                lines.append([member])
        with gr.Accordion(group[:1].upper() + group[1:], open=group in OPEN_GROUPS):
            for line in lines:
                with gr.Row():
                    for name, field_, spec in line:
                        controls[name] = _control(gr, name, field_, spec, model)
    return controls


def _control(gr, name: str, field_, spec, model: str):
    native = dict(zip(("height", "width"), native_size(model)), num_frames=default_num_frames(model))
    default = native.get(name, field_.default)
    common = dict(label=spec.label or name, info=spec.help, elem_id=name)
    if spec.kind == "bool":
        return gr.Checkbox(bool(default), **common)
    if spec.kind == "choice":
        return gr.Radio(list(spec.choices), value=default, **common)
    if spec.kind == "timesteps":
        return gr.Textbox("", placeholder="empty: the paper's 30-45 of 50 steps, moved to the number of steps; "
                                          "latent: moved to the output's size", **common)
    if spec.kind == "names":
        return gr.Textbox(",".join(default), **common)
    if spec.kind == "size":
        return gr.Textbox("" if default is None else "x".join(f"{v:g}" for v in default), placeholder="WxH", **common)
    number = dict(precision=0) if spec.kind == "int" else {}
    bounds = {k: getattr(spec, k) for k in ("minimum", "maximum") if getattr(spec, k) is not None}
    step = dict(step=spec.multiple_of) if spec.multiple_of else {}
    return gr.Number(default, **number, **bounds, **step, **common)


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
        dtype = resolve_dtype(dtype or "auto", device, model)
    models = tuple(dict.fromkeys([m for m in (model, DEFAULT_MODEL, XT_MODEL, SPRITES_MODEL, TINY_MODEL_ID) if m]))
    start_model = model or (DEFAULT_MODEL if _svd_available() else SPRITES_MODEL)
    root = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="sgi2v-ui-"))
    root.mkdir(parents=True, exist_ok=True)
    app = AppConfig(models=models, device=device, dtype=dtype, root=root.resolve())
    cache = cache or PipelineCache()
    demo = _page(gr, app, cache, models, start_model)
    demo.sgi2v = app
    demo.sgi2v_cache = cache
    return demo


def _svd_available() -> bool:
    """Whether SVD's weights are in the local Hugging Face cache (without asking the hub)."""
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(DEFAULT_MODEL, "model_index.json"), str)
    except Exception:  # an unusual cache layout: offer SVD as before
        return True


def _page(gr, app: AppConfig, cache: PipelineCache, models: tuple[str, ...], start_model: str):
    """The page and its event handlers."""
    device, dtype = app.device, app.dtype
    example_names = examples()
    thumbnails = _thumbnails(app.root / "examples", example_names)

    def folder(session: Session, request) -> Path:
        """The session's own folder (made on first use)."""
        session.folder = app.session_dir(request.session_hash if request else None)
        return session.folder

    def view(session: Session, frames, message: str | None, error: bool = False):
        """Outputs shared by the picture's events: state, the editor's scene, status (kept when ``message`` is None)."""
        try:
            num_frames = max(2, int(frames))
        except (TypeError, ValueError):
            num_frames = default_num_frames(None)
        if session.prepared is not None:
            scene = scene_json(session.prepared, session.fit, num_frames)
        else:  # no picture: the editor's own line says what happened
            scene = json.dumps({"message": message, "error": bool(error)}) if message else gr.update()
        text = f"**Error:** {message}" if error else message
        status_update = gr.update() if message is None else gr.update(value=text, elem_classes=["error"] if error else [])
        return session, scene, status_update

    with gr.Blocks(title="SG-I2V: draw the motion", analytics_enabled=False, delete_cache=(3600, 24 * 3600)) as demo:
        state = gr.State(Session(), delete_callback=lambda s: app.folders.remove(folder=getattr(s, "folder", None)))
        gr.Markdown("## SG-I2V: image to video along drawn paths\n" + HELP)
        with gr.Row():
            with gr.Column(scale=3):
                # The server's messages (uploads, loaded files) above the picture, where they are seen at once.
                status = gr.Markdown("Upload an image to start.", elem_id="status")
                block = build_editor(gr)
            with gr.Column(scale=2):
                preview = gr.Video(label="Motion preview (no model: each box's content moved along its path)", elem_id="preview",
                                   interactive=False, autoplay=True, loop=True, height=240, buttons=[])
                preview_status = gr.Markdown("", elem_id="preview-status")
                upload = _image_input(gr, label="Image (fitted to the output size as 'Image fit' says)", type="filepath",
                                      image_mode=None, sources=["upload", "clipboard"], elem_id="upload", height=160)
                gallery = gr.Gallery(thumbnails, label="Examples: click one to load its image and trajectory", columns=4,
                                     height=100, allow_preview=False, elem_id="examples", interactive=False, buttons=[])
                with gr.Row():
                    generate = gr.Button("Generate", variant="primary", elem_id="generate", scale=3)
                    stop = gr.Button("Stop", elem_id="stop", scale=1)
                form_status = gr.Markdown("", elem_id="form-status")
                traj_files = gr.UploadButton("Load trajectory (.json, .npy, .npz, .pt; or img.png + traj.npy)", file_count="multiple",
                                             file_types=list(TRAJECTORY_SUFFIXES), elem_id="load-trajectory", size="sm")
                with gr.Accordion("Reading a trajectory file: format, box size, canvas, timing", open=False,
                                  elem_id="trajectory-options"):
                    traj_controls = {name: _control(gr, name, field_, spec, start_model)
                                     for name, (field_, spec) in specs(TrajectoryOptions).items()}
                set_frames = gr.Button("Set the number of frames", visible=False, elem_id="set-frames", size="sm")
                model_box = gr.Dropdown(list(models), value=start_model, label="Model", elem_id="model")
                controls = setting_controls(gr, start_model)
                frames, width, height, image_fit = (controls[k] for k in ("num_frames", "width", "height", "image_fit"))
                gr.Markdown(f"Device: `{device}`, dtype: `{str(dtype).replace('torch.', '')}` (set when the server starts).")
        with gr.Column(elem_id="results"):
            run_status = gr.Markdown("", elem_id="run-status")
            with gr.Row():
                video = gr.Video(label="Video", elem_id="video", interactive=False, autoplay=True, loop=True)
                overlay = gr.Video(label="Video with the target boxes and paths (white: where each box went, when tracked)",
                                   elem_id="overlay", interactive=False, autoplay=True, loop=True)
            downloads = gr.File(label="Downloads: trajectory JSON, run record, prepared input", file_count="multiple",
                                interactive=False, elem_id="downloads")

        editor, scene = block.editor, block.scene
        view_outputs = [state, scene, status]
        # Everything but a generation skips the queue: the queue holds only runs waiting for the device, so its limit
        # (--queue-size) refuses runs, never an upload, an edit's preview or a form check.
        light = dict(queue=False, show_progress="hidden")

        def on_upload(session: Session, image, frames, w, h, fit, request: gr.Request):
            if image is not None and request is not None:
                app.folders.adopt(request.session_hash, image)
            if image is None:
                return (*view(Session(folder=session.folder), frames, "Upload an image to start."), "", gr.update())
            try:
                # The file as uploaded, read as every surface reads images (any mode, EXIF, size limit).
                pixels = read_image_upload(image) if isinstance(image, (str, os.PathLike)) else image
                session.set_image(pixels, _size(w, "width"), _size(h, "height"), fit)
            except UIError as err:  # shown in the page; the upload field is emptied for the next try
                return (*view(session, frames, str(err), error=True), gr.update(), None)
            return (*view(session, frames, f"Image prepared at {session.prepared.size[0]}x{session.prepared.size[1]}: "
                                           "drag on it to draw a box."), "", gr.update())  # a new picture starts with nothing drawn

        size_inputs = [frames, width, height, image_fit]
        upload.upload(on_upload, [state, upload, *size_inputs], [*view_outputs, editor, upload], **light)
        upload.clear(on_upload, [state, upload, *size_inputs], [*view_outputs, editor, upload], **light)

        def on_size(session: Session, frames, w, h, fit):
            try:
                size = (_size(w, "width"), _size(h, "height"))
            except UIError as err:
                return view(session, frames, str(err), error=True)
            if session.prepared is not None and session.prepared.size == size and session.fit.mode == fit:
                return view(session, frames, None)
            session.resize(*size, fit)
            return view(session, frames, f"Output size {size[0]}x{size[1]} ({fit}); the boxes stay on the same part of the picture.")

        for control in (width, height, image_fit):
            control.change(on_size, [state, *size_inputs], view_outputs, **light)
        frames.change(lambda session, frames: view(session, frames, None), [state, frames], view_outputs, **light)

        def on_model(name, current_frames, current_width, current_height):
            """A known model brings its native size and frame count, an SVD checkpoint file its frame count and
            SVD's size (a local folder keeps the form's)."""
            if name not in (DEFAULT_MODEL, XT_MODEL, SPRITES_MODEL) and not is_single_file(name or ""):
                return current_frames, current_width, current_height
            h, w = native_size(name)
            return default_num_frames(name), w, h

        model_box.input(on_model, [model_box, frames, width, height], [frames, width, height], **light)

        def loaded(session: Session, message: str, count: int, trajectory: dict, image):
            """The outputs of a loaded trajectory: the view, the editor's value, the frame count, the image shown."""
            return (*view(session, count, message), json.dumps(trajectory), count, image, gr.update(visible=False))

        def refused(session: Session, frames_value, err: UIError):
            offer = (gr.update(value=f"Set the number of frames to {err.frames} and load again", visible=True)
                     if isinstance(err, FramesNeeded) else gr.update(visible=False))
            session.frames_needed = err.frames if isinstance(err, FramesNeeded) else None
            return (*view(session, frames_value, str(err), error=True), gr.update(), gr.update(), gr.update(), offer)

        def on_files(session: Session, files, frames_value, w, h, fit, request: gr.Request, *read_values):
            session.example = None
            for file in files or []:
                app.folders.adopt(request.session_hash if request is not None else None, file)
            if not files:
                return (*view(session, frames_value, None), gr.update(), gr.update(), gr.update(), gr.update(visible=False))
            try:
                count = _setting("num_frames", frames_value) or default_num_frames(None)
                given = {k: v for k, v in zip(traj_controls, read_values) if v not in (None, "")}
                try:
                    options = resolve_trajectory_options(given, source="reading the trajectory")
                except ValueError as err:
                    raise UIError(str(err)) from None
                message, count, trajectory = load_files(session, [str(f) for f in files], count, _size(w, "width"),
                                                        _size(h, "height"), folder(session, request), fit, options)
            except UIError as err:
                return refused(session, frames_value, err)
            return loaded(session, message, count, trajectory, session.original)

        loaded_outputs = [*view_outputs, editor, frames, upload, set_frames]
        read_inputs = list(traj_controls.values())
        traj_files.upload(on_files, [state, traj_files, *size_inputs, *read_inputs], loaded_outputs, **light)

        def on_example(session: Session, frames_value, w, h, fit, name: str, request: gr.Request):
            session.example = name
            try:
                count = _setting("num_frames", frames_value) or default_num_frames(None)
                message, count, image, trajectory = load_example(session, name, count, _size(w, "width"), _size(h, "height"),
                                                                 folder(session, request), fit)
            except UIError as err:
                return refused(session, frames_value, err)
            return loaded(session, message, count, trajectory, str(image))

        def on_gallery(session: Session, frames_value, w, h, fit, evt: gr.SelectData, request: gr.Request):
            return on_example(session, frames_value, w, h, fit, example_names[evt.index], request)

        gallery.select(on_gallery, [state, *size_inputs], loaded_outputs, **light)

        def on_set_frames(session: Session, frames_value):
            return session.frames_needed or frames_value

        def on_reload(session: Session, files, frames_value, w, h, fit, request: gr.Request, *read_values):
            """Load again what was refused for its keyframes, now that the number of frames is set."""
            if session.example:
                return on_example(session, frames_value, w, h, fit, session.example, request)
            return on_files(session, files, frames_value, w, h, fit, request, *read_values)

        set_frames.click(on_set_frames, [state, frames], [frames], **light).then(
            on_reload, [state, traj_files, *size_inputs, *read_inputs], loaded_outputs, **light)

        # gr.Request is handed only to a parameter before *values (a keyword-only one gets None): every event of a
        # session must know it, or its files would go to a folder of no session, never removed.
        def on_preview(session: Session, drawn: str, model_name, request: gr.Request, *values):
            if session.original is None:
                return None, ""
            with app.runs.running():  # a stopping server waits for a preview being written, then removes its folder
                if app.runs.stopping.is_set():
                    return None, ""
                return render_preview(session, drawn, model_name, request, *values)

        def render_preview(session: Session, drawn: str, model_name, request: gr.Request, *values):
            try:
                trajectory = read_editor_value(drawn)
                if not trajectory.get("boxes") and not trajectory.get("camera"):
                    return None, "Draw a box to see its motion here."
                names = ("num_frames", "width", "height", "image_fit", "fps")
                settings, _ = settings_and_config(dict(zip(names, values)), model_name)
                prepared = prepare_inputs(session.original, trajectory, settings, source="drawing")
                previews = folder(session, request) / "preview"
                previews.mkdir(exist_ok=True)
                # Older previews go; the latest ones stay, as a preview made at the same time may still be sent.
                done = sorted(previews.glob("preview-*.mp4"), key=lambda p: int(p.stem.split("-")[1]))
                for old in done[:-2]:
                    old.unlink(missing_ok=True)
                path = previews / f"preview-{time.monotonic_ns()}.mp4"  # a new name: the page reloads it
                write_preview(path, preview_prepared(prepared), settings.fps)
            except ValueError as err:
                return None, f"**Preview:** {_one_line(err)}"
            return str(path), f"Preview: {settings.num_frames} frames at {settings.width}x{settings.height}."

        preview_inputs = [state, editor, model_box, frames, width, height, image_fit, controls["fps"]]
        for trigger in (editor.change, scene.change):  # after each finished edit (not each mouse move), a new picture or size
            trigger(on_preview, preview_inputs, [preview, preview_status], trigger_mode="always_last", **light)

        setting_inputs = {"model": model_box, **controls}
        names = list(setting_inputs)

        async def on_generate(session: Session, drawn: str, request: gr.Request, *values, progress=gr.Progress()):
            """The run, in a worker thread. When the queue cancels this event (the page's Stop, a client's cancel) the
            thread is told to stop at its next step, and the device is held until it has: the next run in the queue
            never shares the device with a cancelled one."""
            key = request.session_hash if request is not None else None
            with app.cancels.run(key) as cancelled:
                finished = threading.Event()

                def work():
                    try:
                        return run_generation(session, drawn, request, values, progress, cancelled)
                    finally:
                        finished.set()

                try:
                    return await asyncio.to_thread(work)  # a cancel ends the await at once; the thread goes on
                except BaseException:
                    cancelled.set()
                    while not finished.is_set():
                        await asyncio.sleep(0.02)
                    raise

        def run_generation(session: Session, drawn: str, request, values, progress, cancelled: threading.Event):
            settings = dict(zip(names, values))
            start = time.perf_counter()

            def report(done: int, total: int, desc: str) -> None:
                if cancelled.is_set():
                    raise RunCancelled("cancelled")
                progress((done, total), desc=desc[:1].upper() + desc[1:], unit="steps")

            try:
                session.trajectory = read_editor_value(drawn)
                paths = generate_video(session, settings, app, cache, folder(session, request), report)
            except RunCancelled:
                logger.info("a generation was cancelled: it stopped and left nothing")
                return session, None, None, None, gr.update(value="Cancelled.", elem_classes=[])
            except Exception as err:  # shown in the page; the app keeps serving
                if not isinstance(err, (UIError, TrajectoryError, ServerStopping)):
                    logger.exception("generation failed")
                return session, None, None, None, gr.update(value=f"**Error:** {_one_line(err)}", elem_classes=["error"])
            message = (f"Done in {time.perf_counter() - start:.1f} s: {paths['video'].name} "
                       f"({settings['num_frames']} frames, {settings['width']}x{settings['height']}, {settings['model']}).")
            files = [str(paths[k]) for k in ("trajectory", "record", "input", "condition")]
            overlay_path = paths.get("tracked", paths["overlay"])  # with the tracked paths when they could be made
            return session, str(paths["video"]), str(overlay_path), files, gr.update(value=message, elem_classes=[])

        generate.click(None, js=SCROLL_TO_RESULTS, queue=False)
        generating = generate.click(on_generate, [state, editor, *setting_inputs.values()],
                                    [state, video, overlay, downloads, run_status], concurrency_limit=1,
                                    concurrency_id="device", show_progress_on=[video], scroll_to_output=True)
        stop.click(None, cancels=[generating])

        def on_form(*values):
            """The form's settings checked as the server will check them, as soon as one changes."""
            try:
                settings_and_config(dict(zip(names, values)), values[0])
            except UIError as err:
                return gr.update(value=f"**Error:** {_one_line(err)}", elem_classes=["error"])
            return gr.update(value="", elem_classes=[])

        for control in setting_inputs.values():
            control.change(on_form, list(setting_inputs.values()), [form_status], **light)

        def on_unload(request: gr.Request):
            if request is not None and request.session_hash:
                app.cancels.cancel_session(request.session_hash)  # its runs stop: nobody is there to see them
                app.folders.remove(request.session_hash)
                _forget_session(demo, request.session_hash)

        demo.unload(on_unload)
    return demo


def _forget_session(demo, session_hash: str) -> None:
    """Drop Gradio's copy of a closed page's state (the page's whole configuration and its gr.State: a third of a
    megabyte or more each), which Gradio keeps in memory for an hour, or for its last 10,000 sessions, for a reload
    to find. Here a session ends when its page closes (its folder is gone; a reload is a new session), so a server
    that serves many pages an hour would otherwise grow by that much for each."""
    holder = getattr(demo, "state_holder", None)
    sessions = getattr(holder, "session_data", None)
    if sessions is None:
        return
    with contextlib.suppress(Exception), holder.lock:
        sessions.pop(session_hash, None)
        holder.time_last_used.pop(session_hash, None)


def _image_input(gr, **kwargs):
    """A ``gr.Image`` upload field whose handler gets the uploaded file's path without Gradio decoding it first, so
    a file that is not an image, a truncated one or a decompression bomb is reported in the page by
    :func:`read_image_upload` (Gradio's own decoding fails before any handler runs, and the page stays silent)."""

    class ImageUpload(gr.Image):
        is_template = True  # drawn by the page as gr.Image

        def preprocess(self, payload):
            return None if payload is None else payload.path

    return ImageUpload(**kwargs)


def _thumbnails(folder: Path, names: list[str], size: int = 160) -> list[tuple[str, str]]:
    """Small copies of the examples' images in ``folder`` (one for all sessions), with their names as captions."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name in names:
        path = folder / f"{name}.jpg"
        if not path.exists():
            image = load_image(_example_image(EXAMPLES_DIR / name))
            image.thumbnail((size, size))
            image.save(path, quality=85)
        out.append((str(path), name))
    return out


def _gradio_folders_to_remove() -> list[Path]:
    """Gradio makes ``<its temp dir>/vibe_edit_history`` when a server starts (its temp dir is fixed when
    gradio is imported, before :func:`_serve_from`): those of them not there yet, innermost first."""
    try:
        from gradio.route_utils import DEFAULT_TEMP_DIR
    except ImportError:
        return []
    base = Path(DEFAULT_TEMP_DIR)
    return [p for p in (base / "vibe_edit_history", base) if not p.exists()]


def _serve_from(folder: Path) -> Callable[[], None]:
    """Make ``folder`` Gradio's file folder (where uploads land and from where pages are sent files) until the
    returned function is called: the sessions' files are sent from their own folders rather than copied into
    a folder shared with other apps, and nothing the server kept outlives it. Gradio reads the folder from
    ``GRADIO_TEMP_DIR`` whenever it needs it, so it is set for the whole time the server runs."""
    before = os.environ.get("GRADIO_TEMP_DIR")
    os.environ["GRADIO_TEMP_DIR"] = str(folder)

    def restore() -> None:
        if before is None:
            os.environ.pop("GRADIO_TEMP_DIR", None)
        else:
            os.environ["GRADIO_TEMP_DIR"] = before

    return restore


def _setting(name: str, value):
    """One setting's value from the page, checked as everywhere else."""
    try:
        return parse_value(name, setting_specs()[name][1], value)
    except ValueError as err:
        raise UIError(str(err)) from None


def _size(value, name: str) -> int:
    return _setting(name, value)


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if isinstance(err, (UIError, TrajectoryError, ValueError)) else f"{type(err).__name__}: {text}"


#: How long a stopping server waits for the generation in progress to reach its next step.
STOP_WAIT_S = 6.0


def launch(model: str | None = None, device: torch.device | str | None = None, dtype: torch.dtype | str | None = None,
           host: str = "127.0.0.1", port: int = 7860, max_file_size: str | int = "25mb", queue_size: int = 20,
           block: bool = True, root: str | os.PathLike | None = None):
    """Build the app, start its queue (one generation at a time) and serve it.

    With ``block=True`` serves until Ctrl-C (SIGINT) or SIGTERM, then removes every session's folder (and
    the root folder, when it made it). With ``block=False`` returns the running app at once: :func:`stop`
    stops it and removes the folders.
    """
    own_root = root is None
    given_root = root
    made: dict[str, Any] = {}  # the root folder and how to restore Gradio's folder, once they exist
    demo = None
    leftovers = _gradio_folders_to_remove()

    def stop_serving() -> None:
        if demo is not None:
            if not demo.sgi2v.runs.stop(timeout=STOP_WAIT_S):
                logger.warning("a generation did not end within %.0f s of the stop: its folder is removed under it", STOP_WAIT_S)
            with contextlib.suppress(Exception):
                # Open pages keep their connections, which uvicorn would wait for (Gradio gives up after 5 s): they
                # are dropped, and uvicorn's reports of the requests it cancels are not for the user.
                if getattr(demo, "server", None) is not None:
                    demo.server.force_exit = True
                    logging.getLogger("uvicorn.error").disabled = True
                demo.close()
            demo.sgi2v.folders.remove_all()
        if own_root and "root" in made:
            shutil.rmtree(made["root"], ignore_errors=True)
        for folder in leftovers:  # the empty folders Gradio makes at start, if they were not there before
            with contextlib.suppress(OSError):
                folder.rmdir()
        if "restore" in made:
            made.pop("restore")()

    # Serving until stopped: SIGTERM and Ctrl-C (SIGINT) stop the server cleanly from the first moment,
    # also while the app is still being built or starting; the clean-up runs to its end even if a second
    # signal comes, which then makes the exit code 130.
    stopping = _interrupted_by(signal.SIGTERM) if block else contextlib.nullcontext()
    announce = None
    try:
        with stopping:
            with _signals_held():  # a signal now waits until the folder is made and known, then stops the server
                root = (Path(given_root) if given_root is not None else Path(tempfile.mkdtemp(prefix="sgi2v-ui-"))).resolve()
                made["root"] = root
                root.mkdir(parents=True, exist_ok=True)
                made["restore"] = _serve_from(root)
            demo = build_app(model=model, device=device, dtype=dtype, root=root)
            demo.sgi2v_stop = stop_serving
            demo.queue(max_size=queue_size, default_concurrency_limit=1, api_open=False)
            if host not in ("127.0.0.1", "localhost", "::1"):
                logger.warning("listening on %s: anyone who can reach this address can use the app and its device", host)
            demo.launch(server_name=host, server_port=port, share=False, inbrowser=False, prevent_thread_lock=True,
                        max_file_size=max_file_size, allowed_paths=[], ssr_mode=False, mcp_server=False,
                        enable_monitoring=False, run_history=False, footer_links=[], show_error=False, quiet=not block, css=CSS)
            if not block:
                return demo
            while demo.is_running:
                time.sleep(0.2)
    except KeyboardInterrupt:
        if not block:
            _shielded(stop_serving)
            raise
        announce = "stopping the server"  # said once the clean-up is shielded, so a second Ctrl-C cannot cut it short
    except BaseException:
        _shielded(stop_serving)
        raise
    _shielded(stop_serving, announce)
    return demo


def _shielded(cleanup, announce: str | None = None) -> None:
    """Run ``cleanup`` to its end even if SIGINT or SIGTERM comes meanwhile; such a signal then raises
    KeyboardInterrupt afterwards (so the command exits with 130). ``announce`` is logged first, once the
    shield is up: a user who presses Ctrl-C again on reading it cannot interrupt the clean-up."""
    interrupted = []
    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[signum] = signal.signal(signum, lambda number, frame: interrupted.append(number))
        except ValueError:  # not the main thread
            break
    try:
        if announce:
            logger.info(announce)
        cleanup()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if interrupted:
        raise KeyboardInterrupt


@contextlib.contextmanager
def _signals_held():
    """SIGINT and SIGTERM are held (not lost) within the block, and delivered when it ends (main thread, POSIX)."""
    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def stop(demo) -> None:
    """Stop a server started by :func:`launch` and remove every session's folder (and the root, if launch made it)."""
    demo.sgi2v_stop()


@contextlib.contextmanager
def _interrupted_by(signum: int):
    """Within the block, the signal ``signum`` stops the main thread as Ctrl-C does (a KeyboardInterrupt)."""

    def interrupt(number, frame):
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signum, interrupt)
    except ValueError:  # not the main thread: signals cannot be handled here
        yield
        return
    try:
        yield
    finally:
        signal.signal(signum, previous)
