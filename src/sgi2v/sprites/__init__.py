"""The sprites world: procedural videos of moving shapes, and the small SVD-architecture model trained on them.

:func:`render_scene` makes a seeded scene (frames, boxes, colours); :mod:`sgi2v.sprites.train`
trains the ``sprites`` model from scratch; :mod:`sgi2v.sprites.track` follows a sprite through a
generated video by its known colour.
"""

from .scene import SHAPES, Scene, render_scene

__all__ = ["SHAPES", "Scene", "render_scene"]
