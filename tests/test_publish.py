"""Publishing is one step (issue 18, class 4): a run killed at any moment leaves the old results or
the new ones, never a mix, and the next run cleans what it left (book/publishing.py)."""
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vlbridge.book import publishing
from vlbridge.paths import new_staging, process_alive, remove_path, remove_stale_staging, stale_staging


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    assert not process_alive(process.pid)
    return process.pid


def snapshot(folder: Path) -> dict:
    """Every file under `folder` (hidden ones too) and its bytes: two equal snapshots are equal trees."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def write_tree(folder: Path, files: dict) -> None:
    for name, content in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(content)


OLD = {"smoke/01_microworld.ipynb": b"old notebook", "smoke/01_microworld/metrics.json": b'{"run": "old"}',
       "smoke/01_microworld/run.json": b'{"started_at": "old"}', "smoke/01_microworld/figures/a.png": b"old a",
       "smoke/01_microworld/figures/gone.png": b"only the old run drew this", "smoke/scoreboard.md": b"old board",
       "smoke/02_backbones.ipynb": b"another chapter, untouched"}
NEW = {"smoke/01_microworld.ipynb": b"new notebook", "smoke/01_microworld/metrics.json": b'{"run": "new"}',
       "smoke/01_microworld/run.json": b'{"started_at": "new"}', "smoke/01_microworld/figures/a.png": b"new a",
       "smoke/scoreboard.md": b"new board", "smoke/extra.md": b"a file only the new run writes"}


def staged_run(out: Path) -> Path:
    """out/ holding OLD results and a run's staging folder holding NEW ones, ready to publish."""
    write_tree(out, OLD)
    staging = publishing.staging_folder(out, "smoke", "01_microworld")
    write_tree(staging, NEW)
    return staging


class Killed(BaseException):
    """The process died here: raised by every file operation from the k-th on."""


def die_at(monkeypatch, k: int) -> list:
    """Make the k-th rename or deletion (and every later one) fail as if the process were killed
    before it; returns the list of operations that ran."""
    done = []
    for name in ("replace", "unlink", "rmdir"):
        real = getattr(os, name)

        def operation(*args, _real=real, _name=name, **kwargs):
            if len(done) + 1 >= k:
                raise Killed(f"killed before {_name}{args}")
            done.append((_name, args))
            return _real(*args, **kwargs)

        monkeypatch.setattr(os, name, operation)
    return done


def test_a_publish_killed_at_any_step_is_old_or_new_after_recovery(tmp_path, monkeypatch):
    old_tree = {**OLD}
    new_tree = {**{k: v for k, v in OLD.items() if not k.startswith(("smoke/01_microworld", "smoke/scoreboard"))},
                **NEW}
    k, outcomes = 0, []
    while True:
        k += 1
        out = tmp_path / f"k{k}"
        staging = staged_run(out)
        with monkeypatch.context() as patch:
            done = die_at(patch, k)
            try:
                publishing.publish(staging, "smoke", "01_microworld")
                finished = True
            except Killed:
                finished = False
        committed = any(name == "replace" and Path(args[1]).name == publishing.MARKER for name, args in done)
        said = publishing.recover(out)  # what the next run does first (this process's pid counts as gone)
        tree = snapshot(out)
        assert tree == (new_tree if committed else old_tree), f"killed before step {k}: {said}"
        assert (said != "") == (not finished), said
        outcomes.append("new" if committed else "old")
        if finished:
            break
    # the marker's rename is the commit point: killed before it, old; after it, new
    assert k > 9 and outcomes == ["old"] + ["new"] * (k - 1)


def test_recovery_is_itself_restartable(tmp_path, monkeypatch):
    """A recovery killed half way is finished by the next one."""
    out = tmp_path / "out"
    staging = staged_run(out)
    with monkeypatch.context() as patch:
        die_at(patch, 5)  # in the middle of the moves
        with pytest.raises(Killed):
            publishing.publish(staging, "smoke", "01_microworld")
    with monkeypatch.context() as patch:
        die_at(patch, 3)
        with pytest.raises(Killed):
            publishing.recover(out)
    assert publishing.recover(out).startswith(f"recovered {out}: finished publishing smoke/01_microworld")
    assert snapshot(out)["smoke/01_microworld.ipynb"] == b"new notebook"
    assert sorted(p.name for p in out.iterdir()) == ["smoke"]


