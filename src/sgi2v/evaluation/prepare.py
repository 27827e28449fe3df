"""Build an evaluation benchmark from real videos with first-frame object masks (the VIPSeg layout).

Input ROOT (download VIPSeg yourself):
  ROOT/imgs/<video>/<frame>.jpg        frames of each video, in name order
  ROOT/panomasks/<video>/<frame>.png   object masks (palette or integer PNG, 0 = background); the mask
                                       of the first frame is used (same stem as the first frame, else
                                       the first mask file)

Output OUT:
  OUT/images/<id>.png            first frames, resized to --width x --height
  OUT/trajectories/<id>.json     sgi2v trajectory files: per object a box centred on its query point
                                 (the mask's interior point farthest from its edge) with the "path"
                                 the tracker follows through the real video
  OUT/reference/<id>.mp4         the real clip, resized, --frames frames long (FID/FVD reference)
  OUT/manifest.jsonl             one line per video: {"id", "image", "traj"}, paths relative to OUT
  OUT/benchmark.json             how it was made: options, selection rule, tracker and checkpoint SHA-256

The same from Python: sgi2v.evaluation.prepare_benchmark(root, output, ...).
"""

from __future__ import annotations

import argparse

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..paths import IN_FILE, IN_FOLDER, OUT_FOLDER, path_option

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    path_option(parser.add_argument("root", metavar="ROOT", help="dataset folder with frame folders and mask folders per video "
                                    "(VIPSeg layout)"), IN_FOLDER, "dataset folder")
    path_option(parser.add_argument("-o", "--output", required=True, help="benchmark folder to write"), OUT_FOLDER, "benchmark folder")
    parser.add_argument("--frames-subdir", default="imgs", help="folder of per-video frame folders (default imgs)")
    parser.add_argument("--masks-subdir", default="panomasks", help="folder of per-video mask folders (default panomasks)")
    parser.add_argument("--frames", type=int, default=14, help="frames per clip (default 14, SVD; 25 for SVD-XT)")
    parser.add_argument("--stride", type=int, default=1, help="take every STRIDE-th frame of the real video (default 1)")
    parser.add_argument("--width", type=int, default=1024, help="output width in pixels, even (default 1024)")
    parser.add_argument("--height", type=int, default=576, help="output height in pixels, even (default 576)")
    parser.add_argument("--max-objects", type=int, default=5, help="largest objects kept per video (default 5)")
    parser.add_argument("--min-area", type=float, default=0.005,
                        help="smallest object kept, as a fraction of the frame (default 0.005)")
    parser.add_argument("--max-videos", type=int, default=None, help="stop after this many videos")
    parser.add_argument("--tracker", default="lucas-kanade", choices=["lucas-kanade", "cotracker"],
                        help="tracker that follows the query points through the real videos (default lucas-kanade)")
    path_option(parser.add_argument("--cotracker-checkpoint", help="local CoTracker checkpoint for --tracker cotracker (the kind "
                                    "is read from the file)"), IN_FILE, "CoTracker checkpoint")
    parser.add_argument("--device", default="auto", help="device for CoTracker: auto, cpu, cuda, mps")


def run(args: argparse.Namespace) -> int:
    from .benchmark import prepare_benchmark

    result = prepare_benchmark(args.root, args.output, frames=args.frames, stride=args.stride, width=args.width,
                               height=args.height, max_objects=args.max_objects, min_area=args.min_area,
                               max_videos=args.max_videos, tracker=args.tracker, cotracker_checkpoint=args.cotracker_checkpoint,
                               device=args.device, frames_subdir=args.frames_subdir, masks_subdir=args.masks_subdir)
    print(f"wrote {len(result.entries)} videos ({args.frames} frames, {args.width}x{args.height}) and {result.manifest}"
          + (f"; skipped {len(result.skipped)}" if result.skipped else ""))
    return 0
