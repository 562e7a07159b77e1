"""What a bridge is shown of an image, computed once by the frozen CLIP and reused by every step; and
the same for a dataset's image files (data/ reads the files, this encodes them).

"embedding" is CLIP's pooled image embedding (what FROMAGe, ClipCap and ESPER use). "patches" is
that embedding followed by CLIP's last feature map with at least a 4x4 grid, flattened: the stand-in
CLIP's pooled embedding keeps *what* is in a scene better than *where* (chapter 3 measures it).

Over data-parallel ranks (`ranks`, a distributed.Group) every rank needs every example's features,
but each opens and encodes only its block of the images; the blocks are then gathered
(`features_by_rank`). With one process that is the plain computation, bit for bit.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .data import DataError, KarpathyRecord, load_cc3m_tsv, open_image
from .distributed import SINGLE, Group, gather_rows

IMAGE_INPUTS = ("embedding", "patches")


def check_image_input(image_input: str) -> str:
    if image_input not in IMAGE_INPUTS:
        raise ValueError(f"image_input must be one of {', '.join(IMAGE_INPUTS)}, got {image_input!r}")
    return image_input


def image_features(clip, images, image_input: str = "embedding") -> torch.Tensor:
    """Features [N, feature_dim] of images (uint8 [N, H, W, 3] or PIL), as `image_input` says."""
    if check_image_input(image_input) == "embedding":
        return clip.encode_images(images)
    embedding, patches = clip.encode_images_and_patches(images)
    return torch.cat([embedding, patches.flatten(1)], 1)


def feature_dim(clip, image_input: str = "embedding") -> int:
    """The width of `image_features(clip, ..., image_input)` (one blank image is encoded to find it)."""
    if check_image_input(image_input) == "embedding":
        return clip.embed_dim
    return no_features(clip, image_input).shape[1]


def no_features(clip, image_input: str = "embedding") -> torch.Tensor:
    """`image_features` of no images: [0, feature_dim], of the dtype and on the device real ones have
    (one blank image is encoded to find them)."""
    blank = np.zeros((1, clip.image_size, clip.image_size, 3), dtype=np.uint8)
    return image_features(clip, blank, image_input)[:0]


def features_by_rank(encode, items, clip, image_input: str = "embedding", ranks: Group = SINGLE) -> torch.Tensor:
    """encode(items) ([N, feature_dim], a row per item, in item order) on every rank, with each rank
    encoding only its block of the items (Group.block), so a dataset's images are opened and encoded
    once over all ranks, not once on each; the blocks are then gathered (gather_rows). With one
    process this is encode(items)."""
    items = list(items)
    mine = ranks.take(items)
    # With fewer items than ranks some ranks have none: they still send [0, feature_dim] to the gather.
    local = encode(mine) if mine else no_features(clip, image_input)
    return gather_rows(local, [len(block) for block in ranks.blocks(len(items))], ranks)


def image_file_features(clip, paths, image_input: str = "embedding", batch_size: int = 256,
                        ranks: Group = SINGLE) -> torch.Tensor:
    """`image_features` of image files [N, feature_dim], opened and encoded `batch_size` at a time
    through CLIP's own preprocessing (resize, centre crop), so that only one batch of decoded photos
    is in memory (a dataset's worth at once would not fit: COCO's 113,287 need ~100 GB). Over
    `ranks`, each rank opens only its block of the files, and every rank returns all N rows."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")

    def encode(paths):
        return torch.cat([image_features(clip, [open_image(p) for p in paths[i:i + batch_size]], image_input)
                          for i in range(0, len(paths), batch_size)])

    return features_by_rank(encode, paths, clip, image_input, ranks)


def cc3m_pairs(tsv, image_dir, clip, limit: int | None = None, batch_size: int = 256,
               ranks: Group = SINGLE) -> tuple[torch.Tensor, list[str]]:
    """The frozen CLIP's image embeddings [N, d] (float32, L2-normalised) and the N captions of a
    FROMAGe-layout TSV whose images are in `image_dir` (the first `limit` pairs, or all). Images are
    opened and encoded `batch_size` at a time, through the CLIP model's own preprocessing (resize,
    centre crop), so only one batch of pixels is in memory; over `ranks`, each rank opens and encodes
    its block of them (image_file_features), and every rank reads all the captions. Every image file
    is checked (on every rank) before any is encoded: a missing folder or file is a DataError naming it."""
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
    embeddings = image_file_features(clip, [r.image_path for r in records], "embedding", batch_size, ranks)
    return embeddings, [r.caption for r in records]


def karpathy_features(records: list[KarpathyRecord], clip, image_input: str = "embedding",
                      batch_size: int = 256, ranks: Group = SINGLE) -> torch.Tensor:
    """`vlbridge.features.image_features` of the records' images [N, feature_dim], opened and encoded
    `batch_size` at a time, over `ranks` each rank its block of them (features.image_file_features)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not records:
        raise DataError("karpathy_features got no records")
    missing = [r.cocoid for r in records if r.image_path is None]
    if missing:
        raise DataError(f"{len(missing)} records have no image file (cocoid {missing[0]}, ...): pass image_root to "
                        "load_karpathy")
    return image_file_features(clip, [r.image_path for r in records], image_input, batch_size, ranks)
