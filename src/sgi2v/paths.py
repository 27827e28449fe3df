"""What is checked of a path before anything heavy runs: an input file, an input folder, an output file, an
output folder, or a model given as a local folder or file.

Each check raises :class:`PathError` (a ``ValueError``) with a one-line message that names the path and the
problem; the command line puts the option's name in front (``--traj: poses/: is a folder, not a trajectory
file``). Nothing here imports torch: the command line runs these checks before the model loads.

The command line marks its path options with :func:`path_option`, and :func:`check_path_options` checks every
marked option of a parsed command in the order the parser defines them.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
from pathlib import Path

__all__ = ["PathError", "IN_FILE", "IN_FOLDER", "OUT_FILE", "OUT_FOLDER", "MODEL", "path_option", "check_path",
           "check_path_options", "local_model_path", "check_local_model", "existing_ancestor", "probe_write"]

IN_FILE, IN_FOLDER, OUT_FILE, OUT_FOLDER, MODEL = "input file", "input folder", "output file", "output folder", "model"
SVD_PIPELINES = ("StableVideoDiffusionPipeline", "SGI2VPipeline")
MODEL_FOLDERS = ("unet", "vae", "image_encoder", "scheduler", "feature_extractor")
#: Names of models that are not paths (the shipped and the test model).
NAMED_MODELS = ("sprites", "tiny-random")
#: The shipped ``sprites`` model (a diffusers SVD folder, float16 weights).
SPRITES_MODEL_DIR = Path(__file__).parent / "sprites" / "model"


class PathError(ValueError):
    """A path that cannot serve: the message names it and says why."""


def path_option(action: argparse.Action, kind: str, noun: str | None = None) -> argparse.Action:
    """Mark a parser action as a path of ``kind`` (``noun`` says what the file is, for messages); returns it."""
    action.path_kind = kind
    action.path_noun = noun
    return action


def _reason(err: OSError) -> str:
    return err.strerror or errno.errorcode.get(err.errno or 0, "") or type(err).__name__


def check_input_file(value: str | os.PathLike, noun: str = "file") -> Path:
    path = Path(value).expanduser()
    if path.is_dir():
        raise PathError(f"{value}: is a folder, not {_article(noun)}")
    if not path.exists():
        raise PathError(f"{value}: {noun} not found")
    try:
        with open(path, "rb") as fh:
            fh.read(1)
    except OSError as err:
        raise PathError(f"{value}: cannot read the {noun} ({_reason(err)})") from None
    return path


def check_input_folder(value: str | os.PathLike, noun: str = "folder") -> Path:
    path = Path(value).expanduser()
    if path.exists() and not path.is_dir():
        raise PathError(f"{value}: is a file, not {_article(noun)}")
    if not path.is_dir():
        raise PathError(f"{value}: {noun} not found")
    try:
        next(os.scandir(path), None)
    except OSError as err:
        raise PathError(f"{value}: cannot read the {noun} ({_reason(err)})") from None
    return path


def existing_ancestor(path: Path) -> Path:
    """``path`` if it exists, else its nearest ancestor that does (where its missing folders would be made)."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    return existing


def probe_write(folder: Path) -> None:
    """Make and remove a file in ``folder``: ``OSError`` if nothing can be written there."""
    probe = folder / f".sgi2v-write-check-{os.getpid()}"
    with open(probe, "wb"):
        pass
    probe.unlink()


def _probe_write(folder: Path, value, what: str) -> None:
    try:
        probe_write(folder)
    except OSError as err:
        raise PathError(f"{value}: cannot write {what} in {os.path.abspath(folder)} ({_reason(err)})") from None


def check_output_file(value: str | os.PathLike, noun: str = "file") -> Path:
    """An output file can be written: not a folder, under folders that exist or can be made, somewhere writable.
    (Whether an existing file may be replaced is the command's business.)"""
    path = Path(value).expanduser()
    if path.is_dir():
        raise PathError(f"{value}: is a folder; give the {noun} as a file name")
    existing = existing_ancestor(path.parent)
    if not existing.is_dir():
        raise PathError(f"{value}: cannot be created: {existing} is a file, not a folder")
    _probe_write(existing, value, f"the {noun}")
    return path


def check_output_folder(value: str | os.PathLike, noun: str = "folder") -> Path:
    """An output folder exists and is writable, or can be made where it is asked for."""
    path = Path(value).expanduser()
    if path.exists() and not path.is_dir():
        raise PathError(f"{value}: is a file, not {_article(noun)}")
    existing = existing_ancestor(path)
    if not existing.is_dir():
        raise PathError(f"{value}: cannot be created: {existing} is a file, not a folder")
    _probe_write(existing, value, f"the {noun}")
    return path


