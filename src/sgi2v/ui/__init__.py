"""Web app: upload an image, draw boxes and their paths on it, and generate the video in the browser.

Starts a local Gradio server (http://127.0.0.1:7860 by default). Generations run one at a time on the
device; other requests wait in a queue and see their place. The page only gets files the app wrote
for its own session. Needs the ``ui`` extra: ``pip install "sgi2v[ui]"``.
"""

from __future__ import annotations

import argparse
import logging

__all__ = ["add_arguments", "run", "build_app"]

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
DEFAULT_MAX_FILE_SIZE = "25mb"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``sgi2v ui``."""
    from ..paths import MODEL, path_option

    path_option(parser.add_argument("--model", default=None, help="model selected at start: hub id, local SVD folder, sprites or "
                        "tiny-random (offered beside the SVD and SVD-XT hub ids and sprites; the page cannot name other "
                        "models); default SVD when its weights are in the local cache, else sprites"), MODEL)
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST}: this machine only; "
                        "see docs/ui.md for remote access through SSH)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    parser.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N, mps")
    parser.add_argument("--dtype", default="auto", help="auto (fp16 on GPU, fp32 on CPU), fp32, fp16, bf16")
    parser.add_argument("--max-file-size", default=DEFAULT_MAX_FILE_SIZE,
                        help=f"largest upload accepted, e.g. 10mb (default {DEFAULT_MAX_FILE_SIZE})")
    parser.add_argument("--queue-size", type=int, default=20,
                        help="most generations waiting for the device at once; uploads and previews never wait (default 20)")


def run(args: argparse.Namespace) -> int:
    """Build the app and serve it until interrupted."""
    from ..cli import UsageError
    from ..loading import resolve_device, resolve_dtype
    from .app import launch

    try:
        import gradio  # noqa: F401
    except ImportError:
        raise UsageError('the web app needs gradio: pip install "sgi2v[ui]"') from None
    if not 0 < args.port < 65536:
        raise UsageError(f"--port must be in 1..65535, got {args.port}")
    if args.queue_size < 1:
        raise UsageError(f"--queue-size must be at least 1, got {args.queue_size}")
    logging.getLogger("sgi2v").setLevel(logging.INFO)
    if args.model:
        from ..loading import check_model

        check_model(args.model)  # a wrong model file: one line before the server starts
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device, args.model)
    try:
        launch(model=args.model, device=device, dtype=dtype, host=args.host, port=args.port,
               max_file_size=args.max_file_size, queue_size=args.queue_size, block=True)
    finally:
        # The server has stopped and removed its files; the process only exits now. Its last garbage collection
        # would walk every object of torch, Gradio and the models (seconds on a busy machine): they are frozen.
        import gc

        gc.freeze()
    return 0


def build_app(*args, **kwargs):
    """The Gradio Blocks app; see :func:`sgi2v.ui.app.build_app`."""
    from .app import build_app as _build_app

    return _build_app(*args, **kwargs)
