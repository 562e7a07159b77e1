"""Training and sampling throughput at the papers' shape: a random-init OPT-6.7B-shaped LM and a
CLIP ViT-L/14-shaped CLIP, both bf16, built in memory from transformers configs (nothing downloaded,
nothing saved) and wrapped in the project's own FrozenLM and HFCLIP, so every method runs its real
code path on them.

- FROMAGe: one training step of the library (`Fromage.losses` and `training.optimizer_step`, on
  examples drawn by `Fromage.draw_examples`, as `Fromage.fit` takes it): the paper's batch of 180
  examples, about half of them two image-caption pairs, every example also a retrieval query, so 360
  LM sequences. Fromage's `micro_batch` sorts them by length and runs the LM on micro-batches of at
  most that many, each padded only to its own longest (the same losses: the contrastive loss still
  sees the whole batch); unset, the LM reads one batch per kind of sequence, padded to its longest,
  and about half of the positions it computes at this shape are padding. The CLIP features are
  cached (computed once before training, as `Fromage.fit` takes them).
- Its floor, measured in the same run: the frozen LM alone, forward plus activation backward (down
  to the input embeddings, no weight gradients), with a next-token-sized loss (a log-softmax over
  the vocabulary at every position) and nothing else, on exactly the LM calls the step made: the
  same micro-batches, the same padded layout, every graph held to one backward as the step holds
  them (recorded before timing; the floor must read the same tokens and positions). So step/floor is
  what the step adds to the LM's own work on its layout, and padding cannot hide in it; MFU, counted
  on real tokens, is what pays for padding.
- MFU counts 4 * N_LM * real tokens per step (forward 2N, activation backward 2N per token; N_LM the
  LM's parameter count, tied embeddings once; padding excluded) against the accelerator's peak: bf16
  dense 989 TFLOP/s for an H100 SXM or an H200, else n/a (or --peak-tflops). The line also gives the
  real and padded token counts, and MFU counting padded positions.
- ESPER: one PPO rollout (`Esper.rollout`: sample captions with the KV cache, CLIP-score them,
  teacher-forced log-probabilities under the policy and the text-only LM, value head) at the
  paper-esper profile's shape (128 captions of up to 20 tokens, prefix 10, temperature 0.7), in
  generated tokens/s; and the sampling alone (`PrefixCaptioner.sample`) in the same run.
- ILLUME: `illume.sample_rationales` at the paper-illume profile's shape (5 rationales per item at
  temperatures 0.3 and 0.8, up to 40 tokens, 4 image tokens), in rationales/s.

A random-init LM rarely samples a stop token from a 50,272-word vocabulary, so at paper size nearly
every caption and rationale runs to its maximum length: the rates are those of full-length samples.

Run:
    python -m benchmarks.paper_shape                                # tiny, on the CPU: proves the path
    python -m benchmarks.paper_shape --size paper                   # on a GPU (device cuda)
    python -m benchmarks.paper_shape --size paper --micro-batch 60 90 none  # the step at each layout
    python -m benchmarks.paper_shape --size paper --peak-tflops 756 # another card's peak

`python -m benchmarks` runs the tiny size on the CPU (seconds). The tiny size scales the configs
down (2 layers, hidden 64, a vocabulary of 512 over the stand-in tokenizer's 114 words, batch 8 in
micro-batches of at most 6 sequences, 8 rollouts, 2 ILLUME items) and runs exactly the same code;
its timings only show that it runs. `--size paper` runs on one GPU at a micro-batch of 60 sequences
(6 LM calls; 10% of the positions are then padding, against 50% without micro-batches). Its goals on
one H100/H200 are a step within 1.15x of the floor and MFU >= 35%, and it prints whether each holds.
Micro-batches remove padding, not memory: every micro-batch's graph is kept to the one backward, so
the peak memory (printed on a GPU) is the whole batch's, less its padding.

Measured on one NVIDIA H200 (torch 2.11.0+cu130, transformers 5.23.0; tools/gpu_paper_shape.sh), the
step / floor / MFU on real tokens / peak memory: micro-batches of 60: 667 / 599 ms, x1.11, 44.0%,
50.6 GB; of 45: 719 / 612 ms, x1.17, 40.8%; of 90 (20% padding): 707 / 642 ms, x1.10, 41.5%; without
micro-batches: 1085 / 909 ms, x1.19, 27.0%, 83.0 GB. ESPER 4269 tokens/s (sampling alone 7324),
ILLUME 218.6 rationales/s.
"""
from __future__ import annotations

