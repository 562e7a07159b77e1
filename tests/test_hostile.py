"""Careless or hostile input to `vlbridge run` (the reliability issue's classes, one file): a clear
error that names the thing and writes nothing, or a right result in the right place."""
import json
import os
import re
import struct
import subprocess
import sys
import zlib
from pathlib import Path

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


@pytest.fixture
def locked(tmp_path):
    """A read-only folder; skips where writing into one still works (root, with its override)."""
    folder = tmp_path / "locked"
    folder.mkdir(mode=0o555)
    try:
        (folder / "probe").mkdir()
    except PermissionError:
        yield folder
        folder.chmod(0o755)
        return
    (folder / "probe").rmdir()
    pytest.skip(f"this user (uid {os.geteuid()}) writes into read-only folders anyway: nothing is refused")


@pytest.mark.parametrize("command", [["run", "01", "-p", "smoke"], ["export", "coco", "--count", "2"]])
@pytest.mark.parametrize("inside", [False, True])
def test_an_out_folder_that_is_or_is_inside_a_read_only_folder_is_one_error_line(command, inside, locked, capsys):
    assert main([*command, "--out", str(locked / "out" if inside else locked)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vlbridge: error: Permission denied: ") and err.count("\n") == 1, err
    assert f"{locked}/" in err  # the read-only folder (export renames into it from a staging folder beside it)
    assert files_under(locked) == []


@pytest.mark.parametrize("quiet", [False, True])
def test_the_runner_shuts_its_kernel_down_without_an_interrupt(quiet, tmp_path):
    """jupyter_client sends SIGINT before a shutdown; papermill asks for kernel_info after the last
    cell, so the SIGINT could land while the kernel still handled that request, and a run that
    succeeded printed "[IPKernelApp] ERROR | KeyboardInterrupt caught in kernel." (about 1 run in 50).
    The runner's kernel manager sends none; if jupyter_client stops sending one, its override can go."""
    import signal

    import nbformat
    import papermill
    from jupyter_client import AsyncKernelManager

    from vlbridge.book.runner import _quiet_kernel_manager

    sent = []

    class Recording(_quiet_kernel_manager() if quiet else AsyncKernelManager):
        async def _async_signal_kernel(self, signum):
            sent.append(signum)
            await super()._async_signal_kernel(signum)

    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")])
    papermill.execute_notebook(notebook, str(tmp_path / "out.ipynb"), kernel_name="python3", language="python",
                               progress_bar=False, kernel_manager_class=Recording)
    assert (signal.SIGINT in sent) is not quiet, sent


def test_a_critic_log_with_bytes_that_are_not_utf8_names_the_line(tmp_path):
    from vlbridge.critics import DecisionLog

    log = tmp_path / "decisions.jsonl"
    log.write_bytes(b'{"broken": "\xff\xfe"}\n')
    with pytest.raises(ValueError, match=r"decisions.jsonl, line 1: not UTF-8 text .*delete or fix that line"):
        DecisionLog(log).decisions(0)


# ---------------------------------------------------------------------------- strict loaders
def write_json(path, content):
    path.write_text(json.dumps(content))
    return path


def unchanged(folder, before):
    """Loaders only read: after a refusal the folder holds exactly what it held before."""
    return files_under(folder) == before


def test_a_utf8_bom_is_not_part_of_the_first_line(tmp_path):
    """Windows tools start UTF-8 files with a byte-order mark; a FROMAGe TSV's header must still be a
    header (not a record captioned '\\ufeffcaption'), and JSON must still load."""
    from vlbridge.data import load_cc3m_tsv, load_coco_captions

    tsv = tmp_path / "cc3m.tsv"
    tsv.write_text("\ufeffcaption\timage\na red square .\tsquare_1\n", encoding="utf-8")
    assert [(r.caption, r.image) for r in load_cc3m_tsv(tsv)] == [("a red square .", "square_1")]
    gcc = tmp_path / "gcc.tsv"  # the original layout has no header: its first caption loses the mark
    gcc.write_text("\ufeffa dog .\thttp://x/1.jpg\n", encoding="utf-8")
    assert load_cc3m_tsv(gcc)[0].caption == "a dog ."
    coco = tmp_path / "captions.json"
    coco.write_text("\ufeff" + json.dumps({"images": [{"id": 1, "file_name": "a.png"}],
                                           "annotations": [{"image_id": 1, "caption": "a cat ."}]}), encoding="utf-8")
    assert load_coco_captions(coco)[0].captions == ("a cat .",)


def test_bytes_that_are_not_utf8_name_the_file(tmp_path):
    from vlbridge.data import DataError, load_cc3m_tsv

    tsv = tmp_path / "latin1.tsv"
    tsv.write_bytes("caption\timage\nun caf\xe9 .\tcafe\n".encode("latin-1"))
    before = files_under(tmp_path)
    with pytest.raises(DataError, match=r"latin1\.tsv is not UTF-8 text"):
        load_cc3m_tsv(tsv)
    assert unchanged(tmp_path, before)


def visdial_with(answer=0, gt_index=0, image_id=7):
    return {"data": {"questions": ["what colour?"], "answers": ["red"], "dialogs": [
        {"image_id": image_id, "caption": "a red square .",
         "dialog": [{"question": 0, "answer": answer, "answer_options": [0], "gt_index": gt_index}]}]}}


@pytest.mark.parametrize("loader, content, message", [
    ("load_coco_captions", {"images": [{"id": True, "file_name": "a.png"}], "annotations": []},
     r"images\[0\]: key 'id' should be int, got bool"),
    ("load_coco_captions", {"images": [{"id": 1, "file_name": "a.png"}],
                            "annotations": [{"image_id": True, "caption": "a cat ."}]},
     r"annotations\[0\]: key 'image_id' should be int, got bool"),
    ("load_visdial", visdial_with(answer=True),
     r"dialog 0 \(image_id 7\), round 0: answer index should be an int, got True"),
    ("load_visdial", visdial_with(gt_index=False), r"round 0: key 'gt_index' should be int, got bool"),
    ("load_visdial", visdial_with(image_id=True), r"dialog 0: key 'image_id' should be int, got bool"),
    ("load_karpathy", {"images": [{"split": "train", "cocoid": True, "filepath": "train2014", "filename": "a.jpg",
                                   "sentences": []}]}, r"images\[0\]: key 'cocoid' should be int, got bool"),
    ("load_vist_sis", {"annotations": [[{"story_id": "1", "worker_arranged_photo_order": True, "text": "a .",
                                         "photo_flickr_id": "9"}]]},
     r"annotations\[0\]: key 'worker_arranged_photo_order' should be int, got bool"),
    ("load_audio_captions", [{"seed": True, "file_name": "a.wav", "caption": "a ."}],
     r"entry 0: key 'seed' should be int, got bool"),
])
def test_json_true_is_not_the_integer_1(loader, content, message, tmp_path):
    """bool is an int subclass in Python, so a plain isinstance check read `true` as the id 1."""
    from vlbridge import data

    path = write_json(tmp_path / "data.json", content)
    before = files_under(tmp_path)
    with pytest.raises(data.DataError, match=message) as error:
        getattr(data, loader)(path)
    assert str(path) in str(error.value) and unchanged(tmp_path, before)


def nlx_vqax(explanation):
    return {"262284001": {"question": "What is this?", "answers": [{"answer": "shower"}], "image_id": "262284",
                          "image_name": "COCO_val2014_000000262284.jpg", "explanation": explanation}}


def illume_vqax(**columns):
    table = {"image_id": {"0": 1, "1": 2}, "question_id": {"0": 1001, "1": 2001},
             "question": {"0": "What?", "1": "Why?"}, "multiple_choice_answer": {"0": "yes", "1": "no"},
             "explanation": {"0": "because.", "1": "so."}, "explanation_2": {"0": "since.", "1": None}}
    table.update(columns)
    return {name: column for name, column in table.items() if column is not None}


@pytest.mark.parametrize("content, message", [
    (nlx_vqax([1, None]), r"question 262284001: explanation 1 should be non-empty text, got 1"),
    (nlx_vqax(["fine", None]), r"question 262284001: explanation 2 should be non-empty text, got None"),
    (nlx_vqax(["  "]), r"question 262284001: explanation 1 should be non-empty text, got '  '"),
    (nlx_vqax(42), r"question 262284001: key 'explanation' should be list, got int"),
    (nlx_vqax([]), r"question 262284001: no explanation"),
    (illume_vqax(explanation=None), r"no 'explanation' column, which holds every row's first explanation"),
    (illume_vqax(explanation={"0": "because.", "1": None}), r"column 'explanation': key '1' should be str, got null"),
    (illume_vqax(explanation_2={"0": 5, "1": None}), r"column 'explanation_2': key '0' should be str or null, got int"),
    (illume_vqax(explanation_2={"0": "", "1": None}), r"row '0': explanation 2 should be non-empty text, got ''"),
    (illume_vqax(question_id={"0": True, "1": 2001}), r"column 'question_id': key '0' should be int, got bool"),
])
def test_vqax_explanations_are_checked_in_both_layouts(content, message, tmp_path):
    """Explanations are the gold rationales the critic and SFT read: a number, a null or a missing first
    column (which used to promote explanation_2 to first) is an error naming the file and the item."""
    from vlbridge.data import DataError, load_vqax

    path = write_json(tmp_path / "vqax.json", content)
    before = files_under(tmp_path)
    with pytest.raises(DataError, match=message) as error:
        load_vqax(path)
    assert str(error.value).startswith(f"{path}: ") and unchanged(tmp_path, before)


def test_an_illume_row_with_a_null_later_explanation_has_fewer(tmp_path):
    from vlbridge.data import load_vqax

    records = load_vqax(write_json(tmp_path / "vqax.json", illume_vqax()))
    assert [r.explanations for r in records] == [("because.", "since."), ("so.",)]  # pandas' null: none there


def test_a_wav_at_another_sample_rate_names_the_file_and_both_rates(tmp_path):
    import numpy as np

    from vlbridge.data import DataError, read_wav
    from vlbridge.world.sound import SAMPLE_RATE, write_wav

    cd = write_wav(tmp_path / "cd.wav", np.zeros((2, 441), np.float32), 44100)
    before = files_under(tmp_path)
    with pytest.raises(DataError, match=rf"cd\.wav: sample rate 44100 Hz, expected {SAMPLE_RATE} Hz") as error:
        read_wav(cd)
    assert str(cd) in str(error.value) and unchanged(tmp_path, before)
    assert read_wav(cd, sample_rate=44100)[1] == 44100  # a caller who means 44.1 kHz says so


def png_claiming(path, width, height):
    """A PNG of a header only, claiming width x height: what PIL checks before decoding anything."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                     + chunk(b"IEND", b""))
    return path


def test_a_png_claiming_60000_by_60000_is_a_data_error_naming_it(tmp_path):
    """PIL refuses such a header with a DecompressionBombError that names no file; images and
    webdataset shards share one decoder that turns it into a DataError."""
    from vlbridge.data import DataError, ImageCaptionDataset, load_cc3m_tsv, open_image

    bomb = png_claiming(tmp_path / "bomb.png", 60000, 60000)
    with pytest.raises(DataError, match=r"bomb\.png: image too large to decode safely") as error:
        open_image(bomb)
    assert str(bomb) in str(error.value)
    tsv = tmp_path / "pairs.tsv"
    tsv.write_text("caption\timage\na huge picture .\tbomb\n")
    before = files_under(tmp_path)
    with pytest.raises(DataError, match=r"bomb\.png: image too large"):
        ImageCaptionDataset(load_cc3m_tsv(tsv, tmp_path))[0]
    assert unchanged(tmp_path, before)


# ---------------------------------------------------------------------------- parameter ranges
@pytest.mark.parametrize("chapter, override, message", [
    ("03", "steps=-5", r"--set, for chapter 03_grounding: 'steps' must be >= 1 and < 1,000,000,000, got -5"),
    ("01", "grid_scenes=0", r"for chapter 01_microworld: 'grid_scenes' must be >= 1 .*, got 0"),
    ("01", "image_size=0", r"for chapter 01_microworld: 'image_size' must be in \[1, 1024\], got 0"),
    ("03", "lr=.inf", r"for chapter 03_grounding: 'lr' must be > 0 and finite, got inf"),
    ("03", "lr=nan", r"'lr' must be > 0 and finite, got nan"),
    ("03", "lr=0", r"'lr' must be > 0 and finite, got 0.0"),
    ("03", "steps=99999999999999999999", r"'steps' must be >= 1 and < 1,000,000,000, got 99999999999999999999"),
    ("04", "gae_lambda=1.5", r"for chapter 04_reward_rl: 'gae_lambda' must be in \[0, 1\], got 1.5"),
    ("04", "grpo_group=1", r"'grpo_group' must be >= 2 .*, got 1"),
    ("05", "temperatures=[0.8, 0]", r"for chapter 05_feedback: 'temperatures\[1\]' must be > 0 .*, got 0"),
    ("05", "temperatures=[hot]", r"'temperatures\[0\]' must be a number, got str \('hot'\)"),
])
def test_a_value_out_of_range_is_refused_before_anything_runs(chapter, override, message, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", chapter, "-p", "smoke", "--set", override, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vlbridge: error:") and re.search(message, err), err
    assert files_under(tmp_path) == []


def test_an_out_of_range_value_in_a_profile_names_the_file_section_and_key(tmp_path, capsys):
    mine = tmp_path / "mine.yaml"
    mine.write_text("description: x\n04_reward_rl:\n  clip_range: 0\n")
    out = tmp_path / "out"
    assert main(["run", "01", "-p", str(mine), "--out", str(out)]) == 2  # another chapter's section, too
    err = capsys.readouterr().err
    assert f"{mine}, section '04_reward_rl', for chapter 04_reward_rl: 'clip_range' must be in (0, 1], got 0.0" in err
    assert files_under(tmp_path) == [Path("mine.yaml")]


def test_every_committed_profile_is_in_range_for_every_chapter():
    from vlbridge.book import config

    assert {"smoke", "default", "gpu", "paper-esper", "paper-fromage", "paper-illume"} <= set(config.profiles())
    for profile in config.profiles():
        assert set(config.validate_profile(profile)) == set(config.chapters())
    for chapter in config.chapters():  # and every number parameter has a range (the parser refuses one without)
        for p in config.chapter_parameters(chapter).values():
            assert p.range is not None or p.type not in (int, float), (chapter, p.name)


def test_a_number_parameter_without_a_range_or_with_its_default_out_of_range_is_refused(project):
    from vlbridge.book import config

    path = project / "book" / "01_microworld.py"
    source = path.read_text()
    path.write_text(source.replace("seed: int = 0\n", "seed: int = 0\nmystery: int = 3\n"))
    with pytest.raises(config.ConfigError, match=r"01_microworld\.py, line \d+: int parameter 'mystery' has no "
                                                 r"range: add a pattern for it to RANGES"):
        config.chapter_parameters("01_microworld")
    path.write_text(source.replace("grid_scenes: int = 12", "grid_scenes: int = 0"))
    with pytest.raises(config.ConfigError, match=r"01_microworld\.py, line \d+: 'grid_scenes' must be >= 1"):
        config.chapter_parameters("01_microworld")


# ---------------------------------------------------------------------------- runner's keys, empty profiles, typos
def test_set_profile_is_refused_and_points_to_the_profile_option(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", "01", "-p", "smoke", "--set", "profile=default", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--set for chapter 01_microworld: 'profile' is set by the runner" in err and "--profile" in err
    mine = tmp_path / "mine.yaml"
    mine.write_text("description: x\ncommon:\n  profile: default\n")
    assert main(["run", "01", "-p", str(mine), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{mine}, section 'common': 'profile' is set by the runner" in err and "--profile" in err
    assert files_under(tmp_path) == [Path("mine.yaml")]


@pytest.mark.parametrize("text", ["", "# only a comment\n", "{}\n"])
def test_an_empty_profile_is_an_error_not_a_run_with_the_defaults(text, tmp_path, capsys):
    empty = tmp_path / "empty.yaml"
    empty.write_text(text)
    out = tmp_path / "out"
    assert main(["run", "01", "-p", str(empty), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{empty}: the profile is empty; a profile is a mapping with a description and sections" in err
    assert files_under(tmp_path) == [Path("empty.yaml")]


def test_a_typo_in_another_chapters_section_is_reported_by_any_chapter(tmp_path, capsys):
    mine = tmp_path / "mine.yaml"
    mine.write_text("description: x\n01_microworld:\n  grid_scenes: 8\n05_feedback:\n  stepz_per_round: 3\n")
    out = tmp_path / "out"
    assert main(["run", "01", "-p", str(mine), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{mine}, section '05_feedback': unknown key 'stepz_per_round'; allowed keys are:" in err
    assert "steps_per_round" in err and files_under(tmp_path) == [Path("mine.yaml")]


# ---------------------------------------------------------------------------- bridges are bound to their backbones
@pytest.fixture(scope="module")
def smoke_bridge(tmp_path_factory):
    """A FROMAGe bridge saved on the smoke stand-ins (untrained: saving needs no training), and them."""
    from vlbridge import backbones
    from vlbridge.contracts import Backbones
    from vlbridge.methods.fromage import Fromage, FromageConfig

    clip, lm = backbones.load_clip("micro-clip-smoke"), backbones.load_lm("micro-lm-smoke")
    folder = tmp_path_factory.mktemp("bridge")
    Fromage(clip, lm, FromageConfig(image_tokens=2)).save(folder)
    return folder, Backbones(clip, lm)


def edited_copy(folder, tmp_path, edit, name="edited"):
    """A copy of the bridge in `folder`, tmp_path/name, whose bridge.json is edit(meta)."""
    import shutil

    copy = tmp_path / name
    shutil.copytree(folder, copy)
    meta = json.loads((copy / "bridge.json").read_text())
    edit(meta)
    write_json(copy / "bridge.json", meta)
    return copy


def lm_with_other_weights(lm, name=None):
    """A copy of `lm` (same dims) with one weight changed, as a stand-in rebuilt by other code would be."""
    import copy
    import dataclasses

    import torch

    other = dataclasses.replace(lm, name=name or lm.name, model=copy.deepcopy(lm.model))
    with torch.no_grad():
        other.model.get_input_embeddings().weight[5, 3] += 0.1
    return other


def test_a_bridge_renamed_onto_an_lm_of_the_same_dims_with_other_weights_is_refused(smoke_bridge, tmp_path):
    """Names and dims alone let an edited bridge.json put a bridge onto other weights."""
    from vlbridge.checkpoint import CheckpointError
    from vlbridge.contracts import Backbones
    from vlbridge.methods.fromage import Fromage

    folder, given = smoke_bridge
    assert set(json.loads((folder / "bridge.json").read_text())["fingerprints"]) == {"clip", "lm"}
    Fromage.load(folder, given)  # its own backbones load
    other = lm_with_other_weights(given.lm, "micro-lm-other")
    renamed = edited_copy(folder, tmp_path, lambda meta: meta["backbones"].update(lm="micro-lm-other"))
    before = files_under(tmp_path)
    with pytest.raises(CheckpointError, match=r"edited/bridge\.json: the weights of lm 'micro-lm-other' differ from "
                                              r"those this bridge was trained on \(same name, other weights: a "
                                              r"stand-in rebuilt by other code, or other files under that name\?\)"):
        Fromage.load(renamed, Backbones(given.clip, other))
    with pytest.raises(CheckpointError, match="the weights of lm 'micro-lm-smoke' differ"):  # rebuilt, same name
        Fromage.load(folder, Backbones(given.clip, lm_with_other_weights(given.lm)))
    assert unchanged(tmp_path, before)


def test_a_bfloat16_copy_of_the_same_lm_is_the_same_backbone_a_float16_one_is_not(smoke_bridge):
    import copy
    import dataclasses

    import torch

    from vlbridge import backbones
    from vlbridge.checkpoint import CheckpointError
    from vlbridge.contracts import Backbones
    from vlbridge.methods.fromage import Fromage

    folder, given = smoke_bridge  # saved with the float32 LM
    bf16 = backbones.load_lm("micro-lm-smoke", dtype="bfloat16")
    assert bf16.model.dtype == torch.bfloat16
    Fromage.load(folder, Backbones(given.clip, bf16))
    fp16 = dataclasses.replace(given.lm, model=copy.deepcopy(given.lm.model).half())
    with pytest.raises(CheckpointError, match=r"a float32 or bfloat16 copy of it matches, a float16 one does not"):
        Fromage.load(folder, Backbones(given.clip, fp16))


def test_a_bridge_json_from_before_fingerprints_loads_by_names_and_dims(smoke_bridge, tmp_path):
    from vlbridge.contracts import Backbones
    from vlbridge.methods.fromage import Fromage

    folder, given = smoke_bridge
    older = edited_copy(folder, tmp_path, lambda meta: meta.pop("fingerprints"))
    Fromage.load(older, Backbones(given.clip, lm_with_other_weights(given.lm)))  # no record: no check, as before


@pytest.mark.parametrize("config, message", [
    ({"image_tokenz": 2}, r"unknown config key\(s\) 'image_tokenz'; the keys of FromageConfig are image_tokens, "
                          r"image_input, bridge, retrieval_dim, .*, seed, micro_batch, interleave_per, tied_ret, "
                          r"max_caption_tokens$"),
    ({"image_tokens": True}, r"config key 'image_tokens' should be int, got bool \(True\)"),
    ({"image_tokens": 2.0}, r"config key 'image_tokens' should be int, got float \(2\.0\)"),
    ({"retrieval_batch_size": "8"}, r"config key 'retrieval_batch_size' should be int or null, got str \('8'\)"),
    ({"image_input": "pixels"}, r"bridge\.json: Fromage refuses the saved config: .*'pixels'"),
    ({"image_tokens": 3}, r"parameter 'image_to_lm\.net\.weight' was saved with shape \(256, 128\), this Fromage "
                          r"has \(384, 128\)"),  # small enough to build: the strict load refuses it
])
def test_a_saved_config_is_checked_against_its_class_before_the_model_is_built(config, message, smoke_bridge,
                                                                               tmp_path):
    from vlbridge.checkpoint import CheckpointError
    from vlbridge.methods.fromage import Fromage

    folder, given = smoke_bridge
    edited = edited_copy(folder, tmp_path, lambda meta: meta["config"].update(config))
    with pytest.raises(CheckpointError, match=message) as error:
        Fromage.load(edited, given)
    assert str(edited) in str(error.value)


def test_a_dict_config_is_checked_by_the_model_it_builds(smoke_bridge, tmp_path):
    """An AudioEncoder's config is a dict of its constructor's arguments: an unknown one is its TypeError,
    and a size the saved tensors cannot hold is refused before it is allocated, as for a dataclass."""
    from vlbridge.audio_encoder import AudioEncoder
    from vlbridge.checkpoint import CheckpointError

    _, given = smoke_bridge
    folder = tmp_path / "audio"
    AudioEncoder(given.clip.embed_dim, clip_name=given.clip.name).save(folder)
    AudioEncoder.load(folder, given)
    unknown = edited_copy(folder, tmp_path, lambda meta: meta["config"].update(widht=64), "unknown")
    with pytest.raises(CheckpointError, match=r"bridge\.json: AudioEncoder refuses the saved config: .*'widht'"):
        AudioEncoder.load(unknown, given)
    huge = edited_copy(folder, tmp_path, lambda meta: meta["config"].update(hidden=10**9), "huge")
    with pytest.raises(CheckpointError, match=r"building AudioEncoder from this config would allocate a tensor of "
                                              r"shape \[1000000000, 576\].* \(its numbers larger than any saved "
                                              r"dimension, 576: hidden=1000000000\)"):
        AudioEncoder.load(huge, given)


def test_a_bridge_of_another_method_is_refused_before_its_config_is_read(smoke_bridge):
    from vlbridge.checkpoint import CheckpointError
    from vlbridge.methods.prefix import PrefixCaptioner

    folder, given = smoke_bridge
    with pytest.raises(CheckpointError, match=r"bridge\.json: this is a Fromage bridge, not a PrefixCaptioner"):
        PrefixCaptioner.load(folder, given)  # was a TypeError from PrefixConfig(**FROMAGe's config)


def test_image_tokens_10000000_is_refused_before_anything_is_allocated(smoke_bridge, tmp_path, monkeypatch):
    """Built as it was, the config asked nn.Linear for 1.28e9 x 128 floats (655 GB); bridge.json's own
    record of the shapes is edited to agree, so only the tensors file's header tells the truth."""
    import time

    import torch

    from vlbridge.checkpoint import CheckpointError
    from vlbridge.methods.fromage import Fromage

    folder, given = smoke_bridge

    def tamper(meta):
        meta["config"]["image_tokens"] = 10_000_000
        meta["parameters"]["image_to_lm.net.weight"] = [1_280_000_000, 128]

    edited = edited_copy(folder, tmp_path, tamper)
    made, empty = [], torch.empty

    def recording_empty(*args, **kwargs):  # what nn layers allocate their weights with
        tensor = empty(*args, **kwargs)
        made.append(tensor.numel())
        return tensor

    monkeypatch.setattr(torch, "empty", recording_empty)
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match=r"edited/bridge\.json: building Fromage from this config would "
                                              r"allocate a tensor of shape \[1280000000, 128\] \(163,840,000,000 "
                                              r"elements\), but the largest tensor in bridge\.safetensors has 32,768: "
                                              r"the config does not describe the saved weights \(its numbers larger "
                                              r"than any saved dimension, 256: image_tokens=10000000, steps=400\)"):
        Fromage.load(edited, given)
    assert time.perf_counter() - start < 5 and max(made, default=0) < 1 << 20


def test_results_are_written_readable_by_others(tmp_path):
    """atomic_write_bytes goes through mkstemp (mode 0600); what it publishes gets the umask's mode, as
    an open() would (a scoreboard only its writer could read was one such file)."""
    import stat

    from vlbridge.paths import atomic_write_json

    old = os.umask(0o022)
    try:
        path = atomic_write_json(tmp_path / "metrics.json", {"f1": 0.5})
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


# ---------------------------------------------------------------------------- divergence stops the run
def test_a_step_that_diverges_stops_training_with_the_weights_as_before():
    """Clipping keeps the loss finite at lr=1e6 (Adam moves each weight by about lr whatever the
    gradient), so the loss never tells; the size of the step does."""
    import torch

    from vlbridge.training import adamw, optimizer_step

    torch.manual_seed(0)
    model = torch.nn.Linear(8, 8)
    x = torch.randn(16, 8)
    for lr in (1e-2, 1e6):
        before = [p.detach().clone() for p in model.parameters()]
        optimizer = adamw(model.parameters(), lr, 0.0)
        if lr == 1e6:
            with pytest.raises(FloatingPointError, match=r"step 0: training diverged: .* learning rate \(lr\)"):
                optimizer_step(optimizer, model(x).square().mean(), [list(model.parameters())], 1.0, "test, step 0")
            assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before))
        else:  # a healthy rate steps on
            optimizer_step(optimizer, model(x).square().mean(), [list(model.parameters())], 1.0, "test, step 0")
            assert not all(torch.equal(p, b) for p, b in zip(model.parameters(), before))


