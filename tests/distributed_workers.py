"""One optimiser step of each method, run by every rank of a gloo group (test_distributed.py) or by one
process; each writes what the step produced (gradients, parameters after it, the logged losses) to a
safetensors file, for the test to compare."""
from __future__ import annotations

import json
import os
from dataclasses import asdict, replace

import torch
import torch.distributed as dist
from safetensors.torch import save_file

from vlbridge import backbones, distributed, world
from vlbridge.critics import WorldCritic, world_items
from vlbridge.methods import illume
from vlbridge.methods.esper import Esper, EsperConfig
from vlbridge.methods.fromage import Fromage, FromageConfig
from vlbridge.methods.prefix import PLAIN_PROMPT, PrefixCaptioner, PrefixConfig
from vlbridge.repro import generator
from vlbridge.training import Run

# Adam's first step moves a weight by about lr * sign(gradient): where a gradient is within float
# rounding of 0, two sums of it in another order may move it by up to 2 lr apart; lr 1e-4 keeps that
# under the 1e-6 the test allows (1e-3 did not, by 3e-6 in one weight of 32768), while the
# gradients themselves agree to 1e-6 at any lr.
FROMAGE = FromageConfig(image_tokens=2, steps=1, batch_size=6, retrieval_batch_size=10, lr=1e-4, warmup_steps=1)
FROMAGE_MICRO = replace(FROMAGE, micro_batch=3)  # each rank's 3 + 5 sequences in 3 forwards
GRPO = EsperConfig(algorithm="grpo", steps=1, batch_size=5, samples=2, epochs=2, minibatches=3, contrastive=True,
                   lr=1e-4, warmup_steps=1, temperature=1.0, kl_coef=0.05)
FEEDBACK = illume.FeedbackConfig(batch_size=7, lr=1e-4, warmup_steps=1)
# One round of 5 items (3 on rank 0, 2 on rank 1), each with its gold rationale and a sampled one.
ROUND = replace(FEEDBACK, samples=2, max_new_tokens=8, rounds=1, items_per_round=5, steps_per_round=1)


def smoke_backbones():
    return backbones.load_clip("micro-clip-smoke"), backbones.load_lm("micro-lm-smoke")


def outcome(module, log: dict, frozen, trained=None) -> dict:
    """The step's result: every trained parameter (default: every one with requires_grad) and its
    gradient, the logged losses, and a checksum of the frozen backbones."""
    out = {}
    for name, p in module.named_parameters():
        if p.requires_grad if trained is None else any(p is q for q in trained):
            out[f"param.{name}"] = p.detach().clone()
            out[f"grad.{name}"] = p.grad.detach().clone()
    for name, values in log.items():
        if isinstance(values, list):
            out[f"log.{name}"] = torch.tensor(values, dtype=torch.float64)
    out["frozen"] = distributed.fingerprint(frozen)
    return out


def fromage_step(ranks, config: FromageConfig = FROMAGE):
    clip, lm = smoke_backbones()
    torch.manual_seed(0)
    model = Fromage(clip, lm, config)
    pool = world.scenes(0, 40)
    features = model.features(world.render_array(pool, clip.image_size))
    log = model.fit(features, lambda i, step: world.canonical_caption(pool[i]),
                    lambda i, step: world.caption(pool[i], world.scene_rng(pool[i].seed, step)), run=Run(ranks))
    return outcome(model, log, [*clip.model.parameters(), *lm.model.parameters()])


def grpo_samples(captioner, features, prompts):
    """Fixed rollout samples, drawn once: the ranks draw theirs from their own streams, so the step is
    compared on the same captions."""
    out = captioner.sample(features, prompts, 1.0, torch.Generator().manual_seed(7))
    return out.tokens, out.texts


