"""Hugging Face CLIP and SigLIP (transformers' CLIPModel, SiglipModel) behind FrozenCLIP's contract,
so a chapter runs on them unchanged: the same attributes, the same input checks, and embeddings
that come back L2-normalised, float32, on the CPU, whatever the model's device and precision.

The two families differ where their training did, and each is used as it was trained:
- text: CLIP pools the first end-of-text token under a causal mask, so padding after it changes
  nothing (pad to the longest text); SigLIP pools the *last* position and was trained on texts
  padded to max_length (64) without an attention mask, so it gets exactly that (transformers' docs:
  padding="max_length"). Both truncate to the model's max_position_embeddings.
- images: CLIP's ViT puts a CLS token before its patch tokens, SigLIP has none; the patch grid is
  the last grid x grid tokens of either.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F

from .clip import FrozenCLIP, check_texts
from .freeze import freeze
from .lm import BackboneNotFoundError, _hide_hf_progress_bars, not_available_offline

PREFIX = "hf:"  # 'hf:org/repo' or 'hf:/a/folder': always transformers, never open_clip
FAMILIES = ("clip", "siglip")  # config.json model_type values this module loads


def _model_type(config_json: Path) -> str | None:
    try:
        return json.loads(config_json.read_text()).get("model_type")
    except (OSError, ValueError):
        return None


def hf_source(name: str) -> str | None:
    """What to give transformers for a clip_model name, or None if the name is open_clip's.
    'hf:X' is always transformers'. A folder is transformers' when its config.json says clip or
    siglip and it has no open_clip_config.json (a folder with both stays open_clip's, as before).
    Any other name is transformers' only if the local HF cache holds a clip or siglip config for it."""
    if name.startswith(PREFIX):
        return name[len(PREFIX):]
    if name.startswith(("local-dir:", "hf-hub:")):
        return None
    folder = Path(name).expanduser()
    if folder.is_dir():
        hf = (folder / "config.json").is_file() and not (folder / "open_clip_config.json").is_file()
        return str(folder) if hf and _model_type(folder / "config.json") in FAMILIES else None
    from transformers import AutoConfig

    try:  # offline and fast: only the cache is read
        config = AutoConfig.from_pretrained(name, local_files_only=True)
    except (OSError, ValueError):  # not cached, not a repo id, or a model type transformers lacks
        return None
    return name if config.model_type in FAMILIES else None


class HFCLIP(FrozenCLIP):
    """A frozen transformers CLIPModel or SiglipModel with FrozenCLIP's interface. pixels() is
    FrozenCLIP's own (its checks; uint8 arrays through normalise_pixels with this model's mean, std
    and size; PIL images through `preprocess`, here the model's HF image processor)."""

    def __init__(self, name: str, model, tokenizer, image_processor):
        # Not FrozenCLIP.__init__: that one reads open_clip's model.visual.
        self.name = name
        self.model = freeze(model)
        self.tokenizer = tokenizer
        self.tokenizer.padding_side = "right"  # CLIP pools the first end-of-text token: no padding before it
        self.image_processor = image_processor
        self.family = model.config.model_type
        self.image_size = model.config.vision_config.image_size
        self.patch_size = model.config.vision_config.patch_size
        self.mean, self.std = tuple(image_processor.image_mean), tuple(image_processor.image_std)
        self.context_length = model.config.text_config.max_position_embeddings

    def preprocess(self, image) -> torch.Tensor:
        """One RGB PIL image -> [3, S, S], as the model's image processor resizes, crops and normalises."""
        return self.image_processor(images=image, return_tensors="pt")["pixel_values"][0]

    @property
    def embed_dim(self) -> int:
        projection = getattr(self.model, "visual_projection", None)  # CLIP projects; SigLIP's head keeps the width
        return projection.out_features if projection is not None else self.model.config.vision_config.hidden_size

    def _pixel_dtype(self) -> torch.dtype:
        return self.model.vision_model.embeddings.patch_embedding.weight.dtype

    @torch.no_grad()
    def encode_images(self, images, batch_size: int = 512) -> torch.Tensor:
        """[N, embed_dim] float32 on CPU, whatever the model's precision."""
        out = [self.model.get_image_features(pixel_values=x).pooler_output for x in self._batches(images, batch_size)]
        return F.normalize(torch.cat(out).float(), dim=-1).cpu()

    @torch.no_grad()
    def encode_images_and_patches(self, images, min_grid: int = 4,
                                  batch_size: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
        """In one pass of the vision tower: the embeddings [N, embed_dim] (as encode_images gives them)
        and the final patch tokens [N, grid * grid, C] (row-major), each L2-normalised, float32 on CPU."""
        grid = self.image_size // self.patch_size
        if grid < min_grid:
            raise ValueError(f"{self.name}: its patch grid is {grid}x{grid}, smaller than {min_grid}x{min_grid}")
        embeddings, patches = [], []
        for x in self._batches(images, batch_size):
            out = self.model.get_image_features(pixel_values=x)
            embeddings.append(F.normalize(out.pooler_output.float(), dim=-1).cpu())
            # The patch tokens are the last grid*grid: CLIP's CLS token comes first, SigLIP has none.
            tokens = out.last_hidden_state[:, -grid * grid:]
            patches.append(F.normalize(tokens.float(), dim=-1).cpu())
        return torch.cat(embeddings), torch.cat(patches)

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        """Token ids [N, L], padded as the model was trained (see the module docstring)."""
        padding = "max_length" if self.family == "siglip" else "longest"
        return self.tokenizer(texts, padding=padding, truncation=True, max_length=self.context_length,
                              return_tensors="pt")["input_ids"]

    @torch.no_grad()
    def encode_texts(self, texts: list[str], batch_size: int = 512) -> torch.Tensor:
        """[N, embed_dim] float32 on CPU. No attention mask: CLIP's causal mask already keeps the
        padding after its pooled token out, and SigLIP was trained without one."""
        check_texts(texts)
        out = [self.model.get_text_features(input_ids=self.tokenize(texts[i:i + batch_size]).to(self.device))
               .pooler_output.float() for i in range(0, len(texts), batch_size)]
        return F.normalize(torch.cat(out), dim=-1).cpu()


def load_hf_clip(name_or_path: str, device: str = "cpu", dtype: torch.dtype = torch.float32) -> HFCLIP:
    """A frozen CLIPModel or SiglipModel with its tokenizer and image processor, from a local folder
    or the local HF cache (no download: HF_HUB_OFFLINE is set), in `dtype` on `device`."""
    from transformers import AutoConfig, AutoImageProcessor, AutoTokenizer, CLIPModel, SiglipModel

    local = Path(name_or_path).expanduser()
    source = str(local) if local.exists() else name_or_path
    if local.exists() and not (local / "config.json").is_file():
        raise BackboneNotFoundError(f"{local} has no config.json: not a Hugging Face model folder")
    if not local.exists() and name_or_path.startswith(("/", ".", "~")):
        raise BackboneNotFoundError(f"CLIP model folder {local} does not exist")
    _hide_hf_progress_bars()
    try:
        config = AutoConfig.from_pretrained(source, local_files_only=True)
        if config.model_type not in FAMILIES:
            raise ValueError(f"{name_or_path} is a {config.model_type!r} model, not one of {', '.join(FAMILIES)}")
        model_class = CLIPModel if config.model_type == "clip" else SiglipModel
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
        image_processor = AutoImageProcessor.from_pretrained(source, local_files_only=True)
        model = model_class.from_pretrained(source, local_files_only=True, dtype=dtype)
    except OSError as e:  # transformers' word for "not here" (a missing cache entry or file)
        raise not_available_offline("CLIP model", "clip_model", name_or_path, local, e, prefix="hf:") from None
    return HFCLIP(name_or_path, model.to(device), tokenizer, image_processor)
