"""Frozen means frozen: no gradients, eval mode, and eval mode kept even if a parent calls .train()."""
from __future__ import annotations

import types

import torch


def _stay_in_eval(self, mode: bool = True):
    return torch.nn.Module.train(self, False)


def freeze(module: torch.nn.Module) -> torch.nn.Module:
    module.requires_grad_(False)
    module.eval()
    # A trainable module holding this one would otherwise switch dropout back on with .train().
    module.train = types.MethodType(_stay_in_eval, module)
    return module


def is_frozen(module: torch.nn.Module) -> bool:
    return not module.training and not any(p.requires_grad for p in module.parameters())
