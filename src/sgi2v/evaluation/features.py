"""Feature extractors for FID (Inception-v3 pool, 2048-d per frame) and FVD (I3D logits, 400-d per video).

Weights are read only from local files the user gives; nothing is downloaded. ``random_weights()``
builds a network with seeded random weights for tests of the plumbing: its scores mean nothing and
every object built that way carries ``real_weights = False``, which reports print.
"""

from __future__ import annotations

import logging
import os
import zipfile
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
import torch.nn.functional as F

from .common import EvaluationError, WeightsError, file_sha256, validate_video
from .i3d import I3D
from .inception import FID_WEIGHTS_FILE, InceptionV3FID

__all__ = ["InceptionFeatures", "I3DFeatures", "FVD_RESIZE_MODES", "KNOWN_FVD_DETECTORS", "load_state_dict_file",
           "default_device"]

logger = logging.getLogger(__name__)

#: How frames are brought to the I3D's square input: ``stretch`` (both sides resized to ``size``,
#: the aspect ratio is lost: the TensorFlow FVD reference and StyleGAN-V) or ``center-crop`` (the
#: short side resized to ``size``, then the centre ``size`` x ``size`` cut out, as many other scripts do).
FVD_RESIZE_MODES = ("stretch", "center-crop")

#: SHA-256 of I3D weight files known to be the FVD reference detector, mapped to a description.
#: Empty: the reference is the TF-hub module ``i3d-kinetics-400/1`` used by the TensorFlow FVD
#: code, and no PyTorch file's hash could be checked against it here, so every file gets a warning.
KNOWN_FVD_DETECTORS: dict[str, str] = {}


def default_device() -> torch.device:
    """CUDA if available, then Apple MPS, else CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _check_file(path, what: str, hint: str) -> Path:
    if path is None:
        raise WeightsError(f"{what}: no weight file given ({hint})")
    path = Path(path).expanduser()
    if not path.exists():
        raise WeightsError(f"{path}: {what} weight file not found ({hint})")
    if path.is_dir():
        raise WeightsError(f"{path}: is a folder; give the {what} weight file itself ({hint})")
    return path


def load_state_dict_file(path: Path, what: str) -> dict:
    """A state dict from a ``torch.save`` file (optionally nested under ``state_dict``)."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle, zip and version errors all mean: not a usable file
        raise WeightsError(f"{path}: not a readable {what} weight file: {' '.join(str(err).split())[:200]}") from None
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise WeightsError(f"{path}: not a {what} state dict (expected a dict of tensors)")
    return {k.removeprefix("module."): v for k, v in data.items()}


def _load_into(model: torch.nn.Module, state: dict, path: Path, what: str) -> None:
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = " ".join(str(err).split())[:300]
        raise WeightsError(f"{path}: does not fit the {what} architecture: {first}") from None


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("constants.pkl") or "/code/" in name for name in archive.namelist())


def _random_network(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Seeded He-normal convolutions, so activations keep their scale through the depth (plumbing tests only)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.Linear)):
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * (2.0 / fan_in) ** 0.5)
    return model


def _batches(items: np.ndarray, size: int) -> Iterable[np.ndarray]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


class InceptionFeatures:
    """Inception-v3 pool features (2048-d) of frames, for FID.

    Args:
        weights: the FID Inception weights converted for PyTorch, ``pt_inception-2015-12-05-6726825d.pth``
            (as distributed with pytorch-fid).
        device, dtype: where and in what precision to run (default: best device, float32).
        batch_size: frames per forward pass.
    """

    dims = 2048

    def __init__(self, weights: str | os.PathLike | None, device=None, dtype: torch.dtype = torch.float32, batch_size: int = 32,
                 _model: torch.nn.Module | None = None):
        self.device = torch.device(device) if device is not None else default_device()
        self.dtype, self.batch_size = dtype, int(batch_size)
        if _model is None:
            path = _check_file(weights, "FID Inception-v3", f"expected {FID_WEIGHTS_FILE}, see docs/evaluation.md")
            _model = InceptionV3FID()
            _load_into(_model, load_state_dict_file(path, "FID Inception-v3"), path, "FID Inception-v3")
            self.real_weights, self.source, self.sha256 = True, str(path.resolve()), file_sha256(path)
        else:
            self.real_weights, self.source, self.sha256 = False, "random weights (plumbing test only; not a real FID)", None
        self.model = _model.to(self.device, self.dtype).eval()

    def protocol(self) -> dict:
        """How the features are computed, for the report."""
        return {"network": "Inception-v3 of FID (TensorFlow graph 2015-12-05, pytorch-fid's FIDInceptionA/C/E variant)",
                "features": "2048-d pool features of every frame",
                "preprocessing": f"RGB / 255, bilinear resize to {self.model.size}x{self.model.size} (align_corners=False), "
                                 "then 2x - 1: pytorch-fid's, features bit-identical to pytorch-fid's InceptionV3",
                "weights": self.source, "weights_sha256": self.sha256, "random_weights": not self.real_weights,
                "dtype": str(self.dtype).removeprefix("torch.")}

    @classmethod
    def random_weights(cls, seed: int = 0, size: int = 299, **kwargs) -> "InceptionFeatures":
        """A random-weight network (frames resized to ``size``, at least 75): exercises the code path only."""
        return cls(None, _model=_random_network(InceptionV3FID(size=size), seed), **kwargs)

    @torch.no_grad()
    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """Features ``(M, 2048)`` of uint8 frames ``(M, H, W, 3)``."""
        frames = validate_video(frames, "frames")
        out = []
        for chunk in _batches(frames, self.batch_size):
            x = torch.from_numpy(np.ascontiguousarray(chunk)).to(self.device).permute(0, 3, 1, 2).to(self.dtype) / 255
            out.append(self.model(x).float().cpu().numpy())
        return np.concatenate(out).astype(np.float64)


