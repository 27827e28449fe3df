import numpy as np
import pytest
import torch
from diffusers import StableVideoDiffusionPipeline

from conftest import FRAMES, H, STEPS, W, generator, moving_boxes
from reference_sgi2v import reference_generate
from sgi2v import SGI2VConfig, SGI2VPipeline
from sgi2v.testing import tiny_components

CONFIG = SGI2VConfig(optimize_timesteps=(5, 4, 3), iterations=2)


def run(pipe, image, boxes, config=CONFIG, **kwargs):
    args = dict(height=H, width=W, num_frames=FRAMES, num_inference_steps=STEPS, generator=generator(), output_type="np")
    args.update(kwargs)
    return pipe(image, boxes, config=config, **args)


@pytest.mark.parametrize("config", [CONFIG.replace(iterations=0), CONFIG.replace(optimize_timesteps=())])
def test_disabled_equals_stable_video_diffusion_bit_for_bit(pipe, image, boxes, config):
    svd = StableVideoDiffusionPipeline(**pipe.components)
    svd.set_progress_bar_config(disable=True)
    want = svd(image, height=H, width=W, num_frames=FRAMES, num_inference_steps=STEPS, generator=generator(),
               output_type="np", decode_chunk_size=8).frames
    got = run(pipe, image, boxes, config).frames
    assert got.shape == (1, FRAMES, H, W, 3)
    np.testing.assert_array_equal(got, want)


def test_same_generator_same_output_and_guidance_changes_it(pipe, image, boxes):
    a = run(pipe, image, boxes)
    b = run(pipe, image, boxes)
    np.testing.assert_array_equal(a.frames, b.frames)
    assert a.losses == b.losses and sorted(a.losses) == [3, 4, 5]
    plain = run(pipe, image, boxes, CONFIG.replace(iterations=0)).frames
    assert np.abs(a.frames - plain).max() > 1e-3


def test_matches_independent_reference(pipe, image, boxes):
    """Same numbers as a straightforward implementation of the method (float32 both)."""
    latent = run(pipe, image, boxes, output_type="latent").frames
    ref_latent = reference_generate(
        pipe.components, image, boxes, CONFIG, height=H, width=W, num_frames=FRAMES, num_inference_steps=STEPS,
        generator=generator(), output_type="latent", decode_chunk_size=8,
    )
    plain = run(pipe, image, boxes, CONFIG.replace(iterations=0), output_type="latent").frames
    assert (ref_latent - plain).abs().max() > 1e-2  # the reference did optimise
    torch.testing.assert_close(latent, ref_latent, rtol=1e-4, atol=1e-4)


def test_default_feature_kind_is_the_aligned_one_bit_for_bit(pipe, image, boxes):
    """The default takes the paper's path; test_matches_independent_reference checks its numbers."""
    assert CONFIG.feature_kind == "aligned"
    explicit = CONFIG.replace(feature_kind="aligned")
    for output_type in ("latent", "np"):
        a, b = run(pipe, image, boxes, output_type=output_type), run(pipe, image, boxes, explicit, output_type=output_type)
        if output_type == "latent":
            assert torch.equal(a.frames, b.frames)
        else:
            np.testing.assert_array_equal(a.frames, b.frames)
        assert a.losses == b.losses


def test_feature_kinds_give_different_latents_each_with_finite_losses(pipe, image):
    boxes = moving_boxes(dx=8.0, dy=0.0)[:1]  # one box moving right
    config = SGI2VConfig(optimize_timesteps=(2,), iterations=2)
    plain = run(pipe, image, boxes, config.replace(iterations=0), num_inference_steps=2, output_type="latent").frames
    latents = {}
    for kind in ("aligned", "self_attention", "layer_output"):
        out = run(pipe, image, boxes, config.replace(feature_kind=kind), num_inference_steps=2, output_type="latent")
        assert sorted(out.losses) == [2] and len(out.losses[2]) == 2
        assert all(np.isfinite(v) and v > 0 for v in out.losses[2]), (kind, out.losses)
        assert torch.isfinite(out.frames).all()
        assert (out.frames - plain).abs().max() > 1e-3, kind  # a gradient reached the latent and moved it
        latents[kind] = out.frames
    assert not torch.allclose(latents["aligned"], latents["self_attention"], rtol=0, atol=1e-4)
    assert not torch.allclose(latents["aligned"], latents["layer_output"], rtol=0, atol=1e-4)
    assert not torch.allclose(latents["self_attention"], latents["layer_output"], rtol=0, atol=1e-4)


@pytest.mark.parametrize("kind", ["self_attention", "layer_output"])
def test_other_feature_kinds_same_numbers_with_gradient_checkpointing(pipe, image, boxes, kind):
    config = CONFIG.replace(optimize_timesteps=(5, 4), feature_kind=kind)
    before = {n: type(p) for n, p in pipe.unet.attn_processors.items()}
    a = run(pipe, image, boxes, config, output_type="latent")
    b = run(pipe, image, boxes, config, output_type="latent", gradient_checkpointing=True)
    torch.testing.assert_close(a.frames, b.frames, rtol=1e-5, atol=1e-5)
    assert a.losses.keys() == b.losses.keys() == {4, 5}
    assert {n: type(p) for n, p in pipe.unet.attn_processors.items()} == before
    assert not any(m._forward_hooks for m in pipe.unet.modules())


def test_one_iteration_lowers_the_loss(pipe, image, boxes):
    out = run(pipe, image, boxes, CONFIG.replace(optimize_timesteps=(5,), iterations=2))
    first, second = out.losses[5]
    assert second < first


