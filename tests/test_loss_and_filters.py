import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sgi2v.boxes import latent_boxes, validate_boxes
from sgi2v.frequency import butterworth_low_pass, mix_frequencies
from sgi2v.loss import BoxLoss, gaussian_heatmap


@pytest.mark.parametrize("rows, cols, sigma", [(1, 1, 0.4), (5, 7, 0.4), (4, 9, 0.25), (11, 3, 1.0)])
def test_gaussian_heatmap_formula(rows, cols, sigma):
    g = gaussian_heatmap(rows, cols, sigma)
    sx, sy = sigma * cols / 2, sigma * rows / 2
    want = torch.zeros(rows, cols, dtype=torch.float64)
    for y in range(rows):
        for x in range(cols):
            want[y, x] = math.exp(-0.5 * ((x + 0.5 - cols / 2) ** 2 / sx**2 + (y + 0.5 - rows / 2) ** 2 / sy**2))
    want /= want.max()
    assert g.shape == (rows, cols) and g.dtype == torch.float32
    torch.testing.assert_close(g.double(), want, rtol=1e-6, atol=1e-7)
    assert g.max() == 1.0


@pytest.mark.parametrize("rows, cols, cutoff, order", [(8, 16, 0.5, 4), (7, 9, 0.5, 4), (5, 5, 0.25, 2)])
def test_butterworth_formula(rows, cols, cutoff, order):
    mask = butterworth_low_pass(rows, cols, cutoff, order)
    for u in range(rows):
        for v in range(cols):
            d2 = (2 * u / rows - 1) ** 2 + (2 * v / cols - 1) ** 2
            assert mask[u, v].item() == pytest.approx(1 / (1 + (d2 / cutoff**2) ** order), rel=1e-6)


def test_mix_frequencies():
    torch.manual_seed(0)
    a, b = torch.randn(1, 3, 4, 7, 9), torch.randn(1, 3, 4, 7, 9)
    torch.testing.assert_close(mix_frequencies(a, b, torch.ones(7, 9)), a, atol=1e-5, rtol=0)
    torch.testing.assert_close(mix_frequencies(a, b, torch.zeros(7, 9)), b, atol=1e-5, rtol=0)
    lpf = butterworth_low_pass(7, 9, 0.5, 4)
    # independent: same mixing with numpy's FFT, per frame and channel
    want = np.empty(a.shape)
    for f in range(3):
        for c in range(4):
            fa = np.fft.fftshift(np.fft.fft2(a[0, f, c].numpy().astype(np.float64)))
            fb = np.fft.fftshift(np.fft.fft2(b[0, f, c].numpy().astype(np.float64)))
            want[0, f, c] = np.fft.ifft2(np.fft.ifftshift(fa * lpf.numpy() + fb * (1 - lpf.numpy()))).real
    torch.testing.assert_close(mix_frequencies(a, b, lpf), torch.from_numpy(want).float(), atol=1e-5, rtol=0)


def test_latent_boxes_floor_and_min_size():
    boxes = np.array([[[0, 0, 8, 8], [7.9, 15.9, 8.1, 16.1], [-9, -1, 3, 5], [100, 20, 123, 44]]], dtype=np.float64)
    cells = latent_boxes(boxes, 8)  # (r0, c0, r1, c1)
    assert cells[0].tolist() == [[0, 0, 1, 1], [1, 0, 2, 1], [-1, -2, 0, 0], [2, 12, 5, 15]]


@pytest.mark.parametrize(
    "boxes, message",
    [
        (np.zeros((2, 4)), "shape"),
        (np.zeros((1, 3, 4)), "3 frames but num_frames is 4"),
        (np.array([[[0, 0, 10, 10]] * 3 + [[0, np.nan, 10, 10]]]), "non-finite"),
        (np.array([[[10, 0, 10, 10]] * 4]), "x1 > x0"),
        (np.array([[[0, 10, 10, 5]] * 4]), "y1 > y0"),
        (np.array([[[-1, 0, 10, 10]] * 4]), "inside the 128x64 image"),
        (np.array([[[100, 0, 130, 10]] * 4]), "inside the 128x64 image"),
        ("boxes", "numeric"),
    ],
)
def test_validate_boxes_errors(boxes, message):
    with pytest.raises(ValueError, match=message):
        validate_boxes(boxes, 4, 64, 128)


def test_validate_boxes_allows_leaving_later():
    boxes = np.array([[[0, 0, 10, 10], [-20, -20, -10, -10], [120, 60, 140, 80], [0, 0, 10, 10]]])
    assert validate_boxes(boxes, 4, 64, 128).shape == (1, 4, 4)


def naive_loss(features, cells, sigma):
    """The loss as the method states it: loop over frames and boxes, resize, crop, weight, normalise."""
    frames, h, w, _ = features.shape
    num, den = 0.0, 0.0
    targets = [features[0, r0:r1, c0:c1].detach() for r0, c0, r1, c1 in cells[:, 0]]
    for f in range(1, frames):
        for n, (r0, c0, r1, c1) in enumerate(cells[:, f]):
            rr0, cc0, rr1, cc1 = max(r0, 0), max(c0, 0), min(r1, h), min(c1, w)
            if rr0 >= rr1 or cc0 >= cc1:
                continue
            t = F.interpolate(targets[n].permute(2, 0, 1)[None], size=(r1 - r0, c1 - c0), mode="bilinear", align_corners=False)
            t = t[0].permute(1, 2, 0)[rr0 - r0 : rr1 - r0, cc0 - c0 : cc1 - c0]
            s = features[f, rr0:rr1, cc0:cc1]
            e = ((t - s) ** 2).mean(-1)
            g = gaussian_heatmap(r1 - r0, c1 - c0, sigma)[rr0 - r0 : rr1 - r0, cc0 - c0 : cc1 - c0]
            num = num + (g * e).sum()
            den = den + g.sum()
    return num / den


def test_box_loss_matches_naive_loop():
    torch.manual_seed(0)
    h, w, frames = 9, 13, 5
    features = torch.randn(frames, h, w, 6, requires_grad=True)
    cells = np.array(
        [
            # moves right, changes size, leaves the grid partly then entirely
            [[1, 1, 4, 5], [1, 3, 4, 8], [2, 10, 6, 16], [0, 14, 3, 18], [-2, -3, 2, 1]],
            # static
            [[5, 2, 8, 6]] * 5,
            # odd sizes, partly above the grid
            [[0, 7, 3, 12], [-1, 7, 2, 12], [-2, 6, 1, 11], [-4, 6, -1, 11], [8, 12, 11, 15]],
        ]
    )
    loss_fn = BoxLoss(cells, (h, w), 0.4)
    got = loss_fn(features)
    want = naive_loss(features, cells, 0.4)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=0)
    (g1,) = torch.autograd.grad(got, features)
    (g2,) = torch.autograd.grad(want, features)
    torch.testing.assert_close(g1, g2, rtol=1e-5, atol=1e-9)
    assert g1[0].abs().sum() == 0  # the frame-0 target is detached


def test_box_loss_empty_and_frame0_outside():
    cells = np.array([[[0, 0, 2, 2], [-5, -5, -3, -3]]])
    assert BoxLoss(cells, (4, 4), 0.4).empty
    with pytest.raises(ValueError, match="outside the 4x4 grid"):
        BoxLoss(np.array([[[3, 3, 5, 5], [0, 0, 1, 1]]]), (4, 4), 0.4)
