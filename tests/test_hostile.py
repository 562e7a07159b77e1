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


# ---------------------------------------------------------------------------- damaged cache entries
def test_a_damaged_stand_in_is_built_again_with_a_warning_that_names_it(tmp_path, monkeypatch):
    from vlbridge.backbones.cache import MANIFEST, build_cached, damage

    monkeypatch.setenv("VLBRIDGE_CACHE", str(tmp_path))
    builds = []

    def build(folder):
        builds.append(folder)
        (folder / "weights.bin").write_bytes(b"\x01" * 64)

    entry = build_cached("toy", {"size": 1}, build)
    assert damage(entry) == "" and len(builds) == 1
    assert build_cached("toy", {"size": 1}, build) == entry and len(builds) == 1  # whole: loaded, not built
    (entry / "weights.bin").write_bytes(b"\x01" * 10)  # truncated
    assert damage(entry) == "weights.bin differ from what was built"
    with pytest.warns(UserWarning, match=r"cached toy at .* is damaged \(weights.bin differ"):
        assert build_cached("toy", {"size": 1}, build) == entry
    assert len(builds) == 2 and damage(entry) == "" and (entry / "weights.bin").stat().st_size == 64
    (entry / MANIFEST).unlink()  # an interrupted copy of the cache
    assert "manifest.json is missing" in damage(entry)


def test_a_damaged_store_record_says_which_folder_to_delete(tmp_path, monkeypatch):
    from vlbridge.book import config, store

    monkeypatch.setenv("VLBRIDGE_CACHE", str(tmp_path))
    params = config.merged_parameters("03_grounding", "smoke")
    folder = store.save_trained("03_grounding", "fromage", params, lambda f: (f / "bridge.json").write_text("{}"))
    assert store.trained("03_grounding", "fromage", "smoke") == folder
    (folder / store.RECORD).write_text('{"chapter": "03_gro')  # truncated
    with pytest.raises(store.NotTrainedError, match=f"record.json is damaged .*: delete {folder} and run the chapter"):
        store.trained("03_grounding", "fromage", "smoke")


# ---------------------------------------------------------------------------- one line, not a traceback
@pytest.mark.parametrize("command", [["run", "01", "-p", "smoke"], ["export", "coco", "--count", "2"]])
def test_an_out_folder_that_is_a_file_is_one_error_line_naming_it(command, tmp_path, capsys):
    taken = tmp_path / "taken"
    taken.write_text("a file, not a folder")
    assert main([*command, "--out", str(taken)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vlbridge: error:") and str(taken) in err and "Traceback" not in err
    assert taken.read_text() == "a file, not a folder"


def test_a_critic_log_with_bytes_that_are_not_utf8_names_the_line(tmp_path):
    from vlbridge.critics import DecisionLog

    log = tmp_path / "decisions.jsonl"
    log.write_bytes(b'{"broken": "\xff\xfe"}\n')
    with pytest.raises(ValueError, match=r"decisions.jsonl, line 1: not UTF-8 text .*delete or fix that line"):
        DecisionLog(log).decisions(0)
