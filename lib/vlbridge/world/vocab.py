"""The microworld's closed vocabulary: every attribute an object can have, and the words for it.

One place defines the world's facts; the renderer, the sound, the caption grammar and the parser
all read them from here, so they cannot drift apart.
"""

SHAPES = ("circle", "square", "triangle")

# RGB values chosen to stay distinct after 32x32 antialiasing on a dark background.
COLOURS = {
    "red": (220, 50, 47),
    "green": (60, 180, 75),
    "blue": (60, 110, 235),
    "yellow": (240, 215, 40),
    "purple": (160, 80, 210),
    "white": (235, 235, 235),
}
COLOUR_NAMES = tuple(COLOURS)

SIZES = ("small", "large")
# Paraphrases the grammar may use for a size; the first is the canonical word.
SIZE_WORDS = {"small": ("small", "little"), "large": ("large", "big")}

GRID = 3  # a 3x3 grid of cells; (row, col) with row 0 = top, col 0 = left
ROW_WORDS = ("top", "middle", "bottom")
COL_WORDS = ("left", "center", "right")


def position_phrase(row: int, col: int) -> str:
    """The words for a grid cell: 'top left', 'top', 'left', 'center', ... ('the' is added by callers)."""
    vertical = {0: "top", 1: "", 2: "bottom"}[row]
    horizontal = {0: "left", 1: "", 2: "right"}[col]
    words = " ".join(w for w in (vertical, horizontal) if w)
    return words or "center"


POSITIONS = tuple((r, c) for r in range(GRID) for c in range(GRID))
POSITION_PHRASES = {position_phrase(r, c): (r, c) for r, c in POSITIONS}

NUMBER_WORDS = ("zero", "one", "two", "three")
STYLES = ("news", "blog", "story", "instruction", "social")
