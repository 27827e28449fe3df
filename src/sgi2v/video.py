"""Writing what a run produces: H.264 MP4 (ffmpeg from imageio-ffmpeg), GIF, PNG; drawing boxes and paths."""

from __future__ import annotations

import hashlib
import os

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["to_uint8", "frames_sha256", "write_mp4", "read_video", "write_gif", "draw_condition", "draw_overlay"]

PALETTE = [(255, 64, 64), (64, 200, 255), (255, 200, 40), (120, 255, 120), (255, 110, 220), (170, 130, 255), (255, 150, 60), (60, 255, 210)]


def to_uint8(frames: np.ndarray) -> np.ndarray:
    """Frames in [0, 1] ``(F, H, W, 3)`` -> uint8, rounded as diffusers rounds."""
    return (np.clip(frames, 0.0, 1.0) * 255).round().astype(np.uint8)


def frames_sha256(frames: np.ndarray) -> str:
    """SHA-256 of a uint8 ``(F, H, W, 3)`` array in C order."""
    frames = np.ascontiguousarray(frames, dtype=np.uint8)
    return hashlib.sha256(frames.tobytes()).hexdigest()


def write_mp4(path: str | os.PathLike, frames: np.ndarray, fps: float, preset: str = "medium") -> None:
    """H.264 (yuv420p, high quality) MP4 of uint8 frames ``(F, H, W, 3)``; x264's ``preset`` trades file size
    for encoding time (``"veryfast"`` takes about half the time of ``"medium"``, for a slightly larger file)."""
    import imageio_ffmpeg

    frames = np.ascontiguousarray(frames, dtype=np.uint8)
    height, width = frames.shape[1:3]
    writer = imageio_ffmpeg.write_frames(
        str(path), (width, height), fps=fps, codec="libx264", pix_fmt_out="yuv420p", quality=None,
        output_params=["-crf", "17", "-preset", preset, "-f", "mp4"], macro_block_size=1,
    )
    writer.send(None)
    for frame in frames:
        writer.send(frame)
    writer.close()


def read_video(path: str | os.PathLike) -> np.ndarray:
    """Decode a video into uint8 ``(F, H, W, 3)``."""
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    meta = reader.__next__()
    width, height = meta["size"]
    frames = [np.frombuffer(buf, dtype=np.uint8).reshape(height, width, 3) for buf in reader]
    return np.stack(frames)


def write_gif(path: str | os.PathLike, frames: np.ndarray, fps: float) -> None:
    images = [Image.fromarray(f) for f in frames]
    images[0].save(path, format="GIF", save_all=True, append_images=images[1:], loop=0, duration=round(1000 / fps))


def _color(n: int) -> tuple[int, int, int]:
    return PALETTE[n % len(PALETTE)]


def draw_condition(image: Image.Image, boxes: np.ndarray) -> Image.Image:
    """The input with each frame-0 box (tinted), its last-frame box (thin outline) and the path of its centre."""
    canvas = image.convert("RGBA")
    width = max(2, round(min(canvas.size) / 150))
    r = width * 2
    for n, track in enumerate(np.asarray(boxes, dtype=np.float64)):
        color = _color(n)
        layer = Image.new("RGBA", canvas.size, (0, 0, 0, 0))  # one layer per box, so fills never hide other boxes
        draw = ImageDraw.Draw(layer)
        draw.rectangle(track[0].tolist(), fill=color + (60,), outline=color + (255,), width=width)
        if not np.allclose(track[-1], track[0], atol=0.5):
            draw.rectangle(track[-1].tolist(), outline=color + (200,), width=max(1, width // 2))
        centers = [((b[0] + b[2]) / 2, (b[1] + b[3]) / 2) for b in track]
        cx, cy = centers[0]
        if max(abs(x - cx) + abs(y - cy) for x, y in centers) > 0.5:
            draw.line(centers, fill=color + (255,), width=width + 1, joint="curve")
            ex, ey = centers[-1]
            draw.ellipse([ex - r, ey - r, ex + r, ey + r], fill=color + (255,))
        else:  # the centre stays put: a cross
            draw.line([cx - r, cy, cx + r, cy], fill=color + (255,), width=width)
            draw.line([cx, cy - r, cx, cy + r], fill=color + (255,), width=width)
        canvas = Image.alpha_composite(canvas, layer)
    return canvas.convert("RGB")


def draw_overlay(frames: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """uint8 frames with each target box drawn at its frame."""
    out = []
    width = max(1, round(min(frames.shape[1:3]) / 200))
    for f, frame in enumerate(frames):
        image = Image.fromarray(frame)
        draw = ImageDraw.Draw(image)
        for n in range(len(boxes)):
            x0, y0, x1, y1 = (float(v) for v in boxes[n, f])
            draw.rectangle([x0, y0, x1, y1], outline=_color(n), width=width)
        out.append(np.asarray(image))
    return np.stack(out)