def grpo_step(ranks):
    clip, lm = smoke_backbones()
    pool = world.scenes(0, 12)
    features = clip.encode_images(world.render_array(pool, clip.image_size)).float()
    torch.manual_seed(0)
    captioner = PrefixCaptioner(lm, PrefixConfig("micro-clip-smoke:embedding", clip.embed_dim, 2, max_new_tokens=8))
    esper = Esper(captioner, clip, GRPO)
    # The step's own draws (which pictures, prompts) come from the shared stream; the captions sampled
    # for them are fixed here for every layout, by their row in the global rollout.
    shared = generator(GRPO.seed, "esper-rollouts")
    idx = torch.randint(len(features), (GRPO.batch_size,), generator=shared).repeat_interleave(GRPO.samples)
    tokens, texts = grpo_samples(captioner, features[idx], [PLAIN_PROMPT] * len(idx))
    original = Esper.rollout

    def rollout(self, feats, targets, prompts, sampler, ranks=distributed.SINGLE, batch=None, offset=0):
        rows = slice(offset, offset + len(feats))
        fixed = type("Fixed", (), {"tokens": tokens[rows], "texts": texts[rows]})
        self.captioner.sample = lambda *args, **kwargs: fixed
        try:
            return original(self, feats, targets, prompts, sampler, ranks, batch, offset)
        finally:
            del self.captioner.sample

    Esper.rollout = rollout
    try:
        log = esper.fit(features, features, run=Run(ranks))
    finally:
        Esper.rollout = original
    return outcome(esper, log, [*clip.model.parameters(), *lm.model.parameters()])


def illume_step(ranks):
    clip, lm = smoke_backbones()
    torch.manual_seed(0)
    model = Fromage(clip, lm, FromageConfig(image_tokens=2))
    items = world_items(0, 12)
    features = model.features(world.render_array([it.scene for it in items], clip.image_size))
    tuned = illume.tunable_copy(model, FEEDBACK)
    rationales = illume.gold_rationales(items)[:5]
    log = illume.tune(tuned, features, items, rationales, illume.answer_only(items), FEEDBACK, steps=1,
                      run=Run(ranks))
    return outcome(tuned, log, [*clip.model.parameters(), *lm.model.parameters()], illume.trainable(tuned))


def per_item_samples(model, features, items, config, gen):
    """The model's own rationales for items, each item's drawn from a stream of its own (the loop draws
    each rank's from the rank's own stream, so 2 ranks would sample others than 1 process), after its
    gold one, which the critic keeps."""
    one_less = replace(config, samples=config.samples - 1)
    return [[item.explanation, *SAMPLE(model, features[k:k + 1], [item], one_less,
                                       torch.Generator().manual_seed(int(item.item_id)))[0]]
            for k, item in enumerate(items)]


SAMPLE = illume.sample_rationales


def illume_round_step(ranks):
    """A round of the feedback loop: each rank samples and judges its share of the items, the
    decisions are gathered, and the kept pool tunes the bridge for a step."""
    clip, lm = smoke_backbones()
    torch.manual_seed(0)
    model = Fromage(clip, lm, FromageConfig(image_tokens=2))
    items = world_items(0, 12)
    features = model.features(world.render_array([it.scene for it in items], clip.image_size))
    loop = illume.FeedbackLoop(model, features, items, ROUND, ranks)
    illume.sample_rationales = per_item_samples
    try:
        log = loop.learn(1, WorldCritic())
    finally:
        illume.sample_rationales = SAMPLE
    out = outcome(loop.model, log.train, [*clip.model.parameters(), *lm.model.parameters()],
                  illume.trainable(loop.model))
    for name, value in (("kept", [asdict(e) for e in loop.kept]), ("judgements", log.judgements)):
        out[name] = torch.tensor(list(json.dumps(value).encode()), dtype=torch.uint8)
    return out


STEPS = {"fromage": fromage_step, "fromage_micro": lambda ranks: fromage_step(ranks, FROMAGE_MICRO),
         "grpo": grpo_step, "illume": illume_step, "illume_round": illume_round_step}


def run_rank(rank: int, world_size: int, port: int, method: str, out: str) -> None:
    """torch.multiprocessing.spawn's entry: join the gloo group, take one step, write the result."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        save_file(STEPS[method](distributed.current()), os.path.join(out, f"rank{rank}.safetensors"))
    finally:
        dist.destroy_process_group()


def run_single(method: str, out: str) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        save_file(STEPS[method](distributed.SINGLE), os.path.join(out, "single.safetensors"))
    finally:
        torch.set_num_threads(threads)

