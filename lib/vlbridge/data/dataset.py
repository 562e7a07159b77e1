"""A torch Dataset of (image, caption) pairs over the loaders' records, and its collate function."""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .errors import DataError
from .images import open_image


def to_tensor(image) -> torch.Tensor:
    """PIL RGB image -> float32 [3, H, W] in [0, 1]."""
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()


class ImageCaptionDataset(Dataset):
    """One item per (image, caption) pair: a record with several `captions` (COCO; ESP's style ->
    caption dict) gives several items, a record with one `caption` (CC3M) gives one. Records need
    an `image_path`, so load them with an image folder."""

    def __init__(self, records: Sequence, transform: Callable = to_tensor):
        self.transform = transform
        self.pairs = []
        for record in records:
            if getattr(record, "image_path", None) is None:
                raise DataError(f"{record!r} has no image file: pass image_dir to the loader")
            captions = (record.caption,) if hasattr(record, "caption") else record.captions
            if isinstance(captions, Mapping):  # ESP: style -> caption
                captions = captions.values()
            self.pairs.extend((record.image_path, caption) for caption in captions)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, str]:
        path, caption = self.pairs[index]
        return self.transform(open_image(path)), caption


def collate_image_captions(batch) -> tuple[torch.Tensor, list[str]]:
    """[(image, caption), ...] -> (images stacked [B, 3, H, W], captions)."""
    images, captions = zip(*batch)
    shapes = {tuple(image.shape) for image in images}
    if len(shapes) > 1:
        raise DataError(f"images in one batch differ in shape {sorted(shapes)}: give the dataset a resizing transform")
    return torch.stack(images), list(captions)
