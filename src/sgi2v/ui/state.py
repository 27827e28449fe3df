"""What the web app's user has drawn: boxes, their paths, the camera motion. Plain Python, no gradio.

Coordinates are pixels of the *prepared* image: the uploaded image fitted to the output size as the
``image_fit`` setting says (stretched, cropped or padded), exactly the image the pipeline receives. A
:class:`~sgi2v.fitting.Fit` maps between the uploaded image's pixels and the prepared image's.

Clicks on the image follow a small state machine: in ``box`` mode two clicks give two opposite
corners of a new box; the new box becomes the selected one and the mode turns to ``path``, where each
click appends a point to the selected box's path (its first point is the box's centre). The drawing
turns into a trajectory object in the documented JSON format (:meth:`Drawing.to_json`), which
:func:`sgi2v.trajectory.parse_trajectory` reads.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..fitting import Fit
from ..trajectory import CAMERA_DIRECTIONS, DEFAULT_PAN_AMOUNT, TrajectoryError, parse_trajectory
from ..video import PALETTE, draw_condition

logger = logging.getLogger(__name__)

__all__ = ["COLOR_NAMES", "MIN_BOX_SIZE", "BoxDraft", "Drawing", "fit_image", "display_scale", "render"]

#: Names of :data:`sgi2v.video.PALETTE`'s colours, in order: box ``n`` is drawn in colour ``n % 8``.
COLOR_NAMES = ["red", "blue", "yellow", "green", "pink", "purple", "orange", "teal"]
#: Smallest side of a drawn box, in pixels of the prepared image.
MIN_BOX_SIZE = 4.0
PAN_CHOICES = ["none", *CAMERA_DIRECTIONS]


def fit_image(image: Image.Image, width: int, height: int, mode: str = "stretch") -> tuple[Image.Image, Fit]:
    """The image as the pipeline will get it (the ``image_fit`` ``mode``) and its :class:`~sgi2v.fitting.Fit`."""
    fit = Fit.make(mode, image.size, (int(width), int(height)))
    return fit.image(image), fit


@dataclass
class BoxDraft:
    """One box: frame-0 corners, the points its centre moves through after frame 0, and options.

    ``extra`` keeps fields of a loaded trajectory file the editor has no control for (``scale``,
    ``interpolation``, ``timing``), so they survive a load-edit-save round trip.
    """

    box: list[float]
    points: list[list[float]] = field(default_factory=list)
    static: bool = False
    label: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def center(self) -> tuple[float, float]:
        x0, y0, x1, y1 = self.box
        return (x0 + x1) / 2, (y0 + y1) / 2

    def to_json(self) -> dict:
        """This box as an entry of the trajectory format's ``boxes`` list."""
        entry: dict = {"box": [_round(v) for v in self.box]}
        if self.label:
            entry["label"] = self.label
        if self.static or not self.points:  # no path clicked yet: the box stays put
            entry["static"] = True
        else:
            entry["path"] = [[_round(v) for v in self.center]] + [[_round(x), _round(y)] for x, y in self.points]
            entry.update({k: self.extra[k] for k in ("interpolation", "timing") if k in self.extra})
        if "scale" in self.extra:
            entry["scale"] = self.extra["scale"]
        return entry


def _round(value: float) -> float:
    return round(float(value), 2)


