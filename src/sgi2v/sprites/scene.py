"""A seeded procedural world of moving sprites: the videos the ``sprites`` model is trained on.

Each scene is a smooth, muted background (low-frequency colour field around a mid grey, sometimes a
fine texture, sometimes panning) with 1 to 3 flat, saturated discs and squares of 16 to 40 px that move along
gently curved paths at 0 to 3 px per frame and bounce off the picture's edges (optionally, in a share of the
scenes, one sprite leaves through an edge instead: ``render_scene(..., leaving=)``). Later sprites are drawn over
earlier ones.

Plain numpy and integer-seeded :class:`numpy.random.Generator` (PCG64) draws. Positions are
rounded to 1/64 px and pixels use only additions, multiplications, comparisons and square roots,
so the same seed gives the same bytes on every machine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .config import SPRITE_SIZES

__all__ = ["Scene", "SHAPES", "has_leaving_sprite", "render_scene", "render_sprites", "sprite_area", "sprite_coverage",
           "nearest_edge", "past_edge"]

SHAPES = ("disc", "square")
MIN_SIZE, MAX_SIZE = SPRITE_SIZES
MAX_SPEED = 3.0  # px per frame
_QUANTUM = 1 / 64  # px: positions are multiples of this
BACKGROUND_MEAN = 128.0  # grey level the background's colour field averages to


@dataclass(frozen=True)
class Scene:
    """One rendered video and what is in it.

    ``frames``: (F, H, W, 3) uint8. ``boxes``: (N, F, 4) float32 ``(x0, y0, x1, y1)`` in pixels, the
    sprite's full extent (it may reach past the picture's edge or be hidden under a later sprite).
    ``colors``: (N, 3) uint8. ``shapes``: N names from :data:`SHAPES`. ``visible``: (N, F, H, W)
    bool, the pixels where the sprite shows (covered over half, not hidden by a later sprite).
    ``pan``: (F, 2) float32, the camera's offset in pixels (zeros when the scene does not pan).
    """

    seed: int
    frames: np.ndarray
    boxes: np.ndarray
    colors: np.ndarray
    shapes: tuple[str, ...]
    visible: np.ndarray
    pan: np.ndarray

    @property
    def centers(self) -> np.ndarray:
        """(N, F, 2) box centres ``(x, y)`` in pixels."""
        return (self.boxes[..., :2] + self.boxes[..., 2:]) / 2

    @property
    def sizes(self) -> np.ndarray:
        """(N,) side (square) or diameter (disc) in pixels."""
        return self.boxes[:, 0, 2] - self.boxes[:, 0, 0]


def _quantise(x: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(x, dtype=np.float64) / _QUANTUM) * _QUANTUM


def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    """Hue in [0, 6), saturation and value in [0, 1] to uint8 RGB (the standard hexcone formula)."""
    c = v * s
    x = c * (1 - abs(h % 2 - 1))
    sector = int(h) % 6
    rgb = [(c, x, 0), (x, c, 0), (0, c, x), (0, x, c), (x, 0, c), (c, 0, x)][sector]
    return np.array([round(255 * (channel + v - c)) for channel in rgb], dtype=np.uint8)


def _background(rng: np.random.Generator, height: int, width: int, pan: np.ndarray) -> np.ndarray:
    """(F, H, W, 3) float64 in [0, 255]: a bilinear colour field on a coarse grid, seen through the pan."""
    num_frames = len(pan)
    margin = float(np.abs(pan).max()) + 2
    cell = float(rng.uniform(28, 56))  # px between grid points: low frequencies only
    span_h, span_w = height + 2 * margin, width + 2 * margin
    gh, gw = int(span_h // cell) + 3, int(span_w // cell) + 3
    # Muted colours varying across the picture around the same mean grey in every scene: a frame's
    # overall colour carries no information (the VAE's last GroupNorm, one channel a group at
    # 32 channels, cannot pass a frame's global colour; local differences it passes).
    grid = rng.uniform(-35, 35, size=(gh, gw, 1)) + rng.uniform(-18, 18, size=(gh, gw, 3))
    grid = grid - grid.mean(axis=(0, 1)) + BACKGROUND_MEAN
    texture = None
    if rng.random() < 0.5:  # fine texture fixed to the world, moving with the pan
        amplitude = rng.uniform(2, 5)
        texture = amplitude * rng.uniform(-1, 1, size=(int(span_h) + 2, int(span_w) + 2))
    ys = np.arange(height, dtype=np.float64) + 0.5
    xs = np.arange(width, dtype=np.float64) + 0.5
    out = np.empty((num_frames, height, width, 3))
    for f in range(num_frames):
        wy = ys + margin + pan[f, 1]  # world coordinates of the pixel centres
        wx = xs + margin + pan[f, 0]
        out[f] = _bilinear(grid, wy / cell, wx / cell)
        if texture is not None:
            out[f] += _bilinear(texture[..., None], wy - 0.5, wx - 0.5)
    return np.clip(out, 0, 255)


def _bilinear(grid: np.ndarray, gy: np.ndarray, gx: np.ndarray) -> np.ndarray:
    """Sample a (h, w, C) grid at fractional rows ``gy`` (H,) and columns ``gx`` (W,): (H, W, C)."""
    y0 = np.floor(gy).astype(int)
    x0 = np.floor(gx).astype(int)
    ty = (gy - y0)[:, None, None]
    tx = (gx - x0)[None, :, None]
    a = grid[y0][:, x0]
    b = grid[y0][:, x0 + 1]
    c = grid[y0 + 1][:, x0]
    d = grid[y0 + 1][:, x0 + 1]
    return (a * (1 - tx) + b * tx) * (1 - ty) + (c * (1 - tx) + d * tx) * ty


def sprite_area(shape: str, size: float) -> float:
    """Pixels a whole sprite covers: a disc of diameter ``size`` or a square of side ``size``."""
    return math.pi * size * size / 4 if shape == "disc" else size * size


def sprite_coverage(shape: str, box: np.ndarray, height: int, width: int) -> np.ndarray:
    """(H, W) float64 in [0, 1]: how much of each pixel a disc or square with ``box`` (x0, y0, x1, y1) covers."""
    x0, y0, x1, y1 = (float(v) for v in box)
    px = np.arange(width, dtype=np.float64)
    py = np.arange(height, dtype=np.float64)
    if shape == "square":
        cx = np.clip(np.minimum(px + 1, x1) - np.maximum(px, x0), 0, 1)
        cy = np.clip(np.minimum(py + 1, y1) - np.maximum(py, y0), 0, 1)
        return cy[:, None] * cx[None, :]
    if shape == "disc":
        r = (x1 - x0) / 2
        dx = px + 0.5 - (x0 + x1) / 2
        dy = py + 0.5 - (y0 + y1) / 2
        dist = np.sqrt(dy[:, None] ** 2 + dx[None, :] ** 2)
        return np.clip(r + 0.5 - dist, 0, 1)
    raise ValueError(f"unknown sprite shape {shape!r} (use one of {', '.join(SHAPES)})")


def render_sprites(background: np.ndarray, boxes: np.ndarray, colors: np.ndarray, shapes) -> tuple[np.ndarray, np.ndarray]:
    """Draw sprites over a (F, H, W, 3) background in order (later on top).

    Returns the uint8 frames and the (N, F, H, W) bool visibility masks.
    """
    num_frames, height, width, _ = background.shape
    frames = background.astype(np.float64).copy()
    cover = np.zeros((len(shapes), num_frames, height, width))
    for i, shape in enumerate(shapes):
        colour = colors[i].astype(np.float64)
        for f in range(num_frames):
            a = sprite_coverage(shape, boxes[i, f], height, width)
            cover[i, f] = a
            frames[f] = frames[f] * (1 - a[..., None]) + colour * a[..., None]
    shown = cover.copy()
    for i in range(len(shapes)):
        for j in range(i + 1, len(shapes)):
            shown[i] *= 1 - cover[j]
    return np.clip(np.round(frames), 0, 255).astype(np.uint8), shown > 0.5


def _sprite_colours(rng: np.random.Generator, count: int) -> np.ndarray:
    """Saturated colours whose hues are at least 60 degrees apart."""
    hues: list[float] = []
    while len(hues) < count:
        h = float(rng.uniform(0, 6))
        if all(min(abs(h - o), 6 - abs(h - o)) >= 1.0 for o in hues):
            hues.append(h)
    return np.stack([_hsv_to_rgb(h, float(rng.uniform(0.85, 1.0)), float(rng.uniform(0.88, 1.0))) for h in hues])


def _path(rng: np.random.Generator, size: float, start: np.ndarray, drift: np.ndarray, num_frames: int,
          height: int, width: int) -> np.ndarray:
    """(F, 2) centres: constant speed, slowly turning heading, plus the pan's drift; bounces off the edges."""
    speed = float(rng.uniform(0, MAX_SPEED))
    heading = float(rng.uniform(0, 2 * math.pi))
    turn = float(rng.uniform(-0.12, 0.12))  # rad per frame
    cos_t, sin_t = math.cos(turn), math.sin(turn)
    v = np.array([speed * math.cos(heading), speed * math.sin(heading)])
    half = size / 2
    low = np.array([half, half])
    high = np.array([width - half, height - half])
    pos = start.astype(np.float64).copy()
    out = np.empty((num_frames, 2))
    for f in range(num_frames):
        out[f] = pos
        v = np.array([cos_t * v[0] - sin_t * v[1], sin_t * v[0] + cos_t * v[1]])
        pos = pos + v + drift
        for k in range(2):  # reflect at the edges, turning the sprite's own motion around
            if pos[k] < low[k]:
                pos[k] = 2 * low[k] - pos[k]
                v[k] = abs(v[k])
            elif pos[k] > high[k]:
                pos[k] = 2 * high[k] - pos[k]
                v[k] = -abs(v[k])
    return _quantise(out)