def test_esper_at_a_diverging_learning_rate_stops_at_its_first_step():
    """ESPER's loss is a ratio objective that stays small however far the weights fly: only the step
    size can tell."""
    from vlbridge import backbones
    from vlbridge.methods.esper import Esper, EsperConfig
    from vlbridge.methods.prefix import PrefixCaptioner, PrefixConfig

    clip, lm = backbones.load_clip("micro-clip-smoke"), backbones.load_lm("micro-lm-smoke")
    captioner = PrefixCaptioner(lm, PrefixConfig("test", clip.embed_dim, 2, max_new_tokens=4))
    features = torch_randn(4, clip.embed_dim)
    esper = Esper(captioner, clip, EsperConfig(steps=2, batch_size=2, samples=2, lr=1e6, warmup_steps=0))
    with pytest.raises(FloatingPointError, match="ESPER step 0: training diverged"):
        esper.fit(features, features)


def torch_randn(*shape):
    import torch

    return torch.nn.functional.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(0)), dim=-1)


def test_a_chapter_at_lr_1e6_fails_naming_the_divergence_and_publishes_nothing(project):
    result = vlbridge("run", "03", "-p", "smoke", "--set", "lr=1e6", "--publish")
    assert result.returncode != 0
    assert "FROMAGe, step 0: training diverged" in result.stderr and "(lr)" in result.stderr, result.stderr
    assert not (project / "results" / "smoke" / "03_grounding.ipynb").exists()