def model_folder(model: str) -> Path:
    """The folder a model's name points at: the shipped ``sprites`` model's for its name, else the path given
    (which may not exist: a hub id, a file)."""
    return SPRITES_MODEL_DIR if model == "sprites" else Path(model).expanduser()


def local_model_path(model: str) -> Path | None:
    """The local path ``model`` names, or ``None`` for a hub id or a shipped model's name. A name is a path when
    it exists, when it starts with ``.``, ``/`` or ``~``, when it has more than one ``/`` (a hub id has one)
    or when it ends like a checkpoint file."""
    from .single_file import is_single_file

    if model in NAMED_MODELS:
        return None
    path = Path(model).expanduser()
    if path.exists() or model.startswith((".", "/", "~")) or model.count("/") > 1 or is_single_file(model):
        return path
    return None


def check_local_model(model: str) -> None:
    """A local model path holds a model: a single-file checkpoint (``.safetensors``, ``.ckpt``; its contents
    are checked when it loads) or a diffusers SVD folder with its components. Any other name must be a valid
    hub id (whether it exists is known when it loads) or a shipped model's name."""
    from .single_file import is_single_file

    path = local_model_path(model)
    if path is None:
        if model not in NAMED_MODELS:
            _check_hub_id(model)
        return
    if is_single_file(model):
        if path.is_dir():
            raise PathError(f"{model}: is a folder, not a checkpoint file")
        check_input_file(model, "model file")
        return
    if path.is_file():
        raise PathError(f"{model}: is a file but not a .safetensors or .ckpt checkpoint; give an SVD checkpoint file "
                        "or a diffusers model folder")
    if not path.is_dir():
        raise PathError(f"{model}: model folder not found")
    index = path / "model_index.json"
    if not index.is_file():
        raise PathError(f"{model}: not a diffusers model folder (no model_index.json); give an SVD model folder, "
                        "a checkpoint file or a hub id")
    try:
        class_name = json.loads(index.read_text()).get("_class_name")
    except (ValueError, OSError, AttributeError) as err:
        raise PathError(f"{index}: unreadable model_index.json ({' '.join(str(err).split())})") from None
    if class_name not in SVD_PIPELINES:
        raise PathError(f"{model}: holds a {class_name}, not a Stable Video Diffusion model")
    missing = [name for name in MODEL_FOLDERS if not (path / name).is_dir()]
    if missing:
        raise PathError(f"{model}: an incomplete SVD model folder: missing {', '.join(missing)}")


def _check_hub_id(model: str) -> None:
    from huggingface_hub.utils import HFValidationError, validate_repo_id  # both there since huggingface_hub 0.14

    try:
        validate_repo_id(model)
    except HFValidationError:
        raise PathError(f"{model}: unknown model; give a hub id like stabilityai/stable-video-diffusion-img2vid, a local "
                        "model folder, an SVD .safetensors file, sprites or tiny-random") from None


def check_path(kind: str, value: str, noun: str | None = None) -> None:
    """Check ``value`` as a path of ``kind``; :class:`PathError` if it cannot serve."""
    if kind == IN_FILE:
        check_input_file(value, noun or "file")
    elif kind == IN_FOLDER:
        check_input_folder(value, noun or "folder")
    elif kind == OUT_FILE:
        check_output_file(value, noun or "file")
    elif kind == OUT_FOLDER:
        check_output_folder(value, noun or "folder")
    elif kind == MODEL:
        check_local_model(value)
    else:
        raise ValueError(f"unknown path kind {kind}")


def option_label(action: argparse.Action) -> str:
    """How messages name an option: ``-o/--output``, or an argument's metavar (``IMAGE``)."""
    if action.option_strings:
        return "/".join(action.option_strings)
    return action.metavar if isinstance(action.metavar, str) else action.dest.upper()


def check_path_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Check every path option of ``parser`` given in ``args``; :class:`PathError` names the first bad one."""
    for action in parser._actions:
        kind = getattr(action, "path_kind", None)
        value = getattr(args, action.dest, None)
        if kind is None or not isinstance(value, str) or not value.strip():
            continue
        try:
            check_path(kind, value, action.path_noun)
        except PathError as err:
            raise PathError(f"{option_label(action)}: {err}") from None


def _article(noun: str) -> str:
    return f"an {noun}" if noun[:1] in "aeiou" else f"a {noun}"
