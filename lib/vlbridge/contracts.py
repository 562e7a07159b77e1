"""What the bridge and the methods expect of the parts they are given, written down.

A vision encoder (open_clip, or CLIP/SigLIP in transformers' format: backbones/) and a causal LM
(any Hugging Face AutoModelForCausalLM) are frozen backbones; a method trains a model in front of
them and saves only what it trained. These protocols are structural (`typing.Protocol`): a class
fits by having the members, with no base class to inherit; `isinstance(x, VisionEncoder)` checks
the members' presence (runtime_checkable), not their signatures.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class VisionEncoder(Protocol):
    """A frozen CLIP-like model. Images are uint8 [N, H, W, 3] arrays or RGB PIL images; every
    embedding comes back float32, L2-normalised, on the CPU (a model moves what it reads)."""

    name: str  # how it was loaded (a checkpoint's record of its backbones uses it)
    model: torch.nn.Module  # the frozen module
    image_size: int  # square input side, pixels

    @property
    def embed_dim(self) -> int: ...  # the joint image-text embedding width

    @property
    def device(self) -> torch.device: ...

    def encode_images(self, images, batch_size: int = ...) -> torch.Tensor: ...  # [N, embed_dim]

    def encode_images_and_patches(self, images, min_grid: int = ...,
                                  batch_size: int = ...) -> tuple[torch.Tensor, torch.Tensor]:
        """The embeddings [N, embed_dim] and, from the same pass, patch tokens [N, P, C]."""

    def encode_texts(self, texts: list[str], batch_size: int = ...) -> torch.Tensor: ...  # [N, embed_dim]


@runtime_checkable
class CausalLM(Protocol):
    """A frozen causal LM and its tokenizer (which has bos, eos and pad tokens)."""

    name: str
    model: torch.nn.Module  # forward(inputs_embeds=..., attention_mask=..., position_ids=...) -> logits
    tokenizer: object

    @property
    def embed_dim(self) -> int: ...  # the width of its input embeddings

    @property
    def context_length(self) -> int: ...

    def embed(self, ids: torch.Tensor) -> torch.Tensor: ...


@dataclass(frozen=True)
class Backbones:
    """The frozen parts a trained model runs on; the one argument every `load` takes."""

    clip: VisionEncoder
    lm: CausalLM


@runtime_checkable
class TrainedModel(Protocol):
    """A model a method trains: it saves only its trained parameters and a record of the backbones
    it was trained on (names and sizes), and loads back only onto those."""

    def save(self, folder: Path | str) -> None: ...

    @classmethod
    def load(cls, folder: Path | str, backbones: Backbones) -> "TrainedModel": ...

    def trainable_parameters(self) -> int: ...

    def backbone_record(self) -> tuple[dict[str, str], dict[str, int]]:
        """(names by role, sizes by key) of the backbones, as the checkpoint records them."""
