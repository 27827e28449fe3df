"""Evaluation of trajectory-controlled videos: ObjMC (motion control), FID (frames) and FVD (videos).

* :func:`evaluate` (folders in, :class:`EvaluationResult` out) and :func:`write_report` (``report.json``,
  ``report.md``, path pictures): what ``sgi2v evaluate`` runs; :func:`prepare_benchmark`: what
  ``sgi2v benchmark-prepare`` runs. :func:`fid` / :func:`fvd`: one Frechet distance between two
  sets of videos, with its protocol.
* :func:`objmc` / :func:`objmc_pooled`: distance in pixels between the paths objects were asked to
  follow and the paths a point tracker finds in the generated video.
* :func:`fid_from_features` / :func:`fvd_from_features` and the feature extractors
  (:class:`InceptionFeatures`, :class:`I3DFeatures`): Frechet distances of Inception-v3 pool features
  over frames and of I3D logits over videos.
* Trackers: :class:`LucasKanadeTracker` (OpenCV, no weights) and :class:`CoTrackerTracker` (a local
  CoTracker checkpoint; CoTracker3 offline / online, CoTracker2 / 2.1 chosen from the file); they
  return :class:`Tracks`, with occlusion and tracking failure kept apart.

See ``docs/evaluation.md`` for the protocol and the folder layouts of ``sgi2v evaluate``.
Names are imported lazily, so ``import sgi2v.evaluation`` stays cheap.
"""

from __future__ import annotations

import importlib

__all__ = [
    "evaluate", "fid", "fvd", "EvaluationResult", "FrechetResult", "write_report", "prepare_benchmark", "BenchmarkResult",
    "Tracks", "VideoObjMC", "CoTrackerVariant", "COTRACKER_VARIANTS", "cotracker_variant", "FVD_RESIZE_MODES", "file_sha256",
    "EvaluationError", "objmc", "objmc_pooled", "objmc_distances", "ObjMCResult", "validate_video", "validate_points",
    "LucasKanadeTracker", "CoTrackerTracker", "Tracker", "make_tracker", "box_query_points", "mask_query_point",
    "frechet_distance", "frechet_distance_from_features", "feature_statistics", "fid_from_features", "fvd_from_features",
    "InceptionV3FID", "I3D", "InceptionFeatures", "I3DFeatures", "WeightsError",
]

_WHERE = {
    "evaluate": "api", "fid": "api", "fvd": "api", "EvaluationResult": "api", "FrechetResult": "api", "write_report": "report",
    "prepare_benchmark": "benchmark", "BenchmarkResult": "benchmark", "Tracks": "tracking", "VideoObjMC": "motion",
    "CoTrackerVariant": "tracking", "COTRACKER_VARIANTS": "tracking", "cotracker_variant": "tracking",
    "FVD_RESIZE_MODES": "features", "file_sha256": "common",
    "EvaluationError": "common", "validate_video": "common", "validate_points": "common", "WeightsError": "common",
    "objmc": "motion", "objmc_pooled": "motion", "ObjMCResult": "motion", "objmc_distances": "motion",
    "LucasKanadeTracker": "tracking", "CoTrackerTracker": "tracking", "Tracker": "tracking", "make_tracker": "tracking",
    "box_query_points": "tracking", "mask_query_point": "tracking",
    "frechet_distance": "frechet", "frechet_distance_from_features": "frechet", "feature_statistics": "frechet", "fid_from_features": "frechet",
    "fvd_from_features": "frechet",
    "InceptionV3FID": "inception", "I3D": "i3d", "InceptionFeatures": "features", "I3DFeatures": "features",
}


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
