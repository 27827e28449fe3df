"""High-frequency re-initialisation of the optimised latent (SG-I2V, Sec. 3.4)."""

from __future__ import annotations

import functools

import numpy as np
import torch

__all__ = ["butterworth_low_pass", "mix_frequencies"]


@functools.lru_cache(maxsize=64)
def _butterworth_np(rows: int, cols: int, cutoff: float, order: int) -> np.ndarray:
    u = np.arange(rows, dtype=np.float64)[:, None]
    v = np.arange(cols, dtype=np.float64)[None, :]
    d2 = (2 * u / rows - 1) ** 2 + (2 * v / cols - 1) ** 2
    mask = (1 / (1 + (d2 / cutoff**2) ** order)).astype(np.float32)
    mask.setflags(write=False)
    return mask


def butterworth_low_pass(rows: int, cols: int, cutoff: float, order: int, device=None) -> torch.Tensor:
    """Centred Butterworth low-pass ``1 / (1 + (d^2 / d_s^2)^n)``, ``d^2 = (2u/h - 1)^2 + (2v/w - 1)^2``.

    Shape ``(rows, cols)``, float32; for spectra that have been ``fftshift``-ed.
    """
    return torch.from_numpy(_butterworth_np(int(rows), int(cols), float(cutoff), int(order)).copy()).to(device)


def mix_frequencies(optimized: torch.Tensor, original: torch.Tensor, low_pass: torch.Tensor) -> torch.Tensor:
    """Low frequencies from ``optimized``, high ones from ``original``, over the last two axes, in float32.

    ``Re IFFT2(LPF * FFT2(optimized) + (1 - LPF) * FFT2(original))`` with centred spectra.
    """
    dims = (-2, -1)
    low = torch.fft.fftshift(torch.fft.fftn(optimized.float(), dim=dims), dim=dims)
    high = torch.fft.fftshift(torch.fft.fftn(original.float(), dim=dims), dim=dims)
    mixed = low * low_pass + high * (1 - low_pass)
    return torch.fft.ifftn(torch.fft.ifftshift(mixed, dim=dims), dim=dims).real
