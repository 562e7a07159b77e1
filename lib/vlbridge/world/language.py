"""The caption grammar: object phrases, scene captions with paraphrase variety, and five styles.

Every caption that describes a scene keeps each object's full phrase
("a <size> <colour> <shape> <prep> the <position>"), so the parser can read it back exactly,
whatever template or style wraps it.
"""
from __future__ import annotations

import numpy as np

from .parser import Claim
from .scene import Scene, WorldObject
from .vocab import NUMBER_WORDS, SIZE_WORDS, STYLES

PREPOSITIONS = ("at", "in", "on")

CAPTION_TEMPLATES = (
    "{objects} .",
    "there is {objects} .",
    "this picture shows {objects} .",
    "we can see {objects} .",
    "an image of {objects} .",
    "{count} : {objects} .",
)

# Each style wraps the same object list in its own voice (ESPER's ESP styles).
STYLE_TEMPLATES = {
    "news": (
        "breaking news : {objects} spotted today .",
        "report : witnesses confirm {objects} .",
        "in the news today , {objects} .",
    ),
    "blog": (
        "today i saw {objects} . i loved it !",
        "my new favourite picture has {objects} .",
        "dear diary , i found {objects} .",
    ),
    "story": (
        "once upon a time there was {objects} .",
        "long ago , {objects} lived here .",
        "in a quiet land lived {objects} .",
    ),
    "instruction": (
        "draw {objects} .",
        "step one : draw {objects} .",
        "to make this picture , draw {objects} .",
    ),
    "social": (
        "omg {objects} ! # shapes",
        "look at this : {objects} ! # art # nofilter",
        "{objects} # picoftheday",
    ),
}
assert tuple(STYLE_TEMPLATES) == STYLES


def _pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def object_phrase(obj: WorldObject, rng: np.random.Generator) -> str:
    size = _pick(rng, SIZE_WORDS[obj.size])
    return f"a {size} {obj.colour} {obj.shape} {_pick(rng, PREPOSITIONS)} the {obj.position}"


def reference(obj: WorldObject, scene: Scene) -> str:
    """The shortest definite description that picks `obj` out of `scene`
    ('the circle', 'the red circle', or 'the red circle at the top')."""
    for phrase, same in (
        (f"the {obj.shape}", lambda o: o.shape == obj.shape),
        (f"the {obj.colour} {obj.shape}", lambda o: (o.shape, o.colour) == (obj.shape, obj.colour)),
    ):
        if sum(same(o) for o in scene.objects) == 1:
            return phrase
    return f"the {obj.colour} {obj.shape} at the {obj.position}"


def join(phrases: list[str]) -> str:
    if len(phrases) == 1:
        return phrases[0]
    return " , ".join(phrases[:-1]) + " and " + phrases[-1]


def object_list(scene: Scene, rng: np.random.Generator) -> str:
    """All objects of the scene, in a random order, as one phrase."""
    order = rng.permutation(len(scene.objects))
    return join([object_phrase(scene.objects[i], rng) for i in order])


def count_phrase(n: int) -> str:
    return f"{NUMBER_WORDS[n]} object" + ("s" if n != 1 else "")


def caption(scene: Scene, rng: np.random.Generator) -> str:
    """A plain caption: one of several templates around the full object list."""
    template = _pick(rng, CAPTION_TEMPLATES)
    return template.format(objects=object_list(scene, rng), count=count_phrase(len(scene.objects)))


def canonical_caption(scene: Scene) -> str:
    """The scene's one caption in canonical form: 'there is', the objects in reading order (top left
    first), the first word of every synonym set and 'at'. Its wording is a function of the scene alone."""
    objects = sorted(scene.objects, key=lambda o: (o.row, o.col))
    return "there is " + join([f"a {SIZE_WORDS[o.size][0]} {o.colour} {o.shape} at the {o.position}"
                               for o in objects]) + " ."


def styled_caption(scene: Scene, style: str, rng: np.random.Generator) -> str:
    if style not in STYLE_TEMPLATES:
        raise ValueError(f"unknown style {style!r}; styles are {', '.join(STYLES)}")
    return _pick(rng, STYLE_TEMPLATES[style]).format(objects=object_list(scene, rng))


def style_prompt(style: str) -> str:
    """The text that asks a text-only LM for a caption in `style` (it saw this in its corpus)."""
    if style not in STYLE_TEMPLATES:
        raise ValueError(f"unknown style {style!r}; styles are {', '.join(STYLES)}")
    return f"{style} :"


def partial_caption(scene: Scene, rng: np.random.Generator):
    """A true but incomplete description: some of the objects, some of their attributes
    ('there is a red circle'). Returns the text and the Claims it makes (what a real CLIP sees
    most: captions that mention only part of a picture)."""
    n = int(rng.integers(1, len(scene.objects) + 1))
    chosen = [scene.objects[i] for i in rng.permutation(len(scene.objects))[:n]]
    phrases, claims = [], []
    for obj in chosen:
        colour = obj.colour if rng.random() < 0.7 else None
        size = obj.size if rng.random() < 0.4 else None
        at = rng.random() < 0.5
        words = ["a", _pick(rng, SIZE_WORDS[size]) if size else "", colour or "", obj.shape]
        if at:
            words += [_pick(rng, PREPOSITIONS), "the", obj.position]
        phrases.append(" ".join(w for w in words if w))
        claims.append(Claim(obj.shape, colour, size, obj.row if at else None, obj.col if at else None))
    template = _pick(rng, CAPTION_TEMPLATES[:-1])  # not the counting template: it claims every object
    return template.format(objects=join(phrases)), tuple(claims)
