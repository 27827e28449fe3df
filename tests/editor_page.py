"""Driving the web app's trajectory editor in Chromium (Playwright): real mouse and keyboard events at the
screen positions of given pixels of the uploaded image."""

from __future__ import annotations

import json

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


class EditorPage:
    """The editor on a page (``window.sgi2vEditor``); coordinates are the uploaded image's pixels."""

    def __init__(self, page):
        self.page = page

    def wait_for_picture(self, width: int, height: int, timeout: float = 30_000) -> None:
        """Until the editor shows an upload of ``width`` x ``height`` pixels."""
        self.page.wait_for_function(
            f"() => window.sgi2vEditor && window.sgi2vEditor.model.bounds[2] === {width} "
            f"&& window.sgi2vEditor.model.bounds[3] === {height}", timeout=timeout)

    def at(self, x: float, y: float) -> tuple[float, float]:
        """Where the image's pixel (x, y) is in the viewport (the canvas scrolled into view first)."""
        self.page.locator(".sgi2v-canvas").scroll_into_view_if_needed()
        return tuple(self.page.evaluate(f"window.sgi2vEditor.clientPoint({x}, {y})"))

    def drag(self, start, end, steps: int = 6) -> None:
        mouse = self.page.mouse
        mouse.move(*self.at(*start))
        mouse.down()
        for k in range(1, steps + 1):  # a real drag: several moves, each handled in the page
            mouse.move(*self.at(start[0] + (end[0] - start[0]) * k / steps, start[1] + (end[1] - start[1]) * k / steps))
        mouse.up()

    def click(self, x: float, y: float, **options) -> None:
        self.page.mouse.click(*self.at(x, y), **options)

    def dblclick(self, x: float, y: float) -> None:
        self.page.mouse.dblclick(*self.at(x, y))

    def key(self, keys: str) -> None:
        self.page.locator(".sgi2v-canvas").press(keys)

    def load(self, *paths) -> None:
        """Load trajectory files with the page's button, as a user does (through the file chooser)."""
        with self.page.expect_file_chooser() as chooser:
            self.page.locator("#load-trajectory").click()
        chooser.value.set_files([str(p) for p in paths])

    def data(self) -> dict:
        """The trajectory object the editor holds."""
        return json.loads(self.page.evaluate("window.sgi2vEditor.text()"))

    def status(self) -> str:
        return self.page.locator(".sgi2v-status").inner_text()
