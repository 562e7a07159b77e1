"""The small pieces every training loop here shares: optimiser, schedule, a logged step."""
from __future__ import annotations

import math
import time

import torch
from tqdm.auto import tqdm

from .repro import progress_enabled


def adamw(params, lr: float, weight_decay: float) -> torch.optim.AdamW:
    params = [p for p in params if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]  # matrices decay; biases, norms and scales do not
    rest = [p for p in params if p.ndim < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}],
                             lr=lr, betas=(0.9, 0.95))


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


def optimizer_step(optimizer, loss: torch.Tensor, groups: list, clip_grad: float, where: str) -> None:
    """One step on `loss`: stop on a loss that is not finite (the model is left as before the step),
    backward, clip each group of parameters to norm `clip_grad`, step."""
    if not torch.isfinite(loss):
        raise FloatingPointError(f"{where}: the loss became {loss.item()}; training stopped; lower the learning rate")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    for group in groups:
        torch.nn.utils.clip_grad_norm_(group, clip_grad)
    optimizer.step()


def train_loop(model, optimizer, steps: int, warmup: int, loss_fn, desc: str, clip_grad: float = 1.0,
               clip_groups: list | None = None) -> dict:
    """Run `steps` optimiser steps of loss_fn(step), which returns a scalar loss or a dict of named
    losses whose "total" is optimised; every loss is logged each step. Gradients are clipped to norm
    `clip_grad`, jointly, or per group of parameters in `clip_groups` (parts trained by different
    losses: one loss's large gradient then cannot shrink another's steps). Returns the training log."""
    base = [g["lr"] for g in optimizer.param_groups]
    groups = clip_groups or [[p for g in optimizer.param_groups for p in g["params"]]]
    log = {}
    start = time.time()
    model.train()
    for step in tqdm(range(steps), desc=desc, disable=not progress_enabled(), mininterval=2.0):
        set_schedule(optimizer, base, warmup_cosine(step, steps, warmup))
        losses = loss_fn(step)
        losses = losses if isinstance(losses, dict) else {"loss": losses}
        optimizer_step(optimizer, losses.get("total", losses.get("loss")), groups, clip_grad, f"{desc}, step {step}")
        for name, value in losses.items():
            log.setdefault(name, []).append(round(value.item(), 6))
    model.eval()
    return log | {"seconds": round(time.time() - start, 2), "steps": steps}
