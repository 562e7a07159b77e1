"""The `vlbridge` command: help, list, params, run (atomic, with failures that say where), export."""
import importlib.metadata
import json
import subprocess
import sys

import nbformat
import pytest

from vlbridge.book.cli import main


def vlbridge(*args):
    return subprocess.run([sys.executable, "-m", "vlbridge", *args], capture_output=True, text=True, timeout=600)


def test_help_explains_the_commands():
    out = vlbridge("--help")
    assert out.returncode == 0
    for word in ("run", "params", "export", "list", "merge in this order", "--set key=value"):
        assert word in out.stdout
    run_help = vlbridge("run", "--help").stdout
    assert "--profile" in run_help and "--out" in run_help and "previous results untouched" in run_help


def test_list_shows_chapters_and_profiles(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "01_microworld" in out and "02_backbones" in out and "smoke" in out and "default" in out


def test_params_prints_the_merged_yaml(capsys):
    assert main(["params", "01", "--profile", "smoke", "--set", "seed=5"]) == 0
    out = capsys.readouterr().out
    assert "profile: smoke\n" in out and "seed: 5\n" in out and "stats_scenes: 300\n" in out


@pytest.mark.parametrize("args, message", [
    (["params", "99", "-p", "smoke"], "unknown chapter '99'; chapters are: 01_microworld, 02_backbones"),
    (["params", "01", "-p", "nope"],
     "unknown profile 'nope'; profiles are: default, gpu, paper-esper, paper-fromage, paper-illume, smoke"),
    (["params", "01", "-p", "smoke", "--set", "nope=1"], "unknown key 'nope'; allowed keys are"),
    (["run", "01", "-p", "smoke", "--set", "seed=x"], "'seed' must be int, got str ('x')"),
    (["run", "all", "-p", "smoke", "--set", "nope=1"], "--set: unknown key 'nope'"),
])
def test_bad_input_exits_2_with_a_clear_message_and_writes_nothing(args, message, capsys, tmp_path):
    assert main([*args, "--out", str(tmp_path)] if args[0] == "run" else args) == 2
    assert message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_run_writes_notebook_metrics_run_record_and_figures(tmp_path):
    out = vlbridge("run", "01", "--profile", "smoke", "--set", "stats_scenes=50", "--out", str(tmp_path))
    assert out.returncode == 0, out.stderr
    notebook = tmp_path / "smoke" / "01_microworld.ipynb"
    folder = tmp_path / "smoke" / "01_microworld"
    nb = nbformat.read(notebook, as_version=4)
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and "stats_scenes = 50" in injected[0].source
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["parser_recovery"] == 1.0
    record = json.loads((folder / "run.json").read_text())
    assert record["params"]["stats_scenes"] == 50 and record["profile"] == "smoke"
    assert {"git_sha", "versions", "device", "threads", "duration_s", "cpu"} <= set(record)
    # the torch this test runs with (2.14.1 under `make`; a GPU machine's own build elsewhere)
    assert record["versions"]["torch"] == importlib.metadata.version("torch")
    assert record["versions"]["pillow"] == importlib.metadata.version("pillow")
    assert (folder / "figures" / "scenes.png").stat().st_size > 1000
    assert not list(tmp_path.glob(".staging-*"))


def test_files_a_chapter_writes_beside_its_folder_land_beside_it(project, tmp_path):
    chapter = project / "book" / "01_microworld.py"
    chapter.write_text(chapter.read_text() + '\n# %%\nfrom vlbridge.paths import results_root\n'
                       '(results_root() / profile / "scoreboard.md").write_text("beside")\n')
    out = vlbridge("run", "01", "-p", "smoke", "--set", "stats_scenes=50", "--out", str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "smoke" / "scoreboard.md").read_text() == "beside"  # as chapter 6 writes its scoreboard
    assert not list(tmp_path.glob(".staging-*"))


def test_a_failing_chapter_says_which_cell_and_leaves_previous_results(project, tmp_path):
    results = tmp_path / "results"
    previous = results / "smoke" / "01_microworld"
    previous.mkdir(parents=True)
    (previous / "metrics.json").write_text('{"kept": true}')
    (results / "smoke" / "01_microworld.ipynb").write_text("previous notebook")
    chapter = project / "book" / "01_microworld.py"
    broken = "# %%\nraise RuntimeError('broken on purpose')\n\n# %% [markdown]\n# ## Scenes"
    chapter.write_text(chapter.read_text().replace("# %% [markdown]\n# ## Scenes", broken))
    out = vlbridge("run", "01", "-p", "smoke", "--out", str(results))
    assert out.returncode == 1
    assert "failed in cell" in out.stderr and "raise RuntimeError('broken on purpose')" in out.stderr
    assert "RuntimeError: broken on purpose" in out.stderr and "unchanged" in out.stderr
    assert (previous / "metrics.json").read_text() == '{"kept": true}'
    assert (results / "smoke" / "01_microworld.ipynb").read_text() == "previous notebook"
    assert (results / ".failed-smoke-01_microworld" / "smoke" / "01_microworld.ipynb").is_file()


def test_export_writes_a_format_the_loaders_read(tmp_path, capsys):
    from vlbridge.data import load_coco_captions

    assert main(["export", "coco", "--out", str(tmp_path), "--count", "3"]) == 0
    records = load_coco_captions(tmp_path / "captions.json", tmp_path / "images")
    assert [r.image_id for r in records] == [1_000_000, 1_000_001, 1_000_002]
    assert "coco: wrote" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--count", "0"], "--count: must be at least 1, got 0"),
    (["--count", "many"], "--count: expected a whole number, got 'many'"),
    (["--image-size", "4"], "--image-size: must be at least 8"),
])
def test_export_rejects_bad_numbers(args, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["export", "coco", "--out", str(tmp_path), *args])
    assert info.value.code == 2 and message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_provenance_names_the_changed_sources_and_ignores_published_results(tmp_path, monkeypatch):
    """A clean clone that has just published results is not dirty (results are what runs write); an
    edited or new source file makes it dirty and is named."""
    from vlbridge.book import runner

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    for name in ("lib/vlbridge/a.py", "book/01_x.py", "results/default/01_x/metrics.json", "README.md"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("0\n")
    git("init", "-q")
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "start")
    monkeypatch.setattr(runner, "repo_root", lambda: tmp_path)
    (tmp_path / "results/default/01_x/metrics.json").write_text("1\n")
    (tmp_path / "results/default/02_y").mkdir(parents=True)
    (tmp_path / "results/default/02_y/run.json").write_text("{}\n")
    (tmp_path / "README.md").write_text("notes\n")  # not a source of results either
    record = runner.run_record("01_x", "default", {}, 0.0, 1.0)
    assert (record["git_dirty"], record["git_changed"]) == (False, [])
    (tmp_path / "lib/vlbridge/a.py").write_text("1\n")
    (tmp_path / "book/02_y.py").write_text("new\n")
    record = runner.run_record("01_x", "default", {}, 0.0, 1.0)
    assert (record["git_dirty"], record["git_changed"]) == (True, ["book/02_y.py", "lib/vlbridge/a.py"])
