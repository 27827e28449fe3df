"""The SG-I2V nodes of ComfyUI: load a model, build a trajectory, sample the frames, draw the target boxes.

ComfyUI calls a node class through ``INPUT_TYPES`` (its inputs and their widgets), ``FUNCTION`` (the
method it calls, with the inputs as keyword arguments) and ``RETURN_TYPES``. An ``IMAGE`` is a float32
tensor ``(B, H, W, C)`` in [0, 1].

The Sampler's setting inputs are derived from the settings' declarations
(:func:`sgi2v.settings.setting_specs`), with the names of the command line's options and the batch
manifest's keys; the Load Model node's device, dtype and offload inputs too. The Sampler goes through
the generation layer (:func:`sgi2v.generation.prepare_inputs`, :func:`sgi2v.generation.generate`), so its
frames are the library's for the same inputs.

Nothing from ComfyUI is imported when this module loads: progress (``comfy.utils.ProgressBar``) and
cancellation (``comfy.model_management.throw_exception_if_processing_interrupted``) are looked up when a
sampler runs, and skipped outside ComfyUI. torch is imported when a node runs, so ``sgi2v``'s command
line stays light.
"""

from __future__ import annotations

import dataclasses
import json
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..schema import Spec, describe
from ..settings import DEFAULT_MODEL, resolve_settings, setting_specs
from ..single_file.reader import is_single_file
from ..trajectory import CAMERA_DIRECTIONS, DEFAULT_PAN_AMOUNT, MAX_ZOOM, MIN_ZOOM, read_json_text

__all__ = [
    "MODEL_TYPE", "TRAJECTORY_TYPE", "BOXES_TYPE", "CATEGORY", "LoadedModel", "NodeTrajectory", "TargetBoxes",
    "setting_input", "image_to_pil", "frames_to_image", "LoadModel", "Trajectory", "Sampler", "DrawBoxes",
    "NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS",
]

#: ComfyUI socket types of the values passed between these nodes.
MODEL_TYPE = "SGI2V_MODEL"
TRAJECTORY_TYPE = "SGI2V_TRAJECTORY"
BOXES_TYPE = "SGI2V_BOXES"
CATEGORY = "SG-I2V"
NO_PAN = "none"


# -- values passed between the nodes ----------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class LoadedModel:
    """What SG-I2V Load Model gives: the pipeline, the model's name (hub id, folder path, model file or
    ``tiny-random``), whether it is offloaded to the CPU between uses, and, inside ComfyUI, the
    ``comfy.model_patcher.ModelPatcher`` through which ComfyUI's memory manager moves it (None outside)."""

    pipe: Any
    name: str
    offload: bool = False
    patcher: Any = None


@dataclass(frozen=True)
class NodeTrajectory:
    """What SG-I2V Trajectory gives: either our trajectory JSON (in the sampled image's pixels) or paths
    drawn on a canvas, turned into boxes by :meth:`to_json` once the image and the number of frames are known.

    ``paths`` are ``(P, 2)`` arrays of ``(x, y)`` in canvas pixels; ``canvas_size`` ``(width, height)``,
    None for the image's own size; ``box_size`` ``(width, height)`` or ``boxes`` (frame-0 boxes
    ``(x0, y0, x1, y1)``, one per path) and ``static`` (boxes that stay put) are in canvas pixels.
    ``camera`` is our JSON's ``camera`` object, or None.
    """

    data: dict | None = None
    paths: tuple = ()
    canvas_size: tuple[int, int] | None = None
    box_size: tuple[float, float] | None = None
    boxes: tuple | None = None
    static: tuple | None = None
    timing: str = "time"
    camera: dict | None = None

    def to_json(self, num_frames: int, image_size: tuple[int, int]) -> dict:
        """Our trajectory JSON in pixels of an image of ``image_size`` ``(width, height)``, for ``num_frames`` frames."""
        if self.data is not None:
            data = dict(self.data)
        else:
            from ..formats import tracks_to_trajectory

            data = tracks_to_trajectory(
                [np.asarray(p, dtype=np.float64) for p in self.paths], num_frames=num_frames,
                canvas_size=self.canvas_size or tuple(image_size), image_size=tuple(image_size), box_size=self.box_size,
                boxes=None if self.boxes is None else [list(b) for b in self.boxes], timing=self.timing,
                static=None if self.static is None else [list(b) for b in self.static], source="SG-I2V Trajectory",
            )
        if self.camera is not None:
            data["camera"] = dict(self.camera)
        return data


