"""Shard a frozen LM's decoder layers over the data-parallel ranks with FSDP2 (`vlbridge train --fsdp`),
for an LM too big for one device.

Data parallelism (distributed.py) keeps a whole copy of every frozen backbone on every rank. The
decoder layers are ~all of a causal LM's parameters (the embedding matrix and the output head are the
rest), so sharding only them saves nearly all there is to save: each rank keeps 1/world of every
layer and all-gathers a layer's full weights just before that layer runs (forward, and again in
backward, where the bridge's gradient flows back through it), freeing them right after. The LM is
frozen, so there are no LM gradients to reduce-scatter and no optimiser state; the math is the
unsharded LM's, so the bridge trains exactly as without sharding.

The embeddings and the output head stay plain, replicated tensors: the bridge reads the input
embedding matrix directly (bridge.assemble, ExtraTokens' initial [RET]), which a sharded DTensor would
break, and a tied output head is the same matrix.

The caveat: each sharded layer's forward is a collective (an all-gather), so every rank must call the
LM the same number of times, in the same order. Teacher-forced training does (FROMAGe, ClipCap,
ILLUME's tuning step: a fixed number of forward passes a step). Sampled generation that stops when a
rank's own captions end (bridge.generate: ESPER's rollouts, ILLUME's sampling), or a step that skips
the LM on a rank with no rows, would leave the other ranks waiting in an all-gather for ever.

What it does not save: every rank still reads the whole LM into CPU memory before sharding it
(`vlbridge train --fsdp` loads a real LM on the CPU, so the host, not the GPU, must hold it whole
once per process); loading each rank's shards straight from the checkpoint would be the next step.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from .distributed import Group


@dataclass(frozen=True)
class Sharded:
    layers: int  # decoder layers sharded
    where: str  # their ModuleList's name in the model, e.g. "model.layers"
    share: float  # the fraction of the LM's parameters they hold


def decoder_layers(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The model's decoder blocks: the nn.ModuleList holding the most parameters (OPT's
    model.decoder.layers, GPT-2's transformer.h, Llama's and Mistral's model.layers), found by size
    rather than by name so any Hugging Face causal LM works."""
    lists = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.ModuleList) and len(m)]
    sized = [(sum(p.numel() for p in m.parameters()), name, m) for name, m in lists]
    sized = [s for s in sized if s[0] > 0]
    if not sized:
        raise ValueError(f"{type(model).__name__} has no nn.ModuleList of layers with parameters: "
                         "--fsdp shards a causal LM's decoder layers (a ModuleList of blocks)")
    _, name, layers = max(sized, key=lambda s: s[0])
    return name, layers


def shard_frozen_lm(model: nn.Module, ranks: Group, device: str | torch.device | None = None) -> Sharded:
    """Shard each decoder layer of a frozen causal LM over `ranks` with FSDP2 (fully_shard, on a
    device mesh of `device`'s type: "cpu" with gloo, "cuda" with NCCL); the embeddings and the output
    head stay whole, replicated tensors. `device` is where the LM runs (default: where it is): an LM
    read into CPU memory reaches it a layer at a time (each layer whole, then only its shard kept),
    so an LM too big for one GPU never is on one whole. Run this after checking that the frozen
    weights are the same on every rank (distributed.check_replicated reads whole tensors, not
    shards), and keep no reference to the LM's parameters from before (it would keep them whole).
    Every rank must then call the LM equally often (see this module's docstring)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    if trainable:
        raise ValueError(f"shard_frozen_lm shards a frozen LM, but these parameters require gradients: "
                         f"{', '.join(trainable[:5])}{' ...' if len(trainable) > 5 else ''}")
    where, layers = decoder_layers(model)
    inside = {id(t) for t in [*layers.parameters(), *layers.buffers()]}
    shared = [name for name, p in model.named_parameters(remove_duplicate=False)
              if id(p) in inside and not name.startswith(f"{where}.")]
    if shared:  # fully_shard would turn the outside module's tensor into a shard too
        raise ValueError(f"parameters of {where} are also used outside it ({', '.join(shared)}): "
                         "only layers that own their weights can be sharded")
    world = dist.get_world_size() if dist.is_initialized() else None
    if world != ranks.world:
        raise ValueError(f"shard_frozen_lm shards over the initialised torch.distributed group (distributed.start, "
                         f"under torchrun): the ranks are {ranks.world} process(es), torch.distributed has "
                         f"{'no group' if world is None else world}")
    share = sum(p.numel() for p in layers.parameters()) / sum(p.numel() for p in model.parameters())
    device = torch.device(device) if device is not None else next(layers.parameters()).device
    with torch.no_grad():  # the rest of the LM (embeddings, head, final norm, position tables) moves whole
        for t in [*model.parameters(), *model.buffers()]:
            if id(t) not in inside:
                t.data = t.data.to(device)
    mesh = init_device_mesh(device.type, (ranks.world,))
    for layer in layers:  # fully_shard moves the layer to the mesh's device, then keeps this rank's shard
        # reshard_after_forward=True: each layer would otherwise count as its own FSDP root (there is
        # no fully_shard above it), and a root keeps its weights gathered after forward by default,
        # so the whole LM would be gathered at once: the memory this is meant to save.
        fully_shard(layer, mesh=mesh, reshard_after_forward=True)
    return Sharded(len(layers), where, share)
