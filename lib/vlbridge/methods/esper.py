"""ESPER (Yu, Chung et al., "Multimodal Knowledge Alignment with Reinforcement Learning", 2022):
a prefix captioner in front of a frozen LM, trained with no caption at all.

Each step samples captions for a batch of images (or sounds); the reward of a caption is an affine
transform of the cosine similarity between the frozen CLIP embedding of its image and CLIP's text
embedding of the caption; every token pays a KL penalty to the text-only LM (the same frozen LM, no
prefix, same prompt), which keeps the captions fluent. Two optimisers of that same objective:

- **PPO** (the paper's): a value head on the LM's hidden states, per-token rewards (the KL penalty at
  every token, the CLIP reward at the last), GAE advantages, whitening, clipped policy and value
  losses, several epochs of minibatches per rollout;
- **GRPO** (Shao et al., DeepSeekMath, 2024): several samples per image; each sample's return (the
  CLIP reward minus its summed KL penalty) is normalised within its group, so no value model is needed.

By default the policy is softmax(logits / temperature): samples, ratios and the KL all use that
distribution. The official code's choices are options (EsperConfig): captions sampled at the
temperature but scored, in the ratio and the KL, under softmax(logits) (logprob_temperature=1); exactly
max_new_tokens tokens with end-of-text forbidden (exact_length); an entropy reward on the text-only LM's
surprisal (entropy_reward_*); AdamW's betas, weight decay and no gradient clipping.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..distributed import SINGLE, Group
from ..repro import generator, progress_enabled
from ..training import Run, adamw, optimizer_step, set_schedule, warmup_cosine
from .prefix import PLAIN_PROMPT, PrefixCaptioner

ALGORITHMS = ("ppo", "grpo")


@dataclass
class EsperConfig:
    algorithm: str = "grpo"  # "ppo" (the paper's) or "grpo"
    steps: int = 150  # rollouts
    batch_size: int = 32  # images per rollout
    samples: int = 4  # captions sampled per image (GRPO's group size)
    temperature: float = 1.0
    kl_coef: float = 0.02  # per-token KL penalty to the text-only LM (the paper: 0.15)
    reward_scale: float = 1.0  # reward = scale * (cosine - shift)
    reward_shift: float = 0.0
    contrastive: bool = False  # also shift each caption's reward by its mean cosine with the other images
    lr: float = 1e-3
    warmup_steps: int = 10
    weight_decay: float = 0.0
    epochs: int = 1  # passes over each rollout (the paper's PPO: 4)
    minibatches: int = 1  # per pass (the paper's PPO: 16)
    clip_range: float = 0.2  # of the policy ratio, and of the value change (PPO)
    gamma: float = 1.0  # GAE discount (PPO)
    lam: float = 0.95  # GAE lambda (PPO)
    value_coef: float = 0.5  # weight of the value loss (PPO)
    prompts: dict = field(default_factory=lambda: {PLAIN_PROMPT: 1.0})  # prompt -> share of rollouts
    seed: int = 0
    # The official code's choices (JiwanChung/esper e1fd47d, train/code/); each default is the book's.
    logprob_temperature: float | None = None  # of the log-probs in the ratio and the KL; None: `temperature`
    exact_length: bool = False  # max_new_tokens tokens, end-of-text forbidden; False: stop at a sentence end
    entropy_reward_coef: float = 0.0  # the entropy reward (see entropy_reward); coef and bias 0: none
    entropy_reward_threshold: float = 70.0
    entropy_reward_bias: float = 0.0
    betas: tuple = (0.9, 0.95)  # AdamW's
    clip_grad: float | None = 1.0  # the gradient norm each step is clipped to; None: no clipping


# ---------------------------------------------------------------------------- the objective's pieces
def clip_reward(clip, texts: list[str], embeddings: torch.Tensor, scale: float = 1.0, shift: float = 0.0,
                contrastive: bool = False, batch: torch.Tensor | None = None, offset: int = 0) -> torch.Tensor:
    """scale * (cos(embedding, CLIP text embedding of text) - shift) for each pair, [N]. contrastive:
    the shift of each text is also its mean cosine with the batch's other embeddings, so a caption
    true of any picture earns nothing. `batch` is the whole batch's embeddings when `embeddings` are
    rows offset.. of it (one data-parallel rank's); by default, they are the batch."""
    if not texts:
        raise ValueError("clip_reward got an empty batch of texts")
    if len(texts) != len(embeddings):
        raise ValueError(f"clip_reward got {len(texts)} texts but {len(embeddings)} embeddings")
    batch = embeddings if batch is None else batch
    text = F.normalize(clip.encode_texts([t if t.strip() else "." for t in texts]).float(), dim=-1)
    cosines = text.to(embeddings.device) @ F.normalize(batch.float(), dim=-1).T
    rows = torch.arange(len(texts), device=cosines.device)
    cosine = cosines[rows, rows + offset]
    if contrastive:
        others = ~(embeddings[:, None] == batch[None]).all(-1)  # GRPO's repeats are exact copies
        shift = shift + (cosines * others).sum(1) / others.sum(1).clamp(min=1)
    return scale * (cosine - shift)


def entropy_reward(ref_logp: torch.Tensor, mask: torch.Tensor, coef: float, threshold: float,
                   bias: float) -> torch.Tensor:
    """The official run's entropy reward per token [B, L] (train/code/lightning.py:465-472, set by
    configs/esper.yml:21-23): over a caption of m tokens, bias / m at each token, less coef times the
    text-only LM's surprisal -log ref(a) beyond threshold / m. It pays `bias` for a caption whose
    surprisal stays within the threshold everywhere, and charges for text the LM finds unlikely."""
    length = mask.sum(1, keepdim=True).clamp(min=1)
    excess = (-ref_logp - threshold / length).clamp(min=0)
    return (bias / length - coef * excess) * mask


def masked_mean(x: torch.Tensor, mask: torch.Tensor, total: torch.Tensor | None = None) -> torch.Tensor:
    """The mean of x over the masked entries; given the `total` number of entries of every
    data-parallel rank, this rank's share of the mean over all of them."""
    return (x * mask).sum() / (mask.sum() if total is None else total).clamp(min=1)


def whiten(x: torch.Tensor, mask: torch.Tensor, ranks: Group = SINGLE, eps: float = 1e-8) -> torch.Tensor:
    """x shifted and scaled to mean 0 and variance 1 over the masked entries (of every rank)."""
    total = ranks.sum(mask.sum())
    mean = ranks.sum(masked_mean(x, mask, total))
    var = ranks.sum(masked_mean((x - mean) ** 2, mask, total))
    return (x - mean) * torch.rsqrt(var + eps) * mask


def kl_per_token(logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The sampled estimate of KL(policy || reference) at each token: log pi(a) - log ref(a)."""
    return (logp - ref_logp) * mask


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float):
    """Generalised advantage estimation over [B, L] episodes that end at their last masked token
    (the value after it is 0). Returns (advantages, returns = advantages + values)."""
    advantages = torch.zeros_like(rewards)
    running = torch.zeros(len(rewards), device=rewards.device)
    next_value = torch.zeros(len(rewards), device=rewards.device)
    for t in reversed(range(rewards.shape[1])):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = (delta + gamma * lam * running) * mask[:, t]
        advantages[:, t] = running
        next_value = values[:, t] * mask[:, t]
    return advantages, advantages + values * mask


def group_advantages(returns: torch.Tensor, group_size: int, eps: float = 1e-6) -> torch.Tensor:
    """GRPO: each return minus its group's mean, over the group's standard deviation; groups are
    consecutive runs of `group_size` samples (the captions of one image)."""
    if group_size < 2 or len(returns) % group_size:
        raise ValueError(f"GRPO needs groups of at least 2 samples dividing the batch; got {len(returns)} "
                         f"returns in groups of {group_size}")
    groups = returns.view(-1, group_size)
    normalised = (groups - groups.mean(1, keepdim=True)) / (groups.std(1, unbiased=False, keepdim=True) + eps)
    return normalised.view(-1)


def clipped_policy_loss(logp, old_logp, advantages, mask, clip_range: float, total=None) -> torch.Tensor:
    """PPO's pessimistic surrogate: mean over tokens of max(-A r, -A clip(r, 1-c, 1+c))."""
    ratio = torch.exp(logp - old_logp)
    loss = torch.maximum(-advantages * ratio, -advantages * ratio.clamp(1 - clip_range, 1 + clip_range))
    return masked_mean(loss, mask, total)


def clipped_value_loss(values, old_values, returns, mask, clip_range: float, total=None) -> torch.Tensor:
    """Half the squared error, pessimistic over the new value and the old one moved at most clip_range."""
    moved = old_values + (values - old_values).clamp(-clip_range, clip_range)
    return 0.5 * masked_mean(torch.maximum((values - returns) ** 2, (moved - returns) ** 2), mask, total)


# ---------------------------------------------------------------------------- training
class Esper(nn.Module):
    """The captioner being trained, and for PPO its value head."""

    def __init__(self, captioner: PrefixCaptioner, clip, config: EsperConfig):
        super().__init__()
        if config.algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm must be one of {', '.join(ALGORITHMS)}, got {config.algorithm!r}")
        if config.algorithm == "grpo" and config.samples < 2:
            raise ValueError(f"GRPO compares samples of the same image: samples must be >= 2, got {config.samples}")
        if config.temperature <= 0:
            raise ValueError(f"temperature must be > 0 (the policy is softmax(logits / temperature)), "
                             f"got {config.temperature}")
        if min(config.epochs, config.minibatches, config.batch_size, config.steps) < 1:
            raise ValueError("steps, batch_size, epochs and minibatches must all be >= 1")
        if not config.prompts or any(w < 0 for w in config.prompts.values()) or sum(config.prompts.values()) <= 0:
            raise ValueError(f"prompts must map each prompt to a non-negative share, some positive; "
                             f"got {config.prompts}")
        if config.logprob_temperature is not None and config.logprob_temperature <= 0:
            raise ValueError(f"logprob_temperature must be > 0 or None (the sampling temperature), "
                             f"got {config.logprob_temperature}")
        self.config, self.captioner, self.clip = config, captioner, clip
        self.value = nn.Linear(captioner.lm.embed_dim, 1) if config.algorithm == "ppo" else None
        self.to(captioner.device)

    def rollout(self, features: torch.Tensor, targets: torch.Tensor, prompts: list[str],
                rng: torch.Generator, ranks: Group = SINGLE, batch: torch.Tensor | None = None,
                offset: int = 0) -> dict:
        """Sample captions and score them: everything an update needs, without gradients. Over
        data-parallel `ranks`, these are rows offset.. of the rollout whose reward targets are `batch`."""
        cfg = self.config
        with torch.no_grad():
            out = self.captioner.sample(features, prompts, cfg.temperature, rng, exact_length=cfg.exact_length)
            reward = clip_reward(self.clip, [t.strip() for t in out.texts], targets, cfg.reward_scale, cfg.reward_shift,
                                 cfg.contrastive, batch, offset)
            logp, states, mask = self.continuation(features, prompts, out.tokens)
            ref_logp, _, _ = self.continuation(None, prompts, out.tokens)
            kl = kl_per_token(logp, ref_logp, mask)
            # Without an entropy reward nothing is added, so the book's sums stay bit-identical.
            bonus = (entropy_reward(ref_logp, mask, cfg.entropy_reward_coef, cfg.entropy_reward_threshold,
                                    cfg.entropy_reward_bias)
                     if cfg.entropy_reward_coef or cfg.entropy_reward_bias else None)
            if self.value is None:
                returns = reward - cfg.kl_coef * kl.sum(1)
                if bonus is not None:
                    returns = returns + bonus.sum(1)
                advantages = group_advantages(returns, cfg.samples)[:, None] * mask
                values = None
            else:
                values = self.value(states)[..., 0] * mask
                rewards = -cfg.kl_coef * kl
                if bonus is not None:
                    rewards = rewards + bonus
                last = mask.sum(1).long() - 1
                rewards[torch.arange(len(rewards), device=rewards.device), last] += reward
                advantages, returns = gae(rewards, values, mask, cfg.gamma, cfg.lam)
                advantages = whiten(advantages, mask, ranks)
        return {"texts": out.texts, "tokens": out.tokens, "reward": reward, "kl": kl.sum(1), "mask": mask,
                "old_logp": logp, "advantages": advantages, "old_values": values, "returns": returns}

    def continuation(self, features: torch.Tensor | None, prompts: list[str], tokens: list[list[int]]):
        """The captioner's teacher-forced pass at the temperature the ratio and the KL use, under the
        distribution the captions were sampled from (end-of-text forbidden with exact_length)."""
        cfg = self.config
        temperature = cfg.temperature if cfg.logprob_temperature is None else cfg.logprob_temperature
        return self.captioner.continuation(features, prompts, tokens, temperature, exact_length=cfg.exact_length)

    def update(self, roll: dict, features: torch.Tensor, prompts: list[str], rows: torch.Tensor,
               total: torch.Tensor | None = None) -> dict:
        """The loss on the rollout rows `rows` (one minibatch); given the minibatch's `total` tokens on
        every data-parallel rank, this rank's share of it (a rank with no rows contributes zero)."""
        cfg = self.config
        if not len(rows):
            zero = sum(p.sum() for p in self.parameters() if p.requires_grad) * 0.0  # zero gradients, for the sum
            return {"policy": zero, **({"value": zero} if self.value is not None else {}), "total": zero}
        tokens = [roll["tokens"][i] for i in rows.tolist()]
        logp, states, mask = self.continuation(features[rows], [prompts[i] for i in rows.tolist()], tokens)
        width = mask.shape[1]  # a minibatch's longest caption may be shorter than the rollout's
        pick = {k: roll[k][rows][:, :width] for k in ("old_logp", "advantages")}
        losses = {"policy": clipped_policy_loss(logp, pick["old_logp"], pick["advantages"], mask, cfg.clip_range,
                                                total)}
        if self.value is not None:
            values = self.value(states)[..., 0] * mask
            losses["value"] = clipped_value_loss(values, roll["old_values"][rows][:, :width],
                                                 roll["returns"][rows][:, :width], mask, cfg.clip_range, total)
        losses["total"] = losses["policy"] + cfg.value_coef * losses.get("value", 0.0)
        return losses

    def fit(self, features: torch.Tensor, targets: torch.Tensor, callback=None, until: int | None = None,
            run: Run | None = None) -> dict:
        """Train on conditions: `features` [N, feature_dim] (what the mapper reads) and `targets`
        [N, clip_dim] (the CLIP-space embeddings the reward compares captions with). No caption is
        read. callback(step, model), if given, runs before each step (e.g. to caption held-out
        images during training). `until` stops after that many steps, on the schedule of
        config.steps (to compare runs at an early step). `run`: over data-parallel ranks, with
        checkpoints (training.Run; default one process). Returns the log: per-step mean reward (the
        CLIP reward of the sampled captions), KL, losses and caption length."""
        cfg = self.config
        run = run or Run()
        ranks = run.ranks
        self.captioner.check_features(features)
        if len(targets) != len(features):
            raise ValueError(f"{len(features)} feature rows but {len(targets)} reward targets")
        if cfg.batch_size < ranks.world:
            raise ValueError(f"{cfg.batch_size} pictures per rollout cannot be shared by {ranks.world} processes")
        # One stream draws the images, prompts and minibatches of every rollout (the same on every
        # rank), on the device that samples; what the rollouts read is moved there once. The samples
        # come from it too with one process (the book's runs); each rank draws its own otherwise.
        device = self.captioner.device
        rng = generator(cfg.seed, "esper-rollouts", device)
        own = {} if ranks.world == 1 else {"esper-samples": generator(cfg.seed, f"esper-samples-{ranks.rank}", device)}
        sampler = own.get("esper-samples", rng)
        features, targets = features.to(device), targets.to(device)
        prompt_list = list(cfg.prompts)
        shares = torch.tensor([cfg.prompts[p] for p in prompt_list], dtype=torch.float, device=device)
        optimizer = adamw(self.parameters(), cfg.lr, cfg.weight_decay, cfg.betas)
        base = [g["lr"] for g in optimizer.param_groups]
        params = [p for p in self.parameters() if p.requires_grad]
        first, log = run.restore(self, optimizer, {"esper-rollouts": rng}, own)
        start = time.time()
        last = cfg.steps if until is None else min(until, cfg.steps)
        mine = ranks.block(cfg.batch_size)
        lo, hi = mine.start * cfg.samples, mine.stop * cfg.samples  # this rank's rows of the rollout
        for step in tqdm(range(first, last), desc=f"ESPER ({cfg.algorithm})", initial=first, total=last,
                         disable=not (progress_enabled() and ranks.main), mininterval=2.0):
            if callback is not None:
                callback(step, self)
            idx = torch.randint(len(features), (cfg.batch_size,), generator=rng, device=device)
            prompt_idx = torch.multinomial(shares, cfg.batch_size, replacement=True, generator=rng)
            idx = idx.repeat_interleave(cfg.samples)
            prompts = [prompt_list[i] for i in prompt_idx.repeat_interleave(cfg.samples).tolist()]
            self.eval()
            roll = self.rollout(features[idx[lo:hi]], targets[idx[lo:hi]], prompts[lo:hi], sampler, ranks,
                                targets[idx], lo)
            bad = ranks.sum((~torch.isfinite(roll["reward"])).sum()).item()
            if bad:
                kept = f"as after step {step - 1}" if step else "as before training"
                raise FloatingPointError(f"ESPER step {step}: the reward is not finite for {bad} of {len(idx)} "
                                         f"captions; training stopped, the model is {kept}")
            self.train()
            set_schedule(optimizer, base, warmup_cosine(step, cfg.steps, cfg.warmup_steps))
            losses = {}
            for _ in range(cfg.epochs):
                order = torch.randperm(len(idx), generator=rng, device=device)
                for rows in order.chunk(cfg.minibatches):
                    rows = rows[(rows >= lo) & (rows < hi)] - lo
                    total = None if ranks.world == 1 else ranks.sum(roll["mask"][rows].sum())
                    losses = self.update(roll, features[idx[lo:hi]], prompts[lo:hi], rows, total)
                    optimizer_step(optimizer, losses["total"], [params], cfg.clip_grad, f"ESPER step {step}", ranks)
            entry = {"reward": ranks.mean(roll["reward"]), "kl": ranks.mean(roll["kl"]),
                     "length": ranks.mean(roll["mask"].sum(1)), **{k: ranks.sum(v.detach()) for k, v in losses.items()}}
            for name, value in entry.items():
                log.setdefault(name, []).append(round(float(value), 6))
            run.after_step(step, last - 1, self, optimizer, {"esper-rollouts": rng}, log, own)
        self.eval()
        return log | {"seconds": round(time.time() - start, 2), "steps": len(log.get("reward", []))}
