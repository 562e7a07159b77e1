"""Publishing a chapter's results in one step, across crashes and kills.

A run stages its results in <out>/.staging-<profile>-<chapter>-<pid>/<profile>/: the notebook, the
chapter's folder (metrics.json, run.json, figures/) and any files the chapter writes beside them (a
scoreboard). Those are several paths, so no single rename swaps them all. A journal makes the swap
all-or-nothing: once everything is staged, the run writes a marker (.publishing.json, atomically)
into its staging folder; then, path by path, moves the published one aside (into the staging
folder's .old/) and the staged one in; then deletes the staging folder, old results with it.

The next run (of any chapter, into the same <out>) first recovers what killed runs left: a staging
folder whose process is gone is rolled forward if it holds the marker (everything was staged and the
swap had begun, so finishing it gives the new results) and deleted if not (the old results are
untouched). Either way a reader ends up with the old results or the new ones, never a mix.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from ..paths import atomic_write_json, profile_folder, remove_path, stale_staging

MARKER = ".publishing.json"  # names cannot clash with a profile's folder: those never start with '.'
ASIDE = ".old"
STAGING = r"\.staging-.+-(?P<pid>\d+)"


def staging_folder(out_root: Path, folder: str, chapter: str) -> Path:
    return Path(out_root) / f".staging-{folder}-{chapter}-{os.getpid()}"


def publish(staging: Path, folder: str, chapter: str) -> Path:
    """Put the results staged in staging/<folder>/ into <out>/<folder>/ (out: the staging folder's
    parent), replacing the old ones; returns the published notebook."""
    staged = staging / folder
    notebook = f"{chapter}.ipynb"
    beside = sorted(p.name for p in staged.iterdir()  # files a chapter writes beside its folder (a scoreboard)
                    if p.is_file() and p.name != notebook and not p.name.startswith("."))
    plan = {"folder": folder, "chapter": chapter, "names": [notebook, chapter, *beside]}
    atomic_write_json(staging / MARKER, plan)  # the commit point: from here on the new results win
    _roll_forward(staging, plan)
    return staging.parent / folder / notebook


def _plan(staging: Path) -> dict:
    """The marker's content, checked: it names paths to move, so one that publish did not write (an
    edit, a damaged disk) is a ValueError, not a move."""
    path = staging / MARKER
    try:
        plan = json.loads(path.read_text())
        folder, names = plan["folder"], plan["names"]
        plain = all(isinstance(n, str) and n and n == Path(n).name and not n.startswith(".") for n in names)
        if plain and len(names) >= 2 and names[1] == plan["chapter"] and profile_folder(folder) == folder:
            return plan
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    raise ValueError(f"{path} is damaged")


def _roll_forward(staging: Path, plan: dict) -> None:
    """Finish a publish whose marker is written. A staged path still there is not in place yet: the
    published one (old, since the new one is still staged) goes aside, the staged one in. Every step
    is a rename that this skips once done, so a publish killed at any step is finished by this."""
    staged, final, aside = staging / plan["folder"], staging.parent / plan["folder"], staging / ASIDE
    final.mkdir(parents=True, exist_ok=True)
    aside.mkdir(exist_ok=True)
    for name in plan["names"]:
        if os.path.lexists(staged / name):
            if os.path.lexists(final / name):
                os.replace(final / name, aside / name)
            os.replace(staged / name, final / name)
    (staging / MARKER).unlink()
    remove_path(staging)


def recover(out_root: Path) -> str:
    """Finish or discard what killed runs left in out_root (see the module's docstring); returns one
    line saying what it did, '' if nothing. Call it before this process stages anything there: a
    staging folder carrying this process's pid is then a leftover of an earlier process."""
    finished, removed, damaged = [], [], []
    for staging in stale_staging(out_root, STAGING, ours_too=True):
        if not (staging / MARKER).exists():
            remove_path(staging)
            removed.append(staging.name)
            continue
        try:
            plan = _plan(staging)
        except ValueError:
            damaged.append(str(staging / MARKER))
            continue
        _roll_forward(staging, plan)
        finished.append(f"{plan['folder']}/{plan['chapter']}")
    said = []
    if finished:
        said.append(f"finished publishing {', '.join(finished)} (a killed run had begun it)")
    if removed:
        said.append(f"removed the staging of {len(removed)} killed run(s) ({', '.join(removed)})")
    if damaged:
        said.append(f"left {', '.join(damaged)} alone: it is damaged; check the results and delete its folder")
    return f"recovered {out_root}: {'; '.join(said)}" if said else ""