def test_gradient_checkpointing_same_numbers(pipe, image, boxes):
    a = run(pipe, image, boxes, output_type="latent").frames
    b = run(pipe, image, boxes, output_type="latent", gradient_checkpointing=True).frames
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert not pipe.unet.is_gradient_checkpointing
    assert not any("forward" in vars(m) for m in pipe.unet.modules())  # wrappers removed


def test_processors_and_model_untouched(pipe, image, boxes):
    before = {n: type(p) for n, p in pipe.unet.attn_processors.items()}
    params = [p.requires_grad for p in pipe.unet.parameters()]
    run(pipe, image, boxes)
    assert {n: type(p) for n, p in pipe.unet.attn_processors.items()} == before
    assert [p.requires_grad for p in pipe.unet.parameters()] == params
    assert all(p.grad is None for p in pipe.unet.parameters())
    with pytest.raises(ValueError):
        run(pipe, image, np.full((1, FRAMES, 4), np.nan))
    assert {n: type(p) for n, p in pipe.unet.attn_processors.items()} == before


def test_processors_restored_after_failure_mid_optimisation(pipe, image, boxes):
    before = {n: type(p) for n, p in pipe.unet.attn_processors.items()}

    def fail(module, args, output):
        if torch.is_grad_enabled():  # only the optimisation passes run with gradients
            raise RuntimeError("interrupted")

    hook = pipe.unet.get_submodule("up_blocks.2.attentions.1").register_forward_hook(fail)
    try:
        with pytest.raises(RuntimeError, match="interrupted"):
            run(pipe, image, boxes, config=CONFIG.replace(optimize_timesteps=(4,)), gradient_checkpointing=True)
    finally:
        hook.remove()
    assert {n: type(p) for n, p in pipe.unet.attn_processors.items()} == before
    assert not any("forward" in vars(m) for m in pipe.unet.modules())
    assert all(p.requires_grad for p in pipe.unet.parameters())


def test_box_leaving_the_image_entirely_is_valid(pipe, image):
    boxes = moving_boxes(dx=40.0)  # box 0 is off the image from frame 3
    out = run(pipe, image, boxes)
    assert np.isfinite(out.frames).all()


def test_xt_frames_and_other_sizes():
    pipe = SGI2VPipeline(**tiny_components(seed=1, num_frames=25))
    pipe.set_progress_bar_config(disable=True)
    rng = np.random.RandomState(1)
    from PIL import Image

    image = Image.fromarray((rng.rand(128, 64, 3) * 255).astype(np.uint8))
    boxes = np.array([[[8 + f, 16 + 2 * f, 40 + f, 56 + 2 * f] for f in range(25)]], dtype=np.float64)
    out = pipe(image, boxes, config=SGI2VConfig(optimize_timesteps=(2,), iterations=1), height=128, width=64,
               num_inference_steps=2, generator=generator(), output_type="pt", decode_chunk_size=25)
    assert out.frames.shape == (1, 25, 3, 128, 64)
    assert len(out.losses[2]) == 1


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(height=96), "multiples of 64"),
        (dict(width=100), "multiples of 64|divisible by 8"),
        (dict(boxes=np.zeros((1, 3, 4))), "num_frames"),
        (dict(boxes=np.array([[[0, 0, 10, 10]] * FRAMES]) * np.array([1, 1, 0, 1])), "x1 > x0"),
        (dict(boxes=np.array([[[-5, 0, 10, 10]] * FRAMES])), "frame 0 must lie inside"),
        (dict(config=SGI2VConfig(feature_layers=("up_blocks.2.attention.1",))), "unknown feature layer"),
        (dict(config=SGI2VConfig()), r"exceed num_inference_steps=6 and would never run; choose timesteps from 1 to 6 \(the paper's window at 6 steps is 4-5\)"),
        (dict(config={"iterations": 1}), "SGI2VConfig"),
        (dict(num_videos_per_prompt=2), "one video"),
    ],
)
def test_bad_input(pipe, image, boxes, kwargs, message):
    boxes = kwargs.pop("boxes", boxes)
    config = kwargs.pop("config", CONFIG)
    with pytest.raises(ValueError, match=message):
        run(pipe, image, boxes, config, **kwargs)


def test_save_and_load_round_trip(tmp_path, pipe, image, boxes):
    pipe.save_pretrained(tmp_path)
    loaded = SGI2VPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    # Loading may pick another attention kernel for the CLIP encoder: equal up to float rounding.
    np.testing.assert_allclose(run(loaded, image, boxes).frames, run(pipe, image, boxes).frames, atol=1e-4)
    loaded_weights = loaded.unet.state_dict()
    assert all(torch.equal(v, loaded_weights[k]) for k, v in pipe.unet.state_dict().items())


def test_bf16_autocast_path_runs(image, boxes):
    """Half-precision UNet: the optimisation runs under autocast with a float32 latent."""
    pipe = SGI2VPipeline(**tiny_components(seed=0, num_frames=FRAMES))
    pipe.to(dtype=torch.bfloat16)
    pipe.set_progress_bar_config(disable=True)
    out = run(pipe, image, boxes, config=CONFIG.replace(optimize_timesteps=(5,), iterations=1), output_type="latent")
    assert out.frames.dtype == torch.bfloat16 and torch.isfinite(out.frames.float()).all()
    assert np.isfinite(out.losses[5][0])