@dataclass
class Drawing:
    """Everything drawn on one image; each method edits it in place and returns a message for the page."""

    width: int = 1024
    height: int = 576
    boxes: list[BoxDraft] = field(default_factory=list)
    selected: int | None = None
    pending: list[float] | None = None  # first corner of a box being drawn
    mode: str = "box"  # "box": clicks draw a new box; "path": clicks extend the selected box's path
    camera: dict = field(default_factory=dict)

    # -- clicks -------------------------------------------------------------------------------------
    def click(self, x: float, y: float) -> str:
        """A click at ``(x, y)`` (prepared-image pixels, clamped to the image)."""
        x = min(max(float(x), 0.0), float(self.width))
        y = min(max(float(y), 0.0), float(self.height))
        if self.mode == "path" and self.selected is not None:
            draft = self.boxes[self.selected]
            if draft.static:
                return f"{self.name(self.selected)} is static: untick 'static' to give it a path, or press 'New box'."
            draft.points.append([x, y])
            return f"{self.name(self.selected)}: path point {len(draft.points)} added. Click more points, or press 'New box'."
        if self.pending is None:
            self.pending = [x, y]
            return "First corner set: click the opposite corner."
        (px, py), self.pending = self.pending, None
        box = [min(px, x), min(py, y), max(px, x), max(py, y)]
        if box[2] - box[0] < MIN_BOX_SIZE or box[3] - box[1] < MIN_BOX_SIZE:
            self.pending = [px, py]
            return f"That box would be under {MIN_BOX_SIZE:g} pixels wide or tall: click the opposite corner further away."
        self.boxes.append(BoxDraft(box))
        self.selected, self.mode = len(self.boxes) - 1, "path"
        return f"{self.name(self.selected)} drawn: now click the points of its path (where its centre goes)."

    def new_box(self) -> str:
        """The next two clicks draw a new box."""
        self.mode, self.pending = "box", None
        return "Click two opposite corners of the new box."

    def undo(self) -> str:
        """Take back the last click: a pending corner, else the selected box's last path point, else the box's second corner."""
        if self.pending is not None:
            self.pending = None
            return "First corner removed."
        if self.selected is None:
            return "Nothing to undo."
        draft = self.boxes[self.selected]
        if draft.points and not draft.static:
            draft.points.pop()
            return f"{self.name(self.selected)}: last path point removed."
        name = self.name(self.selected)
        del self.boxes[self.selected]
        self.pending = draft.box[:2]
        self.selected = len(self.boxes) - 1 if self.boxes else None
        self.mode = "box"
        return f"{name} removed: its first corner is set again, click the opposite corner."

    def select(self, index: int | None) -> str:
        """Make box ``index`` the one that clicks extend."""
        if index is None or not 0 <= index < len(self.boxes):
            self.selected = None
            return "No box selected."
        self.selected, self.mode, self.pending = index, "path", None
        return f"{self.name(index)} selected: clicks add points to its path."

    def delete(self, index: int | None = None) -> str:
        """Remove box ``index`` (default: the selected one)."""
        index = self.selected if index is None else index
        if index is None or not 0 <= index < len(self.boxes):
            return "No box to delete."
        name = self.name(index)
        del self.boxes[index]
        if not self.boxes:
            self.selected, self.mode = None, "box"
        elif self.selected is not None and self.selected >= index:
            self.selected = max(0, self.selected - 1)
        return f"{name} deleted; the boxes after it are renumbered."

    def clear(self) -> str:
        """Remove every box, the pending corner and the camera motion."""
        self.boxes, self.selected, self.pending, self.mode, self.camera = [], None, None, "box", {}
        return "Cleared: click two opposite corners to draw a box."

    def set_static(self, static: bool, index: int | None = None) -> str:
        """Mark box ``index`` (default: the selected one) static (its content stays still) or moving."""
        index = self.selected if index is None else index
        if index is None or not 0 <= index < len(self.boxes):
            return "Select a box first."
        self.boxes[index].static = bool(static)
        if static:
            return f"{self.name(index)} is static: its content stays where it is (its path is kept for later)."
        return f"{self.name(index)} moves along its path again."

    def set_camera(self, pan: str = "none", amount: float = DEFAULT_PAN_AMOUNT, zoom: float = 1.0) -> str:
        """Camera preset: ``pan`` one of none/left/right/up/down (``amount``: fraction of the image), ``zoom`` factor (1: none)."""
        camera: dict = {}
        if pan and pan != "none":
            if pan not in CAMERA_DIRECTIONS:
                raise ValueError(f"unknown pan direction {pan!r}: use one of {', '.join(PAN_CHOICES)}")
            camera["pan"] = pan
            camera["amount"] = round(float(amount), 4)
        if zoom and abs(float(zoom) - 1.0) > 1e-6:
            camera["zoom"] = round(float(zoom), 4)
        self.camera = camera
        if not camera:
            return "No camera motion."
        parts = ([f"pan {camera['pan']} by {camera['amount']:g} of the image"] if "pan" in camera else []) + (
            [f"zoom x{camera['zoom']:g}"] if "zoom" in camera else [])
        return "Camera: " + ", ".join(parts) + " (drawn as one large box)."

    # -- views --------------------------------------------------------------------------------------
    def name(self, index: int) -> str:
        """``box 2 (blue)``: the number the page shows and the box's colour."""
        return f"box {index + 1} ({COLOR_NAMES[index % len(COLOR_NAMES)]})"

    def choices(self) -> list[tuple[str, int]]:
        """(label, index) pairs for a box picker."""
        return [(self.name(i) + (", static" if b.static else f", {len(b.points)} path points"), i) for i, b in enumerate(self.boxes)]

    def to_json(self) -> dict:
        """The drawing as a trajectory object (documented JSON format), in prepared-image pixels."""
        data: dict = {"boxes": [b.to_json() for b in self.boxes]}
        if self.camera:
            data["camera"] = dict(self.camera)
        return data

    def to_source_json(self, fit: Fit) -> dict:
        """The drawing as a trajectory object in the uploaded image's pixels (what a trajectory file holds)."""
        data = self.to_json()
        for entry in data["boxes"]:
            x0, y0 = fit.to_source(*entry["box"][:2])
            x1, y1 = fit.to_source(*entry["box"][2:])
            entry["box"] = [_round(v) for v in (x0, y0, x1, y1)]
            if "path" in entry:
                entry["path"] = [[_round(v) for v in fit.to_source(x, y)] for x, y in entry["path"]]
        return data

    def trajectory(self, num_frames: int):
        """Per-frame boxes of the drawing (:class:`sgi2v.trajectory.Trajectory`); raises ``TrajectoryError``."""
        return parse_trajectory(self.to_json(), num_frames, (self.width, self.height), source="drawing")

    # -- resizing and loading -----------------------------------------------------------------------
    def refit(self, old: Fit, new: Fit) -> None:
        """Move every coordinate from one prepared image to another (other output size, same upload)."""

        def move(x: float, y: float) -> list[float]:
            return list(new.to_output(*old.to_source(x, y)))

        for draft in self.boxes:
            draft.box = move(*draft.box[:2]) + move(*draft.box[2:])
            draft.points = [move(x, y) for x, y in draft.points]
        if self.pending is not None:
            self.pending = move(*self.pending)
        self.width, self.height = new.size

    @classmethod
    def from_json(cls, data, num_frames: int, fit: Fit, image_size: tuple[int, int], source: str = "trajectory") -> "Drawing":
        """A drawing from a trajectory object whose coordinates are in the uploaded image's pixels.

        The object is validated with :func:`parse_trajectory` first. ``keyframes`` become a path with
        one point per frame (the same motion); ``scale`` and ``interpolation`` are kept as they are.
        """
        parsed = parse_trajectory(data, num_frames, image_size, source=source)
        drawing = cls(width=fit.size[0], height=fit.size[1], camera=dict(data.get("camera", {})))
        for i, entry in enumerate(data.get("boxes", [])):
            x0, y0 = fit.to_output(*entry["box"][:2])
            x1, y1 = fit.to_output(*entry["box"][2:])
            draft = BoxDraft([x0, y0, x1, y1], label=entry.get("label", ""))
            draft.extra = {k: entry[k] for k in ("scale", "interpolation", "timing") if k in entry}
            if entry.get("static"):
                draft.static = True
            elif "path" in entry:
                cx, cy = (entry["box"][0] + entry["box"][2]) / 2, (entry["box"][1] + entry["box"][3]) / 2
                sx, sy = entry["path"][0]
                draft.points = [list(fit.to_output(x - sx + cx, y - sy + cy)) for x, y in entry["path"][1:]]
            else:  # keyframes: the centre at every frame, as parsed
                centres = parsed.centers()[i]
                draft.points = [list(fit.to_output(x, y)) for x, y in centres[1:]]
                draft.extra.pop("interpolation", None)
            drawing.boxes.append(draft)
        drawing.selected = len(drawing.boxes) - 1 if drawing.boxes else None
        drawing.mode = "path" if drawing.boxes else "box"
        return drawing

    @classmethod
    def from_boxes(cls, boxes: np.ndarray, fit: Fit) -> "Drawing":
        """A drawing from per-frame boxes ``(N, F, 4)`` in the uploaded image's pixels (e.g. a ``traj.npy``)."""
        drawing = cls(width=fit.size[0], height=fit.size[1])
        for track in np.asarray(boxes, dtype=np.float64):
            x0, y0 = fit.to_output(*track[0, :2])
            x1, y1 = fit.to_output(*track[0, 2:])
            centres = (track[:, :2] + track[:, 2:]) / 2
            static = bool(np.allclose(centres, centres[0], atol=1e-3))
            points = [] if static else [list(fit.to_output(x, y)) for x, y in centres[1:]]
            drawing.boxes.append(BoxDraft([x0, y0, x1, y1], points, static=static))
        drawing.selected = len(drawing.boxes) - 1 if drawing.boxes else None
        drawing.mode = "path" if drawing.boxes else "box"
        return drawing


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size)  # Pillow >= 10.1 with FreeType
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


