"""The generation layer's progress reports: the phases in order, and the frames unchanged by watching them."""

import numpy as np

from sgi2v.generation import PHASES, Progress, generate, prepare_inputs
from sgi2v.settings import resolve_settings

from conftest import FRAMES, H, W


def test_progress_names_each_phase_and_leaves_the_frames_alone(pipe, image, tmp_path):
    path = tmp_path / "in.png"
    image.save(path)
    trajectory = {"boxes": [{"box": [20, 12, 60, 44], "path": [[40, 28], [70, 34]]}]}
    # 3 steps; the paper's t = 2 is step i = 3 - 2 = 1 (0-based), so the latent is optimised before the 2nd step.
    settings, config = resolve_settings({"width": W, "height": H, "num_frames": FRAMES, "num_inference_steps": 3,
                                         "optimize_timesteps": "2", "iterations": 2, "seed": 3, "threads": 1}, source="test")
    prepared = prepare_inputs(path, trajectory, settings)
    seen: list[Progress] = []
    watched = generate(prepared, settings, config, pipe, model="tiny-random", progress=seen.append)
    expected = [Progress("encoding", 0, 3), Progress("denoising", 1, 3),
                Progress("optimising", 2, 3, 1, 2), Progress("optimising", 2, 3, 2, 2),
                Progress("denoising", 2, 3), Progress("denoising", 3, 3), Progress("decoding", 3, 3)]
    assert seen == expected
    assert [p.phase for p in seen if p.phase in PHASES] == [p.phase for p in seen]

    plain = generate(prepared, settings, config, pipe, model="tiny-random")
    assert plain.record["frames_sha256"] == watched.record["frames_sha256"]
    np.testing.assert_array_equal(plain.frames, watched.frames)
    assert not pipe.unet._forward_pre_hooks and not pipe.vae.decoder._forward_pre_hooks  # the hooks are gone