def nearest_edge(start: np.ndarray, height: int, width: int) -> tuple[tuple[float, float], float]:
    """The picture's edge nearest to ``start`` ``(x, y)``: its outward direction ``(dx, dy)`` (left, right, top or
    bottom, in that order on a tie) and the distance to it in pixels."""
    distances = {(-1.0, 0.0): start[0], (1.0, 0.0): width - start[0], (0.0, -1.0): start[1], (0.0, 1.0): height - start[1]}
    return min(distances.items(), key=lambda item: item[1])


def past_edge(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """(F,) bool: which of the boxes (F, 4) reach past the picture's edge."""
    return (boxes[:, :2] < 0).any(-1) | (boxes[:, 2] > width) | (boxes[:, 3] > height)


def _leaving_path(rng: np.random.Generator, start: np.ndarray, drift: np.ndarray, num_frames: int, height: int,
                  width: int) -> np.ndarray:
    """(F, 2) centres of a sprite heading out through the edge nearest ``start``: at 1.5-3 px per frame, within
    0.4 rad of straight out, gently turning, plus the pan's drift, and not bouncing (it may not get all the way out
    by the last frame)."""
    direction, _ = nearest_edge(start, height, width)
    heading = math.atan2(direction[1], direction[0]) + float(rng.uniform(-0.4, 0.4))
    speed = float(rng.uniform(1.5, MAX_SPEED))
    turn = float(rng.uniform(-0.05, 0.05))
    out = np.empty((num_frames, 2))
    pos = start.astype(np.float64).copy()
    for f in range(num_frames):
        out[f] = pos
        pos = pos + speed * np.array([math.cos(heading + turn * f), math.sin(heading + turn * f)]) + drift
    return _quantise(out)


def _check_leaving(leaving: float) -> None:
    if not 0 <= leaving <= 1:
        raise ValueError(f"leaving: expected a share from 0 to 1, got {leaving}")


def _leaving_stream(seed: int, leaving: float) -> np.random.Generator | None:
    """The draws that send a sprite of scene ``seed`` out through an edge, past the one that decides whether it
    has such a sprite (a share ``leaving`` of the scenes do); None when it has none."""
    if not leaving:
        return None
    rng = np.random.default_rng([int(seed), 0x1EA5E])
    return rng if rng.random() < leaving else None


def has_leaving_sprite(seed: int, leaving: float) -> bool:
    """Whether ``render_scene(seed, leaving=leaving)`` sends one sprite out through an edge, known without
    rendering it. Such a scene played backwards has a sprite coming in, which the world never has."""
    _check_leaving(leaving)
    return _leaving_stream(seed, leaving) is not None


def render_scene(seed: int, height: int = 128, width: int = 128, num_frames: int = 14,
                 sprite_sizes: tuple[float, float] | None = None, leaving: float = 0.0) -> Scene:
    """The scene of ``seed``: 1-3 moving sprites on a smooth background, ``num_frames`` frames of ``height x width``.

    ``sprite_sizes``: the range (px) the sprites' sizes are drawn from; the default (None), 16-40, is the world the
    ``sprites`` model was trained on (other ranges serve experiments; the same seed draws the same scene
    otherwise, with the sizes scaled into the range).
    ``leaving``: the share of scenes in which one sprite, instead of bouncing, heads out through the edge nearest
    to it (drawn from a stream of its own, so every other draw, and the whole first frame, stay those of the
    scene without it). The default, 0, is the world the ``sprites`` model was trained on: no sprite ever leaves."""
    _check_leaving(leaving)
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    low, high = (float(v) for v in (sprite_sizes or SPRITE_SIZES))
    if not 4 <= low <= high:
        raise ValueError(f"sprite_sizes: expected 4 <= min <= max, got {low:g}, {high:g}")
    if height < 2 * high or width < 2 * high:
        raise ValueError(f"scenes with sprites up to {high:g} px need at least {2 * high:g} x {2 * high:g} pixels, "
                         f"got {height} x {width}")
    if num_frames < 1:
        raise ValueError(f"num_frames must be at least 1, got {num_frames}")
    rng = np.random.default_rng([int(seed), 0x5B1735])
    count = int(rng.integers(1, 4))
    pan_velocity = np.zeros(2)
    if rng.random() < 0.3:
        angle = float(rng.uniform(0, 2 * math.pi))
        pan_speed = float(rng.uniform(0.3, 1.5))
        pan_velocity = np.array([pan_speed * math.cos(angle), pan_speed * math.sin(angle)])
    pan = _quantise(np.arange(num_frames)[:, None] * pan_velocity[None, :])
    background = _background(rng, height, width, pan)
    colors = _sprite_colours(rng, count)
    shapes = tuple(SHAPES[int(rng.integers(0, len(SHAPES)))] for _ in range(count))
    sizes = [float(_quantise(rng.uniform(low, high))) for _ in range(count)]
    starts: list[np.ndarray] = []
    for size in sizes:  # first frame: inside the picture, overlapping earlier sprites little
        for _ in range(30):
            start = _quantise(np.array([rng.uniform(size / 2, width - size / 2), rng.uniform(size / 2, height - size / 2)]))
            if all(np.abs(start - s).max() > (size + o) / 2 * 0.8 for s, o in zip(starts, sizes)):
                break
        starts.append(start)
    centres = np.stack([_path(rng, size, start, -pan_velocity, num_frames, height, width)
                        for size, start in zip(sizes, starts)])  # (N, F, 2)
    leave_rng = _leaving_stream(seed, leaving)
    if leave_rng is not None:
        i = int(leave_rng.integers(0, count))
        centres[i] = _leaving_path(leave_rng, starts[i], -pan_velocity, num_frames, height, width)
    half = np.array(sizes)[:, None, None] / 2
    boxes = np.concatenate([centres - half, centres + half], axis=-1).astype(np.float32)
    frames, visible = render_sprites(background, boxes, colors, shapes)
    return Scene(seed=int(seed), frames=frames, boxes=boxes, colors=colors, shapes=shapes, visible=visible,
                 pan=pan.astype(np.float32))
