"""One generation from files to files: inputs -> pipeline -> video, overlay, condition image and run record.

Shared by the command line, the batch generator and the web app. Outputs are written to temporary
names and renamed only when all of them are complete, so a failed run leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .config import SGI2VConfig
from .video import draw_condition, draw_overlay, frames_sha256, to_uint8, write_gif, write_mp4

__all__ = ["Settings", "load_inputs", "generate_frames", "output_paths", "write_outputs", "run_record", "file_sha256", "versions"]


@dataclass(frozen=True)
class Settings:
    """Sampling settings of one generation (the method's own settings live in :class:`SGI2VConfig`)."""

    height: int = 576  # output pixels, multiple of 64
    width: int = 1024
    num_frames: int = 14  # 14 for SVD img2vid, 25 for SVD-XT
    num_inference_steps: int = 50
    seed: int = 817
    fps: int = 7  # SVD conditioning and video frame rate
    motion_bucket_id: int = 127
    noise_aug_strength: float = 0.02
    min_guidance_scale: float = 1.0
    max_guidance_scale: float = 3.0
    decode_chunk_size: int = 8
    gradient_checkpointing: bool = False

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Settings":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown settings: {unknown}")
        return cls(**data)


def load_inputs(image_path: str | os.PathLike, trajectory: str | os.PathLike | dict, settings: Settings,
                source: str = "trajectory") -> tuple[Image.Image, np.ndarray, list[str], dict]:
    """Read an image and its trajectory and bring both to the output size of ``settings``.

    The image is resized (stretched, PIL bicubic) to ``settings.width`` x ``settings.height`` and the
    trajectory's coordinates are rescaled with it, as the authors' tool does.

    Args:
        image_path: the input image (any size).
        trajectory: a trajectory JSON file, or an already decoded trajectory object.
        settings: gives the output size and the number of frames.
        source: name of an inline trajectory in error messages.

    Returns:
        The resized image, the boxes ``(N, F, 4)`` in output pixels, the box labels, and the
        ``inputs`` part of the run record.
    """
    from .trajectory import load_image, load_trajectory, parse_trajectory

    original = load_image(image_path)
    if isinstance(trajectory, dict):
        parsed = parse_trajectory(trajectory, settings.num_frames, original.size, source=source)
        described = {"trajectory": trajectory}
    else:
        parsed = load_trajectory(trajectory, settings.num_frames, original.size)
        described = {"trajectory_file": str(Path(trajectory).resolve()), "trajectory": json.loads(Path(trajectory).read_text())}
    image = original.resize((settings.width, settings.height), resample=3)  # bicubic
    resized = parsed.resized(settings.width, settings.height)
    inputs = {"image": str(Path(image_path).resolve()), "image_sha256": file_sha256(image_path), "image_size": list(original.size),
              **described}
    return image, resized.boxes, list(parsed.labels), inputs


def generate_frames(pipe, image: Image.Image, boxes: np.ndarray, config: SGI2VConfig, settings: Settings):
    """Run the pipeline; returns uint8 frames ``(F, H, W, 3)`` and the per-step losses.

    The seed drives a CPU generator, so the same seed gives the same initial noise on every device.
    """
    generator = torch.Generator("cpu").manual_seed(settings.seed)
    out = pipe(
        image, boxes, config=config, height=settings.height, width=settings.width, num_frames=settings.num_frames,
        num_inference_steps=settings.num_inference_steps, min_guidance_scale=settings.min_guidance_scale,
        max_guidance_scale=settings.max_guidance_scale, fps=settings.fps, motion_bucket_id=settings.motion_bucket_id,
        noise_aug_strength=settings.noise_aug_strength, decode_chunk_size=settings.decode_chunk_size,
        generator=generator, output_type="np", gradient_checkpointing=settings.gradient_checkpointing,
    )
    return to_uint8(out.frames[0]), out.losses


def output_paths(out: str | os.PathLike, gif: bool = False) -> dict[str, Path]:
    """Where the files of a run whose video is ``out`` (``.mp4``) go."""
    out = Path(out)
    if out.suffix.lower() != ".mp4":
        raise ValueError(f"output {str(out)!r} must end in .mp4")
    stem = out.with_suffix("")
    paths = {
        "video": out,
        "overlay": Path(f"{stem}.overlay.mp4"),
        "condition": Path(f"{stem}.condition.png"),
        "record": Path(f"{stem}.json"),
    }
    if gif:
        paths["gif"] = Path(f"{stem}.gif")
    return paths


def write_outputs(paths: dict[str, Path], frames: np.ndarray, image: Image.Image, boxes: np.ndarray, record: dict, fps: float) -> None:
    """Write every output under a temporary name, then rename them all; on failure remove the temporaries."""
    temporary = {k: p.with_name(f".{p.name}.tmp{os.getpid()}") for k, p in paths.items()}
    try:
        paths["video"].parent.mkdir(parents=True, exist_ok=True)
        write_mp4(temporary["video"], frames, fps)
        write_mp4(temporary["overlay"], draw_overlay(frames, boxes), fps)
        draw_condition(image, boxes).save(temporary["condition"], format="PNG")
        if "gif" in paths:
            write_gif(temporary["gif"], frames, fps)
        record = dict(record, outputs={k: p.name for k, p in paths.items() if k != "record"})
        temporary["record"].write_text(json.dumps(record, indent=2) + "\n")
        for key in ("video", "overlay", "condition", "gif", "record"):  # the record last: it marks completion
            if key in paths:
                os.replace(temporary[key], paths[key])
    finally:
        for tmp in temporary.values():
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def versions() -> dict:
    import diffusers
    import PIL
    import transformers

    from . import __version__

    return {
        "sgi2v": __version__, "python": platform.python_version(), "torch": torch.__version__,
        "diffusers": diffusers.__version__, "transformers": transformers.__version__,
        "numpy": np.__version__, "pillow": PIL.__version__, "platform": platform.platform(),
    }


def run_record(*, inputs: dict, model: str, device: torch.device, dtype: torch.dtype, offload: bool, settings: Settings,
               config: SGI2VConfig, boxes: np.ndarray, labels, frames: np.ndarray, losses: dict, timings: dict) -> dict:
    """The JSON record of a run: enough to redo it (``sgi2v generate --replay``) and to check the result."""
    return {
        "sgi2v_record": 1,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "inputs": inputs,
        "model": model,
        "device": str(device),
        "dtype": str(dtype).replace("torch.", ""),
        "offload": offload,
        "settings": settings.to_dict(),
        "config": config.to_dict(),
        "labels": list(labels),
        "boxes": np.asarray(boxes, dtype=np.float64).tolist(),
        "frames_shape": list(frames.shape),
        "frames_sha256": frames_sha256(frames),
        "losses": {str(t): v for t, v in losses.items()},
        "timings": {k: round(v, 3) for k, v in timings.items()},
        "versions": versions(),
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
