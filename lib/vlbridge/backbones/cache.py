"""Built artefacts (pretrained stand-in backbones) cached under a hash of the recipe that made
them and of the code that turns a recipe into weights (the world, the corpus, the training loops):
a chapter asking for the same recipe loads it; a changed recipe, or changed code, builds anew."""
from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from functools import lru_cache
from pathlib import Path

import torch

from ..paths import cache_root, new_staging, replace_path

CACHE_FORMAT = 2  # bump when the layout of a cached artefact changes (2: manifest.json with checksums)
BUILD_THREADS = 2  # torch threads of every build (the thread count the published stand-ins were built with)
_PACKAGE = Path(__file__).resolve().parents[1]
_BUILD_CODE = ("world", "backbones")  # the packages whose code decides what a recipe builds


@lru_cache(maxsize=1)
def code_fingerprint() -> str:
    digest = hashlib.sha256()
    for folder in _BUILD_CODE:
        for path in sorted((_PACKAGE / folder).rglob("*")):
            if path.suffix in (".py", ".json"):
                digest.update(path.relative_to(_PACKAGE).as_posix().encode() + path.read_bytes())
    return digest.hexdigest()[:12]


def recipe_hash(recipe: dict) -> str:
    canonical = json.dumps({"format": CACHE_FORMAT, "code": code_fingerprint(), "recipe": recipe},
                           sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def cached_path(kind: str, recipe: dict) -> Path:
    return cache_root() / "backbones" / f"{kind}-{recipe_hash(recipe)}"


MANIFEST = "manifest.json"  # written last: the recipe and every file's size and sha256


def _checksums(folder: Path) -> dict[str, list]:
    return {p.relative_to(folder).as_posix(): [p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest()]
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MANIFEST}


def damage(folder: Path) -> str:
    """What is wrong with a cached entry ('' if it is whole): a missing manifest (an old or broken
    build), or a file missing, added or changed since it was built."""
    try:
        expected = json.loads((folder / MANIFEST).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return f"{MANIFEST} is missing or unreadable"
    found = _checksums(folder)
    changed = sorted(name for name in expected.keys() | found.keys() if expected.get(name) != found.get(name))
    return f"{', '.join(changed)} differ from what was built" if changed else ""


def build_cached(kind: str, recipe: dict, build) -> Path:
    """The cached folder for `recipe`, calling build(folder) into a staging folder first if it is
    missing. A build that fails or is interrupted leaves nothing in the cache; an entry damaged since
    (a file deleted, truncated or edited) is built again, with a warning that names it."""
    final = cached_path(kind, recipe)
    if final.exists():
        problem = damage(final)
        if not problem:
            return final
        warnings.warn(f"the cached {kind} at {final} is damaged ({problem}); building it again", stacklevel=2)
    final.parent.mkdir(parents=True, exist_ok=True)
    stage = new_staging(final, "building")  # first removes what killed builds left beside it
    threads = torch.get_num_threads()
    try:
        # A build's weights depend on the thread count (sums run in another order), so every build
        # uses the same one: a stand-in is then the same whoever builds it (a test on 1 thread too).
        torch.set_num_threads(BUILD_THREADS)
        build(stage)
        (stage / "recipe.json").write_text(json.dumps(recipe, indent=2, sort_keys=True) + "\n")
        (stage / MANIFEST).write_text(json.dumps({"recipe": recipe, "files": _checksums(stage)}, indent=1) + "\n")
        replace_path(stage, final)
    finally:
        torch.set_num_threads(threads)
        shutil.rmtree(stage, ignore_errors=True)
    return final
