"""benchmarks/sprites_feature_visibility.py: the sliding match, the sprite filter, and a short real measurement."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sgi2v.loss import gaussian_heatmap
from sgi2v.sprites.config import TRAIN_SEED_LIMIT
from sgi2v.sprites.scene import render_scene


@pytest.fixture(scope="module")
def visibility(load_benchmark):
    return load_benchmark("sprites_feature_visibility.py")


def test_slide_is_the_weighted_box_loss_at_every_position(visibility):
    g = torch.Generator().manual_seed(0)
    features = torch.randn(10, 12, 5, generator=g)
    target = features[6:9, 2:4].clone()  # a 3 x 2 box at row 6, column 2
    weight = gaussian_heatmap(3, 2, 0.4)
    loss = visibility.slide(features, target, weight)
    assert loss.shape == (8, 11)
    assert divmod(int(loss.argmin()), loss.shape[1]) == (6, 2) and float(loss.min()) == pytest.approx(0, abs=1e-12)
    r, c = 1, 7  # one position by hand
    expected = (weight * (features[r:r + 3, c:c + 2] - target).square().mean(-1)).sum() / weight.sum()
    assert float(loss[r, c]) == pytest.approx(float(expected), rel=1e-5)


def test_only_sprites_in_view_that_move_far_enough_are_measured(visibility):
    for seed in range(TRAIN_SEED_LIMIT + 3000, TRAIN_SEED_LIMIT + 3010):
        scene = render_scene(seed)
        h, w = scene.frames.shape[1:3]
        for n in visibility.moving_sprites(scene, 12.0):
            boxes = scene.boxes[n]
            assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
            assert np.linalg.norm(scene.centers[n, -1] - scene.centers[n, 0]) >= 12.0
        assert visibility.moving_sprites(scene, 1e9) == []


def test_the_shipped_model_follows_the_latent_at_low_noise_not_at_the_first_step(visibility):
    """A real measurement on 4 held-out scenes: at t = 50 (sigma 117, the model's first step) the features put a
    moving sprite where the condition image has it; at t = 10 (sigma 0.03) they follow the latent."""
    seeds = [TRAIN_SEED_LIMIT + 3000 + k for k in range(4)]
    result = visibility.measure_model("sprites", seeds, None, [50, 10], 12.0, 50)
    first, late = visibility.summarise(result["rows"][50])["all"], visibility.summarise(result["rows"][10])["all"]
    assert first["sprites"] >= 3 and result["sigmas"][50] == pytest.approx(700.0 / 6, rel=1e-4)
    assert first["contrast"] < 0 < late["contrast"], (first, late)
    assert late["error_px"] < first["error_px"] and late["located"] > first["located"], (first, late)
