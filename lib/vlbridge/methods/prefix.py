"""A prefix captioner (ClipCap: Mokady, Hertz & Bermano, 2021): an MLP maps an encoder's features to
p input embeddings of a frozen LM, put before a text prompt; the LM continues with the caption.

ESPER (reward.py) trains it with reinforcement learning and no captions at all; ClipCap
(supervised.py) with teacher-forced captions. The features can come from any encoder: CLIP images
(features.py), or an audio encoder that was aligned to CLIP's space (audio.py).

A prompt steers the frozen LM towards the kind of text wanted: PLAIN_PROMPT for a plain caption, or
a style prompt ("news :", world.style_prompt) for a styled one. The caption is what the LM writes
after it, until a STOP word; or, with exact_length (ESPER's official code), exactly max_new_tokens
tokens with end-of-text forbidden.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .. import bridge as br
from .. import checkpoint
from ..bridge import Embeds, Text, Tokens
from ..contracts import Backbones
from ..world import SENTENCE_ENDS

PLAIN_PROMPT = "there is"
STOP = SENTENCE_ENDS  # a caption is the first sentence the LM writes, in any style


@dataclass
class PrefixConfig:
    encoder: str  # what makes the features (e.g. "micro-clip:patches"), checked when a bridge is loaded
    feature_dim: int
    prefix_tokens: int = 4  # p: LM input embeddings made from one set of features
    hidden: int = 0  # the MLP's hidden width; 0: half its output (ClipCap's MLP)
    max_new_tokens: int = br.CAPTION_TOKENS


class PrefixCaptioner(checkpoint.Trained, nn.Module):
    config_class = PrefixConfig

    def __init__(self, lm, config: PrefixConfig):
        super().__init__()
        self.config, self.lm = config, lm  # the LM is frozen: a plain attribute, not a parameter
        self.mapper = br.Bridge(config.feature_dim, lm.embed_dim, config.prefix_tokens, "mlp", config.hidden or None)
        self.to(br.lm_device(lm))

    @property
    def device(self) -> torch.device:
        return br.lm_device(self.lm)

    def check_features(self, features: torch.Tensor) -> torch.Tensor:
        if not isinstance(features, torch.Tensor) or features.ndim != 2 or features.shape[1] != self.config.feature_dim:
            shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
            raise ValueError(f"features must be a tensor [N, {self.config.feature_dim}] from {self.config.encoder}, "
                             f"got {shape}")
        if len(features) == 0:
            raise ValueError("got an empty batch of features")
        return features

    def contexts(self, features: torch.Tensor | None, prompts: list[str]) -> list[list]:
        """[prefix, prompt] per caption; features None gives the text-only LM's context [prompt]."""
        if features is None:
            return [[Text(p)] if p else [] for p in prompts]
        prefixes = self.mapper(self.check_features(features).to(self.device))
        if len(prefixes) != len(prompts):
            raise ValueError(f"{len(prefixes)} feature rows but {len(prompts)} prompts")
        return [[Embeds(x, tag="prefix"), *([Text(p)] if p else [])] for x, p in zip(prefixes, prompts)]

    def end_of_text(self) -> tuple[int, ...]:
        """The token id exact_length forbids (train/code/policy.py:109-110 sets its logit to -inf)."""
        eos = self.lm.tokenizer.eos_token_id
        if eos is None:
            raise ValueError(f"exact_length forbids end-of-text, but {self.lm.name}'s tokenizer has no eos token")
        return (eos,)

    @torch.no_grad()
    def sample(self, features: torch.Tensor | None, prompts: list[str], temperature: float = 0.0,
               generator: torch.Generator | None = None, max_new_tokens: int | None = None,
               exact_length: bool = False) -> br.Generation:
        """One batched, KV-cached generation after each context (features None: the text-only LM);
        exact_length: exactly max_new_tokens tokens each, none of them end-of-text."""
        if not prompts:
            raise ValueError("got an empty batch of prompts")
        batch = br.assemble(self.lm, self.contexts(features, prompts), pad_left=True)
        stop, banned = ((), self.end_of_text()) if exact_length else (STOP, ())
        return br.generate(self.lm, batch, max_new_tokens or self.config.max_new_tokens, temperature, stop,
                           generator=generator, exact=exact_length, banned=banned)

    def caption(self, features: torch.Tensor, prompt: str = PLAIN_PROMPT, temperature: float = 0.0,
                generator: torch.Generator | None = None, batch_size: int = 256) -> list[str]:
        """Captions (greedy, or sampled at `temperature`) of every row of features, after `prompt`."""
        self.check_features(features)
        texts = []
        for i in range(0, len(features), batch_size):
            chunk = features[i:i + batch_size]
            texts += self.sample(chunk, [prompt] * len(chunk), temperature, generator).texts
        return [t.strip() for t in texts]

    def continuation(self, features: torch.Tensor | None, prompts: list[str], tokens: list[list[int]],
                     temperature: float = 1.0, exact_length: bool = False
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Teacher-forced pass over given continuations: the log-probability of each token under
        softmax(logits / temperature) [B, L] (exact_length: with end-of-text forbidden, as sample
        wrote them), the hidden state that chose it [B, L, d], and the mask of real tokens [B, L]
        (L: the longest continuation). Differentiable in the mapper."""
        if any(len(t) == 0 for t in tokens):
            raise ValueError("every continuation needs at least one token")
        sequences = [[*context, Tokens(tuple(t), learn=True, tag="continuation")]
                     for context, t in zip(self.contexts(features, prompts), tokens, strict=True)]
        batch = br.assemble(self.lm, sequences)
        hidden, logits = br.forward(self.lm, batch)
        if exact_length:
            logits = logits.index_fill(-1, torch.tensor(self.end_of_text(), device=logits.device), float("-inf"))
        per_position = br.token_logprobs(logits, batch.targets, temperature)
        rows, cols = batch.positions("continuation")
        device = logits.device
        lengths = torch.tensor([len(t) for t in tokens], device=device)
        within = torch.cat([torch.arange(len(t), device=device) for t in tokens])
        shape = (len(tokens), max(len(t) for t in tokens))
        logp = torch.zeros(shape, device=device).index_put((rows, within), per_position[rows, cols - 1])
        states = torch.zeros(*shape, hidden.shape[-1], device=device).index_put((rows, within), hidden[rows, cols - 1])
        mask = (torch.arange(shape[1], device=device)[None] < lengths[:, None]).float()
        return logp, states, mask

    # ------------------------------------------------------------------ sharing (checkpoint.Trained)
    def backbone_record(self) -> tuple[dict, dict]:
        return {"encoder": self.config.encoder, "lm": self.lm.name}, checkpoint.backbone_dims(lm=self.lm)

    @classmethod
    def from_config(cls, config: PrefixConfig, backbones: Backbones) -> "PrefixCaptioner":
        return cls(backbones.lm, config)
