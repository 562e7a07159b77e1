"""Scenes: 1-3 objects on a 3x3 grid, each drawn from a seed so that a data split is a seed range."""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .vocab import COLOUR_NAMES, POSITIONS, SHAPES, SIZES, position_phrase

# Seed ranges: training draws from [0, HELDOUT_START); evaluation from fresh ranges above it,
# one per use, so no chapter ever evaluates on a scene it trained on.
HELDOUT_START = 1_000_000
TEST_START = 2_000_000
_SALT = 0x5CE7E  # mixes the scene seed so that scene streams do not collide with training seeds


@dataclass(frozen=True)
class WorldObject:
    shape: str
    colour: str
    size: str
    row: int
    col: int
    # Sub-cell placement and scale jitter in [-1, 1]: visual variety that no caption mentions.
    dx: float = 0.0
    dy: float = 0.0
    scale: float = 0.0

    @property
    def position(self) -> str:
        return position_phrase(self.row, self.col)

    @property
    def key(self) -> tuple[str, str, str, int, int]:
        """The attributes language can express (what captions and the parser agree on)."""
        return (self.shape, self.colour, self.size, self.row, self.col)


@dataclass(frozen=True)
class Scene:
    objects: tuple[WorldObject, ...]
    seed: int = -1

    @property
    def keys(self) -> frozenset:
        return frozenset(o.key for o in self.objects)

    def occupied(self) -> set[tuple[int, int]]:
        return {(o.row, o.col) for o in self.objects}

    def with_objects(self, objects) -> "Scene":
        return replace(self, objects=tuple(objects))


def random_object(rng: np.random.Generator, cell: tuple[int, int]) -> WorldObject:
    dx, dy, scale = rng.uniform(-1.0, 1.0, size=3)
    return WorldObject(
        shape=SHAPES[rng.integers(len(SHAPES))],
        colour=COLOUR_NAMES[rng.integers(len(COLOUR_NAMES))],
        size=SIZES[rng.integers(len(SIZES))],
        row=cell[0],
        col=cell[1],
        dx=float(dx),
        dy=float(dy),
        scale=float(scale),
    )


def scene_rng(seed: int, stream: int = 0) -> np.random.Generator:
    """The random stream for everything derived from scene `seed` (stream 0: the scene itself)."""
    return np.random.default_rng([_SALT, int(seed), int(stream)])


def sample_scene(seed: int, min_objects: int = 1, max_objects: int = 3) -> Scene:
    if not 1 <= min_objects <= max_objects <= len(POSITIONS):
        raise ValueError(f"need 1 <= min_objects <= max_objects <= {len(POSITIONS)}, got {min_objects}, {max_objects}")
    rng = scene_rng(seed)
    n = int(rng.integers(min_objects, max_objects + 1))
    cells = rng.choice(len(POSITIONS), size=n, replace=False)
    return Scene(tuple(random_object(rng, POSITIONS[c]) for c in cells), seed=int(seed))


def scenes(start: int, count: int, **kwargs) -> list[Scene]:
    """`count` scenes with consecutive seeds from `start`: a split is a seed range."""
    return [sample_scene(s, **kwargs) for s in range(start, start + count)]