# ---------------------------------------------------------------------------- a local folder without weights
def test_a_local_model_folder_without_weights_names_what_it_lacks_not_a_download_of_itself(tmp_path):
    """A folder with a config.json but no weights (a half-finished copy) used to suggest
    `hf download <that folder>`, a command that cannot work."""
    from tiny_models import byte_level_bpe, save_tiny_hf_clip, tiny_gpt2
    from vlbridge import backbones

    lm_folder = tmp_path / "lm"
    tokenizer = byte_level_bpe(["a red circle", "a blue square"] * 20, vocab_size=300)
    tiny_gpt2(tokenizer).save_pretrained(lm_folder)
    tokenizer.save_pretrained(lm_folder)
    clip_folder = save_tiny_hf_clip(tmp_path / "clip")
    for folder in (lm_folder, clip_folder):
        for weights in folder.glob("*.safetensors"):
            weights.unlink()
    for load, folder, spelt in ((backbones.load_lm, lm_folder, str(lm_folder)),
                                (backbones.load_clip, clip_folder, f"hf:{clip_folder}")):
        with pytest.raises(backbones.BackboneNotFoundError) as caught:
            load(spelt)
        message = str(caught.value)
        assert f"folder {folder} has a config.json" in message and "model.safetensors" in message, message
        assert f"hf download {folder}" not in message and f"hf download {spelt}" not in message
