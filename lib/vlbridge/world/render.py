"""Rendering a scene to a small RGB image (any size: the shapes are drawn as vectors)."""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from .scene import Scene, WorldObject
from .vocab import COLOURS, GRID

BACKGROUND = (28, 28, 32)
_SUPERSAMPLE = 4  # draw large, then downsample: smooth edges at 32x32 without randomness
_RADIUS = {"small": 0.105, "large": 0.16}  # fraction of the image side
_JITTER = 0.12  # how far (in cell fractions) an object may sit from its cell centre


def _geometry(obj: WorldObject, side: float) -> tuple[float, float, float]:
    cell = side / GRID
    cx = (obj.col + 0.5 + _JITTER * obj.dx) * cell
    cy = (obj.row + 0.5 + _JITTER * obj.dy) * cell
    radius = _RADIUS[obj.size] * (1.0 + 0.1 * obj.scale) * side
    return cx, cy, radius


def _draw(draw: ImageDraw.ImageDraw, obj: WorldObject, side: float) -> None:
    cx, cy, r = _geometry(obj, side)
    fill = COLOURS[obj.colour]
    if obj.shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif obj.shape == "square":
        s = r * 0.886  # same area as the circle of radius r
        draw.rectangle([cx - s, cy - s, cx + s, cy + s], fill=fill)
    elif obj.shape == "triangle":
        h = r * 1.15
        draw.polygon([(cx, cy - h), (cx - h * 0.98, cy + h * 0.7), (cx + h * 0.98, cy + h * 0.7)], fill=fill)
    else:
        raise ValueError(f"unknown shape {obj.shape!r}")


def render(scene: Scene, size: int = 32) -> Image.Image:
    """The scene as a `size` x `size` RGB PIL image."""
    big = size * _SUPERSAMPLE
    image = Image.new("RGB", (big, big), BACKGROUND)
    draw = ImageDraw.Draw(image)
    for obj in scene.objects:
        _draw(draw, obj, big)
    return image.resize((size, size), Image.Resampling.BOX)


def render_array(scenes, size: int = 32) -> np.ndarray:
    """A batch of scenes as uint8 [N, size, size, 3]."""
    return np.stack([np.asarray(render(s, size)) for s in scenes])
