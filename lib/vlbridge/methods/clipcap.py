"""ClipCap (Mokady, Hertz & Bermano, "ClipCap: CLIP Prefix for Image Captioning", 2021): the same
prefix captioner as ESPER's, trained with teacher-forced captions, the frozen LM's cross-entropy on
each caption token after the prefix and the prompt. With paired captions, it is the upper bound an
unpaired method can hope to reach with the same mapper.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import bridge as br
from ..bridge import Text
from ..repro import generator
from ..training import Run, adamw, train_loop
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


def fit_supervised(captioner: PrefixCaptioner, features: torch.Tensor, caption_fn, config: ClipCapConfig,
                   run: Run | None = None) -> dict:
    """Train the mapper on features [N, feature_dim] and the captions caption_fn(index, step) -> str
    that continue `config.prompt` (for "there is": "a red circle at the top ."). `run`: over
    data-parallel ranks (each reads its block of every batch), with checkpoints. Returns the log."""
    run = run or Run()
    captioner.check_features(features)
    order = generator(config.seed, "clipcap-batches")

    def loss_fn(step: int) -> torch.Tensor:
        idx = torch.randint(len(features), (config.batch_size,), generator=order)
        idx = run.ranks.take(idx)  # this rank's block of the step's batch
        contexts = captioner.contexts(features[idx], [config.prompt] * len(idx))
        return br.teacher_forced_loss(captioner.lm, [[*c, Text(caption_fn(i, step), learn=True)]
                                                     for c, i in zip(contexts, idx.tolist())], run.ranks)

    optimizer = adamw(captioner.parameters(), config.lr, config.weight_decay)
    return train_loop(captioner, optimizer, config.steps, config.warmup_steps, loss_fn, "ClipCap",
                      streams={"clipcap-batches": order}, run=run)
