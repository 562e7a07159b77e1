"""Early stopping on a held-out loss (training.Validation): ClipCap, the supervised bound of chapter
4, trains until its held-out loss stops improving (issue 17). The decision reads only the log, so a
run resumed from a checkpoint stops where the uninterrupted run stopped, with the same weights."""
import shutil

import pytest
import torch

from vlbridge.resume import RunCheckpoints
from vlbridge.training import Run, Validation, adamw, train_loop


def test_it_stops_after_patience_evaluations_none_better_by_min_delta():
    rule = Validation(lambda: 0.0, every=1, patience=3, min_delta=0.01)
    assert not rule.stopped({})
    assert not rule.stopped({"validation": [1.0, 0.9, 0.895, 0.893]})  # two not better by 0.01: not yet
    assert rule.stopped({"validation": [1.0, 0.9, 0.895, 0.893, 0.899]})  # three
    assert not rule.stopped({"validation": [1.0, 0.9, 0.895, 0.893, 0.85]})  # 0.85 beats 0.9 by 0.05: counting restarts
    assert Validation(lambda: 0.0, every=1, patience=1).stopped({"validation": [1.0, 1.0]})  # equal is no better
    for bad in ({"every": 0}, {"patience": 0}, {"min_delta": -1.0}):
        with pytest.raises(ValueError, match="every >= 1, patience >= 1 and min_delta >= 0"):
            Validation(lambda: 0.0, **({"every": 1, "patience": 1} | bad))


def overfitting_run(folder=None, resume=False, steps=200):
    """A linear model fit to 8 noisy points; its loss on other points of the same line falls, then
    rises as it fits the noise: the run must stop before `steps`."""
    torch.manual_seed(0)
    x, x_val = torch.randn(8, 6), torch.randn(64, 6)
    w = torch.randn(6, 1)
    y, y_val = x @ w + 0.5 * torch.randn(8, 1), x_val @ w
    model = torch.nn.Linear(6, 1)
    optimizer = adamw(model.parameters(), 0.05, 0.0)
    order = torch.Generator().manual_seed(1)

    def loss_fn(step):
        idx = torch.randint(8, (4,), generator=order)
        return ((model(x[idx]) - y[idx]) ** 2).mean()

    @torch.no_grad()
    def held_out():
        return float(((model(x_val) - y_val) ** 2).mean())

    run = Run(checkpoints=RunCheckpoints(folder, every=1, resume=resume, say=lambda *a: None) if folder else None)
    log = train_loop(model, optimizer, steps, 0, loss_fn, "toy", streams={"order": order}, run=run,
                     validation=Validation(held_out, every=5, patience=3, min_delta=1e-4))
    return model, log


def test_a_run_stops_where_its_held_out_loss_stops_improving_and_a_resumed_run_stops_there_too(tmp_path):
    model, log = overfitting_run(tmp_path / "whole")
    assert 0 < log["steps"] < 200 and len(log["loss"]) == log["steps"]
    assert log["validation_step"] == list(range(5, log["steps"] + 1, 5))  # one held-out loss every 5 steps
    values = log["validation"]
    best = values.index(min(values))
    assert best == len(values) - 4 and min(values) < values[0]  # improved, then 3 evaluations did not
    # Resume from a checkpoint taken before the stop: the same stop, the same weights, the same log.
    cut = tmp_path / "cut"
    shutil.copytree(tmp_path / "whole", cut)
    for folder in cut.glob("step-*"):
        if int(folder.name.split("-")[1]) >= log["steps"] - 7:
            shutil.rmtree(folder)
    resumed, resumed_log = overfitting_run(cut, resume=True)
    assert resumed_log["steps"] == log["steps"]
    assert {k: v for k, v in resumed_log.items() if k != "seconds"} == {k: v for k, v in log.items() if k != "seconds"}
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), resumed.state_dict().values()))