@dataclass(frozen=True)
class TargetBoxes:
    """The boxes a video was made for: ``boxes`` ``(N, F, 4)`` ``(x0, y0, x1, y1)`` in pixels of frames of
    ``size`` ``(width, height)``."""

    boxes: np.ndarray
    size: tuple[int, int]

    def scaled(self, width: int, height: int) -> np.ndarray:
        """The boxes in pixels of ``width`` x ``height`` frames."""
        factor = np.array([width, height] * 2, dtype=np.float64) / np.array(list(self.size) * 2, dtype=np.float64)
        return np.asarray(self.boxes, dtype=np.float64) * factor


# -- settings as node inputs ------------------------------------------------------------------------

def setting_input(name: str, field: dataclasses.Field, spec: Spec) -> tuple:
    """A setting's ComfyUI input ``(type, options)``, from its declaration.

    Numbers keep their bounds; an optional integer (``num_frames``, ``threads``) and the size (``height``,
    ``width``) take 0 for "not given" (the model's frame count and size, every core); ``optimize_timesteps`` is text, empty for the paper's window
    moved to the number of steps; ``feature_layers`` is comma-separated text, a size ``WxH`` text.
    """
    tooltip = describe(name, field, spec)
    default = field.default
    if spec.kind == "bool":
        return "BOOLEAN", {"default": bool(default), "tooltip": tooltip}
    if spec.kind == "choice":
        return list(spec.choices), {"default": default, "tooltip": tooltip}
    if spec.kind == "timesteps":
        return "STRING", {"default": "", "tooltip": f"{spec.help}; empty for no value"}
    if spec.kind == "names":
        return "STRING", {"default": ",".join(default), "tooltip": tooltip}
    if spec.kind == "size":
        return "STRING", {"default": "" if default is None else "x".join(f"{v:g}" for v in default), "tooltip": tooltip}
    if spec.kind not in ("int", "float"):
        raise ValueError(f"{name}: no ComfyUI input for settings of kind {spec.kind!r}")
    bounds = {"min": spec.minimum, "max": spec.maximum}
    if spec.kind == "int":
        options = {"default": default, **bounds, "step": spec.multiple_of or 1}
        if spec.optional or name in MODEL_SIZED:
            options.update(default=0 if default is None or name in MODEL_SIZED else default, min=0,
                           tooltip=f"0 for the default. {tooltip}")
        if name == "seed":
            options["control_after_generate"] = True
        return "INT", {"tooltip": tooltip, **options}
    return "FLOAT", {"default": default, **bounds, "step": 0.01, "round": False, "tooltip": tooltip}


#: Settings whose node input takes 0 for "the model's own" (128 x 128 for sprites, 576 x 1024 for SVD).
MODEL_SIZED = ("height", "width")


def _inputs(scope: str) -> dict[str, tuple]:
    return {name: setting_input(name, field, spec) for name, (field, spec) in setting_specs().items() if spec.scope == scope}


def _setting_values(given: dict[str, Any]) -> dict[str, Any]:
    """The node's setting inputs as ``name -> value`` pairs for :func:`resolve_settings`: 0 for an optional
    integer and empty timesteps stand for "not given"."""
    known = setting_specs()
    values = {}
    for name, value in given.items():
        spec = known[name][1]
        if (spec.optional or name in MODEL_SIZED) and spec.kind == "int" and value == 0:
            continue
        if spec.kind == "timesteps" and isinstance(value, str) and not value.strip():
            continue
        values[name] = value
    return values


