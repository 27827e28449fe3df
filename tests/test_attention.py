import math

import pytest
import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

from conftest import FRAMES, H, W
from sgi2v.attention import FeatureRecorder, FeaturesReady, FrameZeroAttnProcessor, frame_zero_attention, record_features


def naive_frame_zero_attention(q, k, v, frames):
    """softmax(Q_f K_0^T / sqrt(d)) V_0 written out, frame by frame."""
    out = torch.empty_like(q)
    for b in range(q.shape[0]):
        first = (b // frames) * frames
        scores = q[b] @ k[first].transpose(-1, -2) / math.sqrt(q.shape[-1])
        out[b] = torch.softmax(scores, dim=-1) @ v[first]
    return out


@pytest.mark.parametrize("batch", [1, 2])
def test_frame_zero_attention_matches_softmax(batch):
    torch.manual_seed(0)
    q, k, v = (torch.randn(batch * 3, 2, 10, 8, dtype=torch.float64) for _ in range(3))
    torch.testing.assert_close(frame_zero_attention(q, k, v, 3), naive_frame_zero_attention(q, k, v, 3))


def test_gradient_flows_through_queries_only():
    torch.manual_seed(0)
    q, k, v = (torch.randn(3, 2, 10, 8, requires_grad=True) for _ in range(3))
    frame_zero_attention(q, k, v, 3).square().sum().backward()
    assert q.grad is not None and q.grad.abs().sum() > 0
    assert k.grad is None and v.grad is None


def test_processor_output_equals_stock_and_records_features():
    torch.manual_seed(0)
    attn = Attention(query_dim=16, heads=2, dim_head=8)
    x = torch.randn(3, 4 * 8, 16)  # 3 frames of a 4 x 8 map
    expected = AttnProcessor2_0()(attn, x)
    recorder = FeatureRecorder(("layer",), num_frames=3, latent_size=(8, 16))
    recorder.armed = True
    out = FrameZeroAttnProcessor(recorder, "layer")(attn, x)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    feature = recorder.features["layer"]
    assert feature.shape == (3, 4, 8, 16)  # (F, h', w', heads * d), before the output projection
    q = attn.to_q(x).view(3, -1, 2, 8).transpose(1, 2)
    k = attn.to_k(x).view(3, -1, 2, 8).transpose(1, 2)
    v = attn.to_v(x).view(3, -1, 2, 8).transpose(1, 2)
    want = naive_frame_zero_attention(q, k, v, 3).transpose(1, 2).reshape(3, 4, 8, 16)
    torch.testing.assert_close(feature, want)


def test_unarmed_recorder_records_nothing():
    attn = Attention(query_dim=16, heads=2, dim_head=8)
    recorder = FeatureRecorder(("layer",), num_frames=3, latent_size=(8, 16))
    FrameZeroAttnProcessor(recorder, "layer")(attn, torch.randn(3, 32, 16))
    assert recorder.features == {}


def _unet_call(unet, frames=FRAMES):
    torch.manual_seed(1)
    sample = torch.randn(1, frames, 8, H // 8, W // 8)
    return dict(
        sample=sample, timestep=torch.tensor(1.0), encoder_hidden_states=torch.randn(1, 1, 32),
        added_time_ids=torch.tensor([[6.0, 127.0, 0.02]]), return_dict=False,
    )


def test_early_stop_and_restore(pipe):
    unet = pipe.unet
    names = ("up_blocks.2.attentions.1", "up_blocks.2.attentions.2")
    before = {n: type(unet.get_submodule(n).transformer_blocks[0].attn1.processor) for n in names}
    ran = []
    hooks = [unet.get_submodule(n).register_forward_hook(lambda m, a, o, n=n: ran.append(n)) for n in ("up_blocks.3", "conv_out")]
    recorder = FeatureRecorder(names, FRAMES, (H // 8, W // 8))
    try:
        with torch.no_grad(), record_features(unet, recorder):
            recorder.armed = True
            with pytest.raises(FeaturesReady):
                unet(**_unet_call(unet))
    finally:
        for h in hooks:
            h.remove()
    assert ran == []  # nothing after up_blocks.2.attentions.2 ran
    assert list(recorder.features) == list(names)
    assert recorder.features[names[0]].shape == (FRAMES, H // 16, W // 16, 32)
    assert {n: type(unet.get_submodule(n).transformer_blocks[0].attn1.processor) for n in names} == before
    assert not pipe.unet._forward_hooks and not unet.get_submodule(names[1])._forward_hooks


def test_processors_restored_after_exception(pipe):
    unet = pipe.unet
    name = "up_blocks.2.attentions.1"
    original = unet.get_submodule(name).transformer_blocks[0].attn1.processor
    recorder = FeatureRecorder((name,), FRAMES, (H // 8, W // 8))
    with pytest.raises(RuntimeError, match="boom"):
        with record_features(unet, recorder):
            raise RuntimeError("boom")
    assert unet.get_submodule(name).transformer_blocks[0].attn1.processor is original


def test_unknown_layer_lists_valid_names(pipe):
    recorder = FeatureRecorder(("up_blocks.9.attentions.0",), FRAMES, (8, 16))
    with pytest.raises(ValueError, match=r"unknown feature layer 'up_blocks.9.attentions.0'.*up_blocks.2.attentions.1"):
        with record_features(pipe.unet, recorder):
            pass


def test_any_spatial_transformer_in_any_order(pipe):
    names = ("up_blocks.3.attentions.0", "down_blocks.1.attentions.0", "mid_block.attentions.0")
    recorder = FeatureRecorder(names, FRAMES, (H // 8, W // 8))
    with torch.no_grad(), record_features(pipe.unet, recorder):
        recorder.armed = True
        with pytest.raises(FeaturesReady):
            pipe.unet(**_unet_call(pipe.unet))
    # recorded in execution order, each at its own resolution
    assert list(recorder.features) == ["down_blocks.1.attentions.0", "mid_block.attentions.0", "up_blocks.3.attentions.0"]
    assert recorder.features["mid_block.attentions.0"].shape[1:3] == (1, 2)
    assert recorder.features["up_blocks.3.attentions.0"].shape[1:3] == (H // 8, W // 8)


# -- feature_kind: self_attention and layer_output ---------------------------------------------------

def naive_self_attention(q, k, v):
    """softmax(Q_f K_f^T / sqrt(d)) V_f written out: each frame attends to itself."""
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    return torch.softmax(scores, dim=-1) @ v


def test_self_attention_kind_records_the_plain_attention_with_gradients_through_keys_and_values(monkeypatch):
    torch.manual_seed(0)
    attn = Attention(query_dim=16, heads=2, dim_head=8)
    x = torch.randn(3, 4 * 8, 16, requires_grad=True)  # 3 frames of a 4 x 8 map
    expected = AttnProcessor2_0()(attn, x)
    monkeypatch.setattr("sgi2v.attention.frame_zero_attention", lambda *a: pytest.fail("no frame-0 attention for this kind"))
    recorder = FeatureRecorder(("layer",), num_frames=3, latent_size=(8, 16), kind="self_attention")
    recorder.armed = True
    out = FrameZeroAttnProcessor(recorder, "layer")(attn, x)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    feature = recorder.features["layer"]
    assert feature.shape == (3, 4, 8, 16)  # (F, h', w', heads * d), before the output projection
    q, k, v = (proj(x).view(3, -1, 2, 8).transpose(1, 2) for proj in (attn.to_q, attn.to_k, attn.to_v))
    want = naive_self_attention(q, k, v).transpose(1, 2).reshape(3, 4, 8, 16)
    torch.testing.assert_close(feature, want)
    # The gradient is the plain attention's, keys and values included (the aligned kind detaches frame 0's).
    weight = torch.randn_like(want)
    (got_grad,) = torch.autograd.grad((feature * weight).sum(), x)
    (want_grad,) = torch.autograd.grad((want * weight).sum(), x, retain_graph=True)
    torch.testing.assert_close(got_grad, want_grad)
    q_only = naive_self_attention(q, k.detach(), v.detach()).transpose(1, 2).reshape(3, 4, 8, 16)
    (q_only_grad,) = torch.autograd.grad((q_only * weight).sum(), x)
    assert (got_grad - q_only_grad).abs().max() > 1e-4


def test_unknown_feature_kind_is_refused():
    with pytest.raises(ValueError, match="feature_kind must be one of aligned, self_attention, layer_output, got 'dift'"):
        FeatureRecorder(("layer",), num_frames=3, latent_size=(8, 16), kind="dift")


NAMES = ("up_blocks.2.attentions.1", "up_blocks.2.attentions.2")


def _independent_features(unet, kind, names=NAMES, frames=FRAMES):
    """Hooks registered by the test: the plain attention from attn1's input (to_q/to_k/to_v and an
    explicit softmax), or the spatial transformer's output, channels last."""
    seen, handles = {}, []

    def attention(name, module, args, kwargs):
        x = args[0] if args else kwargs["hidden_states"]  # (F, L, C)
        heads = module.heads
        q, k, v = module.to_q(x), module.to_k(x), module.to_v(x)
        d = q.shape[-1] // heads
        q, k, v = (y.view(frames, -1, heads, d).transpose(1, 2) for y in (q, k, v))
        a = naive_self_attention(q, k, v).transpose(1, 2)  # (F, L, heads, d)
        side = math.isqrt((H // 8) * (W // 8) // a.shape[1])
        seen[name] = a.reshape(frames, H // 8 // side, W // 8 // side, heads * d)

    def output(name, module, args, out):
        seen[name] = out[0].permute(0, 2, 3, 1)

    for name in names:
        module = unet.get_submodule(name)
        if kind == "self_attention":
            handles.append(module.transformer_blocks[0].attn1.register_forward_pre_hook(
                lambda m, a, k, name=name: attention(name, m, a, k), with_kwargs=True))
        else:
            handles.append(module.register_forward_hook(lambda m, a, o, name=name: output(name, m, a, o)))
    return seen, handles


@pytest.mark.parametrize("kind", ["self_attention", "layer_output"])
def test_unet_features_of_each_kind_equal_an_independent_computation(pipe, kind):
    unet = pipe.unet
    seen, handles = _independent_features(unet, kind)
    recorder = FeatureRecorder(NAMES, FRAMES, (H // 8, W // 8), kind=kind)
    try:
        with torch.no_grad(), record_features(unet, recorder):
            recorder.armed = True
            with pytest.raises(FeaturesReady):
                unet(**_unet_call(unet))
    finally:
        for handle in handles:
            handle.remove()
    assert list(recorder.features) == list(NAMES) == list(seen)
    for name in NAMES:
        assert recorder.features[name].shape == (FRAMES, H // 16, W // 16, 32)
        if kind == "layer_output":
            torch.testing.assert_close(recorder.features[name], seen[name], rtol=0, atol=0)
        else:
            torch.testing.assert_close(recorder.features[name], seen[name], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["aligned", "self_attention", "layer_output"])
def test_every_kind_stops_early_restores_and_passes_gradient_to_the_latent(pipe, kind):
    unet = pipe.unet
    before = {n: unet.get_submodule(n).transformer_blocks[0].attn1.processor for n in NAMES}
    frozen = [p.requires_grad for p in unet.parameters()]
    unet.requires_grad_(False)
    ran = []
    hooks = [unet.get_submodule(n).register_forward_hook(lambda m, a, o, n=n: ran.append(n)) for n in ("up_blocks.3", "conv_out")]
    recorder = FeatureRecorder(NAMES, FRAMES, (H // 8, W // 8), kind=kind)
    call = _unet_call(unet)
    sample = call["sample"].requires_grad_(True)
    try:
        with torch.enable_grad(), record_features(unet, recorder):
            recorder.armed = True
            with pytest.raises(FeaturesReady):
                unet(**call)
            recorder.armed = False
            loss = sum(f.square().mean() for f in recorder.features.values())
            (grad,) = torch.autograd.grad(loss, sample)
    finally:
        for h in hooks:
            h.remove()
        for p, r in zip(unet.parameters(), frozen):
            p.requires_grad_(r)
    assert ran == []  # nothing after the last feature layer ran
    assert list(recorder.features) == list(NAMES)
    assert torch.isfinite(loss) and torch.isfinite(grad).all() and grad.abs().sum() > 0
    assert grad[:, :, :4].abs().sum() > 0  # the noisy latent's channels (the rest is the image condition)
    assert {n: unet.get_submodule(n).transformer_blocks[0].attn1.processor for n in NAMES} == before
    assert not any(unet.get_submodule(n)._forward_hooks for n in NAMES)


def test_every_attention_runs_through_sdpa(pipe, image, monkeypatch):
    """In a whole SG-I2V generation, every attention (UNet spatial, temporal and cross attention, CLIP's, the
    VAE's, and our frame-0 attention) is one call of F.scaled_dot_product_attention, which picks the fused
    kernel (flash / memory-efficient on CUDA, flash on the CPU); no path materialises the score matrix."""
    import numpy as np
    import torch.nn.functional as F
    import transformers.models.clip.modeling_clip as clip

    import sgi2v.attention as ours
    from conftest import generator, moving_boxes
    from sgi2v import SGI2VConfig

    calls = {"sdpa": 0, "modules": 0, "frame0": 0}
    real_sdpa, real_frame0 = F.scaled_dot_product_attention, ours.frame_zero_attention

    def sdpa(*args, **kwargs):
        calls["sdpa"] += 1
        return real_sdpa(*args, **kwargs)

    def frame0(*args, **kwargs):
        calls["frame0"] += 1
        return real_frame0(*args, **kwargs)

    def never(*args, **kwargs):
        raise AssertionError("an attention path computed the score matrix itself")

    monkeypatch.setattr(F, "scaled_dot_product_attention", sdpa)
    monkeypatch.setattr(ours, "frame_zero_attention", frame0)
    monkeypatch.setattr(Attention, "get_attention_scores", never)
    monkeypatch.setattr(clip, "eager_attention_forward", never)
    modules = [m for m in [*pipe.unet.modules(), *pipe.vae.modules(), *pipe.image_encoder.modules()]
               if isinstance(m, (Attention, clip.CLIPAttention))]
    assert modules and all(not isinstance(m, Attention) or isinstance(m.processor, AttnProcessor2_0) for m in modules)
    handles = [m.register_forward_pre_hook(lambda *_: calls.__setitem__("modules", calls["modules"] + 1)) for m in modules]
    try:
        out = pipe(image, moving_boxes(), config=SGI2VConfig(optimize_timesteps=(3,), iterations=1), height=H, width=W,
                   num_frames=FRAMES, num_inference_steps=3, generator=generator(), output_type="np")
    finally:
        for handle in handles:
            handle.remove()
    assert np.isfinite(out.frames).all()
    assert calls["frame0"] > 0 and calls["modules"] > 0
    assert calls["sdpa"] == calls["modules"] + calls["frame0"]