def test_recovery_leaves_a_live_runs_staging_and_deletes_a_killed_runs(tmp_path):
    out = tmp_path / "out"
    write_tree(out, OLD)
    live = out / f".staging-smoke-02_backbones-{os.getppid()}"  # pytest's parent: alive
    write_tree(live, {"smoke/02_backbones.ipynb": b"running", publishing.MARKER: b"{}"})
    killed = out / f".staging-paper-esper-03_grounding-{dead_pid()}"
    write_tree(killed, {"paper-esper/03_grounding.ipynb": b"half a run"})
    said = publishing.recover(out)
    assert said == f"recovered {out}: removed the staging of 1 killed run(s) ({killed.name})"
    assert live.is_dir() and not killed.exists()
    assert {k: v for k, v in snapshot(out).items() if k.startswith("smoke/")} == OLD
    assert publishing.recover(out) == ""


def test_a_damaged_marker_is_left_alone_and_named(tmp_path):
    out = tmp_path / "out"
    write_tree(out, OLD)
    for content in (b'{"folder": "smoke", "chap', b'{"folder": "smoke", "chapter": "", "names": ["a", ""]}',
                    b'{"folder": "smoke", "chapter": "x", "names": ["a", "x", "../../etc"]}',
                    b'{"folder": "..", "chapter": "x", "names": ["a", "x"]}'):
        staging = out / f".staging-smoke-01_microworld-{dead_pid()}"
        write_tree(staging, {**NEW, publishing.MARKER: content})
        said = publishing.recover(out)
        assert said == (f"recovered {out}: left {staging / publishing.MARKER} alone: it is damaged; check the "
                        "results and delete its folder")
        assert snapshot(staging)[publishing.MARKER] == content
        assert {k: v for k, v in snapshot(out).items() if not k.startswith(".staging")} == OLD
        remove_path(staging)


def test_new_staging_carries_the_pid_and_deletes_only_what_killed_runs_left(tmp_path):
    final = tmp_path / "trained" / "fromage-0123456789ab"
    final.parent.mkdir(parents=True)
    gone, alive = dead_pid(), os.getppid()
    leftovers = [f".fromage-0123456789ab.saving-{gone}-a1b2c3d4", f".other-entry.saving-{gone}-zz_9xk01",
                 f".fromage-0123456789ab.old-{gone}"]
    kept = [f".fromage-0123456789ab.saving-{alive}-a1b2c3d4",  # another run's save in progress
            ".fromage-0123456789ab.saving-k3j4h5g6",  # made before staging carried a pid: whose, nobody knows
            f".fromage-0123456789ab.building-{gone}-a1b2c3d4", "fromage-0123456789ab"]
    for name in leftovers + kept:
        (final.parent / name).mkdir()
        (final.parent / name / "weights.bin").write_bytes(b"x")
    stage = new_staging(final, "saving")
    assert stage.name.startswith(f".fromage-0123456789ab.saving-{os.getpid()}-")
    assert sorted(p.name for p in final.parent.iterdir()) == sorted(kept + [stage.name])
    assert stale_staging(final.parent, r"\..+\.saving-(?P<pid>\d+)-[a-z0-9_]+") == []  # ours is alive
    cache = tmp_path / "backbones"  # what the cache's stand-in builds would call
    (cache / f".lm-abc.building-{gone}-q1w2e3r4").mkdir(parents=True)
    (cache / f".lm-abc.building-{alive}-q1w2e3r4").mkdir()
    assert remove_stale_staging(cache, r"\..+\.building-(?P<pid>\d+)-[a-z0-9_]+") == [
        cache / f".lm-abc.building-{gone}-q1w2e3r4"]


def test_the_store_saves_through_a_staging_folder_that_names_its_process(tmp_path, monkeypatch):
    from vlbridge.book import config, store

    monkeypatch.setenv("VLBRIDGE_CACHE", str(tmp_path))
    params = config.merged_parameters("03_grounding", "smoke")
    final = store.entry_dir("03_grounding", "fromage", params)
    left = final.parent / f".{final.name}.saving-{dead_pid()}-abcd1234"
    left.mkdir(parents=True)
    seen = []
    folder = store.save_trained("03_grounding", "fromage", params,
                                lambda f: seen.append(f.name) or (f / "bridge.json").write_text("{}"))
    assert seen[0].startswith(f".{final.name}.saving-{os.getpid()}-")
    assert folder == final and sorted(p.name for p in final.parent.iterdir()) == [final.name]