# -- IMAGE tensors ----------------------------------------------------------------------------------

def image_to_pil(image, source: str = "image") -> Image.Image:
    """ComfyUI's IMAGE, a float tensor ``(1, H, W, C)`` in [0, 1] with 3 or 4 channels, as an 8-bit picture
    (rounded to the nearest level; a ``(H, W, C)`` tensor is taken as one image)."""
    if image.ndim == 3:
        image = image[None]
    if image.ndim != 4 or image.shape[-1] not in (3, 4):
        raise ValueError(f"{source}: expected an IMAGE (B, H, W, 3 or 4), got shape {tuple(image.shape)}")
    if image.shape[0] != 1:
        raise ValueError(f"{source}: a batch of {image.shape[0]} images; SG-I2V animates one (pick it with ImageFromBatch)")
    pixels = (image[0].detach().float().clamp(0, 1) * 255).round().to("cpu").numpy().astype(np.uint8)  # (H, W, C)
    return Image.fromarray(pixels, "RGBA" if pixels.shape[-1] == 4 else "RGB")


def _image_to_uint8(images, source: str) -> np.ndarray:
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"{source}: expected an IMAGE (B, H, W, 3), got shape {tuple(images.shape)}")
    return (images.detach().float().clamp(0, 1) * 255).round().to("cpu").numpy().astype(np.uint8)  # (B, H, W, 3)


def frames_to_image(frames: np.ndarray):
    """uint8 frames ``(F, H, W, 3)`` as ComfyUI's IMAGE: float32 ``(F, H, W, 3)`` in [0, 1]."""
    import torch

    return torch.from_numpy(np.array(frames, dtype=np.float32)) / 255.0  # a copy: writable


# -- ComfyUI's progress bar and interrupt -----------------------------------------------------------

class _ComfyProgress:
    """``callback_on_step_end`` of the pipeline: one tick of ComfyUI's progress bar per denoising step, and
    ComfyUI's interrupt checked at each (it raises, and the pipeline restores its layers on the way out)."""

    def __init__(self, total: int):
        try:
            import comfy.model_management
            import comfy.utils
        except ImportError:  # outside ComfyUI
            self.bar, self.check = None, lambda: None
        else:
            self.bar = comfy.utils.ProgressBar(total)
            self.check = comfy.model_management.throw_exception_if_processing_interrupted

    def __call__(self, pipe, step: int, timestep, callback_kwargs: dict) -> dict:
        self.check()
        if self.bar is not None:
            self.bar.update(1)
        return callback_kwargs


# -- nodes ------------------------------------------------------------------------------------------

def _autograd_allowed():
    """ComfyUI runs every node under ``torch.inference_mode()``; SG-I2V optimises the latent with autograd, which
    needs the weights and the latent made outside it: the model is loaded and sampled in this block."""
    import torch

    return torch.inference_mode(False)


def _comfy_models_folder(model: str) -> str:
    """A model name that is a folder under ComfyUI's ``models/diffusers/``, or a file under its
    ``models/checkpoints/`` (any of their configured paths), as that path; any other name as it is (outside
    ComfyUI too)."""
    try:
        import folder_paths
    except ImportError:
        return model
    if Path(model).is_absolute() or Path(model).exists():
        return model
    for root in folder_paths.get_folder_paths("diffusers"):
        candidate = Path(root) / model
        if (candidate / "model_index.json").is_file():
            return str(candidate)
    if is_single_file(model):
        found = folder_paths.get_full_path("checkpoints", model)
        if found:
            return found
    return model


NO_CHECKPOINT = "none"


def _checkpoint_files() -> list[str]:
    """The ``.safetensors`` and ``.ckpt`` files of ComfyUI's ``models/checkpoints/`` (none outside ComfyUI)."""
    try:
        import folder_paths
    except ImportError:
        return []
    return [f for f in folder_paths.get_filename_list("checkpoints") if is_single_file(f)]


