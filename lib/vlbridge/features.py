"""What a bridge is shown of an image, computed once by the frozen CLIP and reused by every step.

"embedding" is CLIP's pooled image embedding (what FROMAGe, ClipCap and ESPER use). "patches" is
that embedding followed by CLIP's last feature map with at least a 4x4 grid, flattened: the stand-in
CLIP's pooled embedding keeps *what* is in a scene better than *where* (chapter 3 measures it).
"""
from __future__ import annotations

import numpy as np
import torch

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
    blank = np.zeros((1, clip.image_size, clip.image_size, 3), dtype=np.uint8)
    return image_features(clip, blank, image_input).shape[1]


def image_file_features(clip, paths, image_input: str = "embedding", batch_size: int = 256) -> torch.Tensor:
    """`image_features` of image files [N, feature_dim], opened and encoded `batch_size` at a time
    through CLIP's own preprocessing (resize, centre crop), so that only one batch of decoded photos
    is in memory (a dataset's worth at once would not fit: COCO's 113,287 need ~100 GB)."""
    from .data.images import open_image

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    paths = list(paths)
    return torch.cat([image_features(clip, [open_image(p) for p in paths[i:i + batch_size]], image_input)
                      for i in range(0, len(paths), batch_size)])