import argparse
import copy
import sys
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from benchmarks.timing import best_times
from vlbridge import backbones, world
from vlbridge.backbones import HFCLIP, FrozenLM
from vlbridge.bridge import IGNORE
from vlbridge.features import image_features
from vlbridge.methods import illume
from vlbridge.methods.esper import Esper, EsperConfig
from vlbridge.methods.fromage import Fromage, FromageConfig
from vlbridge.methods.prefix import PLAIN_PROMPT, PrefixCaptioner, PrefixConfig
from vlbridge.repro import generator
from vlbridge.training import adamw, optimizer_step

# bf16 dense peak FLOP/s by device name (tensor cores, no sparsity).
H100_SXM_BF16 = 989e12
STEP_GOAL, MFU_GOAL = 1.15, 0.35


@dataclass(frozen=True)
class Size:
    lm_name: str
    clip_name: str
    lm: dict  # OPTConfig fields
    vision: dict  # CLIPVisionConfig fields
    text: dict  # CLIPTextConfig fields; vocab_size None: the tokenizer's vocabulary
    projection_dim: int
    batch: int  # FROMAGe examples per step
    micro_batch: int  # Fromage's micro_batch: LM sequences per forward at most (2 per example)
    rollouts: int  # ESPER captions per rollout
    illume_items: int  # items sampled at once (5 rationales each)
    repeats: int


SIZES = {
    # facebook/opt-6.7b and openai/clip-vit-large-patch14 (6,658,473,984 and 427,616,513 parameters).
    "paper": Size(
        "OPT-6.7B-shaped LM", "CLIP ViT-L/14-shaped CLIP",
        lm=dict(vocab_size=50272, hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, ffn_dim=16384,
                word_embed_proj_dim=4096, max_position_embeddings=2048),
        vision=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                    patch_size=14, image_size=224),
        text=dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                  num_attention_heads=12, max_position_embeddings=77),
        projection_dim=768, batch=180, micro_batch=60, rollouts=128, illume_items=64, repeats=3),
    # The LM's vocabulary is larger than the tokenizer's, as at paper size: sampled ids the tokenizer lacks
    # decode to nothing, and a stop token is rarely sampled.
    "tiny": Size(
        "tiny OPT", "tiny CLIP ViT",
        lm=dict(vocab_size=512, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, ffn_dim=256,
                word_embed_proj_dim=64, max_position_embeddings=256),
        vision=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                    patch_size=8, image_size=32),
        text=dict(vocab_size=None, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=2, max_position_embeddings=77),
        projection_dim=16, batch=8, micro_batch=6, rollouts=8, illume_items=2, repeats=2),
}

# The papers' settings (params/paper-fromage.yaml, paper-esper.yaml, paper-illume.yaml).
FROMAGE = dict(image_tokens=1, retrieval_dim=256, bridge="linear", lr=3e-4, image_input="embedding")
ESPER = dict(prefix_tokens=10, max_new_tokens=20, temperature=0.7, kl_coef=0.15, reward_scale=50.0, reward_shift=0.2)
ILLUME = dict(image_tokens=4, samples=5, temperatures=(0.3, 0.8), max_new_tokens=40)


# ---------------------------------------------------------------------------- FLOPs
def lm_step_flops(n_params: int, tokens: int) -> float:
    """FLOPs of a frozen LM's forward (2N per token) and activation backward (2N per token: no weight
    gradients) over `tokens` tokens."""
    return 4.0 * n_params * tokens


def mfu(flops: float, seconds: float, peak: float | None) -> float | None:
    """Model FLOPs utilisation: achieved FLOP/s over the peak; None where the peak is unknown."""
    return None if peak is None else flops / seconds / peak


def peak_flops(device_name: str) -> float | None:
    """bf16 dense peak FLOP/s of a device, by its torch.cuda.get_device_name(): 989 TFLOP/s for an H100
    SXM or an H200; None if unknown (the CPU, a PCIe or NVL card, any other)."""
    name = device_name.upper()
    if any(kind in name for kind in ("PCIE", "NVL")):  # H100 PCIe, H100/H200 NVL: lower clocks, not in the table
        return None
    if "H100" in name or "H200" in name:  # 'NVIDIA H100 80GB HBM3' is the SXM card
        return H100_SXM_BF16
    return None


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())  # parameters() lists tied weights once


