"""The small pieces every training loop here shares: optimiser, schedule, a logged step."""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from .distributed import SINGLE, Group, reduce_gradients
from .repro import progress_enabled
from .resume import RunCheckpoints


@dataclass
class Run:
    """How a training loop runs besides its own settings: over which data-parallel ranks (one process
    by default, as in the notebooks), with which checkpoints (none by default)."""

    ranks: Group = SINGLE
    checkpoints: RunCheckpoints | None = None

    def restore(self, model, optimizer, shared: dict, own: dict | None = None) -> tuple[int, dict]:
        return self.checkpoints.restore(model, optimizer, shared, own) if self.checkpoints else (0, {})

    def after_step(self, step: int, last: int, model, optimizer, shared: dict, log: dict, own: dict | None = None):
        if self.checkpoints:
            self.checkpoints.after_step(step, last, model, optimizer, shared, own, log)


@dataclass
class Validation:
    """Early stopping on a held-out loss: after every `every` steps, loss() (the model's loss on data it
    does not train on, computed by the caller without gradients) is logged under "validation" (and the
    step under "validation_step"); training stops once `patience` evaluations in a row have not beaten
    the best so far by more than `min_delta`. The decision reads only the log, so a resumed run makes
    it as the uninterrupted run did."""

    loss: Callable[[], float]
    every: int
    patience: int
    min_delta: float = 0.0

    def __post_init__(self):
        if self.every < 1 or self.patience < 1 or self.min_delta < 0:
            raise ValueError(f"validation needs every >= 1, patience >= 1 and min_delta >= 0, got every={self.every}, "
                             f"patience={self.patience}, min_delta={self.min_delta}")

    def stopped(self, log: dict) -> bool:
        best, since = math.inf, 0
        for value in log.get("validation", []):
            best, since = (value, 0) if value < best - self.min_delta else (best, since + 1)
        return since >= self.patience


def adamw(params, lr: float, weight_decay: float, betas: tuple[float, float] = (0.9, 0.95)) -> torch.optim.AdamW:
    """AdamW that decays matrices only; betas (0.9, 0.95) are FROMAGe's and the book's (a paper
    profile may name its official code's)."""
    params = [p for p in params if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]  # matrices decay; biases, norms and scales do not
    rest = [p for p in params if p.ndim < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}],
                             lr=lr, betas=tuple(betas))


def warmup_cosine(step: int, total: int, warmup: int) -> float:
    """Learning-rate multiplier: linear warm-up, then cosine decay to 10%."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


def set_schedule(optimizer, base: list[float], scale: float) -> None:
    """Every parameter group's learning rate at `scale` times its base rate."""
    for group, lr in zip(optimizer.param_groups, base):
        group["lr"] = lr * scale


def optimizer_step(optimizer, loss: torch.Tensor, groups: list, clip_grad: float | None, where: str,
                   ranks: Group = SINGLE) -> None:
    """One step on `loss` (this rank's share of it: see distributed): stop on a loss that is not
    finite on any rank (the model is left as before the step), backward, sum the gradients over
    ranks, clip each group of parameters to norm `clip_grad` (None: no clipping), step; stop on a
    step that diverged."""
    if ranks.any(not torch.isfinite(loss).item()):
        raise FloatingPointError(f"{where}: the loss became {ranks.sum(loss).item()}; training stopped; "
                                 "lower the learning rate")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    params = [p for g in optimizer.param_groups for p in g["params"]]
    reduce_gradients(params, ranks)
    for group in groups if clip_grad is not None else ():
        torch.nn.utils.clip_grad_norm_(group, clip_grad)
    before = [p.detach().clone() for p in params]
    optimizer.step()
    _check_step_size(params, before, where)


# A step that moves the trained weights by more than their own norm has diverged: clipping keeps the
# loss finite, so nothing else notices (lr=1e6 moved them 3e6-fold). Healthy steps of the book's runs
# move them by at most 8% (FROMAGe, ClipCap and GRPO on the smoke profile; every default chapter runs
# through this check too).
MOST_A_STEP_MOVES = 1.0


def _check_step_size(params: list, before: list, where: str) -> None:
    """Stop training, with the weights put back as they were before the step, when the step moved
    them by more than MOST_A_STEP_MOVES times their norm (every rank decides alike: same weights)."""
    size = torch.sqrt(sum(b.float().square().sum() for b in before))
    if size == 0:  # weights all zero at the start: no scale to compare a step with
        return
    moved = torch.sqrt(sum((p.detach().float() - b.float()).square().sum() for p, b in zip(params, before))) / size
    if moved > MOST_A_STEP_MOVES:
        with torch.no_grad():
            for p, b in zip(params, before):
                p.copy_(b)
        raise FloatingPointError(f"{where}: training diverged: one step moved the trained weights by "
                                 f"{moved.item():.3g} times their size (healthy steps move them by a few percent); "
                                 "training stopped with the weights as before that step; lower the learning rate (lr)")


def train_loop(model, optimizer, steps: int, warmup: int, loss_fn, desc: str, clip_grad: float = 1.0,
               clip_groups: list | None = None, streams: dict | None = None, run: Run | None = None,
               validation: Validation | None = None) -> dict:
    """Run `steps` optimiser steps of loss_fn(step), which returns a scalar loss or a dict of named
    losses whose "total" is optimised; every loss is logged each step. Gradients are clipped to norm
    `clip_grad`, jointly, or per group of parameters in `clip_groups` (parts trained by different
    losses: one loss's large gradient then cannot shrink another's steps). `streams` names the random
    generators loss_fn draws from; `run` (data-parallel ranks, checkpoints) is one process by default;
    `validation` stops it early (the learning-rate schedule still spans `steps`). Returns the training
    log, whose "steps" is the number of steps run."""
    run = run or Run()
    base = [g["lr"] for g in optimizer.param_groups]  # before a restore puts a scheduled rate in place
    groups = clip_groups or [[p for g in optimizer.param_groups for p in g["params"]]]
    first, log = run.restore(model, optimizer, streams or {})
    ran = first
    stop = validation is not None and validation.stopped(log)  # a run resumed from the step where it stopped
    start = time.time()
    model.train()
    for step in tqdm(range(first, steps), desc=desc, disable=not (progress_enabled() and run.ranks.main),
                     mininterval=2.0, initial=first, total=steps):
        if stop:
            break
        set_schedule(optimizer, base, warmup_cosine(step, steps, warmup))
        losses = loss_fn(step)
        losses = losses if isinstance(losses, dict) else {"loss": losses}
        optimizer_step(optimizer, losses.get("total", losses.get("loss")), groups, clip_grad, f"{desc}, step {step}",
                       run.ranks)
        for name, value in losses.items():  # a rank's share summed over ranks: the global loss
            log.setdefault(name, []).append(round(run.ranks.sum(value.detach()).item(), 6))
        ran = step + 1
        if validation is not None and ran % validation.every == 0:
            model.eval()
            log.setdefault("validation", []).append(round(float(validation.loss()), 6))
            log.setdefault("validation_step", []).append(ran)
            model.train()
            stop = validation.stopped(log)
        run.after_step(step, step if stop else steps - 1, model, optimizer, streams or {}, log)
    model.eval()
    return log | {"seconds": round(time.time() - start, 2), "steps": ran}
