"""Shared by the feature-cache and KV-cache benchmarks: random-init models of exactly the gpu profile's
backbone architectures."""
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