# ---------------------------------------------------------------------------- backbones
def stand_in_tokenizer():
    """The stand-in LMs' word-level tokenizer (its ids fit both vocabularies)."""
    return backbones.micro_tokenizer(backbones.recipe("micro-lm")["tokenizer"])


def lm_config(size: Size, tokenizer):
    from transformers import OPTConfig

    if size.lm["vocab_size"] < len(tokenizer):
        raise ValueError(f"the LM's vocabulary ({size.lm['vocab_size']}) must hold the tokenizer's ({len(tokenizer)})")
    return OPTConfig(**size.lm, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                     pad_token_id=tokenizer.pad_token_id)


def clip_config(size: Size, tokenizer):
    from transformers import CLIPConfig

    text = size.text | {"vocab_size": size.text["vocab_size"] or len(tokenizer),
                        # pools at the first <eos>, which the tokenizer ends every text with
                        "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
                        "pad_token_id": tokenizer.pad_token_id}
    return CLIPConfig(text_config=text, vision_config=size.vision, projection_dim=size.projection_dim)


def build_backbones(size: Size, device: str, tokenizer, seed: int = 0) -> tuple[HFCLIP, FrozenLM]:
    """Random-init bf16 models made on `device` (no float32 copy, no CPU detour), in the wrappers the
    loaders return."""
    from transformers import CLIPImageProcessor, CLIPModel, OPTForCausalLM

    torch.manual_seed(seed)
    with torch.device(device):
        lm_model = OPTForCausalLM._from_config(lm_config(size, tokenizer), dtype=torch.bfloat16)
        clip_model = CLIPModel._from_config(clip_config(size, tokenizer), dtype=torch.bfloat16)
    lm = FrozenLM(f"{size.lm_name} (random init)", backbones.freeze(lm_model), tokenizer)
    # HFCLIP sets its tokenizer's padding side: its own copy.
    clip = HFCLIP(f"{size.clip_name} (random init)", clip_model, copy.deepcopy(tokenizer), CLIPImageProcessor())
    return clip, lm


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_gb(device) -> float | None:
    """The most memory torch has held on a GPU since the last reset, in GB; None on the CPU."""
    return torch.cuda.max_memory_allocated(device) / 1e9 if torch.device(device).type == "cuda" else None


# ---------------------------------------------------------------------------- the LM's calls
@dataclass
class LMCall:
    inputs_embeds: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor | None


class LMCalls:
    """Records every forward call of a frozen LM inside the `with` block: its inputs (detached), and
    the tokens it read."""

    def __init__(self, lm: FrozenLM):
        self.model, self.calls = lm.model, []

    def _hook(self, module, args, kwargs):
        x = kwargs["inputs_embeds"]
        self.calls.append(LMCall(x.detach(), kwargs["attention_mask"], kwargs.get("position_ids")))

    def __enter__(self):
        self.handle = self.model.register_forward_pre_hook(self._hook, with_kwargs=True)
        return self

    def __exit__(self, *exc):
        self.handle.remove()

    @property
    def tokens(self) -> int:
        """Real (unpadded) tokens over every call."""
        return sum(int(c.attention_mask.sum()) for c in self.calls)

    @property
    def positions(self) -> int:
        """Positions computed, padding included."""
        return sum(c.attention_mask.numel() for c in self.calls)


# ---------------------------------------------------------------------------- FROMAGe
def fromage_step(model: Fromage, optimizer, features: torch.Tensor, captions: dict, pairs: list) -> None:
    """One step of `Fromage.fit` on given examples: its losses and training.optimizer_step (a finite-loss
    check, the backward, each clip group to norm 1, AdamW); fit adds only the schedule and the log."""
    losses = model.losses(features, captions, pairs, captioned=model.config.batch_size)
    optimizer_step(optimizer, losses["total"], model.clip_groups(), 1.0, "FROMAGe benchmark step")


