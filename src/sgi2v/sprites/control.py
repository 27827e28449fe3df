"""Control cases in the sprites world: a held-out scene, the sprites to steer and their target paths,
and how far a generated video's sprites end up from those paths.

A case is built from a scene seed never used for training (``>= TRAIN_SEED_LIMIT``). Its first
frame is the condition image; each controlled sprite gets a box (its own frame-0 box) and a target
path: ``straight``, ``curved`` (a bent arc), ``static`` (held still) or ``leaving`` (out through the
nearest edge). The measurement follows each sprite by its known colour and shape
(:func:`sgi2v.sprites.track.track_sprite`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .scene import Scene, nearest_edge, past_edge, render_scene, sprite_area, sprite_coverage
from .track import objmc_px, progress_along, track_sprite
from .config import TRAIN_SEED_LIMIT

__all__ = ["KINDS", "ControlCase", "make_case", "make_cases", "measure", "measure_boxes", "rendered_color",
           "summarise", "target_centres", "update_kept", "write_example"]

KINDS = ("straight", "curved", "static", "leaving")
MIN_LENGTH, MAX_LENGTH = 15.0, 50.0  # px: length of a moving target path


@dataclass(frozen=True)
class ControlCase:
    """One held-out case. ``boxes``: (N, F, 4) target boxes in pixels for the ``sprites`` (indices into
    the scene's sprites); ``kinds``: the path kind of each; ``scene``: the full scene (its frame 0 is the input)."""

    index: int
    kind: str
    scene: Scene
    sprites: tuple[int, ...]
    kinds: tuple[str, ...]
    boxes: np.ndarray

    @property
    def image(self) -> np.ndarray:
        """(H, W, 3) uint8 condition image."""
        return self.scene.frames[0]

    @property
    def seed(self) -> int:
        return self.scene.seed

    def trajectory(self) -> dict:
        """The targets as a trajectory JSON object (pixels of the condition image), for the command line."""
        out = []
        for n, (i, k) in enumerate(zip(self.sprites, self.kinds)):
            centres = (self.boxes[n, :, :2] + self.boxes[n, :, 2:]) / 2
            entry = {"label": f"sprite {i} ({k})", "box": [round(float(v), 3) for v in self.boxes[n, 0]]}
            if k == "static":
                entry["static"] = True
            else:
                entry["path"] = [[round(float(x), 3), round(float(y), 3)] for x, y in centres]
            out.append(entry)
        return {"boxes": out}


def _whole(scene: Scene, i: int) -> bool:
    """Sprite ``i`` is entirely in the picture at frame 0 and hardly covered."""
    h, w = scene.frames.shape[1:3]
    x0, y0, x1, y1 = scene.boxes[i, 0]
    area = sprite_area(scene.shapes[i], float(scene.sizes[i]))
    return x0 >= 0 and y0 >= 0 and x1 <= w and y1 <= h and scene.visible[i, 0].sum() >= 0.9 * area


def _path(rng: np.random.Generator, kind: str, start: np.ndarray, size: float, num_frames: int, height: int, width: int):
    """(F, 2) centres of a target path of ``kind``, starting at ``start``; None when none fits."""
    u = np.linspace(0.0, 1.0, num_frames)[:, None]
    half = size / 2
    if kind == "static":
        return np.repeat(start[None], num_frames, axis=0)
    if kind == "leaving":
        # Out through the nearest edge, so far that the box is wholly outside at the last frame.
        direction, distance = nearest_edge(start, height, width)
        angle = math.atan2(direction[1], direction[0]) + float(rng.uniform(-0.3, 0.3))
        length = (distance + half + 2) / max(0.5, abs(math.cos(angle - math.atan2(direction[1], direction[0]))))
        end = start + length * np.array([math.cos(angle), math.sin(angle)])
        return start + u * (end - start)
    for _ in range(50):
        length = float(rng.uniform(MIN_LENGTH, MAX_LENGTH))
        angle = float(rng.uniform(0, 2 * math.pi))
        end = start + length * np.array([math.cos(angle), math.sin(angle)])
        if kind == "straight":
            path = start + u * (end - start)
        else:  # curved: a quadratic Bezier bent sideways by 30-50 % of its length
            normal = np.array([-math.sin(angle), math.cos(angle)]) * rng.choice([-1.0, 1.0])
            control = (start + end) / 2 + normal * length * float(rng.uniform(0.3, 0.5))
            path = (1 - u) ** 2 * start + 2 * (1 - u) * u * control + u**2 * end
        if (path[:, 0] >= half).all() and (path[:, 0] <= width - half).all() and (path[:, 1] >= half).all() \
                and (path[:, 1] <= height - half).all():
            return path
    return None


CASES_FIRST_SEED = TRAIN_SEED_LIMIT + 1000  # the benchmark's cases come from held-out seeds from here on


def make_case(index: int, kind: str, count: int, height: int = 128, width: int = 128, num_frames: int = 14,
              first_seed: int = CASES_FIRST_SEED, sprite_sizes: tuple[float, float] | None = None) -> ControlCase:
    """Case ``index``: the first held-out scene from ``first_seed + 100 * index`` on that has ``count``
    whole sprites and room for their paths. With two sprites, the second moves ``straight`` (or
    ``curved`` in a curved case); the first has the case's ``kind``. ``sprite_sizes``: the scenes'
    sprite size range (default: the world's, 16-40 px)."""
    if kind not in KINDS:
        raise ValueError(f"unknown case kind {kind!r} (use one of {', '.join(KINDS)})")
    if count not in (1, 2):
        raise ValueError(f"count must be 1 or 2, got {count}")
    for seed in range(first_seed + 100 * index, first_seed + 100 * index + 100):
        scene = render_scene(seed, height, width, num_frames, sprite_sizes)
        whole = [i for i in range(len(scene.shapes)) if _whole(scene, i)]
        if len(whole) < count:
            continue
        chosen = tuple(whole[:count])
        kinds = (kind,) + (("curved" if kind == "curved" else "straight"),) * (count - 1)
        rng = np.random.default_rng([seed, index, 0x7A9])
        paths = [_path(rng, k, scene.centers[i, 0].astype(np.float64), float(scene.sizes[i]), num_frames, height, width)
                 for i, k in zip(chosen, kinds)]
        if any(p is None for p in paths):
            continue
        half = scene.sizes[list(chosen)][:, None, None].astype(np.float64) / 2
        centres = np.stack(paths)  # (N, F, 2)
        boxes = np.concatenate([centres - half, centres + half], axis=-1)
        boxes[:, 0] = scene.boxes[list(chosen), 0]  # frame 0 exactly the sprite's box
        return ControlCase(index=index, kind=kind, scene=scene, sprites=chosen, kinds=kinds, boxes=boxes)
    raise ValueError(f"no held-out scene for case {index} ({kind}, {count} sprites) among 100 seeds")


def make_cases(count: int = 48, **kwargs) -> list[ControlCase]:
    """``count`` cases: the kinds in turn (straight, curved, static, leaving), one controlled sprite in
    the first four, two in the next four, and so on."""
    return [make_case(k, KINDS[k % len(KINDS)], 1 + (k // len(KINDS)) % 2, **kwargs) for k in range(count)]


def measure(frames: np.ndarray, case: ControlCase, reference: str = "frame0") -> dict:
    """Track every controlled sprite of ``case`` in ``frames`` (F, H, W, 3) uint8 against its target path
    (see :func:`measure_boxes`)."""
    scene = case.scene
    idx = list(case.sprites)
    return measure_boxes(frames, case.boxes, scene.colors[idx], [scene.shapes[i] for i in idx],
                         scene.sizes[idx], kinds=case.kinds, sprites=case.sprites, reference=reference)


def rendered_color(frame: np.ndarray, box, shape: str) -> np.ndarray:
    """The median colour (RGB) of a frame inside a sprite's shape at ``box``, 3 px in from its edge:
    the colour a model actually draws it with (its VAE may shift colours a little)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    inner = np.array([x0 + 3, y0 + 3, x1 - 3, y1 - 3])
    mask = sprite_coverage(shape, inner, frame.shape[0], frame.shape[1]) > 0.5
    if not mask.any():
        mask = sprite_coverage(shape, np.array([x0, y0, x1, y1]), frame.shape[0], frame.shape[1]) > 0.5
    return np.median(frame[mask].reshape(-1, 3), axis=0)


def target_centres(boxes: np.ndarray, height: int, width: int, shape: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Where a sprite's target ``boxes`` (F, 4) put it (F, 2), and whether each frame's box centre is in the picture.

    With the sprite's ``shape``, a box that reaches past the picture's edge gives the centroid of the part of the
    shape inside the picture: the tracker sees only those pixels, so a sprite that leaves exactly as asked is 0 px
    off (the box's centre would put it several pixels further out). Boxes wholly inside give their centre."""
    boxes = np.asarray(boxes, dtype=np.float64)
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    in_view = (centre[:, 0] >= 0) & (centre[:, 0] <= width) & (centre[:, 1] >= 0) & (centre[:, 1] <= height)
    if shape is not None:
        xs, ys = np.arange(width) + 0.5, np.arange(height) + 0.5
        for f in np.flatnonzero(in_view & past_edge(boxes, height, width)):
            cover = sprite_coverage(shape, boxes[f], height, width)
            if cover.sum() > 0:
                centre[f] = (cover.sum(0) @ xs, cover.sum(1) @ ys) / cover.sum()
    return centre, in_view


def measure_boxes(frames: np.ndarray, boxes: np.ndarray, colors, shapes, sizes, kinds=None, sprites=None,
                  reference: str = "frame0") -> dict:
    """Track sprites of known ``colors`` (N, 3), ``shapes`` and ``sizes`` (px) in ``frames`` against
    target ``boxes`` (N, F, 4) in pixels.

    Per sprite: ``objmc_px`` (mean distance of the tracked to the target centre over frames 1.. where
    the sprite is found and its target centre is in the picture; for a box reaching past the picture's edge,
    the centroid of the shape's part inside: :func:`target_centres`), ``found`` (share of the frames
    whose target box is wholly in the picture in which the sprite is found), ``progress`` (how far along
    a moving target path it went: :func:`sgi2v.sprites.track.progress_along`), ``shape_iou`` (mean IoU
    of the matched pixels with the ideal shape at the tracked centre) and ``area_ratio``. The
    result's ``objmc_px`` is the mean over the sprites that could be measured (NaN if none).

    ``reference``: the colour tracked. ``frame0`` (default): the colour the video itself draws the
    sprite with in frame 0 (the condition frame, so the model's own rendering of the known sprite),
    when it is within 120 of the known colour, else the known colour; ``known``: the scene's colour.
    A VAE that shifts colours would otherwise make a well-placed sprite "not found".
    """
    frames = np.asarray(frames)
    boxes = np.asarray(boxes, dtype=np.float64)
    height, width = frames.shape[1:3]
    if reference not in ("frame0", "known"):
        raise ValueError(f"reference must be 'frame0' or 'known', got {reference!r}")
    out = []
    for n in range(len(boxes)):
        colour = np.asarray(colors[n], dtype=np.float64)
        if reference == "frame0":
            drawn = rendered_color(frames[0], boxes[n, 0], shapes[n])
            if np.linalg.norm(drawn - colour) < 120:  # the same sprite, as the model draws it
                colour = drawn
        track = track_sprite(frames, colour, float(sizes[n]), shapes[n])
        box = boxes[n]
        centre, in_view = target_centres(box, height, width, shapes[n])
        expected = ~past_edge(box, height, width)
        expected[0] = False
        out.append({
            "sprite": int(sprites[n]) if sprites is not None else n, "kind": kinds[n] if kinds is not None else None,
            "objmc_px": objmc_px(track.centers, centre, in_view), "target": "visible",
            "progress": progress_along(track.centers, centre, in_view),
            "found": float(track.found[expected].mean()) if expected.any() else float("nan"),
            "shape_iou": float(np.nanmean(track.shape_iou[1:])) if track.found[1:].any() else float("nan"),
            "area_ratio": float(np.nanmean(track.area_ratio[1:])) if track.found[1:].any() else float("nan"),
            "track": np.where(np.isfinite(track.centers), track.centers, -1).round(2).tolist(),
        })
    values = [s["objmc_px"] for s in out if math.isfinite(s["objmc_px"])]
    return {"objmc_px": float(np.mean(values)) if values else float("nan"), "sprites": out}


def update_kept(results: list[dict], cases: dict) -> None:
    """Bring kept :func:`measure` results up to the current measure, from each sprite's stored track (``-1``: not
    found) and its case (``cases``: index -> :class:`ControlCase`; cases are deterministic): fill in ``progress`` where
    a result predates it, and measure again the sprites whose target boxes reach past the picture's edge where a
    result compared them with the boxes' centres (before ``target`` was recorded; see :func:`target_centres`)."""
    for r in results:
        case = cases.get(r["case"])
        if case is None:
            continue
        height, width = case.image.shape[:2]
        for n, s in enumerate(r["sprites"]):
            boxes = case.boxes[n]
            again = "target" not in s and bool(past_edge(boxes, height, width).any())
            if "progress" in s and not again:
                continue
            track = np.array(s["track"], dtype=np.float64)
            track[(track < 0).any(-1)] = np.nan
            centre, in_view = target_centres(boxes, height, width, case.scene.shapes[case.sprites[n]])
            s["progress"] = progress_along(track, centre, in_view)
            if again:
                s["objmc_px"], s["target"] = objmc_px(track, centre, in_view), "visible"
        values = [s["objmc_px"] for s in r["sprites"] if math.isfinite(s["objmc_px"])]
        r["objmc_px"] = float(np.mean(values)) if values else float("nan")


def summarise(results: list[dict]) -> dict:
    """Mean and median ObjMC over the measured cases, and the sprites' mean share found, progress along their
    paths and looks, from :func:`measure` results. A few cases far off can move the mean by several pixels; the
    median shows the typical case."""
    values = [r["objmc_px"] for r in results if math.isfinite(r["objmc_px"])]
    sprites = [s for r in results for s in r["sprites"]]

    def mean(key):
        v = [s[key] for s in sprites if s.get(key) is not None and math.isfinite(s[key])]
        return float(np.mean(v)) if v else float("nan")

    return {"cases": len(results), "measured": len(values), "objmc_px": float(np.mean(values)) if values else float("nan"),
            "objmc_median_px": float(np.median(values)) if values else float("nan"),
            "found": mean("found"), "progress": mean("progress"), "shape_iou": mean("shape_iou"),
            "area_ratio": mean("area_ratio"),
            "not_found_cases": len(results) - len(values)}


def write_example(case: ControlCase, folder) -> None:
    """Write ``case`` as a bundled example: ``image.png``, ``trajectory.json`` and ``sprites.json`` (the
    controlled sprites' colours, shapes and sizes, in the order of the trajectory's boxes, for tracking)."""
    import json
    from pathlib import Path

    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(case.image).save(folder / "image.png")
    (folder / "trajectory.json").write_text(json.dumps(case.trajectory(), indent=1) + "\n")
    scene = case.scene
    meta = {"seed": scene.seed, "kind": case.kind, "sprites": [
        {"label": f"sprite {i} ({k})", "color": scene.colors[i].tolist(), "shape": scene.shapes[i], "size": float(scene.sizes[i])}
        for i, k in zip(case.sprites, case.kinds)]}
    (folder / "sprites.json").write_text(json.dumps(meta, indent=1) + "\n")
