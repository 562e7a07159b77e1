"""A strict recogniser for the caption grammar, derived from the templates themselves: it says
whether a text (say, an LM's sample) is a sentence the grammar could have produced."""
from __future__ import annotations

import re
from functools import lru_cache

from .language import CAPTION_TEMPLATES, PREPOSITIONS, STYLE_TEMPLATES
from .vocab import COLOUR_NAMES, NUMBER_WORDS, POSITION_PHRASES, SHAPES, SIZE_WORDS


def _alternatives(words) -> str:
    return "(?:" + "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True)) + ")"


def _object_list() -> str:
    size = _alternatives([w for words in SIZE_WORDS.values() for w in words])
    phrase = (f"a {size} {_alternatives(COLOUR_NAMES)} {_alternatives(SHAPES)} "
              f"{_alternatives(PREPOSITIONS)} the {_alternatives(POSITION_PHRASES)}")
    return f"{phrase}(?: (?:,|and) {phrase})*"


def _template_pattern(template: str) -> str:
    pieces = re.split(r"(\{objects\}|\{count\})", template)
    parts = {"{objects}": _object_list(),
             "{count}": _alternatives(NUMBER_WORDS[1:]) + " objects?"}
    return "".join(parts.get(p, re.escape(p)) for p in pieces)


@lru_cache(maxsize=None)
def _pattern(styles: bool) -> re.Pattern:
    templates = list(CAPTION_TEMPLATES)
    if styles:
        templates += [t for group in STYLE_TEMPLATES.values() for t in group]
    return re.compile("|".join(f"(?:{_template_pattern(t)})" for t in templates))


def is_caption(text: str, styles: bool = False) -> bool:
    """True if `text` is exactly a caption the grammar can produce (styled ones too if `styles`)."""
    return _pattern(styles).fullmatch(" ".join(text.split())) is not None