# ---------------------------------------------------------------------------- a real run, killed
def vlbridge_run(out: Path, *args: str, cache: Path) -> subprocess.Popen:
    env = {**os.environ, "VLBRIDGE_CACHE": str(cache)}
    return subprocess.Popen([sys.executable, "-m", "vlbridge", "run", "01", "-p", "smoke", "--no-progress",
                             "--out", str(out), *args], env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def descendants(pid: int) -> list[int]:
    """The processes under `pid` (the kernel papermill starts runs in its own session)."""
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill(process: subprocess.Popen, kernels=()) -> None:
    """SIGKILL the run's process group, and the kernels papermill started in sessions of their own."""
    os.killpg(process.pid, signal.SIGKILL)
    for pid in kernels:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.communicate(timeout=60)


def kill_at(process: subprocess.Popen, moment, out: Path) -> None:
    """Kill the run `moment` seconds after it started, or when it begins publishing (moment
    "publishing": as soon as the marker appears, about a millisecond before the publish ends)."""
    if moment != "publishing":
        try:
            process.wait(timeout=moment)  # it may finish first
        except subprocess.TimeoutExpired:
            kill(process, descendants(process.pid))
        return
    staging = out / f".staging-smoke-01_microworld-{process.pid}"  # the runner is the process we started
    while process.poll() is None and not (staging / "smoke" / "01_microworld" / "run.json").exists():
        time.sleep(0.0002)  # run.json is written after the kernel exits, just before the publish
    while process.poll() is None and not (staging / publishing.MARKER).exists():
        pass
    if process.poll() is None:
        kill(process)


def published(out: Path) -> dict:
    """What a reader compares: the notebook's parameters, run.json's, metrics (seconds aside), figures."""
    import nbformat

    folder = out / "smoke" / "01_microworld"
    notebook = nbformat.read(out / "smoke" / "01_microworld.ipynb", as_version=4)
    injected = [c.source for c in notebook.cells if "injected-parameters" in c.metadata.get("tags", [])]
    metrics = json.loads((folder / "metrics.json").read_text())
    return {"notebook": injected, "run.json params": json.loads((folder / "run.json").read_text())["params"],
            "metrics": {k: v for k, v in metrics.items() if "seconds" not in k},
            "figures": snapshot(folder / "figures")}


# Two runs whose results differ in every part: seed draws the figures' scenes, stats_scenes the metrics.
VARIANTS = (["--set", "seed=0", "--set", "stats_scenes=300"], ["--set", "seed=1", "--set", "stats_scenes=200"])


def test_a_chapter_run_killed_at_10_random_moments_leaves_old_or_new_results(tmp_path):
    """Each try runs the variant not published and is killed at a moment drawn over a run's duration.
    A run is deterministic, so "new" is what a completed run of that variant publishes. After each
    kill, and the recovery any next run does first (on a copy, so that the next run must do it
    itself), the results are exactly the previous bytes or entirely the new run's. The last run,
    completed, leaves no staging behind."""
    cache, out, reference = tmp_path / "cache", tmp_path / "out", {}
    started = time.monotonic()
    for variant, folder in ((0, tmp_path / "reference"), (1, out)):
        _, err = (process := vlbridge_run(folder, *VARIANTS[variant], cache=cache)).communicate(timeout=300)
        assert process.returncode == 0 and "KeyboardInterrupt" not in err, err
        reference[variant] = published(folder)
        duration, started = time.monotonic() - started, time.monotonic()
    assert all(reference[0][part] != reference[1][part] for part in reference[0]), "the variants must differ"

    # 10 moments drawn over a run and a little past its end (some runs finish), one in each tenth; and
    # one at the start of the publish, a millisecond-long window no drawn moment is likely to hit.
    rng = random.Random(0)
    moments = [round(duration * 1.1 * (k + rng.random()) / 10, 2) for k in range(10)] + ["publishing"]
    published_variant, seen, state = 1, [], snapshot(out / "smoke")
    for moment in moments:
        variant = 1 - published_variant
        kill_at(vlbridge_run(out, *VARIANTS[variant], cache=cache), moment, out)
        view = tmp_path / f"view-{len(seen)}"
        shutil.copytree(out, view, symlinks=True)
        said = publishing.recover(view)
        now = snapshot(view / "smoke")
        if now != state:
            assert published(view) == reference[variant], f"killed at {moment}: a mix of old and new ({said})"
            published_variant = variant
        seen.append(f"{moment}: {'old' if now == state else 'new'}{' (rolled forward)' if 'finished' in said else ''}")
        state = now
        shutil.rmtree(view)
    assert any(s.endswith("old") for s in seen) and any("new" in s for s in seen), seen

    variant = 1 - published_variant
    _, err = (process := vlbridge_run(out, *VARIANTS[variant], cache=cache)).communicate(timeout=300)
    assert process.returncode == 0 and "KeyboardInterrupt" not in err, err
    assert published(out) == reference[variant]
    assert sorted(p.name for p in out.iterdir()) == ["smoke"], err  # no staging, no marker, no old results aside
    assert sorted(p.name for p in (out / "smoke").iterdir()) == ["01_microworld", "01_microworld.ipynb"]
    print(f"a run takes {duration:.1f} s; killed at {seen}; the last run said: {err.strip()!r}")