class I3DFeatures:
    """I3D Kinetics-400 logits (400-d) of whole videos, for FVD.

    Frames are brought to ``size`` x ``size`` (bilinear; ``resize`` says how, see :data:`FVD_RESIZE_MODES`),
    scaled to [-1, 1] and given to the network as one clip ``(1, 3, F, size, size)``.

    Args:
        weights: either a state dict for :class:`~sgi2v.evaluation.i3d.I3D` (e.g. the Kinetics-400
            RGB conversion ``rgb_imagenet.pt``), or the TorchScript I3D ``i3d_torchscript.pt`` used by
            common FVD code (called with ``rescale=False, resize=False, return_features=True``).
        device, dtype: where and in what precision to run.
        size: frame side given to the network (224 for standard numbers).
        resize: ``stretch`` (default, the TensorFlow reference's) or ``center-crop``.
    """

    dims = 400

    def __init__(self, weights: str | os.PathLike | None, device=None, dtype: torch.dtype = torch.float32, size: int = 224,
                 resize: str = "stretch", _model: torch.nn.Module | None = None):
        if resize not in FVD_RESIZE_MODES:
            raise EvaluationError(f"FVD resize: expected one of {', '.join(FVD_RESIZE_MODES)}, got {resize!r}")
        self.device = torch.device(device) if device is not None else default_device()
        self.dtype, self.size, self.resize, self.torchscript = dtype, int(size), resize, False
        if _model is None:
            path = _check_file(weights, "FVD I3D", "expected an I3D Kinetics-400 state dict or i3d_torchscript.pt, see docs/evaluation.md")
            if _is_torchscript(path):
                try:
                    _model = torch.jit.load(str(path), map_location="cpu")
                except Exception as err:
                    raise WeightsError(f"{path}: not a loadable TorchScript I3D: {' '.join(str(err).split())[:200]}") from None
                self.torchscript = True
            else:
                _model = I3D()
                _load_into(_model, load_state_dict_file(path, "FVD I3D"), path, "FVD I3D")
            self.real_weights, self.source, self.sha256 = True, str(path.resolve()), file_sha256(path)
        else:
            self.real_weights, self.source, self.sha256 = False, "random weights (plumbing test only; not a real FVD)", None
        self.model = _model.to(self.device, self.dtype).eval() if not self.torchscript else _model.to(self.device).eval()

    @property
    def reference_detector(self) -> bool:
        """Whether the weight file is a known FVD reference detector (by SHA-256, :data:`KNOWN_FVD_DETECTORS`)."""
        return self.sha256 in KNOWN_FVD_DETECTORS

    def protocol(self) -> dict:
        """How the features are computed, for the report."""
        how = {"stretch": f"both sides resized to {self.size} (aspect ratio not kept; the TensorFlow reference's)",
               "center-crop": f"short side resized to {self.size}, centre {self.size}x{self.size} cut out"}[self.resize]
        return {"network": "I3D RGB, Kinetics-400 (" + ("TorchScript file" if self.torchscript else "sgi2v.evaluation.I3D") + ")",
                "features": "400 logits per video, all frames as one clip",
                "resize": self.resize, "preprocessing": f"bilinear, {how}; then x / 127.5 - 1",
                "weights": self.source, "weights_sha256": self.sha256, "random_weights": not self.real_weights,
                "reference_detector": KNOWN_FVD_DETECTORS.get(self.sha256) if self.sha256 else None,
                "dtype": str(self.dtype).removeprefix("torch.")}

    @classmethod
    def random_weights(cls, seed: int = 0, **kwargs) -> "I3DFeatures":
        """A random-weight network: exercises the code path, gives scores with no meaning."""
        return cls(None, _model=_random_network(I3D(), seed), **kwargs)

    @torch.no_grad()
    def __call__(self, video: np.ndarray) -> np.ndarray:
        """Logits ``(400,)`` of one uint8 video ``(F, H, W, 3)``."""
        video = validate_video(video)
        x = torch.from_numpy(np.ascontiguousarray(video)).to(self.device).permute(0, 3, 1, 2).float()  # (F, 3, H, W)
        if self.resize == "stretch":
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False) / 127.5 - 1
        else:
            height, width = x.shape[-2:]
            scale = self.size / min(height, width)
            inner = (max(self.size, round(height * scale)), max(self.size, round(width * scale)))
            x = F.interpolate(x, size=inner, mode="bilinear", align_corners=False)
            top, left = (inner[0] - self.size) // 2, (inner[1] - self.size) // 2
            x = x[..., top:top + self.size, left:left + self.size] / 127.5 - 1  # (F, 3, size, size)
        x = x.permute(1, 0, 2, 3)[None]  # (1, 3, F, size, size)
        if self.torchscript:
            out = self.model(x, rescale=False, resize=False, return_features=True)
        else:
            out = self.model(x.to(self.dtype))
        return out.float().cpu().numpy().reshape(-1).astype(np.float64)
