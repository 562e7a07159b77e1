"""Careless or hostile input to `vlbridge run` (the reliability issue's classes, one file): a clear
error that names the thing and writes nothing, or a right result in the right place."""
import subprocess
import sys

import pytest

from vlbridge.book.cli import main


def vlbridge(*args):
    return subprocess.run([sys.executable, "-m", "vlbridge", *args], capture_output=True, text=True, timeout=600)


def files_under(folder):
    return sorted(p.relative_to(folder) for p in folder.rglob("*"))


# ---------------------------------------------------------------------------- profiles are names, not paths
@pytest.mark.parametrize("profile", ["../../../x/myprof", "/abs/typo", "..", ".", "a/b", "", "smoke/../default",
                                     "../escape.yaml"])
def test_a_profile_that_is_a_path_is_an_error_and_nothing_is_written(profile, tmp_path, capsys):
    out = tmp_path / "a" / "b"
    assert main(["run", "01", "-p", profile, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "vlbridge: error:" in err and (repr(profile) in err or "does not exist" in err), err
    assert not out.exists() and files_under(tmp_path) == []


def test_an_unknown_profile_name_lists_the_profiles_and_the_file_route(capsys, tmp_path):
    assert main(["run", "01", "-p", "smok", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unknown profile 'smok'" in err and "smoke" in err and "file path" in err
    assert files_under(tmp_path) == []


def test_a_custom_profile_file_runs_and_files_its_results_under_its_stem(project, tmp_path):
    mine = tmp_path / "mine.yaml"
    mine.write_text((project / "params" / "smoke.yaml").read_text())
    out = tmp_path / "out"
    result = vlbridge("run", "01", "-p", str(mine), "--set", "stats_scenes=50", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert (out / "mine" / "01_microworld.ipynb").is_file() and (out / "mine" / "01_microworld" / "run.json").is_file()
    assert sorted(p.name for p in out.iterdir()) == ["mine"]  # no staging left, nothing elsewhere


# ---------------------------------------------------------------------------- --set never replaces the book
def test_a_run_with_overrides_goes_to_scratch_and_leaves_the_published_results(project):
    published = project / "results" / "smoke"
    result = vlbridge("run", "01", "-p", "smoke", "--set", "stats_scenes=50")
    assert result.returncode == 0, result.stderr
    assert "results/scratch/" in result.stdout
    assert (project / "results" / "scratch" / "smoke" / "01_microworld.ipynb").is_file()
    assert not published.exists()
    result = vlbridge("run", "01", "-p", "smoke", "--set", "stats_scenes=50", "--publish")
    assert result.returncode == 0, result.stderr
    assert (published / "01_microworld.ipynb").is_file()