def floor_pass(lm: FrozenLM, recorded: list[LMCall]) -> list[torch.Tensor]:
    """The frozen LM's forward and activation backward on recorded inputs, every call's graph held to
    one backward, as the step holds them: a loss at every real position, a log-softmax over the
    vocabulary, as any next-token loss needs. Returns the gradients at the input embeddings."""
    inputs, loss = [], 0.0
    for call in recorded:
        x = call.inputs_embeds.detach().requires_grad_(True)
        logits = lm.model(inputs_embeds=x, attention_mask=call.attention_mask, position_ids=call.position_ids).logits
        targets = torch.where(call.attention_mask.bool(), 0, IGNORE)
        loss = loss + F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE)
        inputs.append(x)
    loss.backward()
    return [x.grad for x in inputs]


def bench_fromage(clip, lm, size: Size, device: str, features: torch.Tensor, peak: float | None,
                  micro_batch: int | None, repeats: int, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    model = Fromage(clip, lm, FromageConfig(batch_size=size.batch, retrieval_batch_size=size.batch,
                                            micro_batch=micro_batch, **FROMAGE))
    pairs = model.draw_examples(len(features), generator(seed, "fromage-batches"))
    scenes = world.scenes(0, len(features))
    captions = {i: world.caption(scenes[i], world.scene_rng(scenes[i].seed, 0)) for p in pairs for i in p}
    features = model.as_features(features)  # on the device once, as fit does
    optimizer = adamw(model.parameters(), FROMAGE["lr"], 0.0)
    model.train()
    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    # One step and one floor pass with their LM calls recorded: the floor reads the same tokens. They
    # are the warm-up of the timing.
    with LMCalls(lm) as step_calls:
        fromage_step(model, optimizer, features, captions, pairs)
    with LMCalls(lm) as floor_calls:
        grads = floor_pass(lm, step_calls.calls)
    assert [c.attention_mask.shape for c in floor_calls.calls] == [c.attention_mask.shape for c in step_calls.calls] \
        and floor_calls.tokens == step_calls.tokens, "the floor must read exactly the step's calls and tokens"
    assert all(g is not None for g in grads), "the floor's backward must reach the input embeddings"
    recorded = step_calls.calls

    def step() -> None:
        fromage_step(model, optimizer, features, captions, pairs)
        sync(device)

    def floor() -> None:
        floor_pass(lm, recorded)
        sync(device)

    step_s, floor_s = best_times([step, floor], repeats, warm_up=False)
    model.eval()
    n_lm = n_params(lm.model)
    flops = lm_step_flops(n_lm, step_calls.tokens)
    return {"batch": size.batch, "micro_batch": micro_batch, "lm_calls": len(recorded),
            "step_tokens": step_calls.tokens, "step_positions": step_calls.positions,
            "floor_tokens": floor_calls.tokens, "floor_positions": floor_calls.positions, "n_lm": n_lm,
            "step_s": step_s, "floor_s": floor_s, "ratio": step_s / floor_s, "flops": flops,
            "mfu": mfu(flops, step_s, peak), "floor_mfu": mfu(flops, floor_s, peak),
            "mfu_padded": mfu(lm_step_flops(n_lm, step_calls.positions), step_s, peak),
            "peak_gb": peak_memory_gb(device)}


# ---------------------------------------------------------------------------- ESPER, ILLUME
def bench_esper(clip, lm, size: Size, device: str, features: torch.Tensor, repeats: int, seed: int = 0) -> dict:
    n = size.rollouts
    features = features[:n].to(device)
    torch.manual_seed(seed)
    captioner = PrefixCaptioner(lm, PrefixConfig(encoder=f"{clip.name}:embedding", feature_dim=features.shape[1],
                                                 prefix_tokens=ESPER["prefix_tokens"],
                                                 max_new_tokens=ESPER["max_new_tokens"]))
    esper = Esper(captioner, clip, EsperConfig(algorithm="ppo", batch_size=n, samples=1,
                                               temperature=ESPER["temperature"], kl_coef=ESPER["kl_coef"],
                                               reward_scale=ESPER["reward_scale"], reward_shift=ESPER["reward_shift"]))
    prompts = [PLAIN_PROMPT] * n
    out = {}

    def rollout() -> None:  # a fresh generator each time: every run samples the same captions
        out["rollout"] = esper.rollout(features, features, prompts, generator(seed, "esper-rollouts", device))
        sync(device)

    def sample() -> None:
        out["sample"] = captioner.sample(features, prompts, ESPER["temperature"],
                                         generator(seed, "esper-rollouts", device))
        sync(device)

    rollout_s, sample_s = best_times([rollout, sample], repeats)
    tokens = int(out["rollout"]["mask"].sum())
    sampled = sum(map(len, out["sample"].tokens))
    reward = out["rollout"]["reward"]
    return {"captions": n, "tokens": tokens, "rollout_s": rollout_s, "tokens_per_s": tokens / rollout_s,
            "captions_per_s": n / rollout_s, "sample_s": sample_s, "sample_tokens_per_s": sampled / sample_s,
            "reward_finite": bool(torch.isfinite(reward).all())}


def bench_illume(clip, lm, size: Size, device: str, repeats: int, seed: int = 0) -> dict:
    items = [world.vqa_item(s) for s in range(size.illume_items)]
    features = image_features(clip, world.render_array([it.scene for it in items], clip.image_size))
    torch.manual_seed(seed)
    model = Fromage(clip, lm, FromageConfig(image_tokens=ILLUME["image_tokens"], image_input="embedding"))
    config = illume.FeedbackConfig(samples=ILLUME["samples"], temperatures=ILLUME["temperatures"],
                                   max_new_tokens=ILLUME["max_new_tokens"])
    out = {}

    def sample() -> None:
        out["rationales"] = illume.sample_rationales(model, features, items, config,
                                                     generator(seed, "feedback-samples", device))
        sync(device)

    (seconds,) = best_times([sample], repeats)
    rationales = sum(map(len, out["rationales"]))
    return {"items": len(items), "rationales": rationales, "seconds": seconds, "rationales_per_s": rationales / seconds}


# ---------------------------------------------------------------------------- the run
def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def count(n: int) -> str:
    return next(f"{n / scale:.3g}{unit}" for scale, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k"), (1, "")) if n >= scale)


def fromage_line(f: dict) -> str:
    layout = (f"in micro-batches of at most {f['micro_batch']} sequences sorted by length" if f["micro_batch"]
              else "one forward per kind of sequence (micro_batch unset)")
    return (f"  FROMAGe step, batch {f['batch']}, {layout}, CLIP features cached: {f['lm_calls']} LM calls, "
            f"{f['step_tokens']} real tokens in {f['step_positions']} positions "
            f"({1 - f['step_tokens'] / f['step_positions']:.0%} padding); step {f['step_s'] * 1e3:.1f} ms, floor "
            f"(the frozen LM's forward + activation backward on the same calls) {f['floor_s'] * 1e3:.1f} ms, "
            f"step/floor x{f['ratio']:.2f}; MFU at 4*N_LM*real tokens ({f['flops'] / 1e12:.3g} TFLOP per step) "
            f"{_pct(f['mfu'])} (the floor's {_pct(f['floor_mfu'])}; counting padded positions "
            f"{_pct(f['mfu_padded'])})" + ("" if f["peak_gb"] is None else f"; peak memory {f['peak_gb']:.1f} GB"))


def run(size: str = "tiny", device: str = "cpu", micro_batches: tuple = (), peak_tflops: float | None = None,
        repeats: int | None = None, seed: int = 0) -> dict:
    """Every measurement at `size` on `device`; prints them as they come and returns them. The FROMAGe
    step is timed at each of `micro_batches` (None: without micro-batches; default: the size's
    micro_batch), and judged against the goals at the first."""
    shape = SIZES[size]
    repeats = repeats or shape.repeats
    micro_batches = micro_batches or (shape.micro_batch,)
    if torch.device(device).type == "cuda":
        name = torch.cuda.get_device_name(device)
        peak = peak_tflops * 1e12 if peak_tflops else peak_flops(name)
    else:
        name = "CPU"
        peak = peak_tflops * 1e12 if peak_tflops else None
    clip, lm = build_backbones(shape, device, stand_in_tokenizer(), seed)
    n_images = 2 * shape.batch
    features = image_features(clip, world.render_array(world.scenes(0, n_images), clip.image_size))  # cached
    peak_text = "peak n/a" if peak is None else f"peak {peak / 1e12:.0f} TFLOP/s"
    print(f"Paper-shape throughput, {size} size, on {name} ({peak_text}): {lm.name}, {count(n_params(lm.model))} "
          f"parameters; {clip.name}, {count(n_params(clip.model))}; both bf16", flush=True)

    layouts = []
    for micro_batch in micro_batches:
        layouts.append(bench_fromage(clip, lm, shape, device, features, peak, micro_batch, repeats, seed))
        print(fromage_line(layouts[-1]), flush=True)
    esper = bench_esper(clip, lm, shape, device, features, repeats, seed)
    illume_ = bench_illume(clip, lm, shape, device, repeats, seed)
    f, e, i = layouts[0], esper, illume_
    goals = None
    if size == "paper":
        goals = {"step_within_1.15x_floor": f["ratio"] <= STEP_GOAL,
                 "mfu_at_least_35%": None if f["mfu"] is None else f["mfu"] >= MFU_GOAL}
    print(f"  ESPER PPO rollout, {e['captions']} captions, prefix {ESPER['prefix_tokens']}, up to "
          f"{ESPER['max_new_tokens']} tokens at temperature {ESPER['temperature']:g}: {e['tokens']} tokens sampled, "
          f"{e['tokens_per_s']:.0f} tokens/s, {e['captions_per_s']:.1f} captions/s ({e['rollout_s'] * 1e3:.0f} ms "
          f"per rollout); sampling alone {e['sample_tokens_per_s']:.0f} tokens/s ({e['sample_s'] * 1e3:.0f} ms, "
          f"{e['sample_s'] / e['rollout_s']:.0%} of the rollout)")
    print(f"  ILLUME rationale sampling, {i['items']} items x {ILLUME['samples']} at temperatures "
          f"{', '.join(f'{t:g}' for t in ILLUME['temperatures'])}, up to {ILLUME['max_new_tokens']} tokens: "
          f"{i['rationales_per_s']:.1f} rationales/s ({i['rationales']} in {i['seconds'] * 1e3:.0f} ms)")
    if goals is None:
        print(f"  Goals (step <= {STEP_GOAL}x floor, MFU >= {MFU_GOAL:.0%}) apply at --size paper on one H100/H200")
    else:
        met = goals["mfu_at_least_35%"]
        print(f"  Goals: step <= {STEP_GOAL}x floor "
              f"{'holds' if goals['step_within_1.15x_floor'] else 'FAILS'} (x{f['ratio']:.2f}); MFU >= "
              f"{MFU_GOAL:.0%} {'n/a (unknown peak)' if met is None else 'holds' if met else 'FAILS'} "
              f"({_pct(f['mfu'])}, at the first micro-batch size)")
    return {"size": size, "device": name, "peak": peak, "fromage": f, "fromage_layouts": layouts, "esper": esper,
            "illume": illume_, "goals": goals}


def micro_batch_arg(text: str) -> int | None:
    if text.lower() == "none":
        return None
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"a micro-batch is a number of sequences >= 1 or 'none', got {text!r}")
    return int(text)


def main(argv: list[str] | None = None) -> dict:
    """`python -m benchmarks` calls main() with no arguments: the tiny size on the CPU."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.paper_shape", description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    parser.add_argument("--device", default=None, help="cpu or cuda[:N] (default: cpu for tiny, cuda for paper)")
    parser.add_argument("--micro-batch", type=micro_batch_arg, nargs="+", default=(), help="FROMAGe's "
                        "micro_batch, LM sequences per forward at most, or 'none' (no micro-batches); several: "
                        "the step is timed at each, and the goals judged at the first (default: 6 tiny, 60 paper)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="the device's bf16 dense peak, if the "
                        "lookup does not know it")
    parser.add_argument("--repeats", type=int, default=None, help="best of this many timed runs "
                        "(default: 2 tiny, 3 paper)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads on the CPU (default 2, as "
                        "`python -m benchmarks`)")
    args = parser.parse_args([] if argv is None else argv)
    device = args.device or ("cuda" if args.size == "paper" else "cpu")
    if torch.device(device).type == "cpu":
        torch.set_num_threads(args.threads)
    return run(args.size, device, tuple(args.micro_batch), args.peak_tflops, args.repeats)


if __name__ == "__main__":
    main(sys.argv[1:])
