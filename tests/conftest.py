import importlib.util
import json
import os
import re
import signal
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sgi2v.testing import tiny_pipeline


def pytest_configure(config):
    # A test run started in the background by a script (`... &` in sh) inherits SIGINT ignored, and so would every
    # server the tests start (an ignored signal stays ignored across exec): the tests that press Ctrl-C on a server
    # would then find it deaf. Handled again, SIGINT reaches the children as it does from a terminal.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def _torch_threads_restored():
    """A test that sets torch's thread count (to check a replay, or to train on one thread) leaves the next test the
    count it found, so no test runs with another test's setting."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


# Small enough for 2 CPU cores: 64 x 128 pixels -> 8 x 16 latent cells, 4 frames, few steps.
H, W, FRAMES, STEPS = 64, 128, 4, 6


@pytest.fixture(scope="session")
def load_benchmark():
    """``load(path)``: a script under ``benchmarks/`` (e.g. ``"control.py"``) imported as a module, without running it."""

    def load(path: str):
        file = Path(__file__).resolve().parents[1] / "benchmarks" / path
        spec = importlib.util.spec_from_file_location("benchmark_" + re.sub(r"\W", "_", path[:-3]), file)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up there
        try:
            spec.loader.exec_module(module)
        finally:
            del sys.modules[spec.name]
        return module

    return load


@pytest.fixture(scope="session")
def pipe():
    return tiny_pipeline(seed=0, num_frames=FRAMES)


@pytest.fixture(scope="session")
def image():
    rng = np.random.RandomState(0)
    return Image.fromarray((rng.rand(H, W, 3) * 255).astype(np.uint8))


def moving_boxes(frames=FRAMES, dx=6.0, dy=2.0):
    """Two boxes: one moving right and down (leaving the image late), one static."""
    boxes = np.zeros((2, frames, 4))
    for f in range(frames):
        boxes[0, f] = [20 + dx * f, 12 + dy * f, 60 + dx * f, 44 + dy * f]
        boxes[1, f] = [80, 8, 120, 40]
    return boxes


@pytest.fixture
def boxes():
    return moving_boxes()


def generator(seed=0):
    return torch.Generator("cpu").manual_seed(seed)


@pytest.fixture
def inputs(tmp_path):
    """A 100 x 50 image file, a trajectory file (a moving box and a static one) and an empty output folder."""
    image = tmp_path / "in.png"
    Image.fromarray((np.random.RandomState(0).rand(50, 100, 3) * 255).astype(np.uint8)).save(image)
    traj = tmp_path / "traj.json"
    traj.write_text(json.dumps({"boxes": [{"box": [10, 10, 40, 30], "path": [[25, 20], [55, 25]]},
                                          {"box": [60, 5, 90, 40], "static": True}]}))
    out = tmp_path / "out"
    out.mkdir()
    return image, traj, out


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium driven by Playwright, one per test module (each test opens its own pages)."""
    from editor_page import CHROMIUM, CHROMIUM_ARGS

    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()