# -- ComfyUI's memory manager -----------------------------------------------------------------------

def _comfy_manager():
    """ComfyUI's ``model_management`` module when this runs inside ComfyUI (with its ``ModelPatcher``), else None."""
    try:
        import comfy.model_management
        from comfy.model_management import load_models_gpu, unet_offload_device  # noqa: F401
        from comfy.model_patcher import ModelPatcher  # noqa: F401
    except ImportError:
        return None
    return comfy.model_management


def _patcher(pipe, load_device):
    """A ``comfy.model_patcher.ModelPatcher`` over the pipeline's UNet, VAE and image encoder, so that ComfyUI's
    ``load_models_gpu`` and ``free_memory`` move them with its own models."""
    import comfy.model_management
    import comfy.model_patcher
    import torch

    class SGI2VModules(torch.nn.Module):
        """The pipeline's modules as one module (ComfyUI sizes, moves and unloads it as a whole)."""

        def __init__(self):
            super().__init__()
            self.unet, self.vae, self.image_encoder = pipe.unet, pipe.vae, pipe.image_encoder

        def get_dtype(self):
            return self.unet.dtype

    return comfy.model_patcher.ModelPatcher(SGI2VModules(), load_device=load_device,
                                            offload_device=comfy.model_management.unet_offload_device())


def _activation_bytes(model: str, settings, config) -> int:
    """Device memory a generation needs beside the weights (the cost model's peak of the mode these settings
    run in, less the weights), for ComfyUI to free before our model moves in; 0 when it cannot be predicted."""
    try:
        from ..cost.cli import plan_for

        plan = plan_for(model, settings, config)
        return max(0, int(plan["modes"][plan["chosen"]]["peak_bytes"]) - int(plan["weights_bytes"]["total"]))
    except Exception as err:  # a model whose architecture is unknown offline: ComfyUI's own minimum applies
        import logging

        logging.getLogger(__name__).warning("SG-I2V Sampler: no memory estimate for %s (%s)", model, err)
        return 0


def _load_on_device(model: "LoadedModel", settings, config) -> None:
    """Before sampling: ComfyUI frees what this generation needs (its other models are unloaded as needed) and
    moves ours onto its device, whole. Afterwards ours stays there until ComfyUI needs the room."""
    if model.patcher is None:
        return
    import comfy.model_management

    comfy.model_management.load_models_gpu([model.patcher], memory_required=_activation_bytes(model.name, settings, config),
                                           force_full_load=True)


#: Models loaded by SG-I2V Load Model and still used by the workflow, by what they were loaded with: the same
#: model loaded twice is one copy.
_LOADED: "weakref.WeakValueDictionary[tuple, LoadedModel]" = weakref.WeakValueDictionary()


def _comfy_device():
    """The device ComfyUI runs on (so ``--cpu`` is obeyed); outside ComfyUI, our ``auto``."""
    try:
        import comfy.model_management
    except ImportError:
        from ..loading import resolve_device

        return resolve_device("auto")
    return comfy.model_management.get_torch_device()


#: Load Model inputs added after workflows were saved with it: optional, their defaults when absent.
OPTIONAL_PROCESS_INPUTS = ("compile",)


