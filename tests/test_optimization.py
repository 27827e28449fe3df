import numpy as np
import torch

from sgi2v import SGI2VConfig
from sgi2v.loss import BoxLoss
from sgi2v.optimization import optimize_latents


def toy_problem():
    """A differentiable stand-in for the UNet: features are a fixed random linear map of the latent."""
    torch.manual_seed(0)
    latents = torch.randn(1, 3, 4, 6, 8)
    proj = torch.randn(4, 5)

    def features(z):
        return torch.einsum("fchw,cd->fhwd", z[0], proj)

    cells = np.array([[[1, 1, 3, 4], [1, 2, 3, 5], [2, 3, 4, 6]]])
    return latents, features, BoxLoss(cells, (6, 8), 0.4)


def test_fresh_adamw_with_default_weight_decay():
    latents, features, loss_fn = toy_problem()
    config = SGI2VConfig(iterations=3, high_frequency_reinit=False)
    got, losses = optimize_latents(latents, features, loss_fn, config)
    z = latents.clone().requires_grad_(True)
    opt = torch.optim.AdamW([z], lr=0.21, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    for _ in range(3):
        loss = loss_fn(features(z))
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.testing.assert_close(got, z.detach(), rtol=0, atol=0)
    assert len(losses) == 3
    # AdamW without weight decay gives a different answer: the default 0.01 is in use.
    z2 = latents.clone().requires_grad_(True)
    opt2 = torch.optim.AdamW([z2], lr=0.21, weight_decay=0.0)
    for _ in range(3):
        loss = loss_fn(features(z2))
        opt2.zero_grad()
        loss.backward()
        opt2.step()
    assert not torch.allclose(got, z2.detach())


def test_no_state_carries_over_between_steps():
    latents, features, loss_fn = toy_problem()
    config = SGI2VConfig(iterations=2)
    first, _ = optimize_latents(latents, features, loss_fn, config)
    second, _ = optimize_latents(latents, features, loss_fn, config)
    assert torch.equal(first, second)  # same input, same output: a new optimiser each call
    assert not torch.equal(first, latents)


def test_input_not_modified_and_dtype_kept():
    latents, features, loss_fn = toy_problem()
    copy = latents.clone()
    out, _ = optimize_latents(latents.double(), lambda z: features(z.float()), loss_fn, SGI2VConfig(iterations=1))
    assert torch.equal(latents, copy) and out.dtype == torch.float64


def test_loss_decreases():
    latents, features, loss_fn = toy_problem()
    _, losses = optimize_latents(latents, features, loss_fn, SGI2VConfig(iterations=4))
    assert losses[-1] < losses[0]


def test_nothing_to_match_returns_input():
    latents, features, _ = toy_problem()
    empty = BoxLoss(np.array([[[0, 0, 2, 2], [-9, -9, -7, -7], [-9, -9, -7, -7]]]), (6, 8), 0.4)
    out, losses = optimize_latents(latents, features, empty, SGI2VConfig())
    assert out is latents and losses == []
