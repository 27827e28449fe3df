"""Evaluation of trajectory-controlled videos: ObjMC (motion control), FID (frames) and FVD (videos).

* :func:`objmc` / :func:`objmc_pooled`: distance in pixels between the paths objects were asked to
  follow and the paths a point tracker finds in the generated video.
* :func:`fid_from_features` / :func:`fvd_from_features` and the feature extractors
  (:class:`InceptionFeatures`, :class:`I3DFeatures`): Frechet distances of Inception-v3 pool features
  over frames and of I3D logits over videos.
* Trackers: :class:`LucasKanadeTracker` (OpenCV, no weights) and :class:`CoTrackerTracker` (a local
  CoTracker checkpoint).

See ``docs/evaluation.md`` for the protocol and the folder layouts of ``sgi2v evaluate``.
Names are imported lazily, so ``import sgi2v.evaluation`` stays cheap.
"""

from __future__ import annotations

import importlib

__all__ = [
    "EvaluationError", "objmc", "objmc_pooled", "objmc_distances", "ObjMCResult", "validate_video", "validate_points",
    "LucasKanadeTracker", "CoTrackerTracker", "Tracker", "make_tracker", "box_query_points", "mask_query_point",
    "frechet_distance", "frechet_distance_from_features", "feature_statistics", "fid_from_features", "fvd_from_features",
    "InceptionV3FID", "I3D", "InceptionFeatures", "I3DFeatures", "WeightsError",
]

_WHERE = {
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
