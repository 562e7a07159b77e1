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
