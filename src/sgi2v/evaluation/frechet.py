"""The Frechet distance between Gaussians fitted to network features (FID, FVD)."""

from __future__ import annotations

import logging

import numpy as np

from .common import EvaluationError

__all__ = ["feature_statistics", "frechet_distance", "frechet_distance_from_features", "fid_from_features", "fvd_from_features"]

logger = logging.getLogger(__name__)


def feature_statistics(features, name: str = "features") -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(D,)`` and unbiased covariance ``(D, D)`` of features ``(M, D)``, in float64."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2:
        raise EvaluationError(f"{name}: expected a (samples, dims) array, got shape {features.shape}")
    if features.shape[0] < 2:
        raise EvaluationError(f"{name}: needs at least 2 samples for a covariance, got {features.shape[0]}")
    if not np.isfinite(features).all():
        raise EvaluationError(f"{name}: contains NaN or infinite values")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """``|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2))``, the Frechet distance of two Gaussians.

    The trace of the matrix square root is computed as the sum of the square roots of the
    eigenvalues of ``A S2 A`` with ``A = S1^(1/2)`` (symmetric PSD, so ``eigh`` applies; it has the
    same eigenvalues as ``S1 S2``). This is exact for singular covariances (fewer samples than
    dimensions) too; tiny negative eigenvalues from round-off are clipped to zero. ``eps`` is kept
    for signature compatibility with other implementations and is unused.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise EvaluationError(f"frechet_distance: mismatched statistics: means {mu1.shape} {mu2.shape}, "
                              f"covariances {sigma1.shape} {sigma2.shape}")
    sigma1, sigma2 = (sigma1 + sigma1.T) / 2, (sigma2 + sigma2.T) / 2
    w1, v1 = np.linalg.eigh(sigma1)
    root1 = (v1 * np.sqrt(np.clip(w1, 0, None))) @ v1.T
    inner = root1 @ sigma2 @ root1
    w = np.linalg.eigvalsh((inner + inner.T) / 2)
    trace_sqrt = float(np.sqrt(np.clip(w, 0, None)).sum())
    diff = mu1 - mu2
    value = float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt)
    return max(value, 0.0)  # round-off can leave a tiny negative number for identical statistics


def frechet_distance_from_features(features_a, features_b, name: str = "features") -> float:
    """The Frechet distance of Gaussians fitted to two feature sets ``(M1, D)`` and ``(M2, D)``.

    When a set has no more samples than dimensions, the trace term is computed from the centred
    features ``X1``, ``X2`` directly: the eigenvalues of ``S1 S2`` are the squared singular values
    of ``X1 X2^T / sqrt((M1 - 1)(M2 - 1))``, so ``tr (S1 S2)^(1/2)`` is the sum of those singular
    values (exact, and an ``M1 x M2`` problem instead of ``D x D``). Otherwise it uses
    :func:`frechet_distance` on the statistics.
    """
    a = np.asarray(features_a, dtype=np.float64)
    b = np.asarray(features_b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise EvaluationError(f"{name}: feature arrays must be (samples, dims) with the same dims, got {a.shape} and {b.shape}")
    mu1, s1 = feature_statistics(a, f"{name} generated features")
    mu2, s2 = feature_statistics(b, f"{name} reference features")
    if min(len(a), len(b)) >= a.shape[1]:
        return frechet_distance(mu1, s1, mu2, s2)
    logger.info("%s: fewer samples (%d, %d) than feature dimensions (%d): the covariances are singular, so the score "
                "is biased upwards; use more samples for numbers comparable with published ones", name, len(a), len(b), a.shape[1])
    x1, x2 = a - mu1, b - mu2
    singular = np.linalg.svd(x1 @ x2.T, compute_uv=False) / np.sqrt((len(a) - 1) * (len(b) - 1))
    diff = mu1 - mu2
    value = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * singular.sum())
    return max(value, 0.0)


def fid_from_features(generated, reference) -> float:
    """FID from Inception pool features ``(frames, 2048)`` of generated and reference frames."""
    return frechet_distance_from_features(generated, reference, "FID")


def fvd_from_features(generated, reference) -> float:
    """FVD from I3D logits ``(videos, 400)`` of generated and reference videos."""
    return frechet_distance_from_features(generated, reference, "FVD")
