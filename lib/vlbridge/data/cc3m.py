"""Conceptual Captions TSVs: FROMAGe's (`caption<TAB>image` header, image = file stem) and the
original GCC files (no header, `caption<TAB>url`); and the (CLIP embedding, caption) pairs FROMAGe
trains on, from a FROMAGe-layout TSV and its images."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import DataError
from .images import image_file
from .jsonfile import read_text

FROMAGE_HEADER = ("caption", "image")


@dataclass(frozen=True)
class Cc3mRecord:
    caption: str
    image: str  # a file stem (FROMAGe layout) or a URL (GCC layout)
    image_path: Path | None  # None for URLs, or when the loader was given no image folder


def _read_lines(path: Path) -> list[str]:
    text = read_text(path)
    # Split on newlines only: str.splitlines would also break captions at unicode line separators.
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    return lines[:-1] if lines and lines[-1] == "" else lines


def load_cc3m_tsv(path, image_dir=None) -> list[Cc3mRecord]:
    path = Path(path)
    lines = _read_lines(path)
    has_header = bool(lines) and tuple(lines[0].split("\t")) == FROMAGE_HEADER
    records = []
    for number, line in enumerate(lines, start=1):
        if has_header and number == 1:
            continue
        fields = line.split("\t")
        if len(fields) != 2:
            layout = "caption<TAB>image" if has_header else "caption<TAB>url"
            raise DataError(f"{path}: line {number}: expected 2 tab-separated fields ({layout}), got {len(fields)}")
        caption, image = fields
        image_path = None
        if has_header and image_dir is not None:
            image_path = image_file(image_dir, image, path, f"line {number}")
        records.append(Cc3mRecord(caption, image, image_path))
    return records
