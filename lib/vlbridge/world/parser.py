"""Reading a caption back into the objects it claims.

The microworld's grammar is closed, so a caption's claims can be recovered exactly and checked
against the scene it was generated for: grounded precision and recall that no benchmark built on
real photographs can give.
"""
from __future__ import annotations

from dataclasses import dataclass

from .vocab import COLOUR_NAMES, NUMBER_WORDS, SHAPES, SIZE_WORDS

_SIZE_OF = {word: size for size, words in SIZE_WORDS.items() for word in words}
_ROW_OF = {"top": 0, "middle": 1, "bottom": 2}
_COL_OF = {"left": 0, "center": 1, "right": 2}
_PREPOSITIONS = {"at", "in", "on"}
# Words that end an object mention when reading forwards or backwards from its shape word.
_BOUNDARY = {"a", "an", "the", "no", ",", "and", ".", "!", "?", ":", "q", "because", "then"}


@dataclass(frozen=True)
class Claim:
    """One object mention; None where the text says nothing about that attribute."""

    shape: str
    colour: str | None = None
    size: str | None = None
    row: int | None = None
    col: int | None = None
    negated: bool = False  # "there is no green triangle"

    @property
    def complete(self) -> bool:
        return None not in (self.colour, self.size, self.row, self.col)

    @property
    def key(self):
        return (self.shape, self.colour, self.size, self.row, self.col)

    def matches(self, obj) -> bool:
        """True if every attribute this claim states is true of `obj` (a WorldObject)."""
        return all(
            claimed is None or claimed == actual
            for claimed, actual in zip(self.key, obj.key)
        )


@dataclass(frozen=True)
class Parse:
    claims: tuple[Claim, ...]
    count: int | None = None  # "two objects"

    @property
    def objects(self) -> frozenset:
        """Keys of the complete, positive claims: what a caption asserts exists."""
        return frozenset(c.key for c in self.claims if c.complete and not c.negated)


def tokens(text: str) -> list[str]:
    return text.lower().replace(",", " , ").replace(".", " . ").replace("?", " ? ").replace("!", " ! ").split()


def _position(words: list[str], start: int) -> tuple[int | None, int | None, int]:
    """Reads 'top left' / 'left' / 'center' at words[start:]; returns row, col, next index."""
    row = col = None
    i = start
    while i < len(words) and words[i] in _ROW_OF | _COL_OF:
        word = words[i]
        if word in ("center", "middle"):
            row = 1 if row is None else row
            col = 1 if col is None else col
        elif word in _ROW_OF:
            row = _ROW_OF[word]
        else:
            col = _COL_OF[word]
        i += 1
    if i == start:
        return None, None, start
    # A lone 'top' means the top-centre cell, a lone 'left' the middle-left cell.
    return (1 if row is None else row), (1 if col is None else col), i


def parse(text: str) -> Parse:
    words = tokens(text)
    claims = []
    count = None
    for i, word in enumerate(words):
        if word in NUMBER_WORDS and i + 1 < len(words) and words[i + 1] in ("object", "objects"):
            count = NUMBER_WORDS.index(word)
        if word not in SHAPES:
            continue
        colour = size = row = col = None
        negated = False
        j = i - 1  # backwards: adjectives up to the determiner
        while j >= 0 and words[j] not in _BOUNDARY:
            colour = words[j] if words[j] in COLOUR_NAMES else colour
            size = _SIZE_OF.get(words[j], size)
            j -= 1
        negated = j >= 0 and words[j] == "no"
        j = i + 1  # forwards: "<prep> the <position>", "is <colour|size>", "is <prep> the <position>"
        while j < len(words):
            if words[j] in _PREPOSITIONS and j + 1 < len(words) and words[j + 1] == "the":
                r, c, nxt = _position(words, j + 2)
                if nxt == j + 2:
                    break
                row, col, j = r, c, nxt
            elif words[j] == "is" and j + 1 < len(words):
                nxt = words[j + 1]
                if nxt in COLOUR_NAMES:
                    colour, j = nxt, j + 2
                elif nxt in _SIZE_OF:
                    size, j = _SIZE_OF[nxt], j + 2
                elif nxt in _PREPOSITIONS:
                    j += 1
                else:
                    break
            else:
                break
        claims.append(Claim(word, colour, size, row, col, negated))
    return Parse(tuple(claims), count)
