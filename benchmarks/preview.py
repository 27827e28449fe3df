"""Time of the motion preview (``sgi2v.preview``): rendering alone, and rendering plus writing the MP4.

The target: a preview updates within a second after each edit at 1024x576 and 14 frames on a laptop
CPU. Each case is a bundled example's picture at the output size with N moving, scaled boxes plus a
camera pan and zoom, prepared as every surface prepares its inputs (``generation.prepare_inputs``);
the preparation is not timed. Wall-clock seconds (median and worst of the repeats) and CPU seconds
(this process and ffmpeg: what the work costs whatever else runs on the machine). Prints a table
and writes JSON.

  python benchmarks/preview.py --json benchmarks/results/preview-cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SIZES = [(1024, 576, 14), (576, 1024, 14), (512, 512, 25)]  # (width, height, frames)
BOX_COUNTS = (1, 4, 16)


def trajectory(count: int, width: int, height: int, seed: int = 0) -> dict:
    """``count`` boxes of 10..25 % of the picture, each moved along a 3-point path and scaled by 0.8..1.3,
    plus a camera pan to the left with a slight zoom; coordinates in the picture's pixels."""
    rng = np.random.default_rng(seed)
    boxes = []
    for _ in range(count):
        w, h = rng.uniform(0.10, 0.25) * width, rng.uniform(0.10, 0.25) * height
        x0, y0 = rng.uniform(0, width - w), rng.uniform(0, height - h)
        cx, cy = x0 + w / 2, y0 + h / 2
        path = [[cx, cy]] + [[float(np.clip(cx + rng.uniform(-0.3, 0.3) * width, 0, width)),
                              float(np.clip(cy + rng.uniform(-0.3, 0.3) * height, 0, height))] for _ in range(2)]
        boxes.append({"box": [x0, y0, x0 + w, y0 + h], "path": path, "scale": float(rng.uniform(0.8, 1.3))})
    return {"boxes": boxes, "camera": {"pan": "left", "amount": 0.2, "zoom": 1.1}}


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (ffmpeg), user and system."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(function, repeats: int) -> tuple[list[float], list[float]]:
    """Wall-clock and CPU seconds of each of ``repeats`` calls. On a busy machine the wall-clock time grows
    with the other work; the CPU time is what the call itself costs."""
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), cpu_seconds()
        function()
        wall.append(time.perf_counter() - start)
        cpu.append(cpu_seconds() - start_cpu)
    return wall, cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per case (the median is reported)")
    parser.add_argument("--example", default="rocket", help="bundled example whose picture is used")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)

    from PIL import Image

    import sgi2v
    from sgi2v.cli import example_files
    from sgi2v.generation import prepare_inputs
    from sgi2v.preview import PREVIEW_PRESET, preview_prepared, write_preview
    from sgi2v.settings import resolve_settings

    picture = Image.open(example_files(args.example)[0]).convert("RGB")
    load_before = os.getloadavg()  # other work on the machine (1, 5, 15 minutes): timings grow with it
    print(f"load average {load_before[0]:.1f} on {os.cpu_count()} CPUs")
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        video = Path(folder) / "preview.mp4"
        for width, height, frames in SIZES:
            settings, _ = resolve_settings({"width": width, "height": height, "num_frames": frames})
            image = picture.resize((width, height))
            for count in BOX_COUNTS:
                prepared = prepare_inputs(image, trajectory(count, width, height), settings)
                preview_prepared(prepared)  # warm up
                render, render_cpu = timed(lambda: preview_prepared(prepared), args.repeats)
                both, both_cpu = timed(lambda: write_preview(video, preview_prepared(prepared), settings.fps), args.repeats)
                row = {"width": width, "height": height, "frames": frames, "boxes": count, "camera": True,
                       "render_s": statistics.median(render), "render_max_s": max(render),
                       "render_cpu_s": statistics.median(render_cpu),
                       "render_and_mp4_s": statistics.median(both), "render_and_mp4_max_s": max(both),
                       "render_and_mp4_cpu_s": statistics.median(both_cpu), "mp4_bytes": video.stat().st_size}
                rows.append(row)
                print(f"{width}x{height}, {frames} frames, {count:2d} boxes + camera: render {row['render_s']:.3f} s "
                      f"(max {row['render_max_s']:.3f}, CPU {row['render_cpu_s']:.3f}), render + mp4 "
                      f"{row['render_and_mp4_s']:.3f} s (max {row['render_and_mp4_max_s']:.3f}, "
                      f"CPU {row['render_and_mp4_cpu_s']:.3f})", flush=True)
    if args.json:
        import imageio_ffmpeg
        import PIL

        result = {
            "benchmark": "preview", "repeats": args.repeats, "example": args.example, "x264_preset": PREVIEW_PRESET,
            "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count(),
                        "python": platform.python_version(), "load_average_before": load_before,
                        "load_average_after": os.getloadavg()},
            "versions": {"sgi2v": sgi2v.__version__, "numpy": np.__version__, "pillow": PIL.__version__,
                         "ffmpeg": imageio_ffmpeg.get_ffmpeg_version()},
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "rows": rows,
        }
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
