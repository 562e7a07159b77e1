"""Trained models that later chapters load (chapter 6 scores every method's models side by side).

They live in the cache, not in results/: a FROMAGe bridge on patch tokens is 18 MB, too big to commit
with every run. An entry is keyed by the chapter that trained it, a name, and a hash of that chapter's
parameters and of the code that builds the stand-in backbones, so a run with other parameters
(`--set steps=10`) is saved beside the profile's own, never over it, and a later chapter asks for
the entry its profile's parameters make.

An entry is a folder: what the model's own `save` writes, and record.json (the chapter's parameters
and what the chapter reports about the training: seconds, labels used). It is written to a staging
folder and renamed into place, so it is whole or absent; the staging folder carries the saving
process's pid, so that a later save deletes one a killed run left (paths.new_staging).
"""
from __future__ import annotations

import hashlib
import json
import shutil
from functools import lru_cache
from pathlib import Path

from ..backbones.cache import code_fingerprint
from ..paths import atomic_write_json, cache_root, new_staging, replace_path
from . import config

RECORD = "record.json"


class NotTrainedError(FileNotFoundError):
    """No entry for these parameters: the chapter that trains it has not run with them."""


def chapter_params(chapter: str, namespace: dict) -> dict:
    """The values of `chapter`'s declared parameters in a running chapter's `namespace` (its globals())."""
    declared = config.chapter_parameters(config.resolve_chapter(chapter))
    missing = [name for name in declared if name not in namespace]
    if missing:
        raise ValueError(f"chapter {chapter}'s parameters {missing} are not defined here; pass the chapter's globals()")
    return {name: namespace[name] for name in declared}


def entry_dir(chapter: str, name: str, params: dict) -> Path:
    canonical = json.dumps({"params": params, "backbone_code": code_fingerprint()}, sort_keys=True,
                           separators=(",", ":"))
    return cache_root() / "trained" / chapter / f"{name}-{hashlib.sha256(canonical.encode()).hexdigest()[:12]}"


@lru_cache(maxsize=1)
def training_code() -> str:
    """A hash of the library's code outside book/: what builds, trains and saves a model. A chapter
    loads a stored model only if it was trained by this code (recipes.obtain); chapter 6 reads
    entries by parameters alone, since it runs after the chapters that saved them. Hashed once a
    process, at its first use (before a model is looked up or trained): a file edited while the
    process trains must not label the model it saves as trained by the edit."""
    package = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        if path.relative_to(package).parts[0] != "book":
            digest.update(path.relative_to(package).as_posix().encode() + path.read_bytes())
    return digest.hexdigest()[:12]


def save_trained(chapter: str, name: str, params: dict, save, record: dict | None = None) -> Path:
    """Call save(folder) into a staging folder, add record.json, and put it in place as the entry for
    (chapter, name, params). Returns the entry's folder."""
    final = entry_dir(chapter, name, params)
    stage = new_staging(final, "saving")  # deletes what killed saves left beside it first
    try:
        save(stage)
        atomic_write_json(stage / RECORD, {"chapter": chapter, "name": name, "params": params, **(record or {})})
        replace_path(stage, final)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return final


# Where a run happens, not what it trains: a chapter that loads another's models asks for the ones
# trained on its own device and threads (`vlbridge run all --set device=cuda` trains and loads on the GPU).
PLACEMENT = ("device", "threads")


def trained(chapter: str, name: str, profile: str, **placement) -> Path:
    """The entry `name` that `chapter` saved when run with `profile`'s parameters (no --set but the
    `placement` keys given: device, threads)."""
    unknown = set(placement) - set(PLACEMENT)
    if unknown:
        raise ValueError(f"store.trained takes only placement keys ({', '.join(PLACEMENT)}), got {sorted(unknown)}")
    chapter = config.resolve_chapter(chapter)
    params = config.merged_parameters(chapter, profile)
    moved = {key: value for key, value in placement.items() if key in params and params[key] != value}
    params |= moved
    folder = entry_dir(chapter, name, params)
    if not (folder / RECORD).is_file():
        raise NotTrainedError(
            f"no {name!r} trained by chapter {chapter} with the {profile!r} profile's parameters in {folder.parent}: "
            f"run `vlbridge run {chapter} --profile {profile}{''.join(f' --set {k}={v}' for k, v in moved.items())}` "
            "first (it saves it there), or the whole book")
    read_record(folder)  # a damaged entry is an error that says what to do, not a model that fails later
    return folder


def read_record(folder) -> dict:
    """An entry's record.json; one that is not a JSON object (a truncated copy, an edit) is a
    NotTrainedError naming the folder to delete and the chapter to run again."""
    path = Path(folder) / RECORD
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        record = e
    if not isinstance(record, dict) or "chapter" not in record:
        raise NotTrainedError(f"{path} is damaged ({record!r:.80}): delete {Path(folder)} and run the chapter that "
                              "saved it again")
    return record