class LoadModel:
    """SG-I2V Load Model: a Stable Video Diffusion model (hub id, local diffusers folder, the shipped ``sprites``
    model, or ``tiny-random``)."""

    CATEGORY = CATEGORY
    RETURN_TYPES = (MODEL_TYPE,)
    RETURN_NAMES = ("model",)
    FUNCTION = "load"
    DESCRIPTION = "Loads a Stable Video Diffusion model for SG-I2V (diffusers format)."

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        model = ("STRING", {"default": DEFAULT_MODEL, "tooltip": "hub id, local diffusers model folder (a path, or a "
                            "folder name under ComfyUI's models/diffusers/), sprites (the small shipped model trained on moving "
                            "sprites, 128 x 128, offline) or tiny-random (random weights, for checking a workflow offline)"})
        process = _inputs("process")
        # Newer settings are optional inputs, so that workflows saved before them still validate.
        optional = {name: process.pop(name) for name in OPTIONAL_PROCESS_INPUTS}
        optional["checkpoint"] = ([NO_CHECKPOINT, *_checkpoint_files()], {
            "default": NO_CHECKPOINT, "tooltip": "a single-file SVD checkpoint of ComfyUI's models/checkpoints/ "
            "(svd.safetensors, svd_xt.safetensors, svd_xt_1_1.safetensors); when set, it is loaded instead of model"})
        return {"required": {"model": model, **process}, "optional": optional}

    def load(self, model: str, checkpoint: str = NO_CHECKPOINT, **values) -> tuple[LoadedModel]:
        from ..loading import load_pipeline, resolve_device, resolve_dtype

        source = "SG-I2V Load Model"
        if checkpoint and checkpoint != NO_CHECKPOINT:
            model = checkpoint
        model = model.strip()
        if not model:
            raise ValueError(f"{source}: model: give a hub id, a local diffusers folder, a model file, sprites or tiny-random")
        model = _comfy_models_folder(model)
        settings, _ = resolve_settings(values, model=model, source=source)
        device = _comfy_device() if settings.device == "auto" else resolve_device(settings.device)
        dtype = resolve_dtype(settings.dtype, device, model)
        key = (model, str(device), str(dtype), settings.offload, settings.compile)
        shared = _LOADED.get(key)
        if shared is not None:
            return (shared,)
        # Inside ComfyUI (and without our own offload) the model waits on ComfyUI's offload device, and ComfyUI's
        # manager moves it onto the device when a sampler needs it.
        manager = None if settings.offload else _comfy_manager()
        managed = manager is not None
        home = manager.unet_offload_device() if managed else device
        with _autograd_allowed():
            pipe = load_pipeline(model, device=home, dtype=dtype, offload=settings.offload)
        if settings.compile:
            pipe.compile_unet()
        loaded = LoadedModel(pipe, model, settings.offload, _patcher(pipe, device) if managed else None)
        _LOADED[key] = loaded
        return (loaded,)


