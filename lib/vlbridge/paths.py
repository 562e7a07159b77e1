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


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private (0600); a result is for everyone to read
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


def process_alive(pid: int) -> bool:
    """Whether process `pid` exists on this machine. Staging folders carry the pid of the run that
    writes them: one whose process is gone is a leftover of a killed run; one whose process lives is
    another run's work in progress, which no cleanup may touch."""
    if pid <= 0:  # os.kill(0, ...) would signal our own process group
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:  # another user's process
        return True
    return True


def stale_staging(folder: Path, pattern: str, ours_too: bool = False) -> list[Path]:
    """The entries of `folder` whose names match `pattern` (a regular expression with a group named
    pid) and whose process is gone. `ours_too`: count this process's own as gone, for a caller that
    knows it has none in progress (a pid is reused, and a leftover may carry ours)."""
    try:
        entries = sorted(Path(folder).iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []
    stale = []
    for path in entries:
        match = re.fullmatch(pattern, path.name)
        if match and ((ours_too and int(match["pid"]) == os.getpid()) or not process_alive(int(match["pid"]))):
            stale.append(path)
    return stale


def remove_path(path: Path) -> None:
    """Delete a file or folder; one that another cleanup deletes at the same time is no error."""
    def already_gone(function, name, excinfo):
        if not isinstance(excinfo[1], FileNotFoundError):
            raise excinfo[1]

    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, onerror=already_gone)
    else:
        path.unlink(missing_ok=True)


def remove_stale_staging(folder: Path, pattern: str) -> list[Path]:
    """Delete stale_staging(folder, pattern): what killed runs left there. Returns what it deleted."""
    stale = stale_staging(folder, pattern)
    for path in stale:
        remove_path(path)
    return stale


def new_staging(final: Path, kind: str) -> Path:
    """A new folder beside `final` to build it in, named .<final's name>.<kind>-<pid>-<random>, made
    after deleting what killed runs left beside it: such folders of any entry, and replace_path's
    .<name>.old-<pid>. Without the pid in its name a leftover could not be told from the work of a
    run still going."""
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(final.parent, rf"\..+\.{re.escape(kind)}-(?P<pid>\d+)-[a-z0-9_]+")
    remove_stale_staging(final.parent, r"\..+\.old-(?P<pid>\d+)")
    return Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.{kind}-{os.getpid()}-"))
