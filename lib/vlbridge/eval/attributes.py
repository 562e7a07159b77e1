"""Grounded attribute precision and recall: a caption's claims, read back by the microworld's
parser, checked against the scene it describes.

Each claimed object is matched to a different true object so that the most attributes agree
(shape, colour, size and position count one each). Precision: agreeing attributes over the
attributes the caption states; recall: over the attributes of every true object.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import permutations

from ..world import parse

ALL_ATTRIBUTES = ("shape", "colour", "size", "position")
MAX_CLAIMS = 6  # a degenerate caption repeating itself is scored on its first claims

_STATED = {
    "shape": lambda c: True,
    "colour": lambda c: c.colour is not None,
    "size": lambda c: c.size is not None,
    "position": lambda c: c.row is not None,
}
_AGREES = {
    "shape": lambda c, o: c.shape == o.shape,
    "colour": lambda c, o: c.colour == o.colour,
    "size": lambda c, o: c.size == o.size,
    "position": lambda c, o: c.row is not None and (c.row, c.col) == (o.row, o.col),
}


@dataclass(frozen=True)
class AttributeCounts:
    agreed: int = 0
    claimed: int = 0
    true: int = 0

    def __add__(self, other: "AttributeCounts") -> "AttributeCounts":
        return AttributeCounts(self.agreed + other.agreed, self.claimed + other.claimed, self.true + other.true)

    @property
    def precision(self) -> float:
        return self.agreed / self.claimed if self.claimed else 0.0

    @property
    def recall(self) -> float:
        return self.agreed / self.true if self.true else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


def attribute_counts(caption: str, scene, attributes=ALL_ATTRIBUTES) -> AttributeCounts:
    """Counts for one caption; `attributes` restricts what is scored (a sound cannot carry colour)."""
    unknown = set(attributes) - set(ALL_ATTRIBUTES)
    if unknown:
        raise ValueError(f"unknown attributes {sorted(unknown)}; attributes are {', '.join(ALL_ATTRIBUTES)}")
    claims = [c for c in parse(caption).claims if not c.negated][:MAX_CLAIMS]
    objects = list(scene.objects)

    def agree(claim, obj) -> int:
        return sum(_AGREES[a](claim, obj) for a in attributes)

    best = 0
    if claims:
        pairs = ((zip(claims, p) for p in permutations(objects, len(claims))) if len(claims) <= len(objects)
                 else (zip(p, objects) for p in permutations(claims, len(objects))))
        best = max(sum(agree(c, o) for c, o in pairing) for pairing in pairs)
    stated = sum(_STATED[a](c) for c in claims for a in attributes)
    return AttributeCounts(best, stated, len(attributes) * len(objects))


def grounded_scores(captions: list[str], scenes, attributes=ALL_ATTRIBUTES) -> dict[str, float]:
    """Micro-averaged attribute precision, recall and F1 over a set of captions."""
    total = AttributeCounts()
    for caption, scene in zip(captions, scenes, strict=True):
        total = total + attribute_counts(caption, scene, attributes)
    return {"precision": total.precision, "recall": total.recall, "f1": total.f1}


def attribute_count_array(captions: list[str], scenes, attributes=ALL_ATTRIBUTES):
    """Per-caption counts as a numpy array [N, 3] of (agreed, claimed, true): the pieces a bootstrap
    over test items sums (grounded_scores is precision, recall and F1 of their sum)."""
    import numpy as np

    counts = [attribute_counts(caption, scene, attributes) for caption, scene in zip(captions, scenes, strict=True)]
    return np.array([[c.agreed, c.claimed, c.true] for c in counts], dtype=np.int64).reshape(-1, 3)