class Trajectory:
    """SG-I2V Trajectory: boxes and their paths, from KJNodes SplineEditor's ``coord_str`` or our JSON."""

    CATEGORY = CATEGORY
    RETURN_TYPES = (TRAJECTORY_TYPE,)
    RETURN_NAMES = ("trajectory",)
    FUNCTION = "build"
    DESCRIPTION = ("Paths drawn with SplineEditor (coord_str: one path or several) with a box size or boxes, static "
                   "anchors and a camera move; or a trajectory JSON in the image's pixels.")

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        from ..formats import DEFAULT_BOX_FRACTION, TrajectoryOptions
        from ..schema import specs

        text, size = _text_input, _size_input
        timing_field, timing_spec = specs(TrajectoryOptions)["timing"]
        return {
            "required": {
                "coord_str": text("SplineEditor's coord_str: [{\"x\": .., \"y\": ..}, ...] for one path, a list of such "
                                  "lists for several, in canvas pixels; leave empty to use trajectory_json"),
                "canvas_width": size("width of the canvas the points were drawn on (SplineEditor's width); 0: the image's"),
                "canvas_height": size("height of the canvas the points were drawn on (SplineEditor's height); 0: the image's"),
                "box_width": size(f"width of each path's box in canvas pixels (unless boxes is given); 0 for both: a square "
                                  f"of {DEFAULT_BOX_FRACTION:g} of the canvas's shorter side"),
                "box_height": size("height of each path's box in canvas pixels (unless boxes is given)"),
                "timing": setting_input("timing", timing_field, timing_spec),
                "camera_pan": ([NO_PAN, *CAMERA_DIRECTIONS], {"default": NO_PAN, "tooltip": "the camera's direction; "
                                                              "the scene moves the other way"}),
                "pan_amount": ("FLOAT", {"default": DEFAULT_PAN_AMOUNT, "min": 0.01, "max": 0.99, "step": 0.01,
                                         "tooltip": "how far the camera pans by the last frame, as a fraction of the image"}),
                "zoom": ("FLOAT", {"default": 1.0, "min": MIN_ZOOM, "max": MAX_ZOOM, "step": 0.05, "round": False,
                                   "tooltip": "factor by which the scene grows by the last frame (> 1 zooms in, 1: none)"}),
            },
            "optional": {
                "boxes": text("frame-0 boxes, one per path, as JSON [[x0, y0, x1, y1], ...] in canvas pixels "
                              "(instead of box_width and box_height)"),
                "static_boxes": text("boxes whose content stays put, as JSON [[x0, y0, x1, y1], ...] in canvas pixels"),
                "trajectory_json": text("our trajectory JSON (boxes with path, keyframes, static, scale; camera) in the "
                                        "image's pixels, used when coord_str is empty"),
            },
        }

    def build(self, coord_str: str, canvas_width: int = 0, canvas_height: int = 0, box_width: int = 0, box_height: int = 0,
              timing: str = "time", camera_pan: str = NO_PAN, pan_amount: float = DEFAULT_PAN_AMOUNT, zoom: float = 1.0,
              boxes: str = "", static_boxes: str = "", trajectory_json: str = "") -> tuple[NodeTrajectory]:
        source = "SG-I2V Trajectory"
        camera = None
        if camera_pan != NO_PAN or zoom != 1.0:
            camera = {"zoom": zoom} if camera_pan == NO_PAN else {"pan": camera_pan, "amount": pan_amount, "zoom": zoom}
        if coord_str.strip() and trajectory_json.strip():
            raise ValueError(f"{source}: give coord_str or trajectory_json, not both")
        if trajectory_json.strip():
            data = read_json_text(trajectory_json, f"{source}: trajectory_json")
            if not isinstance(data, dict):
                raise ValueError(f"{source}: trajectory_json: expected an object like {{\"boxes\": [...]}}, got {type(data).__name__}")
            if camera is not None and "camera" in data:
                raise ValueError(f"{source}: trajectory_json has a camera and camera_pan/zoom set one too: give it once")
            return (NodeTrajectory(data=data, camera=camera),)
        if not coord_str.strip():
            raise ValueError(f"{source}: coord_str and trajectory_json are both empty: draw a path or give a trajectory")
        from ..formats import parse_coord_str

        paths = tuple(parse_coord_str(coord_str, f"{source}: coord_str"))
        if (canvas_width == 0) != (canvas_height == 0):
            raise ValueError(f"{source}: canvas_width {canvas_width}, canvas_height {canvas_height}: give both, or 0 for both "
                             "(the image's size)")
        start_boxes = _box_list(boxes, f"{source}: boxes")
        if start_boxes is not None and len(start_boxes) != len(paths):
            raise ValueError(f"{source}: boxes: {len(start_boxes)} boxes for {len(paths)} paths; give one per path")
        if (box_width == 0) != (box_height == 0):
            raise ValueError(f"{source}: box_width {box_width}, box_height {box_height}: give both, or 0 for both (the default square)")
        return (NodeTrajectory(
            paths=paths, canvas_size=(canvas_width, canvas_height) if canvas_width else None,
            box_size=(float(box_width), float(box_height)) if box_width and start_boxes is None else None, boxes=start_boxes,
            static=_box_list(static_boxes, f"{source}: static_boxes"), timing=timing, camera=camera,
        ),)


def _text_input(tooltip: str) -> tuple:
    return "STRING", {"default": "", "multiline": True, "tooltip": tooltip}


def _size_input(tooltip: str) -> tuple:
    """A width or height in pixels, 0 for "not given"."""
    return "INT", {"default": 0, "min": 0, "max": 8192, "step": 1, "tooltip": tooltip}


