"""The caption grammar: object phrases, scene captions with paraphrase variety, and five styles.

Every caption that describes a scene keeps each object's full phrase
("a <size> <colour> <shape> <prep> the <position>"), so the parser can read it back exactly,
whatever template or style wraps it.
"""
from __future__ import annotations

import numpy as np

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


def styled_caption(scene: Scene, style: str, rng: np.random.Generator) -> str:
    if style not in STYLE_TEMPLATES:
        raise ValueError(f"unknown style {style!r}; styles are {', '.join(STYLES)}")
    return _pick(rng, STYLE_TEMPLATES[style]).format(objects=object_list(scene, rng))


def style_prompt(style: str) -> str:
    """The text that asks a text-only LM for a caption in `style` (it saw this in its corpus)."""
    if style not in STYLE_TEMPLATES:
        raise ValueError(f"unknown style {style!r}; styles are {', '.join(STYLES)}")
    return f"{style} :"
