"""Checks that need a CUDA device (``pytest -m gpu``) or real SVD weights (``pytest -m slow``)."""

import os

import numpy as np
import pytest
import torch

from conftest import FRAMES, H, STEPS, W, generator, moving_boxes
from sgi2v import SGI2VConfig, SGI2VPipeline
from sgi2v.testing import tiny_components

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
CONFIG = SGI2VConfig(optimize_timesteps=(5, 4), iterations=2)


def _image():
    from PIL import Image

    return Image.fromarray((np.random.RandomState(0).rand(H, W, 3) * 255).astype(np.uint8))


def _run(pipe, **kwargs):
    return pipe(_image(), moving_boxes(), config=CONFIG, height=H, width=W, num_frames=FRAMES, num_inference_steps=STEPS,
                generator=generator(), output_type="latent", **kwargs)


@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cuda_half_precision_close_to_cpu_float32(dtype):
    reference = _run(SGI2VPipeline(**tiny_components(num_frames=FRAMES))).frames
    pipe = SGI2VPipeline(**tiny_components(num_frames=FRAMES)).to("cuda", dtype)
    out = _run(pipe)
    assert out.frames.device.type == "cuda" and out.frames.dtype == dtype
    assert torch.isfinite(out.frames.float()).all()
    torch.testing.assert_close(out.frames.float().cpu(), reference, atol=0.1, rtol=0.05)


@pytest.mark.gpu
@cuda
def test_cuda_float32_matches_cpu_float32():
    reference = _run(SGI2VPipeline(**tiny_components(num_frames=FRAMES))).frames
    out = _run(SGI2VPipeline(**tiny_components(num_frames=FRAMES)).to("cuda")).frames.cpu()
    torch.testing.assert_close(out, reference, atol=1e-3, rtol=1e-3)


@pytest.mark.gpu
@cuda
def test_cuda_checkpointing_and_offload():
    pipe = SGI2VPipeline(**tiny_components(num_frames=FRAMES)).to("cuda", torch.float16)
    a = _run(pipe).frames
    b = _run(pipe, gradient_checkpointing=True).frames
    torch.testing.assert_close(a, b, atol=1e-2, rtol=1e-2)
    offloaded = SGI2VPipeline(**tiny_components(num_frames=FRAMES)).to(torch.float16)
    offloaded.enable_model_cpu_offload(device="cuda")
    c = _run(offloaded).frames
    torch.testing.assert_close(a, c.to(a.device), atol=1e-2, rtol=1e-2)


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("SGI2V_SVD_PATH"), reason="set SGI2V_SVD_PATH to a local SVD model folder")
def test_real_weights_load_and_generate():
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.float16 if device == "cuda" else torch.float32
    pipe = SGI2VPipeline.from_pretrained(os.environ["SGI2V_SVD_PATH"], torch_dtype=dtype).to(device)
    boxes = np.array([[[64 + 4 * f, 64, 192 + 4 * f, 192] for f in range(14)]], dtype=np.float64)
    from PIL import Image

    image = Image.new("RGB", (512, 320), (120, 90, 60))
    out = pipe(image, boxes, config=SGI2VConfig().scaled_to_steps(10), height=320, width=512, num_frames=14,
               num_inference_steps=10, generator=torch.manual_seed(817), output_type="np")
    assert out.frames.shape == (1, 14, 320, 512, 3) and np.isfinite(out.frames).all()
