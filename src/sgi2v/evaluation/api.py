"""The evaluation as Python functions: folders or arrays in, result objects out; nothing printed.

* :func:`evaluate`: ObjMC, FID and FVD of a folder of generated videos (what ``sgi2v evaluate`` runs);
  :func:`~sgi2v.evaluation.report.write_report` writes its result as ``report.json``, ``report.md``
  and path pictures.
* :func:`fid` / :func:`fvd`: one Frechet distance between two sets of videos, with its protocol.

Every result records how its numbers were computed (:attr:`EvaluationResult.protocols`): the
tracker and its checkpoint, the networks' preprocessing and the SHA-256 of every weight file.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence, Union

import numpy as np

from .common import EvaluationError, WeightsError
from .motion import ObjMCResult

if TYPE_CHECKING:
    from .features import I3DFeatures, InceptionFeatures
    from .tracking import Tracker

__all__ = ["evaluate", "fid", "fvd", "EvaluationResult", "FrechetResult", "VideoSource"]

logger = logging.getLogger(__name__)

#: A set of videos: a folder (``<id>.mp4`` files or ``<id>/`` frame folders), or a sequence of
#: uint8 arrays ``(F, H, W, 3)`` and/or paths of video files or frame folders.
VideoSource = Union[str, os.PathLike, Sequence[Union[np.ndarray, str, os.PathLike]]]

OBJMC_POOLING = "sum of distances over all videos, objects and frames / their number"


@dataclass(frozen=True)
class FrechetResult:
    """One FID or FVD.

    Attributes:
        value: the Frechet distance (no unit; lower is better).
        generated_samples, reference_samples: frames (FID) or videos (FVD) on each side.
        protocol: network, preprocessing, weight file and its SHA-256 (see ``docs/evaluation.md``).
    """

    value: float
    generated_samples: int
    reference_samples: int
    protocol: dict


@dataclass
class EvaluationResult:
    """What :func:`evaluate` measured; :meth:`to_json` is the content of ``report.json``.

    Attributes:
        name: the method's name in the table.
        ids: the evaluated videos' ids, in order.
        objmc: pooled ObjMC and its per-video values.
        fid, fvd: the Frechet distances, or ``None`` when not computed (``skipped`` says why).
        skipped: metric -> why it was not computed.
        protocols: metric -> how it was computed (tracker, networks, weight files' SHA-256).
        warnings: notes a reader of the numbers must see (e.g. an FVD network that is not the reference).
        videos: per video: id, ObjMC, target and tracked points, failures and occlusion.
        folders: the input folders, absolute.
        device: where the networks ran.
        pictures: id -> picture of target and tracked paths (not part of the JSON).
    """

    name: str
    ids: list[str]
    objmc: ObjMCResult
    fid: FrechetResult | None
    fvd: FrechetResult | None
    skipped: dict[str, str]
    protocols: dict[str, dict]
    warnings: list[str]
    videos: list[dict]
    folders: dict[str, str | None]
    device: str
    pictures: dict = field(default_factory=dict, repr=False)

    def to_json(self) -> dict:
        """The report as JSON-ready data (``report.json``)."""
        o = self.objmc
        metrics = {"objmc": {"value": o.pooled, "unit": "pixels", "points": int(sum(o.num_points)),
                             "failed_fraction": o.failed_fraction, "occluded_fraction": o.occluded_fraction,
                             "per_video_mean": o.per_video_mean, "pooling": OBJMC_POOLING}}
        for key, result, unit in (("fid", self.fid, "frames"), ("fvd", self.fvd, "videos")):
            if result is None:
                metrics[key] = {"value": None, "skipped": self.skipped[key]}
            else:
                metrics[key] = {"value": result.value, "unit": unit, "samples": {"generated": result.generated_samples,
                                "reference": result.reference_samples}, "random_weights": result.protocol["random_weights"]}
        return {"sgi2v_evaluation": 2, "name": self.name, "num_videos": len(self.ids), "metrics": metrics,
                "protocols": self.protocols, "warnings": self.warnings, "folders": self.folders, "device": self.device,
                "videos": self.videos}


def _device(device):
    import torch

    from .features import default_device

    return default_device() if device in (None, "auto") else torch.device(device)


def _videos(source: VideoSource, what: str) -> list[tuple[str, np.ndarray | Path]]:
    """``(name, array or path)`` per video of a source; arrays stay arrays, paths are read later."""
    from .data import find_videos

    if isinstance(source, (str, os.PathLike)):
        return [(str(path), path) for path in find_videos(Path(source), what).values()]
    items = [(f"{what} video {i}" if isinstance(v, np.ndarray) else str(v), v if isinstance(v, np.ndarray) else Path(v))
             for i, v in enumerate(source)]
    if not items:
        raise EvaluationError(f"{what}: no videos")
    return items


def _read(item) -> np.ndarray:
    from .common import validate_video
    from .data import read_frames

    name, video = item
    return read_frames(video) if isinstance(video, Path) else validate_video(video, name)


def _fid_extractor(weights, device, batch_size: int):
    from .features import InceptionFeatures

    return weights if isinstance(weights, InceptionFeatures) else InceptionFeatures(weights, device=device, batch_size=batch_size)


def _fvd_extractor(weights, device, resize: str):
    from .features import I3DFeatures

    if isinstance(weights, I3DFeatures):
        if weights.resize != resize:
            raise EvaluationError(f"FVD: the I3DFeatures given resize frames by {weights.resize!r}, but resize={resize!r} was asked")
        return weights
    return I3DFeatures(weights, device=device, resize=resize)


def _fvd_warning(extractor) -> str | None:
    if not extractor.real_weights:
        return "FVD: random-weight I3D; the number is no score"
    if not extractor.reference_detector:
        return (f"FVD: {extractor.source} (SHA-256 {extractor.sha256[:12]}...) is not a known reference FVD detector "
                "(the TF-hub i3d-kinetics-400/1 module); FVD values from other I3D weights are not comparable with "
                "published ones")
    return None


def fid(generated: VideoSource, reference: VideoSource, weights: str | os.PathLike | InceptionFeatures, *, device=None,
        batch_size: int = 32) -> FrechetResult:
    """FID between all frames of the generated and all frames of the reference videos.

    Args:
        generated, reference: videos (see :data:`VideoSource`), uint8 ``(F, H, W, 3)``.
        weights: ``pt_inception-2015-12-05-6726825d.pth`` (path) or an
            :class:`~sgi2v.evaluation.features.InceptionFeatures`.
        device: ``auto``/``None`` (CUDA, then MPS, then CPU) or a torch device.
        batch_size: frames per forward pass.
    """
    from .frechet import fid_from_features

    if batch_size < 1:
        raise EvaluationError(f"FID batch size must be at least 1, got {batch_size}")
    gen, ref = _videos(generated, "generated"), _videos(reference, "reference")
    extractor = _fid_extractor(weights, _device(device), batch_size)
    a = np.concatenate([extractor(_read(item)) for item in gen])
    b = np.concatenate([extractor(_read(item)) for item in ref])
    return FrechetResult(fid_from_features(a, b), len(a), len(b), extractor.protocol())


def fvd(generated: VideoSource, reference: VideoSource, weights: str | os.PathLike | I3DFeatures, *, resize: str = "stretch",
        device=None) -> FrechetResult:
    """FVD between the generated and the reference videos (one I3D clip per video).

    Args:
        generated, reference: videos (see :data:`VideoSource`), uint8 ``(F, H, W, 3)``.
        weights: an I3D state dict or ``i3d_torchscript.pt`` (path), or an
            :class:`~sgi2v.evaluation.features.I3DFeatures`.
        resize: ``stretch`` (the TensorFlow reference's) or ``center-crop``; see ``FVD_RESIZE_MODES``.
        device: ``auto``/``None`` (CUDA, then MPS, then CPU) or a torch device.

    A warning is logged (and put into the protocol) when the weights are not a known reference detector.
    """
    from .frechet import fvd_from_features

    gen, ref = _videos(generated, "generated"), _videos(reference, "reference")
    extractor = _fvd_extractor(weights, _device(device), resize)
    protocol = extractor.protocol()
    warning = _fvd_warning(extractor)
    if warning:
        logger.warning("%s", warning)
        protocol["warning"] = warning
    a = np.stack([extractor(_read(item)) for item in gen])
    b = np.stack([extractor(_read(item)) for item in ref])
    return FrechetResult(fvd_from_features(a, b), len(a), len(b), protocol)


def evaluate(generated: str | os.PathLike, reference: str | os.PathLike | None = None,
             trajectories: str | os.PathLike | None = None, *, fid_weights: str | os.PathLike | InceptionFeatures | None = None,
             fvd_weights: str | os.PathLike | I3DFeatures | None = None, fvd_resize: str = "stretch",
             tracker: str | Tracker = "lucas-kanade", cotracker_checkpoint: str | os.PathLike | None = None,
             device="auto", batch_size: int = 32, name: str = "SG-I2V", skip_fid: bool = False, skip_fvd: bool = False,
             pictures: bool = True) -> EvaluationResult:
    """ObjMC, FID and FVD of the generated videos in a folder (the layouts are in ``docs/evaluation.md``).

    Args:
        generated: folder of ``<id>.mp4`` (or ``<id>/`` frames) with run records ``<id>.json``.
        reference: folder of real videos with the same ids, sizes and lengths; needed for FID and FVD.
        trajectories: folder of ``<id>.json`` target files; default: the run records' ``boxes``.
        fid_weights, fvd_weights: weight files (paths), or ready extractors
            (:class:`~sgi2v.evaluation.features.InceptionFeatures`, :class:`~sgi2v.evaluation.features.I3DFeatures`);
            without them that metric is skipped and the result says why.
        fvd_resize: ``stretch`` (default, the TensorFlow reference's) or ``center-crop``.
        tracker: ``lucas-kanade``, ``cotracker`` (with ``cotracker_checkpoint``) or a tracker object.
        device: ``auto`` (CUDA, then MPS, then CPU) or a torch device, for the networks.
        batch_size: frames per Inception forward pass.
        name: the method's name in the table.
        skip_fid, skip_fvd: do not compute that metric.
        pictures: draw the target and tracked paths of each video (``EvaluationResult.pictures``).

    Input problems raise :class:`~sgi2v.evaluation.EvaluationError` (a ``ValueError``) or
    :class:`~sgi2v.evaluation.WeightsError` naming the file, before any network is loaded.
    """
    from tqdm import tqdm

    from .data import discover, load_targets, read_frames
    from .features import FVD_RESIZE_MODES
    from .motion import objmc_distances
    from .report import draw_paths
    from .tracking import make_tracker

    # 1. Check the options and the files, before anything heavy is loaded.
    if batch_size < 1:
        raise EvaluationError(f"batch size must be at least 1, got {batch_size}")
    if fvd_resize not in FVD_RESIZE_MODES:
        raise EvaluationError(f"FVD resize: expected one of {', '.join(FVD_RESIZE_MODES)}, got {fvd_resize!r}")
    weights = {"fid": fid_weights, "fvd": fvd_weights}
    skipped = {}
    for key, skip in (("fid", skip_fid), ("fvd", skip_fvd)):
        if skip:
            skipped[key] = f"{key.upper()} skipped on request"
        elif weights[key] is None:
            skipped[key] = f"no {key.upper()} weight file given"
        elif reference is None:
            skipped[key] = "no reference folder given"
    active = [key for key in ("fid", "fvd") if key not in skipped]
    for key in active:
        if isinstance(weights[key], (str, os.PathLike)) and not Path(weights[key]).expanduser().is_file():
            raise WeightsError(f"{weights[key]}: {key.upper()} weight file not found (see docs/evaluation.md)")
    samples = discover(Path(generated), Path(reference) if reference is not None and active else None,
                       Path(trajectories) if trajectories is not None else None)

    # 2. Load the tracker and the networks.
    torch_device = _device(device)
    if isinstance(tracker, str):
        tracker = make_tracker(tracker, cotracker_checkpoint, device=torch_device)
    extractors = {}
    if "fid" in active:
        extractors["fid"] = _fid_extractor(fid_weights, torch_device, batch_size)
    if "fvd" in active:
        extractors["fvd"] = _fvd_extractor(fvd_weights, torch_device, fvd_resize)

    # 3. Track, measure and extract features, one video at a time.
    features = {key: ([], []) for key in active}
    measured, videos, drawn = [], [], {}
    first = None
    for sample in tqdm(samples, desc="evaluate", unit="video", disable=None):
        video = read_frames(sample.generated)
        first = first if first is not None else (sample.generated, video.shape)
        if "fvd" in active and video.shape[0] != first[1][0]:
            raise EvaluationError(f"{sample.generated}: has {video.shape[0]} frames but {first[0].name} has "
                                  f"{first[1][0]}: FVD needs videos of one length")
        targets = load_targets(sample, *video.shape[:3])
        m = objmc_distances(video, targets, tracker, name=str(sample.generated))
        measured.append(m)
        occluded = m.tracks.occluded
        videos.append({"id": sample.id, "objmc": m.value, "objects": int(len(targets)), "frames": int(video.shape[0]),
                       "size": [int(video.shape[2]), int(video.shape[1])], "per_object": m.distances.mean(axis=1).tolist(),
                       "failed_fraction": float(m.tracks.failed.mean()),
                       "occluded_fraction": None if occluded is None else float(occluded.mean()),
                       "target_points": m.targets.tolist(), "tracked_points": m.tracks.points.tolist(),
                       "failed": m.tracks.failed.astype(int).tolist(),
                       "occluded": None if occluded is None else occluded.astype(int).tolist()})
        if pictures:
            drawn[sample.id] = draw_paths(video, m.targets, m.tracks.points, ~m.tracks.failed)
        if active:
            ref = read_frames(sample.reference)
            if ref.shape != video.shape:
                raise EvaluationError(f"{sample.reference}: {ref.shape[2]}x{ref.shape[1]}, {ref.shape[0]} frames, but the generated "
                                      f"{sample.generated.name} is {video.shape[2]}x{video.shape[1]}, {video.shape[0]} frames: "
                                      "references must match in size and length (sgi2v benchmark-prepare makes them so)")
            for key in active:
                features[key][0].append(extractors[key](video))
                features[key][1].append(extractors[key](ref))

    # 4. Pool and record how every number was computed.
    from .frechet import fid_from_features, fvd_from_features

    describe = getattr(tracker, "describe", None)
    protocols = {"objmc": {"tracker": describe() if describe else {"name": getattr(tracker, "name", type(tracker).__name__)},
                           "query_point": "target point at frame 0", "frames": "all, frame 0 included",
                           "pooling": OBJMC_POOLING}}
    warnings, results = [], {"fid": None, "fvd": None}
    for key in active:
        protocols[key] = extractors[key].protocol()
        stack = np.concatenate if key == "fid" else np.stack
        gen, ref = stack(features[key][0]), stack(features[key][1])
        if len(gen) < 2:
            skipped[key] = f"{len(gen)} sample: at least 2 are needed"
            continue
        if key == "fvd":
            warning = _fvd_warning(extractors[key])
            if warning:
                logger.warning("%s", warning)
                warnings.append(warning)
        value = fid_from_features(gen, ref) if key == "fid" else fvd_from_features(gen, ref)
        results[key] = FrechetResult(value, len(gen), len(ref), protocols[key])
    if results["fid"] is not None and not extractors["fid"].real_weights:
        warnings.append("FID: random-weight Inception; the number is no score")
    folders = {"generated": str(Path(generated).resolve()),
               "reference": str(Path(reference).resolve()) if reference is not None else None,
               "trajectories": str(Path(trajectories).resolve()) if trajectories is not None else None}
    return EvaluationResult(name=name, ids=[s.id for s in samples], objmc=ObjMCResult.pool(measured), fid=results["fid"],
                            fvd=results["fvd"], skipped=skipped, protocols=protocols, warnings=warnings, videos=videos,
                            folders=folders, device=str(torch_device), pictures=drawn)
