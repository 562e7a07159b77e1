"""The book runner: read a chapter's percent .py with jupytext, execute it with papermill, and put
its notebook and outputs into results/<profile>/ in one step, or not at all (publishing.py: also after
a kill, which the next run recovers from)."""
from __future__ import annotations

import datetime as dt
import importlib.metadata
import os
import platform
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from .. import kernel_environment
from ..paths import atomic_write_json, profile_folder, repo_root
from ..repro import progress_enabled
from . import config, publishing

# Recorded in run.json: at least every package constraints/cpu-reference.txt pins (a test checks it).
VERSIONED_PACKAGES = ("vlbridge", "torch", "torchvision", "transformers", "tokenizers", "open_clip_torch",
                      "numpy", "safetensors", "peft", "pillow", "pycocoevalcap", "matplotlib",
                      "papermill", "jupytext", "nbval", "playwright")


SCRATCH = "scratch"  # results/scratch/: runs with --set that were not asked to publish


class RunError(RuntimeError):
    """A chapter failed to execute; the message says which cell and where the failed notebook is."""


@contextmanager
def _environment(values: dict[str, str]):
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _git(*args: str) -> str:
    try:
        out = subprocess.run(["git", *args], cwd=repo_root(), capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.rstrip() if out.returncode == 0 else ""  # (not lstrip: porcelain lines start with a space)


# What decides a result; results/ is what runs write, so a tree whose only changes are published
# results is clean.
SOURCE_PATHS = ("lib", "book", "params", "pyproject.toml")


def changed_sources() -> list[str]:
    """The source files (SOURCE_PATHS) that differ from the commit: changed, added or untracked."""
    lines = _git("status", "--porcelain", "--untracked-files=all", "--", *SOURCE_PATHS).splitlines()
    return sorted(line[3:].split(" -> ")[-1] for line in lines if line.strip())


def _versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_record(chapter: str, profile: str, params: dict, started: float, duration: float) -> dict:
    changed = changed_sources()
    return {
        "chapter": chapter,
        "profile": profile,
        "params": params,
        "git_sha": _git("rev-parse", "HEAD") or "unknown",
        "git_dirty": bool(changed),
        "git_changed": changed,  # what a dirty run's result also depends on
        "versions": _versions(),
        "device": params.get("device", "cpu"),
        "threads": params.get("threads"),
        "cpu": _cpu(),
        "started_at": dt.datetime.fromtimestamp(started, dt.timezone.utc).isoformat(timespec="seconds"),
        "duration_s": round(duration, 2),
    }


def _failed_cell(error, notebook_path: Path) -> str:
    """'cell 7 (execution count 5)' for a papermill execution error, from the failed notebook."""
    import nbformat

    try:
        nb = nbformat.read(notebook_path, as_version=4)
        for index, cell in enumerate(nb.cells):
            if cell.cell_type == "code" and any(o.get("output_type") == "error" for o in cell.get("outputs", [])):
                first = cell.source.strip().splitlines()[0] if cell.source.strip() else ""
                return f"cell {index} (execution count {cell.execution_count}, starting {first!r})"
    except Exception:  # the notebook may not exist if the kernel never started
        pass
    return f"execution count {getattr(error, 'exec_count', '?')}"


def _quiet_kernel_manager():
    """jupyter_client interrupts a kernel (SIGINT) before asking it to shut down; a kernel still
    finishing its reply to the last cell logs 'KeyboardInterrupt caught in kernel.' as an ERROR after
    a run that succeeded. At shutdown the chapter has finished or failed: there is nothing to
    interrupt. (A cell that runs past a timeout is still interrupted: that is not a shutdown.)"""
    from jupyter_client import AsyncKernelManager

    class QuietKernelManager(AsyncKernelManager):
        async def _async_interrupt_kernel(self):
            if not self.shutting_down:
                await super()._async_interrupt_kernel()

    return QuietKernelManager


def results_for(overrides=(), out_root: Path | None = None, publish: bool = False) -> Path:
    """Where a run's results go: `out_root` if given; else results/, the published book, unless the
    run changes parameters with --set and was not asked to publish: then results/scratch/, so that an
    experiment never replaces what the book shows (and chapter 6 scores)."""
    if out_root:
        return Path(out_root)
    published = repo_root() / "results"
    return published / SCRATCH if overrides and not publish else published


def run_chapter(chapter: str, profile: str, overrides=(), out_root: Path | None = None,
                show_progress: bool | None = None, publish: bool = False) -> Path:
    """Execute one chapter; returns the path of its notebook in results_for(...)/<profile>/."""
    import jupytext
    import papermill
    from papermill.exceptions import PapermillExecutionError

    chapter = config.resolve_chapter(chapter)
    params = config.merged_parameters(chapter, profile, overrides)  # checks the profile name, too
    folder = profile_folder(profile)
    out_root = results_for(overrides, out_root, publish)
    final_dir = out_root / folder
    final_dir.mkdir(parents=True, exist_ok=True)
    recovered = publishing.recover(out_root)  # what killed runs left: a publish to finish, staging to delete
    if recovered:
        print(f"vlbridge: {recovered}", file=sys.stderr)
    staging = publishing.staging_folder(out_root, folder, chapter)
    staged_notebook = staging / folder / f"{chapter}.ipynb"
    staged_notebook.parent.mkdir(parents=True)
    show = progress_enabled() and sys.stderr.isatty() if show_progress is None else show_progress

    notebook = jupytext.read(config.chapter_path(chapter))
    env = kernel_environment(params.get("threads", 2)) | {"VLBRIDGE_RESULTS": str(staging)}
    started = time.time()
    try:
        with _environment(env):
            papermill.execute_notebook(
                notebook, str(staged_notebook), parameters=params, kernel_name="python3", language="python",
                cwd=str(repo_root()), log_output=False, progress_bar=show,
                # ipykernel warns at every start that its local TCP sockets are unencrypted; errors still show
                extra_arguments=["--IPKernelApp.log_level=ERROR"], kernel_manager_class=_quiet_kernel_manager(),
            )
    except PapermillExecutionError as e:
        failed = out_root / f".failed-{folder}-{chapter}"
        shutil.rmtree(failed, ignore_errors=True)
        os.replace(staging, failed)
        failed_notebook = failed / folder / staged_notebook.name
        raise RunError(
            f"chapter {chapter} (profile {profile}) failed in {_failed_cell(e, failed_notebook)}: "
            f"{e.ename}: {e.evalue}\nthe previous results in {final_dir} are unchanged; "
            f"the failed notebook is {failed_notebook}"
        ) from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    outputs = staging / folder / chapter
    outputs.mkdir(exist_ok=True)
    atomic_write_json(outputs / "run.json", run_record(chapter, profile, params, started, time.time() - started))
    return publishing.publish(staging, folder, chapter)


def run_chapters(names: list[str], profile: str, overrides=(), out_root: Path | None = None,
                 show_progress: bool | None = None, publish: bool = False) -> list[Path]:
    """Run chapters in order ('all' = the whole book); validates all of them before running any."""
    selected = config.chapters() if names == ["all"] else [config.resolve_chapter(n) for n in names]
    wanted = config.parse_overrides(overrides)
    declared = {c: config.chapter_parameters(c) for c in selected}
    for key in wanted:
        if not any(key in d for d in declared.values()):
            allowed = sorted({k for d in declared.values() for k in d})
            raise config.ConfigError(f"--set: unknown key {key!r}; allowed keys are: {', '.join(allowed)}")
    # Each chapter gets the overrides it declares (a seed for all, a step count for one).
    per_chapter = {c: [o for o in overrides if o.partition("=")[0].strip() in declared[c]] for c in selected}
    for chapter in selected:
        config.merged_parameters(chapter, profile, per_chapter[chapter])
    return [run_chapter(c, profile, per_chapter[c], out_root, show_progress, publish) for c in selected]
