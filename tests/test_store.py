"""Trained models shared between chapters through the cache (store.py): keyed by chapter, name and
the chapter's parameters, found by a profile's parameters, whole or absent."""
import json

import pytest

from vlbridge.book import config, store


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VLBRIDGE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def write_weights(text):
    return lambda folder: (folder / "weights.txt").write_text(text)


def test_an_entry_is_found_by_the_profiles_parameters_and_other_runs_go_beside_it():
    params = config.merged_parameters("03_grounding", "smoke")
    saved = store.save_trained("03_grounding", "fromage", params, write_weights("profile"), {"train_seconds": 1.5})
    shorter = dict(params, steps=params["steps"] - 1)  # a run with --set steps=...
    other = store.save_trained("03_grounding", "fromage", shorter, write_weights("shorter"))
    assert other != saved
    found = store.trained("03", "fromage", "smoke")  # chapters by number, as on the command line
    assert found == saved and (found / "weights.txt").read_text() == "profile"
    record = store.read_record(found)
    assert record["params"] == params and record["train_seconds"] == 1.5 and record["chapter"] == "03_grounding"
    # Saving again with the same parameters replaces the entry.
    store.save_trained("03_grounding", "fromage", params, write_weights("again"))
    assert (store.trained("03", "fromage", "smoke") / "weights.txt").read_text() == "again"


def test_a_missing_entry_says_which_chapter_to_run():
    with pytest.raises(store.NotTrainedError, match=r"run `vlbridge run 04_reward_rl --profile smoke` first"):
        store.trained("04", "esper_grpo", "smoke")


def test_a_failed_save_leaves_nothing(cache):
    params = config.merged_parameters("03_grounding", "smoke")

    def broken(folder):
        (folder / "weights.txt").write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        store.save_trained("03_grounding", "fromage", params, broken)
    assert not any(p.is_file() for p in cache.rglob("*"))
    with pytest.raises(store.NotTrainedError):
        store.trained("03", "fromage", "smoke")


def test_chapter_params_reads_the_declared_parameters_from_a_namespace():
    declared = config.chapter_parameters("03_grounding")
    namespace = {name: p.default for name, p in declared.items()} | {"unrelated": 1}
    assert store.chapter_params("03_grounding", namespace) == {name: p.default for name, p in declared.items()}
    del namespace["steps"]
    with pytest.raises(ValueError, match=r"\['steps'\] are not defined here"):
        store.chapter_params("03_grounding", namespace)
    json.dumps(store.chapter_params("03_grounding", {**namespace, "steps": 1}))  # keys must serialise
