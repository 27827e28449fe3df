import dataclasses

import pytest

from sgi2v import SGI2VConfig


def test_defaults_are_the_papers():
    c = SGI2VConfig()
    assert set(c.optimize_timesteps) == set(range(30, 46)) and len(c.optimize_timesteps) == 16
    assert (c.iterations, c.learning_rate, c.heatmap_sigma) == (5, 0.21, 0.4)
    assert c.feature_layers == ("up_blocks.2.attentions.1", "up_blocks.2.attentions.2")
    assert c.feature_kind == "aligned"
    assert (c.high_frequency_reinit, c.low_pass_cutoff, c.butterworth_order) == (True, 0.5, 4)
    assert [f.name for f in dataclasses.fields(c)] == [
        "optimize_timesteps", "iterations", "learning_rate", "feature_layers",
        "heatmap_sigma", "high_frequency_reinit", "low_pass_cutoff", "butterworth_order", "feature_kind",
    ]


def test_frozen_and_hashable():
    c = SGI2VConfig(optimize_timesteps=[3, 5])
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.iterations = 2
    assert hash(c) == hash(SGI2VConfig(optimize_timesteps=(5, 3)))


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(learning_rate=-0.1), "learning_rate"),
        (dict(learning_rate=float("nan")), "learning_rate"),
        (dict(heatmap_sigma=0), "heatmap_sigma"),
        (dict(low_pass_cutoff=0), "low_pass_cutoff"),
        (dict(low_pass_cutoff=-1.0), "low_pass_cutoff"),
        (dict(iterations=-1), "iterations"),
        (dict(iterations=1.5), "iterations"),
        (dict(butterworth_order=0), "butterworth_order"),
        (dict(optimize_timesteps=(0, 4)), "optimize_timesteps"),
        (dict(optimize_timesteps=(4, 4)), "duplicates"),
        (dict(optimize_timesteps=(2.5,)), "optimize_timesteps"),
        (dict(feature_layers=()), "feature_layers"),
        (dict(feature_layers="up_blocks.2.attentions.1"), "feature_layers"),
        (dict(high_frequency_reinit="yes"), "high_frequency_reinit"),
        (dict(feature_kind="dift"), r"feature_kind must be one of aligned, self_attention, layer_output, got 'dift'"),
        (dict(feature_kind="Aligned"), r"feature_kind .*got 'Aligned'"),
        (dict(feature_kind=None), r"feature_kind .*got None"),
    ],
)
def test_invalid_values_raise(changes, message):
    with pytest.raises(ValueError, match=message):
        SGI2VConfig(**changes)


def test_enabled():
    assert SGI2VConfig().enabled
    assert not SGI2VConfig(iterations=0).enabled
    assert not SGI2VConfig(optimize_timesteps=()).enabled


def test_scaled_to_steps():
    assert SGI2VConfig().scaled_to_steps(50) == SGI2VConfig()
    scaled = SGI2VConfig().scaled_to_steps(25)
    assert set(scaled.optimize_timesteps) == {round(t / 2) for t in range(30, 46)}
    assert max(scaled.optimize_timesteps) <= 25


def test_dict_round_trip():
    c = SGI2VConfig(iterations=3, optimize_timesteps=(4, 2), feature_kind="layer_output")
    assert SGI2VConfig.from_dict(c.to_dict()) == c
    assert c.to_dict()["feature_kind"] == "layer_output"
    with pytest.raises(ValueError, match="unknown"):
        SGI2VConfig.from_dict({"lr": 1})


def test_latent_window_is_the_papers_at_svds_size_and_moves_with_the_latent():
    from sgi2v.config import karras_sigmas, latent_window
    from sgi2v.testing import svd_scheduler

    for steps in (50, 25):  # the noise levels are SVD's scheduler's
        scheduler = svd_scheduler()
        scheduler.set_timesteps(steps)
        assert karras_sigmas(steps) == pytest.approx([float(s) for s in scheduler.sigmas[:-1]], rel=1e-5)
    assert latent_window((72, 128), 50) == SGI2VConfig().optimize_timesteps  # 576 x 1024: nothing moves
    assert latent_window((16, 16), 50) == tuple(range(33, 20, -1))  # 128 x 128: sigma 62 -> 6.2
    assert latent_window((40, 72), 50) == tuple(range(41, 26, -1))  # 320 x 576
    assert latent_window((16, 16), 25) == tuple(range(17, 10, -1))
    # a smaller latent moves the whole window towards less noise; a larger one towards more
    windows = [latent_window((h, h), 50) for h in (8, 16, 32, 64, 96, 128)]
    assert all(max(a) <= max(b) and min(a) <= min(b) for a, b in zip(windows, windows[1:]))
    assert max(latent_window((128, 256), 50)) > 45
    assert latent_window((1, 1), 3) and min(latent_window((1, 1), 3)) >= 1
    # a schedule already moved to a 16 x 16 latent (sigma / 6) puts the paper's noise levels at the paper's t
    moved = (700.0 / 6, 0.002 / 6)
    assert latent_window((16, 16), 50, moved) == SGI2VConfig().optimize_timesteps
    big = latent_window((72, 128), 50, moved)  # SVD's latent on that schedule: earlier, noisier steps
    assert max(big) == 50 and min(big) > 30
    with pytest.raises(ValueError, match="latent_window"):
        latent_window((16, 16), 0)


def test_the_control_benchmarks_shifted_window_is_latent_window(load_benchmark):
    from sgi2v.config import latent_window

    module = load_benchmark("control.py")
    changes, steps, _ = module.ROWS["window: shifted to a 16 x 16 latent (t 21-33)"]
    assert tuple(sorted(changes["optimize_timesteps"], reverse=True)) == latent_window((16, 16), steps)
