"""The SG-I2V feature-matching loss (Sec. 3.3): Gaussian-weighted MSE between frame-0 box features
and the features under each later frame's box."""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["gaussian_heatmap", "BoxLoss"]


@functools.lru_cache(maxsize=256)
def _gaussian_heatmap_np(rows: int, cols: int, sigma: float) -> np.ndarray:
    sig_y, sig_x = sigma * rows / 2, sigma * cols / 2
    y = np.arange(rows, dtype=np.float64)[:, None]
    x = np.arange(cols, dtype=np.float64)[None, :]
    # Same arithmetic as the authors' code: float64 density, stored as float32, normalised in float32.
    g = 1 / 2 / np.pi / (sig_x * sig_y) * np.exp(-1 / 2 * ((x + 0.5 - cols / 2) ** 2 / sig_x**2 + (y + 0.5 - rows / 2) ** 2 / sig_y**2))
    g = g.astype(np.float32)
    g = g / np.max(g)
    g.setflags(write=False)
    return g


def gaussian_heatmap(rows: int, cols: int, sigma: float) -> torch.Tensor:
    """``G(y, x) = exp(-((x + .5 - cols/2)^2 / sx^2 + (y + .5 - rows/2)^2 / sy^2) / 2)`` normalised to max 1,
    with ``sx = sigma * cols / 2`` and ``sy = sigma * rows / 2``. Shape ``(rows, cols)``, float32, CPU."""
    return torch.from_numpy(_gaussian_heatmap_np(int(rows), int(cols), float(sigma)).copy())


class BoxLoss:
    """The loss for fixed boxes on a fixed latent grid, precomputed once and evaluated per iteration.

    ``L = sum_{n, f>=1, cells} G * mean_c (T - S)^2 / sum G``, where ``T`` is box ``n``'s frame-0 feature
    resized (bilinear) to the box's unclipped size at frame ``f`` and cropped like the box is clipped,
    and ``S`` the features under the clipped box at frame ``f``. All index tensors are built here, so
    evaluating is a handful of gathers.

    Args:
        cells: ``(N, F, 4)`` int latent boxes ``(r0, c0, r1, c1)`` from :func:`sgi2v.boxes.latent_boxes`;
            frame 0 must lie inside the grid.
        grid: latent ``(h, w)``.
        sigma: heatmap sigma.
        device: where the index tensors live.
    """

    def __init__(self, cells: np.ndarray, grid: tuple[int, int], sigma: float, device: torch.device | str = "cpu"):
        h, w = grid
        cells = np.asarray(cells, dtype=np.int64)
        num_boxes, num_frames = cells.shape[:2]
        self.grid = (h, w)
        self.num_frames = num_frames
        self.targets = [tuple(int(v) for v in cells[n, 0]) for n in range(num_boxes)]  # frame-0 (r0, c0, r1, c1)
        for n, (r0, c0, r1, c1) in enumerate(self.targets):
            if r0 < 0 or c0 < 0 or r1 > h or c1 > w:
                raise ValueError(f"box {n} at frame 0 covers latent cells rows {r0}..{r1 - 1}, cols {c0}..{c1 - 1}, outside the {h}x{w} grid")

        # One resized target per distinct (box, unclipped size); cells of every (box, frame) entry index into them.
        sizes: dict[tuple[int, int, int], int] = {}
        src, tgt, weight = [], [], []
        offset = 0
        for n in range(num_boxes):
            for f in range(1, num_frames):
                r0, c0, r1, c1 = (int(v) for v in cells[n, f])
                rr0, cc0, rr1, cc1 = max(r0, 0), max(c0, 0), min(r1, h), min(c1, w)
                if rr0 >= rr1 or cc0 >= cc1:
                    continue  # entirely outside the grid at this frame
                hb, wb = r1 - r0, c1 - c0
                key = (n, hb, wb)
                if key not in sizes:
                    sizes[key] = offset
                    offset += hb * wb
                rows = torch.arange(rr0, rr1)[:, None]
                cols = torch.arange(cc0, cc1)[None, :]
                src.append((f * h * w + rows * w + cols).reshape(-1))
                tgt.append((sizes[key] + (rows - r0) * wb + (cols - c0)).reshape(-1))
                weight.append(gaussian_heatmap(hb, wb, sigma)[rr0 - r0 : rr1 - r0, cc0 - c0 : cc1 - c0].reshape(-1))
        self.resized = list(sizes)  # (box, rows, cols) in target-buffer order
        self.empty = not src
        if self.empty:
            return
        self.src_index = torch.cat(src).to(device)
        self.tgt_index = torch.cat(tgt).to(device)
        self.weight = torch.cat(weight).to(device)
        self.weight_sum = self.weight.sum()

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        """Loss of a feature map ``(F, h, w, C)``, float32; differentiable w.r.t. ``features[1:]``."""
        if self.empty:
            raise ValueError("no box overlaps the latent grid after frame 0: nothing to match")
        num_frames, h, w, channels = features.shape
        if (h, w) != self.grid or num_frames != self.num_frames:
            raise ValueError(f"features have shape {tuple(features.shape)}, expected ({self.num_frames}, {self.grid[0]}, {self.grid[1]}, C)")
        targets = []
        for n, hb, wb in self.resized:
            r0, c0, r1, c1 = self.targets[n]
            t = features[0, r0:r1, c0:c1].detach()  # (hb0, wb0, C)
            if (hb, wb) != (r1 - r0, c1 - c0):
                t = F.interpolate(t.permute(2, 0, 1)[None], size=(hb, wb), mode="bilinear", align_corners=False)[0].permute(1, 2, 0)
            targets.append(t.reshape(-1, channels))
        target = torch.cat(targets)[self.tgt_index]  # (cells, C)
        source = features.reshape(-1, channels)[self.src_index]  # (cells, C)
        error = (target - source).square().mean(dim=-1)  # (cells,)
        return (self.weight * error).sum() / self.weight_sum
