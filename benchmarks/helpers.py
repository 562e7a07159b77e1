"""Shared by the feature-cache and KV-cache benchmarks: random-init models of exactly the gpu profile's
backbone architectures, and best-of-N timing that alternates the two ways being compared."""
import time

import torch

from vlbridge import backbones
from vlbridge.backbones.clip import FrozenCLIP, micro_clip_config
from vlbridge.backbones.lm import FrozenLM, micro_lm_config


def random_init_clip(name: str = "micro-clip-gpu", seed: int = 0) -> FrozenCLIP:
    """The recipe's CLIP as `pretrain_micro_clip` builds it, untrained (pretraining the gpu recipes is
    a GPU job; a speed benchmark needs only the shapes)."""
    import open_clip

    recipe = backbones.recipe(name)
    torch.manual_seed(seed)
    model = open_clip.CLIP(**micro_clip_config(recipe, backbones.micro_tokenizer(recipe["tokenizer"])))
    return FrozenCLIP(f"{name} (random init)", model, tokenizer=None, preprocess=None)  # images only


def random_init_lm(name: str = "micro-lm-gpu", seed: int = 0) -> FrozenLM:
    """The recipe's LM as `pretrain_micro_lm` builds it, untrained."""
    from transformers import LlamaForCausalLM

    recipe = backbones.recipe(name)
    tokenizer = backbones.micro_tokenizer(recipe["tokenizer"])
    torch.manual_seed(seed)
    model = LlamaForCausalLM(micro_lm_config(recipe, tokenizer))
    return FrozenLM(f"{name} (random init)", backbones.freeze(model), tokenizer)


def best_times(fns, repeats: int, warm_up: bool = True) -> list[float]:
    """Best-of-`repeats` wall time of each function, running them in turn (a, b, a, b, ...) so that load
    from other processes on a shared CPU falls on both alike. warm_up=False where each has already run
    once (a correctness check before the timing)."""
    if warm_up:
        for fn in fns:
            fn()
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, spent in zip(fns, times):
            start = time.perf_counter()
            fn()
            spent.append(time.perf_counter() - start)
    return [min(t) for t in times]
