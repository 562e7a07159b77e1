"""Frozen backbones by name: open_clip or transformers CLIP/SigLIP models and Hugging Face causal
LMs, or the microworld's stand-ins, which are built from a recipe (configs as data, in recipes/),
pretrained here once, cached under a hash of the recipe, and then loaded through exactly the same
code as real ones.

    load_clip("micro-clip")            # built-in recipe: pretrain if not cached, then load
    load_clip("ViT-L-14/openai")       # open_clip architecture/weights tag (must be in the HF cache)
    load_clip("local-dir:/models/clip")
    load_clip("hf:openai/clip-vit-base-patch32")     # transformers CLIPModel / SiglipModel: 'hf:' + HF name
    load_clip("hf:/models/siglip-base-patch16-224")  # or + folder; without 'hf:', see load_clip
    load_lm("micro-lm")
    load_lm("facebook/opt-6.7b")       # HF name (from the local cache) or a local folder
    load_lm("facebook/opt-6.7b", "cuda", dtype="bfloat16")   # float32 (default) | bfloat16 | float16
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from .cache import build_cached, cached_path
from .clip import FrozenCLIP, load_open_clip, pretrain_micro_clip
from .corpus import DOCUMENT_KINDS, lm_documents
from .freeze import freeze, is_frozen
from .hf_clip import HFCLIP, hf_source, load_hf_clip
from .lm import BackboneNotFoundError, FrozenLM, load_hf_lm, pretrain_micro_lm
from .tokenizer import train_tokenizer

RECIPES_DIR = Path(__file__).with_name("recipes")
MICRO_KINDS = ("micro-clip", "micro-lm")


def builtin_recipes() -> list[str]:
    return sorted(p.stem for p in RECIPES_DIR.glob("*.json"))


def recipe(name: str) -> dict | None:
    """The recipe a stand-in name refers to (a built-in name, or a path to a recipe .json), else None."""
    path = RECIPES_DIR / f"{name}.json" if name in builtin_recipes() else Path(name)
    if path.suffix != ".json":
        return None
    if not path.is_file():
        raise BackboneNotFoundError(
            f"recipe file {path} does not exist; built-in recipes: {', '.join(builtin_recipes())}")
    data = json.loads(path.read_text())
    if data.get("kind") not in MICRO_KINDS:
        raise ValueError(f"{path}: 'kind' must be one of {', '.join(MICRO_KINDS)}, got {data.get('kind')!r}")
    return data


def micro_tokenizer(spec: dict):
    """The word-level tokenizer a recipe names, trained on microworld text and cached."""
    from transformers import AutoTokenizer

    def build(folder: Path) -> None:
        every_kind = {kind: 1.0 for kind in DOCUMENT_KINDS}  # all words, whatever mix a recipe trains on
        train_tokenizer(lm_documents(0, spec["documents"], every_kind, spec["seed"])).save_pretrained(folder)

    return AutoTokenizer.from_pretrained(build_cached("tokenizer", spec, build))


def _built(name: str, device: str) -> Path | None:
    """The cached folder of a stand-in (pretraining it first if needed), or None for real models."""
    spec = recipe(name)
    if spec is None:
        return None
    keyed = spec | ({"device": device} if device != "cpu" else {})
    pretrain = pretrain_micro_clip if spec["kind"] == "micro-clip" else pretrain_micro_lm
    tokenizer = micro_tokenizer(spec["tokenizer"])
    return build_cached(spec["kind"], keyed, lambda folder: _pretrain_aside(pretrain, spec, tokenizer, folder, device))


def _pretrain_aside(pretrain, spec: dict, tokenizer, folder: Path, device: str) -> None:
    """Pretrain in forked random streams: a chapter that builds a stand-in must draw what follows
    exactly as one that loads it from the cache (it once drew other initial weights, and so other
    results, depending on whether the cache was warm)."""
    cuda = [torch.device(device).index or 0] if torch.device(device).type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        pretrain(spec, tokenizer, folder, device)


# Weight precisions a profile may ask for: torch dtypes for the LM, open_clip's precision names for
# CLIP ("bf16" there is OpenAI's mixed precision: matrices in bf16, layer norms in fp32).
DTYPES = ("float32", "bfloat16", "float16")
_OPEN_CLIP_PRECISION = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}


def _checked_dtype(dtype: str) -> str:
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    return dtype


def load_clip(name: str, device: str = "cpu", dtype: str = "float32") -> FrozenCLIP:
    """A frozen CLIP in `dtype` on `device`, by the first rule that fits its name:
    1. a stand-in recipe ('micro-clip', or a path to a recipe .json): pretrained if not cached;
    2. transformers (CLIPModel or SiglipModel, as HFCLIP): 'hf:org/repo' or 'hf:/a/folder' always;
       without the prefix, a folder whose config.json has model_type clip or siglip and that has no
       open_clip_config.json, or a name whose clip/siglip config.json is in the local HF cache;
    3. open_clip, as before: 'ARCH/TAG', 'local-dir:/folder', 'hf-hub:org/repo', or a folder.
    So an HF name not in the cache goes to open_clip, whose error is about open_clip: write 'hf:'
    for transformers' (what to download, and where). Either kind returns FrozenCLIP's interface.
    bfloat16/float16: open_clip keeps its layer norms in float32, transformers casts every weight."""
    precision = _OPEN_CLIP_PRECISION[_checked_dtype(dtype)]
    folder = _built(name, device)
    source = None if folder else hf_source(name)
    if source is not None:
        clip = load_hf_clip(source, device=device, dtype=getattr(torch, dtype))
    else:
        clip = load_open_clip(f"local-dir:{folder}" if folder else name, device=device, precision=precision)
    clip.name = name
    return clip


def load_lm(name: str, device: str = "cpu", dtype: str = "float32") -> FrozenLM:
    torch_dtype = getattr(torch, _checked_dtype(dtype))
    folder = _built(name, device)
    lm = load_hf_lm(str(folder) if folder else name, dtype=torch_dtype)
    lm.model.to(device)
    lm.name = name
    return lm


def training_log(name: str, device: str = "cpu") -> dict:
    """The pretraining log (per-step loss, seconds) of a stand-in, building it if needed."""
    return json.loads((_built(name, device) / "training_log.json").read_text())


__all__ = [
    "DTYPES", "BackboneNotFoundError", "FrozenCLIP", "FrozenLM", "HFCLIP", "builtin_recipes", "cached_path", "freeze",
    "is_frozen", "load_clip", "load_lm", "micro_tokenizer", "recipe", "training_log",
]
