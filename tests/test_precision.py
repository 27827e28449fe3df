"""Half precision without a GPU: float16 and bfloat16 pipelines run on the CPU as on CUDA (the networks in half
precision, the optimised latent, the loss and the frequency mix in float32) and agree with float32.

Tolerances, frames in [0, 1]: the tiny random model's frames within 0.01 (float16) and 0.06 (bfloat16) of
float32's at every pixel; the trained sprites model's within a mean of 0.01 / 0.03 and the sprites tracked
to within 2 px of float32's positions. Measured here (2026-12-01): tiny float16 max 0.003, bfloat16 max
0.034; sprites (6 frames, 6 steps) float16 mean 0.00013, max 0.0015, tracks 0.05 px apart; bfloat16 mean
0.0010, max 0.016, tracks 0.12 px apart. No overflow or underflow was found.

float16 convolutions have no fast CPU kernel (torch falls back to ``_slow_conv2d``: 56 s instead of 3 s for
the sprites case), so the float16 sprites check is in the slow set (``pytest -m slow``); bfloat16's runs by
default.
"""

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import FRAMES, H, W, generator, moving_boxes
from sgi2v import SGI2VConfig
from sgi2v.testing import tiny_pipeline

TOLERANCE = {torch.float16: 0.01, torch.bfloat16: 0.06}


def _run(pipe, image, boxes, config, **kwargs):
    return pipe(image, boxes, config=config, generator=generator(), output_type="np", **kwargs)


@pytest.fixture(scope="module")
def tiny_reference():
    image = Image.fromarray((np.random.RandomState(0).rand(H, W, 3) * 255).astype(np.uint8))
    config = SGI2VConfig(optimize_timesteps=(5, 4), iterations=2)
    out = _run(tiny_pipeline(num_frames=FRAMES), image, moving_boxes(), config, height=H, width=W, num_frames=FRAMES,
               num_inference_steps=6)
    return image, config, out


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_tiny_half_precision_is_finite_and_close_to_float32(tiny_reference, dtype):
    image, config, reference = tiny_reference
    pipe = tiny_pipeline(num_frames=FRAMES, dtype=dtype)
    assert pipe.unet.dtype == dtype
    out = _run(pipe, image, moving_boxes(), config, height=H, width=W, num_frames=FRAMES, num_inference_steps=6)
    assert np.isfinite(out.frames).all()
    losses = [v for vals in out.losses.values() for v in vals]
    assert len(losses) == 4 and np.isfinite(losses).all()
    np.testing.assert_allclose(losses, [v for vals in reference.losses.values() for v in vals], rtol=0.05)
    assert np.abs(out.frames - reference.frames).max() < TOLERANCE[dtype]


def test_half_precision_optimises_in_float32(monkeypatch):
    """The latent handed to the optimiser and the features reaching the loss are float32 even when the
    UNet is float16."""
    import sgi2v.pipeline as pipeline_module

    seen = {}
    original = pipeline_module.optimize_latents

    def spy(latents, features_fn, loss_fn, config, half_precision=None):
        def features(z):
            seen["z"] = z.dtype
            out = features_fn(z)
            seen["features"] = out.dtype
            return out

        seen["half"] = half_precision
        return original(latents, features, loss_fn, config, half_precision)

    monkeypatch.setattr(pipeline_module, "optimize_latents", spy)
    image = Image.fromarray((np.random.RandomState(0).rand(H, W, 3) * 255).astype(np.uint8))
    _run(tiny_pipeline(num_frames=FRAMES, dtype=torch.float16), image, moving_boxes(),
         SGI2VConfig(optimize_timesteps=(2,), iterations=1), height=H, width=W, num_frames=FRAMES, num_inference_steps=2)
    assert seen == {"z": torch.float32, "features": torch.float32, "half": torch.float16}


@pytest.fixture(scope="module")
def sprites_case():
    from sgi2v.sprites.control import make_case

    return make_case(0, "straight", 1, num_frames=6)


@pytest.fixture(scope="module")
def sprites_reference(sprites_case):
    from sgi2v.loading import load_pipeline

    pipe = load_pipeline("sprites", dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    return _sprites_run(pipe, sprites_case)


def _sprites_run(pipe, case):
    image = Image.fromarray(case.scene.frames[0])
    config = SGI2VConfig().scaled_to_steps(6)
    return _run(pipe, image, case.boxes, config, height=128, width=128, num_frames=6, num_inference_steps=6)


@pytest.mark.parametrize("dtype,mean_tolerance", [pytest.param(torch.float16, 0.01, marks=pytest.mark.slow),
                                                  (torch.bfloat16, 0.03)])
def test_sprites_half_precision_is_close_to_float32(sprites_case, sprites_reference, dtype, mean_tolerance):
    from sgi2v.loading import load_pipeline
    from sgi2v.sprites.control import measure

    pipe = load_pipeline("sprites", dtype=dtype)
    pipe.set_progress_bar_config(disable=True)
    out = _sprites_run(pipe, sprites_case)
    assert np.isfinite(out.frames).all()
    assert all(np.isfinite(v).all() for v in out.losses.values())
    assert np.abs(out.frames - sprites_reference.frames).mean() < mean_tolerance
    to_uint8 = lambda frames: (frames[0] * 255).round().clip(0, 255).astype(np.uint8)  # noqa: E731
    half, full = measure(to_uint8(out.frames), sprites_case), measure(to_uint8(sprites_reference.frames), sprites_case)
    for a, b in zip(half["sprites"], full["sprites"]):
        ta, tb = np.asarray(a["track"]), np.asarray(b["track"])  # (F, 2), -1 where not found
        both = (ta >= 0).all(-1) & (tb >= 0).all(-1)
        assert both.sum() >= 4
        assert np.abs(ta[both] - tb[both]).max() < 2.0


def test_compiled_unet_is_used_for_denoising_and_gives_the_same_frames(tiny_reference, monkeypatch):
    """``compile_unet`` (``--compile``) sends the denoising steps' UNet calls through torch.compile; with the
    ``eager`` backend (no code generation, quick) the frames equal eager's to float tolerance. Inductor's
    compile and run times on this CPU are in benchmarks/RESULTS.md (benchmarks/compile.py)."""
    image, config, reference = tiny_reference
    pipe = tiny_pipeline(num_frames=FRAMES)
    pipe.compile_unet(backend="eager")
    compiled = pipe._compiled_unet
    calls = []
    original = type(compiled).__call__
    monkeypatch.setattr(type(compiled), "__call__", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    out = _run(pipe, image, moving_boxes(), config, height=H, width=W, num_frames=FRAMES, num_inference_steps=6)
    assert len(calls) == 6  # one per denoising step; the optimisation passes stay eager
    np.testing.assert_allclose(out.frames, reference.frames, atol=1e-5)
    pipe.compile_unet(backend="eager")
    assert pipe._compiled_unet is compiled


def test_bfloat16_is_accepted_wherever_a_dtype_is():
    from sgi2v.comfyui.nodes import LoadModel
    from sgi2v.loading import resolve_dtype
    from sgi2v.settings import resolve_settings

    for name in ("bfloat16", "bf16"):
        settings, _ = resolve_settings({"dtype": name}, model="tiny-random", source="")
        assert settings.dtype == "bfloat16"  # command line, batch manifests, web form
        assert resolve_dtype(name, torch.device("cpu")) == torch.bfloat16  # sgi2v ui --dtype, the loaders
    choices = LoadModel.INPUT_TYPES()["required"]["dtype"][0]
    assert "bfloat16" in choices  # the ComfyUI Load Model node