def _box_list(text: str, source: str) -> tuple | None:
    """``[[x0, y0, x1, y1], ...]`` from JSON text; None for empty text."""
    if not text or not text.strip():
        return None
    data = read_json_text(text, source)
    if not isinstance(data, list) or not data or not all(
            isinstance(b, list) and len(b) == 4 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in b)
            for b in data):
        raise ValueError(f"{source}: expected boxes like [[x0, y0, x1, y1], ...], got {text.strip()[:60]!r}")
    return tuple(tuple(float(v) for v in b) for b in data)


class Sampler:
    """SG-I2V Sampler: the frames of an image animated along a trajectory, with SVD and method settings."""

    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE", BOXES_TYPE, "STRING")
    RETURN_NAMES = ("frames", "boxes", "record")
    FUNCTION = "sample"
    DESCRIPTION = ("Animates the image so that the content of each box follows its path (SG-I2V on Stable Video "
                   "Diffusion). Outputs the frames, the target boxes (for SG-I2V Draw Boxes) and the run record as JSON.")

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {"model": (MODEL_TYPE,), "image": ("IMAGE",), "trajectory": (TRAJECTORY_TYPE,)},
            "optional": _inputs("sample"),
        }

    def sample(self, model: LoadedModel, image, trajectory: NodeTrajectory, **values) -> tuple:
        from ..generation import generate, prepare_inputs

        settings, config = resolve_settings(_setting_values(values), model=model.name, source="SG-I2V Sampler")
        settings = settings.replace(offload=model.offload)
        picture = image_to_pil(image, "SG-I2V Sampler: image")
        prepared = prepare_inputs(picture, trajectory.to_json(settings.num_frames, picture.size), settings,
                                  source="SG-I2V Trajectory")
        progress = _ComfyProgress(settings.num_inference_steps)
        progress.check()
        with _autograd_allowed():  # the cost model traces a backward pass too
            _load_on_device(model, settings, config)
            generation = generate(prepared, settings, config, model.pipe, model=model.name, callback_on_step_end=progress)
        boxes = TargetBoxes(prepared.boxes, (settings.width, settings.height))
        return frames_to_image(generation.frames), boxes, json.dumps(generation.record)


class DrawBoxes:
    """SG-I2V Draw Boxes: each target box drawn on its frame; on a single image, every box's path."""

    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("images",)
    FUNCTION = "draw"
    DESCRIPTION = ("Draws the target boxes on the frames (one frame per box position); given one image, draws each "
                   "box at frame 0 and the path of its centre. Frames of another size get the boxes scaled.")

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"images": ("IMAGE",), "boxes": (BOXES_TYPE,)}}

    def draw(self, images, boxes: TargetBoxes) -> tuple:
        from ..video import draw_condition, draw_overlay

        frames = _image_to_uint8(images, "SG-I2V Draw Boxes: images")
        count, height, width = frames.shape[:3]
        scaled = boxes.scaled(width, height)
        if count == scaled.shape[1]:
            return (frames_to_image(draw_overlay(frames, scaled)),)
        if count == 1:
            return (frames_to_image(np.asarray(draw_condition(Image.fromarray(frames[0]), scaled))[None]),)
        raise ValueError(f"SG-I2V Draw Boxes: images: {count} frames for boxes of {scaled.shape[1]} frames; "
                         "give the sampler's frames or one image")


NODE_CLASS_MAPPINGS = {
    "SGI2VLoadModel": LoadModel,
    "SGI2VTrajectory": Trajectory,
    "SGI2VSampler": Sampler,
    "SGI2VDrawBoxes": DrawBoxes,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "SGI2VLoadModel": "SG-I2V Load Model",
    "SGI2VTrajectory": "SG-I2V Trajectory",
    "SGI2VSampler": "SG-I2V Sampler",
    "SGI2VDrawBoxes": "SG-I2V Draw Boxes",
}
