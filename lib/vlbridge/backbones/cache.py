"""Built artefacts (pretrained stand-in backbones) cached under a hash of the recipe that made
them: a chapter asking for the same recipe loads it; a changed recipe builds anew."""
from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path

from ..paths import cache_root, replace_path

CACHE_FORMAT = 1  # bump when the layout of a cached artefact changes


def recipe_hash(recipe: dict) -> str:
    canonical = json.dumps({"format": CACHE_FORMAT, "recipe": recipe}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def cached_path(kind: str, recipe: dict) -> Path:
    return cache_root() / "backbones" / f"{kind}-{recipe_hash(recipe)}"


def build_cached(kind: str, recipe: dict, build) -> Path:
    """The cached folder for `recipe`, calling build(folder) into a staging folder first if it is
    missing. A build that fails or is interrupted leaves nothing in the cache."""
    final = cached_path(kind, recipe)
    if (final / "recipe.json").is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.building-"))
    try:
        build(stage)
        # recipe.json last: its presence marks a complete build.
        (stage / "recipe.json").write_text(json.dumps(recipe, indent=2, sort_keys=True) + "\n")
        replace_path(stage, final)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return final
