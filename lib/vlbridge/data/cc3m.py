"""Conceptual Captions TSVs: FROMAGe's (`caption<TAB>image` header, image = file stem) and the
original GCC files (no header, `caption<TAB>url`); and the (CLIP embedding, caption) pairs FROMAGe
trains on, from a FROMAGe-layout TSV and its images."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..features import image_file_features
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


def cc3m_pairs(tsv, image_dir, clip, limit: int | None = None, batch_size: int = 256) -> tuple[torch.Tensor, list[str]]:
    """The frozen CLIP's image embeddings [N, d] (float32, L2-normalised) and the N captions of a
    FROMAGe-layout TSV whose images are in `image_dir` (the first `limit` pairs, or all). Images are
    opened and encoded `batch_size` at a time, through the CLIP model's own preprocessing (resize,
    centre crop), so only one batch of pixels is in memory. Every image file is checked before any
    is encoded: a missing folder or file is a DataError naming it."""
    image_dir = Path(image_dir)
    if not image_dir.is_dir():
        raise DataError(f"{image_dir}: image folder not found (the images of {tsv})")
    if batch_size < 1 or (limit is not None and limit < 1):
        raise ValueError(f"need batch_size >= 1 and limit >= 1 (or None), got {batch_size} and {limit}")
    records = load_cc3m_tsv(tsv, image_dir)
    if records and records[0].image_path is None:
        raise DataError(f"{tsv}: not FROMAGe's layout: the first line must be the header 'caption<TAB>image' and "
                        "each row a caption and an image file (name or stem) in the image folder; the original "
                        "GCC files list URLs: download the images first")
    records = records[:limit]
    if not records:
        raise DataError(f"{tsv}: no image-caption pairs")
    embeddings = image_file_features(clip, [r.image_path for r in records], "embedding", batch_size)
    return embeddings, [r.caption for r in records]
