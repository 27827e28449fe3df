"""Time from an edit in the web editor to the new motion preview playing in the page.

Starts ``sgi2v ui`` (no model is loaded: the preview needs none), opens it in Chromium, uploads a
picture, draws a box, then adds path points one click at a time. For each click it measures the
wall-clock time until the preview's ``<video>`` has a new source that can play (``readyState >= 2``):
the editor's debounce, the round trip to the server, rendering, the MP4 and the browser's decoding.

    python benchmarks/ui_preview.py --json benchmarks/results/ui-preview-cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import tempfile
import time
from pathlib import Path

from PIL import Image

CHROMIUM = "/usr/bin/chromium"
EXAMPLE = Path(__file__).resolve().parent.parent / "src" / "sgi2v" / "examples" / "astronaut" / "image.jpg"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edits", type=int, default=8, help="timed edits (path points added one by one)")
    parser.add_argument("--size", default="1024x576", help="output size WxH (the preview's size)")
    parser.add_argument("--chromium", default=CHROMIUM)
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))

    from playwright.sync_api import expect, sync_playwright

    from sgi2v.ui.app import launch, stop

    root = Path(tempfile.mkdtemp(prefix="sgi2v-ui-bench-"))
    picture = root / "picture.png"
    Image.open(EXAMPLE).convert("RGB").resize((width, height)).save(picture)
    port = _free_port()
    demo = launch(model="tiny-random", device="cpu", dtype="fp32", port=port, block=False, root=root / "ui")
    times = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium, headless=True,
                                        args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(f"http://127.0.0.1:{port}/", timeout=60_000)
            for name, value in (("width", width), ("height", height)):
                field = page.locator(f"#{name} input").first
                if field.input_value() != str(value):
                    field.fill(str(value))
                    field.press("Enter")
            page.locator("#upload input[type=file]").set_input_files(str(picture))
            expect(page.locator("#status")).to_contain_text(f"Image prepared at {width}x{height}", timeout=60_000)
            page.wait_for_function("() => { try { window.sgi2vEditor.clientPoint(0, 0); return true; } catch (e) { return false; } }",
                                   timeout=60_000)

            def at(x, y):
                page.locator(".sgi2v-canvas").scroll_into_view_if_needed()
                return page.evaluate(f"window.sgi2vEditor.clientPoint({x}, {y})")

            start, end = (0.1 * width, 0.2 * height), (0.3 * width, 0.5 * height)
            page.mouse.move(*at(*start))
            page.mouse.down()
            for k in range(1, 7):
                page.mouse.move(*at(start[0] + (end[0] - start[0]) * k / 6, start[1] + (end[1] - start[1]) * k / 6))
            page.mouse.up()
            video = page.locator("#preview video")
            source = None
            for i in range(args.edits + 1):  # the first edit warms up (the first preview of the session)
                x, y = (0.35 + 0.06 * i) * width, (0.3 + 0.04 * (i % 3)) * height
                t0 = time.perf_counter()
                page.mouse.click(*at(x, y))
                page.wait_for_function(
                    "(old) => { const v = document.querySelector('#preview video');"
                    " return v && v.getAttribute('src') && v.getAttribute('src') !== old && v.readyState >= 2; }",
                    arg=source, timeout=60_000, polling=10)
                elapsed = time.perf_counter() - t0
                source = video.get_attribute("src")
                if i:
                    times.append(elapsed)
                print(f"edit {i}: preview playing after {elapsed:.3f} s" + (" (warm-up)" if not i else ""))
            expect(page.locator("#preview-status")).to_contain_text(f"at {width}x{height}")
            browser.close()
    finally:
        stop(demo)
    figures = {
        "what": "wall-clock seconds from a click that adds a path point to the new preview playing in the page",
        "size": [width, height], "frames": 14, "edits": len(times),
        "median_s": round(statistics.median(times), 3), "max_s": round(max(times), 3),
        "times_s": [round(t, 3) for t in times],
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_average": [round(v, 2) for v in os.getloadavg()]},
    }
    print(f"{width}x{height}, 14 frames: median {figures['median_s']:.3f} s, max {figures['max_s']:.3f} s "
          f"over {len(times)} edits (load average {figures['machine']['load_average'][0]})")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
