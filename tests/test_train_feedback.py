"""`vlbridge train illume|sft` (chapter 5's models) on the smoke profile: ILLUME's rounds over two
processes are saved where chapter 5's recipes.obtain loads them, with the model after each round and
every decision the critic took; a run killed in the middle of a round and resumed ends with the
weights, and the snapshots, of a run never stopped, bit for bit."""
import json
from pathlib import Path

import pytest
import torch

from train_runs import kill_all, own_cache, vlbridge_train, wait_for

# A critic that keeps every non-empty rationale (ROUGE-L >= 0), so the kept pool grows and tunes; rounds
# of 20 steps, long enough to be killed in.
SETTINGS = {"threads": 1, "critic": "rouge", "rouge_threshold": 0.0, "steps_per_round": 20}
SNAPSHOT = "snapshots/step-20"  # the model after round 1 of smoke's 2 (20 tuning steps)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A store of this module's own (the runs save there), beside the session's smoke stand-ins."""
    return own_cache(tmp_path_factory)


def train(model: str, out: Path, cache: Path, *extra: str, nproc: int = 2, wait: bool = True):
    settings = [arg for key, value in SETTINGS.items() for arg in ("--set", f"{key}={value}")]
    return vlbridge_train(model, out, cache, "--nproc", str(nproc), *settings, "--checkpoint-every", "1", *extra,
                          wait=wait)


def saved(out: Path) -> dict:
    """The saved model's weights and its round-1 snapshot's, as bytes."""
    entry = Path(json.loads((out / "train.json").read_text())["entry"])
    return {name: (entry / name / "bridge.safetensors").read_bytes() for name in (".", SNAPSHOT)}


@pytest.fixture(scope="module")
def whole(cache, tmp_path_factory):
    """A run never stopped (it trains the grounded model first, as a prerequisite)."""
    out = tmp_path_factory.mktemp("whole")
    train("illume", out, cache)
    return saved(out)


@pytest.fixture
def chapter(cache, monkeypatch):
    """Chapter 5's parameters for SETTINGS, its backbones, and no training: what it obtains must load."""
    from vlbridge import backbones
    from vlbridge.book import config
    from vlbridge.contracts import Backbones
    from vlbridge.methods import illume
    from vlbridge.methods.fromage import Fromage

    monkeypatch.setenv("VLBRIDGE_CACHE", str(cache))

    def no_training(*args, **kwargs):
        raise AssertionError("the chapter trained instead of loading")

    monkeypatch.setattr(Fromage, "fit", no_training)
    monkeypatch.setattr(illume, "tune", no_training)
    params = config.merged_parameters("05_feedback", "smoke", [f"{k}={v}" for k, v in SETTINGS.items()])
    return params, Backbones(backbones.load_clip(params["clip_model"]), backbones.load_lm(params["lm_model"]))


def test_chapter_5_loads_the_loop_vlbridge_train_ran_over_two_processes(whole, chapter):
    from vlbridge.book import recipes

    params, both = chapter
    said = []
    model, record = recipes.obtain("illume", params, both, say=said.append)
    assert said == [f"illume: loaded from the store, trained by vlbridge train, 2 process(es) "
                    f"({recipes.store.entry_dir('05_feedback', 'illume', params)})"]
    rounds = record["log"]["rounds"]
    assert [r["round"] for r in rounds] == [1, 2] and record["judged_items"] == 2 * params["items_per_round"]
    for r in rounds:  # every item's decisions, from both processes' shares
        assert len(r["judgements"]) == r["judged"] == params["items_per_round"]
        assert all(len(cands) == len(flags) == params["samples"] for cands, flags in r["judgements"])
        assert r["kept"] == sum(map(sum, (flags for _, flags in r["judgements"]))) > 0
        assert len(r["train"]["loss"]) == params["steps_per_round"]
    assert record["log"]["kept_rationales"] > 0
    after_round_1 = recipes.snapshot("illume", params, params["steps_per_round"], both)
    differ = [not torch.equal(a, b) for a, b in zip(after_round_1.image_to_lm.parameters(),
                                                     model.image_to_lm.parameters())]
    assert any(differ), "round 2 tuned the model after round 1"
    grounded, grounding = recipes.obtain("grounded", params, both, say=said.append)
    assert grounding["trained_by"] == "vlbridge train, 2 process(es), as a prerequisite of illume"
    assert record["train_seconds"] > grounding["train_seconds"]  # the loop's time counts the grounding's


def test_chapter_5_loads_sft_vlbridge_train_saved(whole, chapter, cache, tmp_path):
    from vlbridge.book import recipes

    log = train("sft", tmp_path, cache, nproc=1)
    assert "grounded: loaded from the store" in log  # the loop's run trained it: SFT starts from the same
    params, both = chapter
    _, record = recipes.obtain("sft", params, both, say=lambda text: None)
    assert record["written_rationales"] == max(params["sft_budgets"])
    assert len(record["log"]["loss"]) == params["sft_steps"]


def test_a_run_killed_within_a_round_resumes_to_the_uninterrupted_weights(whole, cache, tmp_path):
    cut = tmp_path / "cut"
    marker = cut / "round-2" / "step-000003" / "state.json"  # round 2 judged, 4 of its 20 steps taken
    running = train("illume", cut, cache, wait=False)
    wait_for(marker, running)
    kill_all(running)
    assert marker.exists(), f"the run ended before round 2's step 3: {running.stdout.read()}"
    assert not (cut / "train.json").exists(), "killed after it finished: the test proves nothing"

    log = train("illume", cut, cache, "--resume")
    assert f"resuming from {cut / 'rounds' / 'step-000002'} (after step 2)" in log  # round 2's judging
    assert f"resuming from {cut / 'round-2' / 'step-0000'}" in log  # and its tuning
    assert saved(cut) == whole
