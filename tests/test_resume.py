"""`vlbridge train MODEL --nproc 2` killed with SIGKILL (or stopped by SIGTERM) mid-run, then
`--resume`d, ends with the weights an uninterrupted run ends with, bit for bit; a half-written
checkpoint is skipped with a message; and the chapters load what `vlbridge train` saved. Run through
the real command (torchrun, two gloo processes) on the smoke profile."""
import json
import random
import signal
from pathlib import Path

import pytest
import torch

from train_runs import kill_all, own_cache, vlbridge_train, wait_for

# model -> (checkpoint every K steps, the checkpoints to stop after: one is drawn)
RUNS = {"fromage": (2, range(3, 22, 2)), "esper_grpo": (1, range(0, 4))}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A store of this module's own: the runs save there, not over the book's."""
    return own_cache(tmp_path_factory)


def train(model: str, out: Path, cache: Path, *extra: str, wait: bool = True):
    return vlbridge_train(model, out, cache, "--nproc", "2", "--set", "threads=1", "--checkpoint-every",
                          str(RUNS[model][0]), *extra, wait=wait)


def saved_weights(out: Path) -> bytes:
    entry = Path(json.loads((out / "train.json").read_text())["entry"])
    return (entry / "bridge.safetensors").read_bytes()


@pytest.fixture(scope="module")
def uninterrupted(cache, tmp_path_factory):
    """model -> the weights a run never stopped ends with (trained once, on first use)."""
    found = {}

    def weights(model: str) -> bytes:
        if model not in found:
            out = tmp_path_factory.mktemp(f"{model}-whole")
            train(model, out, cache)
            found[model] = saved_weights(out)
        return found[model]

    return weights


@pytest.mark.parametrize("model", sorted(RUNS))
def test_a_run_killed_and_resumed_ends_with_the_uninterrupted_weights(model, cache, uninterrupted, tmp_path):
    whole = uninterrupted(model)

    cut = tmp_path / "cut"
    stop_after = random.Random(model).choice(RUNS[model][1])
    marker = cut / f"step-{stop_after:06d}" / "state.json"
    running = train(model, cut, cache, wait=False)
    wait_for(marker, running)
    kill_all(running)
    assert marker.exists(), f"the run ended before checkpointing step {stop_after}: {running.stdout.read()}"
    assert not (cut / "train.json").exists(), "killed after it finished: the test proves nothing"

    # What a kill during a save leaves, and a checkpoint that lost its state: both are skipped.
    (cut / ".step-999999.partial").mkdir()
    (cut / "step-999998").mkdir()
    log = train(model, cut, cache, "--resume")
    assert f"ignoring checkpoint {cut / 'step-999998'}: no state.json" in log
    assert f"ignoring half-written checkpoint {cut / '.step-999999.partial'}" in log
    resumed_from = int(log.split("resuming from ")[1].split("step-")[1][:6])
    assert resumed_from >= stop_after
    assert saved_weights(cut) == whole


def test_resume_with_nothing_saved_starts_from_step_zero(cache, tmp_path):
    (tmp_path / "run" / ".step-000004.partial").mkdir(parents=True)
    log = train("esper_grpo", tmp_path / "run", cache, "--resume")
    assert "ignoring half-written checkpoint" in log and "no complete checkpoint" in log
    assert "trained 6 steps" in log


def test_sigterm_saves_after_the_step_in_progress_and_the_run_resumes(cache, uninterrupted, tmp_path):
    """A scheduler's pre-emption: SIGTERM to the command, which passes it on to torchrun and so to
    the workers; each rank finishes its step, they save one checkpoint together, and exit; --resume
    then ends as a run never stopped."""
    running = train("fromage", tmp_path, cache, wait=False)
    wait_for(tmp_path / "step-000003" / "state.json", running)
    running.send_signal(signal.SIGTERM)
    output = running.communicate(timeout=120)[0]
    assert "stopped by SIGTERM after step" in output, output
    stopped_at = int(output.split("stopped by SIGTERM after step ")[1].split(";")[0])
    assert (tmp_path / f"step-{stopped_at:06d}" / "state.json").is_file()
    assert not (tmp_path / "train.json").exists()
    log = train("fromage", tmp_path, cache, "--resume")
    assert f"resuming from {tmp_path / f'step-{stopped_at:06d}'}" in log
    assert saved_weights(tmp_path) == uninterrupted("fromage")


def test_the_chapter_loads_what_vlbridge_train_saved(cache, monkeypatch):
    """One code path: `vlbridge train fromage -p smoke` saves under chapter 3's smoke parameters; the
    chapter (recipes.obtain) and chapter 6 (store.trained) then load that model, and train nothing."""
    from vlbridge import backbones
    from vlbridge.book import config, recipes, store
    from vlbridge.contracts import Backbones
    from vlbridge.methods.fromage import Fromage

    output = vlbridge_train("fromage", None, cache)
    monkeypatch.setenv("VLBRIDGE_CACHE", str(cache))
    params = config.merged_parameters("03_grounding", "smoke")
    entry = store.trained("03_grounding", "fromage", "smoke")  # what chapter 6 asks for
    assert f"saved {entry}" in output

    def no_training(*args, **kwargs):
        raise AssertionError("the chapter trained instead of loading")

    monkeypatch.setattr(Fromage, "fit", no_training)
    said = []
    clip, lm = backbones.load_clip(params["clip_model"]), backbones.load_lm(params["lm_model"])
    model, record = recipes.obtain("fromage", params, Backbones(clip, lm), say=said.append)
    assert record["trained_by"] == "vlbridge train, 1 process(es)" and len(record["log"]["total"]) == params["steps"]
    assert said == [f"fromage: loaded from the store, trained by vlbridge train, 1 process(es) ({entry})"]
    saved = Fromage.load(entry, Backbones(clip, lm))
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), saved.parameters()))
