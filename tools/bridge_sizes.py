"""How big each method's trained bridge is beside its frozen backbones, at the paper profiles' shapes:
the trained parts built from the library's own modules at the widths the profiles give them, the
frozen backbones built on the meta device from their published configurations (no weights, nothing
downloaded). The README's "what carried over" box quotes this table; the microworld's sizes are
chapter 6's cost table.

    .venv/bin/python tools/bridge_sizes.py
"""
import logging

import open_clip
import torch
from torch import nn
from transformers import GPT2Config, GPT2LMHeadModel, GPTJConfig, GPTJForCausalLM, OPTConfig, OPTForCausalLM

from vlbridge import bridge as br
from vlbridge.book import config
from vlbridge.methods.fromage import TiedExtraTokens

OPT_6_7B = OPTConfig(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, ffn_dim=16384,
                     word_embed_proj_dim=4096, max_position_embeddings=2048, vocab_size=50272)
GPT_J_6B = GPTJConfig()  # transformers' defaults are EleutherAI/gpt-j-6b's
GPT2_SMALL = GPT2Config()  # and gpt2's (124M)


def count(*modules: nn.Module) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


def frozen(lm_config, make_lm, clip_arch: str) -> int:
    with torch.device("meta"):
        return count(make_lm(lm_config), open_clip.create_model(clip_arch, device="meta"))


def clip_width(arch: str) -> int:
    return open_clip.get_model_config(arch)["embed_dim"]


def fromage() -> tuple[int, int]:
    p = config.merged_parameters("03_grounding", "paper-fromage")
    d, clip_dim = OPT_6_7B.hidden_size, clip_width("ViT-L-14")
    ret = TiedExtraTokens if p["tied_ret"] else br.ExtraTokens
    trained = count(br.Bridge(clip_dim, d, p["image_tokens"], p["bridge"]), ret(["[RET]"], d, 1),
                    nn.Linear(d, p["retrieval_dim"]), nn.Linear(clip_dim, p["retrieval_dim"])) + 1  # + logit scale
    return trained, frozen(OPT_6_7B, OPTForCausalLM, "ViT-L-14")


def esper() -> tuple[int, int]:
    p = config.merged_parameters("04_reward_rl", "paper-esper")
    d = GPT2_SMALL.n_embd
    mapper = br.Bridge(clip_width("ViT-B-32"), d, p["prefix_tokens"], "mlp")
    return count(mapper), frozen(GPT2_SMALL, GPT2LMHeadModel, "ViT-B-32")  # (PPO's value head: d + 1 more)


def illume() -> tuple[int, int]:
    p = config.merged_parameters("05_feedback", "paper-illume")
    d, layers = GPT_J_6B.n_embd, GPT_J_6B.n_layer
    # LoRA of rank r on each target d -> d projection of every layer: r * (d + d) weights each
    lora = layers * len(p["lora_targets"]) * p["lora_rank"] * (d + d)
    image_bridge = count(br.Bridge(clip_width("RN50x16"), d, p["image_tokens"], "linear"))
    return lora + (image_bridge if p["tune_bridge"] else 0), frozen(GPT_J_6B, GPTJForCausalLM, "RN50x16")


if __name__ == "__main__":
    logging.disable(logging.WARNING)  # open_clip warns that the meta-device models have no weights: none are wanted
    print(f"{'profile':16s} {'trained':>12s} {'frozen':>15s} {'trained / frozen':>17s}")
    for name, sizes in (("paper-fromage", fromage), ("paper-esper", esper), ("paper-illume", illume)):
        trained, fixed = sizes()
        print(f"{name:16s} {trained:12,d} {fixed:15,d} {trained / fixed:17.5f}")
