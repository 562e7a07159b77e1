"""ClipCap (Mokady, Hertz & Bermano, "ClipCap: CLIP Prefix for Image Captioning", 2021): the same
prefix captioner as ESPER's, trained with teacher-forced captions, the frozen LM's cross-entropy on
each caption token after the prefix and the prompt. With paired captions, it is the upper bound an
unpaired method can hope to reach with the same mapper, so it is trained until its loss on held-out
captions stops improving (`patience` evaluations in a row, one every `validation_every` steps, none
lower than the best by `min_delta`), with `steps` as the cap.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import bridge as br
from ..bridge import Text
from ..repro import generator
from ..training import Run, Validation, adamw, train_loop
from .prefix import PLAIN_PROMPT, PrefixCaptioner


@dataclass
class ClipCapConfig:
    steps: int = 300
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 10
    prompt: str = PLAIN_PROMPT
    seed: int = 0
    validation_every: int = 50  # with validation data: steps between two held-out losses
    patience: int = 3  # with validation data: held-out losses in a row without a better one that stop it
    min_delta: float = 0.002  # better: lower than the best so far by more than this (nats per token)


def fit_supervised(captioner: PrefixCaptioner, features: torch.Tensor, caption_fn, config: ClipCapConfig,
                   run: Run | None = None, validation: tuple[torch.Tensor, list[str]] | None = None) -> dict:
    """Train the mapper on features [N, feature_dim] and the captions caption_fn(index, step) -> str
    that continue `config.prompt` (for "there is": "a red circle at the top ."). `run`: over
    data-parallel ranks (each reads its block of every batch), with checkpoints. `validation`: held-out
    features and their captions, whose loss stops training early (every rank computes all of it, so
    every rank stops at the same step). Returns the log."""
    run = run or Run()
    captioner.check_features(features)
    order = generator(config.seed, "clipcap-batches")

    def sequences(rows: torch.Tensor, captions: list[str]) -> list[list]:
        contexts = captioner.contexts(rows, [config.prompt] * len(rows))
        return [[*c, Text(caption, learn=True)] for c, caption in zip(contexts, captions)]

    def loss_fn(step: int) -> torch.Tensor:
        idx = torch.randint(len(features), (config.batch_size,), generator=order)
        idx = run.ranks.take(idx)  # this rank's block of the step's batch
        captions = [caption_fn(i, step) for i in idx.tolist()]
        return br.teacher_forced_loss(captioner.lm, sequences(features[idx], captions), run.ranks)

    held_out = None
    if validation is not None:
        rows, captions = validation
        captioner.check_features(rows)
        if len(rows) != len(captions) or not len(rows):
            raise ValueError(f"validation needs one caption per feature row and at least one row, got {len(rows)} "
                             f"rows and {len(captions)} captions")

        @torch.no_grad()
        def held_out_loss() -> float:
            """Mean cross-entropy per caption token over every validation caption."""
            total, count = 0.0, 0
            for i in range(0, len(rows), 128):
                batch = br.assemble(captioner.lm, sequences(rows[i:i + 128], captions[i:i + 128]))
                _, logits = br.forward(captioner.lm, batch)
                logp = br.token_logprobs(logits, batch.targets)
                total -= float(logp.sum())
                count += int((batch.targets[:, 1:] != br.IGNORE).sum())
            return total / count

        held_out = Validation(held_out_loss, config.validation_every, config.patience, config.min_delta)

    optimizer = adamw(captioner.parameters(), config.lr, config.weight_decay)
    return train_loop(captioner, optimizer, config.steps, config.warmup_steps, loss_fn, "ClipCap",
                      streams={"clipcap-batches": order}, run=run, validation=held_out)