def display_scale(size: tuple[int, int], target: tuple[int, int] = (768, 480)) -> int:
    """Whole factor by which a small prepared image is enlarged on the page, so it is big enough to click on."""
    return max(1, min(target[0] // max(1, size[0]), target[1] // max(1, size[1])))


def render(image: Image.Image, drawing: Drawing, num_frames: int, scale: int = 1) -> Image.Image:
    """The prepared image with every box, its path and last-frame box (as the run's condition picture),
    box numbers, the clicked points, the selected box highlighted and a pending first corner.

    ``scale`` enlarges the picture by a whole factor (see :func:`display_scale`); coordinates are scaled with it.
    """
    try:
        boxes = drawing.trajectory(num_frames).boxes if (drawing.boxes or drawing.camera) else np.zeros((0, num_frames, 4))
    except TrajectoryError as err:  # e.g. a box outside the image after a resize: draw the frame-0 boxes only
        logger.debug("drawing not a valid trajectory yet: %s", err)
        boxes = np.array([[b.box] * num_frames for b in drawing.boxes]).reshape(-1, num_frames, 4)
    base = image.convert("RGB")
    if scale != 1:
        base = base.resize((base.size[0] * scale, base.size[1] * scale), resample=Image.Resampling.BICUBIC)
    canvas = draw_condition(base, boxes * scale) if len(boxes) else base.copy()
    draw = ImageDraw.Draw(canvas)
    unit = max(2, round(min(canvas.size) / 150))
    for n, draft in enumerate(drawing.boxes):
        color = PALETTE[n % len(PALETTE)]
        x0, y0, x1, y1 = (v * scale for v in draft.box)
        if n == drawing.selected:
            draw.rectangle([x0 - unit, y0 - unit, x1 + unit, y1 + unit], outline=(255, 255, 255), width=max(1, unit // 2))
        draw.text((x0 + unit + 1, y0 + unit), str(n + 1), fill=(255, 255, 255), stroke_width=1, stroke_fill=(0, 0, 0),
                  font=_font(max(12, 6 * unit)))
        if not draft.static:
            for x, y in draft.points:
                x, y, r = x * scale, y * scale, unit + 1
                draw.ellipse([x - r, y - r, x + r, y + r], fill=color, outline=(255, 255, 255))
    if drawing.pending is not None:
        x, y = (v * scale for v in drawing.pending)
        r = unit * 3
        draw.line([x - r, y, x + r, y], fill=(255, 255, 255), width=unit)
        draw.line([x, y - r, x, y + r], fill=(255, 255, 255), width=unit)
    return canvas
