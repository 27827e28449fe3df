"""The settings of one generation besides the method's: size, frames, sampling, seed, image fit, device.

:class:`GenerationSettings` sits next to :class:`sgi2v.SGI2VConfig` (the method's settings). Both
declare each setting once, with its help text and range (see :mod:`sgi2v.schema`);
:func:`resolve_settings` reads them from any surface (command line, manifest line, run record, web
form) with the same names, aliases, checks and messages.

Plain Python, no torch: a request is checked completely before the heavy libraries load.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from dataclasses import dataclass
from typing import Any, Mapping

from .config import LATENT_WINDOW, METHOD, SVD_SIGMA_MAX, SVD_SIGMA_MIN, SVD_VAE_FACTOR, SGI2VConfig, latent_window
from .schema import Spec, describe, flag, parse_value, setting, specs

__all__ = [
    "DEFAULT_MODEL", "XT_MODEL", "SPRITES_MODEL", "TINY_MODEL_ID", "SIZE_MULTIPLE", "GenerationSettings", "default_num_frames", "native_size",
    "model_sigma_range", "resolve_settings",
    "setting_specs", "alias_names", "available_cores", "settings_table",
]

DEFAULT_MODEL = "stabilityai/stable-video-diffusion-img2vid"
XT_MODEL = "stabilityai/stable-video-diffusion-img2vid-xt"
#: The small model shipped with the package, trained on the sprites world (sgi2v.sprites), offline.
SPRITES_MODEL = "sprites"
#: The tiny random model built in memory (sgi2v.testing) for tests and offline trials.
TINY_MODEL_ID = "tiny-random"
#: Side lengths must be multiples of this (the UNet halves the latent three times after the VAE's 8).
SIZE_MULTIPLE = 64
MAX_SEED = 2**63 - 1

SAMPLING = "Stable Video Diffusion"
OUTPUT = "video"
RUNTIME = "device and memory"
GROUPS = (OUTPUT, SAMPLING, METHOD, RUNTIME)

DTYPE_ALIASES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16", "half": "float16", "float": "float32"}
#: Spatial transformers of the SVD UNet (the hub models' layout): valid feature layers.
SVD_FEATURE_LAYERS = tuple(
    [f"down_blocks.{b}.attentions.{a}" for b in range(3) for a in range(2)] + ["mid_block.attentions.0"]
    + [f"up_blocks.{b}.attentions.{a}" for b in range(1, 4) for a in range(3)]
)
_LAYER_PATTERN = re.compile(r"(down_blocks\.\d+\.attentions\.\d+|mid_block\.attentions\.\d+|up_blocks\.\d+\.attentions\.\d+)")


def default_num_frames(model: str | None) -> int:
    """Frames a model was trained for: 25 for SVD-XT (hub id, or a single file detected as XT), 14 otherwise."""
    from .single_file import SingleFileError, inspect_single_file, is_single_file

    if model and is_single_file(model):
        try:
            return inspect_single_file(model).num_frames
        except SingleFileError:
            return 14  # the file's problem is reported where the model is checked
    return 25 if model and model.rstrip("/").endswith("-xt") else 14


def native_size(model: str | None) -> tuple[int, int]:
    """``(height, width)`` a model was trained for: 128 x 128 for ``sprites``, 576 x 1024 for SVD (and any other)."""
    return (128, 128) if model == SPRITES_MODEL else (576, 1024)


def model_sigma_range(model: str | None) -> tuple[float, float]:
    """``(sigma_max, sigma_min)`` of a model's noise schedule: its folder's ``scheduler/scheduler_config.json`` where
    it has one (the shipped ``sprites`` model, a trained folder), else SVD's."""
    from .paths import model_folder

    config = model_folder(model) / "scheduler" / "scheduler_config.json" if model else None
    if config is not None and config.is_file():
        data = json.loads(config.read_text())
        return float(data.get("sigma_max", SVD_SIGMA_MAX)), float(data.get("sigma_min", SVD_SIGMA_MIN))
    return SVD_SIGMA_MAX, SVD_SIGMA_MIN


