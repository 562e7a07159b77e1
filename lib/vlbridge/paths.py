"""Where things live: the repository, results, the cache; and writes that never leave half a file."""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path


class ProjectNotFoundError(RuntimeError):
    pass


def _looks_like_repo(path: Path) -> bool:
    return (path / "book").is_dir() and (path / "params").is_dir()


def repo_root() -> Path:
    """The book's repository: $VLBRIDGE_ROOT, else the checkout this package is installed from
    (editable install), else the nearest parent of the working directory holding book/ and params/."""
    if "VLBRIDGE_ROOT" in os.environ:
        return Path(os.environ["VLBRIDGE_ROOT"]).resolve()
    candidates = [Path(__file__).resolve().parents[2], *[Path.cwd(), *Path.cwd().parents]]
    for path in candidates:
        if _looks_like_repo(path):
            return path
    raise ProjectNotFoundError(
        "cannot find the vlbridge repository (a folder with book/ and params/); "
        "run from inside the checkout or set VLBRIDGE_ROOT"
    )


def results_root() -> Path:
    """Where chapters write results: $VLBRIDGE_RESULTS (the runner points it at a staging folder;
    tests at a temporary one), else <repo>/results."""
    env = os.environ.get("VLBRIDGE_RESULTS")
    return Path(env).resolve() if env else repo_root() / "results"


def cache_root() -> Path:
    """Pretrained stand-in backbones and other reusable artefacts: $VLBRIDGE_CACHE, else
    $XDG_CACHE_HOME/vlbridge, else ~/.cache/vlbridge."""
    env = os.environ.get("VLBRIDGE_CACHE")
    if env:
        return Path(env).resolve()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "vlbridge"


PROFILE_FILE_SUFFIXES = (".yaml", ".yml")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


class ProfileNameError(ValueError):
    """A profile that is neither a name nor a .yaml file: it would become a path outside results/."""


def profile_folder(profile: str) -> str:
    """The folder name a profile's results are filed under: the profile's name, or a custom profile
    file's stem. Anything else (a path, '..', an empty name) is a ProfileNameError: results, staging
    and failed runs are all placed (and removed) by this name."""
    is_file = profile.endswith(PROFILE_FILE_SUFFIXES)
    name = Path(profile).stem if is_file else profile
    if not _NAME.fullmatch(name) or set(name) == {"."}:
        raise ProfileNameError(
            f"profile {profile!r} is not a profile name (letters, digits, '_', '-', '.'; no '/'), nor a path to a "
            f"profile file ending in {' or '.join(PROFILE_FILE_SUFFIXES)} whose name is one")
    return name


def chapter_dir(profile: str, chapter: str) -> Path:
    path = results_root() / profile_folder(profile) / chapter
    path.mkdir(parents=True, exist_ok=True)
    return path


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def replace_path(new: Path, final: Path) -> None:
    """Put `new` (file or folder) at `final`, replacing what was there."""
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, old)
    os.replace(new, final)
    if old is not None:
        shutil.rmtree(old) if old.is_dir() else old.unlink()
