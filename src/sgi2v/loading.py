"""Loading the pipeline (hub ids, local folders, the shipped ``sprites`` model, the offline tiny model) and
choosing its device and dtype."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
from pathlib import Path

import torch

from .paths import SPRITES_MODEL_DIR, check_local_model, local_model_path
from .settings import DEFAULT_MODEL, DTYPE_ALIASES, SPRITES_MODEL, XT_MODEL
from .single_file import SingleFileError, inspect_single_file, is_single_file

logger = logging.getLogger(__name__)

__all__ = ["ModelError", "DEFAULT_MODEL", "XT_MODEL", "SPRITES_MODEL", "resolve_device", "resolve_dtype", "load_pipeline",
           "sprites_model_dir", "model_sha256", "check_model"]


DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class ModelError(RuntimeError):
    """The model cannot be loaded or the device cannot be used; the message says how to fix it."""


def resolve_device(name: str = "auto", must_exist: bool = True) -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then the CPU; an explicit device must exist here unless
    ``must_exist`` is False (planning for a device elsewhere: only the name is checked)."""
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if mps else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ModelError(f"unknown device {name!r} (use auto, cpu, cuda, cuda:N or mps)") from None
    if not must_exist:
        if device.type not in ("cpu", "cuda", "mps"):
            raise ModelError(f"unsupported device {name!r} (use auto, cpu, cuda, cuda:N or mps)")
        return device
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ModelError(f"device {name!r} requested but CUDA is not available (no GPU, or a CPU-only torch build)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ModelError(f"device {name!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
    elif device.type == "mps" and not mps:
        raise ModelError(f"device {name!r} requested but Apple MPS is not available")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ModelError(f"unsupported device {name!r} (use auto, cpu, cuda, cuda:N or mps)")
    return device


def resolve_dtype(name: str, device: torch.device, model: str | None = None) -> torch.dtype:
    """``auto``: float16 on CUDA and MPS, float32 on the CPU; for a single-file checkpoint on CUDA or MPS,
    the file's own half or full precision (float32 on the CPU, where half precision is slow)."""
    if name == "auto":
        if device.type in ("cuda", "mps") and model and is_single_file(model):
            try:
                stored = inspect_single_file(model).dtype
            except SingleFileError:
                stored = None  # reported by the load, with the file's problem
            if stored in DTYPES and not (stored == "bfloat16" and device.type == "mps"):
                return DTYPES[stored]
        return torch.float16 if device.type in ("cuda", "mps") else torch.float32
    name = DTYPE_ALIASES.get(name, name)
    if name not in DTYPES:
        raise ModelError(f"unknown dtype {name!r} (use auto, float32, float16 or bfloat16)")
    return DTYPES[name]


def sprites_model_dir() -> Path:
    """The folder of the shipped ``sprites`` model (a diffusers SVD folder, float16 weights)."""
    return SPRITES_MODEL_DIR


@functools.lru_cache(maxsize=8)
def _folder_sha256(folder: str) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(folder).as_posix()}:{hashlib.sha256(path.read_bytes()).hexdigest()}\n".encode())
    return digest.hexdigest()


def model_sha256(model: str) -> str | None:
    """SHA-256 of the shipped model's files (each file's path and SHA-256, in order) or of a single-file
    checkpoint; None for other models."""
    if model == SPRITES_MODEL and sprites_model_dir().is_dir():
        return _folder_sha256(str(sprites_model_dir()))
    if is_single_file(model) and Path(model).expanduser().is_file():
        from .single_file import file_sha256

        return file_sha256(Path(model).expanduser())
    return None


def load_pipeline(model: str = DEFAULT_MODEL, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                  num_frames: int | None = None, offload: bool = False):
    """An :class:`~sgi2v.SGI2VPipeline` from a hub id, a local folder, a single-file checkpoint
    (``.safetensors``, or a ``.ckpt`` that loads with ``weights_only=True``), ``sprites`` (the shipped model,
    offline) or ``tiny-random`` (offline, random weights).

    Raises :class:`ModelError` with a one-line explanation when the weights are missing, the hub is
    unreachable, the licence is not accepted, or a folder is not an SVD model, and
    :class:`~sgi2v.single_file.SingleFileError` (a ``ValueError``) for a model file that is not an SVD
    image-to-video checkpoint.
    """
    from .pipeline import SGI2VPipeline
    from .testing import TINY_MODEL_ID, tiny_pipeline

    device = torch.device(device)
    if model == TINY_MODEL_ID:
        logger.warning("Model 'tiny-random': a tiny model with RANDOM weights, for checking the tool offline; its videos are noise.")
        pipe = tiny_pipeline(seed=0, num_frames=num_frames or 14, dtype=dtype)
    elif model == SPRITES_MODEL:
        folder = sprites_model_dir()
        if not (folder / "model_index.json").is_file():
            raise ModelError(f"the sprites model is missing from this install ({folder}); reinstall sgi2v, "
                             "or train one with `sgi2v train-sprites -o FOLDER` and pass FOLDER/model with --model")
        pipe = _load(SGI2VPipeline, str(folder), dtype, model)
    elif is_single_file(model):
        with _no_loading_bars():  # its components' configurations are bundled: nothing is downloaded
            pipe = SGI2VPipeline.from_single_file(model, torch_dtype=dtype, num_frames=num_frames)
    else:
        pipe = _from_pretrained(SGI2VPipeline, model, dtype)
    if offload and device.type != "cpu":
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.to(device)
    return pipe


def check_model(model: str) -> None:
    """What can be known of a model before loading it: a single-file checkpoint is checked from its table of
    contents (:class:`~sgi2v.single_file.SingleFileError` naming the file otherwise); other models are
    checked when they load."""
    check_local_model(model)
    if is_single_file(model):
        from .single_file import check_single_file

        check_single_file(model)


def _from_pretrained(cls, model: str, dtype: torch.dtype):
    check_local_model(model)  # a model folder, or a valid hub id: the command line's checks and messages
    path = local_model_path(model)
    return _load(cls, model if path is None else str(path), dtype, model)


@contextlib.contextmanager
def _no_loading_bars():
    """diffusers' and transformers' progress bars off while local files load (a second's work, and two bars of noise
    above every command's own output); each library's setting, and the hub's, is restored afterwards."""
    from diffusers.utils import logging as diffusers_logging
    from huggingface_hub import utils as hub_utils
    from transformers.utils import logging as transformers_logging

    hub_bars_off = hub_utils.are_progress_bars_disabled()  # transformers' switch turns the hub's on and off too
    # HF_HUB_DISABLE_PROGRESS_BARS, when set, is the user's choice and the hub's switch refuses (with a warning) to
    # override it: transformers' bars are then left alone.
    libraries = [diffusers_logging] + ([] if "HF_HUB_DISABLE_PROGRESS_BARS" in os.environ else [transformers_logging])
    restore = []
    for library in libraries:
        if library.is_progress_bar_enabled():
            library.disable_progress_bar()
            restore.append(library)
    try:
        yield
    finally:
        for library in restore:
            library.enable_progress_bar()
        if hub_bars_off and not hub_utils.are_progress_bars_disabled():
            hub_utils.disable_progress_bars()


def _load(cls, source: str, dtype: torch.dtype, name: str):
    from huggingface_hub.utils import GatedRepoError, RepositoryNotFoundError  # there since 0.14; .errors only since 0.24

    attempts = [dict(variant="fp16"), {}] if dtype == torch.float16 else [{}]
    # A local folder loads in a second: its bars are only noise. From the hub, the download bars are the user's only
    # sign of a long wait, so they stay.
    local = Path(source).is_dir()
    last = None
    for extra in attempts:
        try:
            with _no_loading_bars() if local else contextlib.nullcontext():
                return cls.from_pretrained(source, torch_dtype=dtype, **extra)
        except Exception as err:  # diffusers wraps hub errors in OSError/ValueError; classify by the chain
            chain = _chain(err)
            if any(isinstance(e, GatedRepoError) for e in chain):
                raise ModelError(
                    f"{name} is gated: accept its licence at https://huggingface.co/{name} while logged in, then "
                    "set HF_TOKEN (or run `hf auth login`) and try again"
                ) from None
            if any(isinstance(e, RepositoryNotFoundError) for e in chain):
                raise ModelError(f"unknown model {name!r} on the Hugging Face hub (private models need HF_TOKEN)") from None
            text = " ".join(str(e) for e in chain)
            if "variant" in text and extra:
                last = err
                continue  # no fp16 variant files: load the default weights in fp16
            if any(s in text for s in ("not fully cached", "connect", "offline", "Connection", "resolve", "outgoing traffic")):
                raise ModelError(
                    f"cannot load {name}: the Hugging Face hub is unreachable and the model is not in the local cache; "
                    "connect once to download it (HF_TOKEN set, licence accepted), or pass a local model folder with --model"
                ) from None
            raise ModelError(f"cannot load {name}: {str(err).splitlines()[0]}") from None
    raise ModelError(f"cannot load {name}: {str(last).splitlines()[0]}")


def _chain(err: BaseException) -> list[BaseException]:
    out = []
    while err is not None and err not in out:
        out.append(err)
        err = err.__cause__ or err.__context__
    return out
