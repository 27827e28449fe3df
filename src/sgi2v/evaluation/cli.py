"""Evaluate generated videos: ObjMC (motion control), FID (frames) and FVD (videos), with a report.

Folders (ids match by file name):
  --generated DIR     <id>.mp4 (or <id>/ frames) as written by `sgi2v generate` / `sgi2v batch`, with the
                      run record <id>.json beside it (its 'boxes' are the targets when no --trajectories)
  --reference DIR     real videos <id>.mp4 or <id>/ frame folders, same size and length as the generated
                      ones (`sgi2v benchmark-prepare` writes them); needed for FID and FVD
  --trajectories DIR  <id>.json: an sgi2v trajectory file (box centres are the targets) or a points file
                      {"size": [W, H], "points": [[[x, y], ...], ...]}

Writes OUT/report.json, OUT/report.md (the paper's table: FID, FVD, ObjMC) and OUT/paths/<id>.png
(target and tracked paths over frames). FID and FVD are skipped, and the report says so, unless
their weight files are given. report.json records each metric's protocol (tracker and its variant,
preprocessing, the SHA-256 of every weight file). See docs/evaluation.md.

The same evaluation from Python: sgi2v.evaluation.evaluate(...) and sgi2v.evaluation.write_report(...).
"""

from __future__ import annotations

import argparse

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..paths import IN_FILE, IN_FOLDER, OUT_FOLDER, path_option

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    path_option(parser.add_argument("--generated", required=True, help="folder of generated <id>.mp4 videos and their <id>.json "
                                    "run records"), IN_FOLDER, "generated folder")
    path_option(parser.add_argument("--reference", help="folder of real <id>.mp4 videos (or <id>/ frame folders), for FID and "
                                    "FVD"), IN_FOLDER, "reference folder")
    path_option(parser.add_argument("--trajectories", help="folder of <id>.json trajectory or points files (default: the run "
                                    "records' boxes)"), IN_FOLDER, "trajectories folder")
    path_option(parser.add_argument("-o", "--output", required=True, help="report folder: report.json, report.md, paths/<id>.png"),
                OUT_FOLDER, "report folder")
    parser.add_argument("--name", default="SG-I2V", help="method name in the table's row (default SG-I2V)")
    parser.add_argument("--tracker", default="lucas-kanade", choices=["lucas-kanade", "cotracker"],
                        help="point tracker for ObjMC (default lucas-kanade: OpenCV, no weights)")
    path_option(parser.add_argument("--cotracker-checkpoint", help="local CoTracker checkpoint for --tracker cotracker: "
                                    "scaled_offline.pth, scaled_online.pth, cotracker2.pth or cotracker2v1.pth (the kind is "
                                    "read from the file)"), IN_FILE, "CoTracker checkpoint")
    path_option(parser.add_argument("--fid-weights", help="FID Inception-v3 weights, pt_inception-2015-12-05-6726825d.pth "
                                    "(without: no FID)"), IN_FILE, "FID weight file")
    path_option(parser.add_argument("--fvd-weights", help="I3D Kinetics-400 weights: state dict or i3d_torchscript.pt "
                                    "(without: no FVD)"), IN_FILE, "FVD I3D weight file")
    parser.add_argument("--fvd-resize", default="stretch", choices=["stretch", "center-crop"],
                        help="how frames become 224x224 for FVD: stretch (default; the TensorFlow reference's and StyleGAN-V's) "
                             "or center-crop (short side to 224, then the centre)")
    parser.add_argument("--skip-fid", action="store_true", help="do not compute FID")
    parser.add_argument("--skip-fvd", action="store_true", help="do not compute FVD")
    parser.add_argument("--no-pictures", action="store_true", help="do not draw paths/<id>.png")
    parser.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N, mps")
    parser.add_argument("--batch-size", type=int, default=32, help="frames per Inception forward pass (default 32)")


def run(args: argparse.Namespace) -> int:
    from .api import evaluate
    from .report import check_output, write_report

    check_output(args.output)
    result = evaluate(args.generated, args.reference, args.trajectories, fid_weights=args.fid_weights,
                      fvd_weights=args.fvd_weights, fvd_resize=args.fvd_resize, tracker=args.tracker,
                      cotracker_checkpoint=args.cotracker_checkpoint, device=args.device, batch_size=args.batch_size,
                      name=args.name, skip_fid=args.skip_fid, skip_fvd=args.skip_fvd, pictures=not args.no_pictures)
    path = write_report(result, args.output)
    cells = {key: "n/a" if r is None else f"{r.value:.2f}" for key, r in (("fid", result.fid), ("fvd", result.fvd))}
    print(f"{result.name}: FID {cells['fid']}, FVD {cells['fvd']}, ObjMC {result.objmc.pooled:.2f} px "
          f"({len(result.ids)} videos) -> {path.parent / 'report.md'}")
    return 0
