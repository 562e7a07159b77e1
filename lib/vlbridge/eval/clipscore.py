"""CLIPScore (Hessel, Holtzman, Forbes, Le Bras & Choi, "CLIPScore: A Reference-free Evaluation Metric
for Image Captioning", EMNLP 2021): w * max(cos(image, caption), 0) with w = 2.5, read by a frozen
CLIP. It needs no reference caption, so it scores any method's captions the same way."""
from __future__ import annotations

import torch

CLIPSCORE_WEIGHT = 2.5  # the paper's w: it stretches the cosines CLIP gives to the range 0-1


def clip_scores(clip, image_embeddings: torch.Tensor, captions: list[str]) -> torch.Tensor:
    """CLIPScore [N] of each caption against its image, given the images' L2-normalised CLIP
    embeddings [N, embed_dim] (`clip.encode_images`, or the first embed_dim features of
    features.image_features)."""
    if not isinstance(image_embeddings, torch.Tensor) or image_embeddings.ndim != 2:
        raise ValueError("image_embeddings must be a tensor [N, embed_dim] from clip.encode_images")
    if image_embeddings.shape[0] != len(captions):
        raise ValueError(f"{image_embeddings.shape[0]} images but {len(captions)} captions")
    cosine = (image_embeddings.float() * clip.encode_texts(captions)).sum(1)
    return CLIPSCORE_WEIGHT * cosine.clamp(min=0)
