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
