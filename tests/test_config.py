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