def available_cores() -> int:
    """CPU cores this process may use (its affinity), whatever OMP_NUM_THREADS says."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS, Windows
        return os.cpu_count() or 1


@dataclass(frozen=True)
class GenerationSettings:
    """Sampling, output, device and memory settings of one generation (the method's are :class:`SGI2VConfig`).

    Validated on creation. ``num_frames=None`` and ``threads=None`` mean "the model's" and "every
    core"; :func:`resolve_settings` and the generation fill them in, and the run record holds the values used.
    """

    height: int = setting(576, "output height in pixels (default: the model's, 576 for SVD, 128 for sprites)", "int", OUTPUT, minimum=SIZE_MULTIPLE, maximum=4096,
                          multiple_of=SIZE_MULTIPLE, label="Height")
    width: int = setting(1024, "output width in pixels (default: the model's, 1024 for SVD, 128 for sprites)", "int", OUTPUT, minimum=SIZE_MULTIPLE, maximum=4096,
                         multiple_of=SIZE_MULTIPLE, label="Width")
    image_fit: str = setting("stretch", "how the image is brought to the output size: stretch (resize, the authors' way), "
                             "crop (centre crop to the output's aspect, then resize) or pad (resize inside, black bars); "
                             "the trajectory follows the image", "choice", OUTPUT, choices=("stretch", "crop", "pad"),
                             label="Image fit")
    num_frames: int | None = setting(None, "frames to generate (default: the model's, 14 for SVD, 25 for SVD-XT)", "int", OUTPUT,
                                     minimum=2, maximum=128, optional=True, aliases=("frames",), label="Frames")
    fps: int = setting(7, "frame rate: SVD's conditioning and the video's", "int", OUTPUT, minimum=1, maximum=240,
                       label="Frames per second")
    num_inference_steps: int = setting(50, "denoising steps", "int", OUTPUT, minimum=1, maximum=1000, aliases=("steps",),
                                       label="Steps")
    seed: int = setting(817, "random seed of the initial noise (drawn on the CPU: the same on every device)", "int", OUTPUT,
                        minimum=0, maximum=MAX_SEED, label="Seed")
    motion_bucket_id: int = setting(127, "SVD's motion bucket: more motion when higher", "int", SAMPLING, minimum=0, maximum=1023,
                                    label="Motion bucket id")
    noise_aug_strength: float = setting(0.02, "noise added to the conditioning image", "float", SAMPLING, minimum=0.0, maximum=10.0,
                                        label="Noise augmentation")
    min_guidance_scale: float = setting(1.0, "classifier-free guidance scale at the first frame", "float", SAMPLING, minimum=0.0,
                                        maximum=100.0, label="Min guidance scale")
    max_guidance_scale: float = setting(3.0, "classifier-free guidance scale at the last frame", "float", SAMPLING, minimum=0.0,
                                        maximum=100.0, label="Max guidance scale")
    decode_chunk_size: int = setting(8, "frames decoded by the VAE at once (less memory when lower)", "int", SAMPLING, minimum=1,
                                     maximum=128, label="Decode chunk size")
    gradient_checkpointing: str = setting(
        "auto", "recompute the UNet's activations in the optimisation passes: much less memory, a little slower, same frames; "
        "auto turns it on on CUDA when a pass would not fit in free memory", "choice", RUNTIME, choices=("auto", "on", "off"),
        choice_aliases={"true": "on", "false": "off"}, label="Gradient checkpointing")
    offload: bool = setting(False, "model CPU offload: keep only the running model on the GPU", "bool", RUNTIME, scope="process",
                            label="Model CPU offload (less GPU memory)")
    compile: bool = setting(False, "torch.compile the UNet for the denoising steps (the optimisation passes stay eager): "
                            "the first steps wait for the compiler, later ones may be faster; frames equal within float "
                            "tolerance, not bit for bit", "bool", RUNTIME, scope="process", label="Compile the UNet")
    device: str = setting("auto", "where to run: auto (CUDA, then Apple MPS, then the CPU), cpu, cuda, cuda:N or mps", "choice",
                          RUNTIME, choices=("auto", "cpu", "cuda", "mps"), scope="process", form=False, label="Device")
    dtype: str = setting("auto", "precision of the model: auto (float16 on GPUs, float32 on the CPU), float32, float16 or "
                         "bfloat16", "choice", RUNTIME, choices=("auto", "float32", "float16", "bfloat16"),
                         choice_aliases=DTYPE_ALIASES, scope="process", form=False, label="Dtype")
    threads: int | None = setting(None, "CPU threads of torch (default: every core this process may use, also under torchrun); "
                                  "on the CPU the frames depend on it, so a replay uses the recorded number", "int", RUNTIME,
                                  minimum=1, maximum=4096, optional=True, form=False, label="CPU threads")

    def __post_init__(self) -> None:
        for name, (_, spec) in specs(type(self)).items():
            object.__setattr__(self, name, parse_value(name, spec, getattr(self, name)))

    def replace(self, **changes) -> "GenerationSettings":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return {name: getattr(self, name) for name in specs(type(self))}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "settings") -> "GenerationSettings":
        """From a record's ``settings`` (aliases accepted, unknown keys refused)."""
        return cls(**_canonical(data, specs(cls), source))

    @property
    def checkpointing(self) -> bool | None:
        """What the pipeline's ``gradient_checkpointing`` argument gets: None (decide), True or False."""
        return {"auto": None, "on": True, "off": False}[self.gradient_checkpointing]


def setting_specs() -> dict[str, tuple[dataclasses.Field, Spec]]:
    """Every setting, generation's then the method's, by name."""
    return {**specs(GenerationSettings), **specs(SGI2VConfig)}


def alias_names() -> dict[str, str]:
    """Older name -> setting name."""
    return {alias: name for name, (_, spec) in setting_specs().items() for alias in spec.aliases}


def _canonical(data: Mapping[str, Any], known: Mapping[str, Any], source: str) -> dict[str, Any]:
    aliases = alias_names()
    out: dict[str, Any] = {}
    given_as: dict[str, str] = {}
    for key, value in data.items():
        name = aliases.get(key, key)
        if name not in known:
            raise ValueError(_at(source, f"unknown setting {key!r} (known: {', '.join(known)})"))
        if name in out:
            raise ValueError(_at(source, f"{given_as[name]!r} and {key!r} are the same setting: give it once"))
        out[name], given_as[name] = value, key
    return out


def _at(source: str, message) -> str:
    return f"{source}: {message}" if source else str(message)


def resolve_settings(values: Mapping[str, Any], *, model: str | None = None, defaults: Mapping[str, Any] | None = None,
                     source: str = "settings") -> tuple[GenerationSettings, SGI2VConfig]:
    """Settings and method config from flat ``name -> value`` pairs, as every surface gives them.

    Args:
        values: setting names (or their aliases) and values, as JSON values or command-line text;
            settings not named take the value from ``defaults``, then the declared default.
        model: the model, which decides the default size and number of frames (and the check of feature layers).
        defaults: values that apply where ``values`` names nothing (a batch's command line under a
            manifest line).
        source: prefix of error messages (a file and line).

    Both are complete afterwards: ``num_frames``, ``height`` and ``width`` left unset are the model's, and without ``optimize_timesteps``
    the paper's window is moved to the number of steps. Raises ``ValueError`` naming the source,
    the setting and the value.
    """
    if model:
        from .single_file import check_single_file, is_single_file

        if is_single_file(model):
            check_single_file(model)  # before anything loads: a wrong file is one line naming it
    known = setting_specs()
    merged = {**_canonical(defaults or {}, known, source), **_canonical(values, known, source)}
    parsed: dict[str, Any] = {}
    for name, value in merged.items():
        try:
            parsed[name] = parse_value(name, known[name][1], value)
        except ValueError as err:
            raise ValueError(_at(source, err)) from None
    generation = {k: v for k, v in parsed.items() if k in specs(GenerationSettings)}
    method = {k: v for k, v in parsed.items() if k in specs(SGI2VConfig)}
    if generation.get("num_frames") is None:
        generation["num_frames"] = default_num_frames(model)
    native = dict(zip(("height", "width"), native_size(model)))
    for name in ("height", "width"):
        if name not in generation:
            generation[name] = native[name]
    settings = GenerationSettings(**generation)
    steps = settings.num_inference_steps
    if method.get("optimize_timesteps") == LATENT_WINDOW:
        method["optimize_timesteps"] = latent_window((settings.height // SVD_VAE_FACTOR, settings.width // SVD_VAE_FACTOR), steps,
                                                     model_sigma_range(model))
    try:
        config = SGI2VConfig(**method) if "optimize_timesteps" in method else SGI2VConfig(**method).scaled_to_steps(steps)
    except ValueError as err:
        raise ValueError(_at(source, err)) from None
    late = [t for t in config.optimize_timesteps if t > steps] if config.enabled else []
    if late:
        window = SGI2VConfig().scaled_to_steps(steps).optimize_timesteps
        raise ValueError(_at(source, f"optimize_timesteps: {late} exceed num_inference_steps={steps} and would never run "
                         f"(without optimize_timesteps the paper's window is moved to {steps} steps: "
                         f"{min(window)}-{max(window)})"))
    for name in config.feature_layers:
        if not _LAYER_PATTERN.fullmatch(name) or (model in (DEFAULT_MODEL, XT_MODEL) and name not in SVD_FEATURE_LAYERS):
            raise ValueError(_at(source, f"feature_layers: {name!r} is not a spatial transformer of the SVD UNet "
                                         f"(these are {', '.join(SVD_FEATURE_LAYERS)})"))
    return settings, config


def settings_table() -> str:
    """The Markdown table of every setting (docs/settings.md holds it; a test keeps them equal)."""
    rows = ["| setting | command line | default and meaning |", "| --- | --- | --- |"]
    for group in GROUPS:
        for name, (field, spec) in setting_specs().items():
            if spec.group != group:
                continue
            flags = [flag(name)] + [flag(a) for a in spec.aliases]
            if spec.kind == "bool":
                flags.insert(1, "--no-" + name.replace("_", "-"))
            where = "" if spec.scope == "sample" else " Fixed for a whole batch run."
            rows.append(f"| `{name}` | {', '.join(f'`{f}`' for f in flags)} | {describe(name, field, spec)}.{where} |")
    return "\n".join(rows) + "\n"
