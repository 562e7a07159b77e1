"""Data parallelism over torch.distributed, for a small trainable bridge beside frozen backbones.

Every rank holds the whole model: the frozen backbones replicated (no gradients, no optimiser state)
and the trainable parts, which start identical and stay identical because every rank applies the
same summed gradient. A step's global batch is drawn by every rank from the same random stream; each
rank then computes its contiguous block of it (`Group.block`).

The rule that makes N ranks equal one process: each rank's loss is its *share* of the global loss,
and the shares add up to it. A mean over tokens becomes this rank's sum over the global count
(`Group.sum` of the counts); a loss that couples the whole batch (the contrastive loss) is computed
on every rank from gathered rows (`gather_rows`, whose backward sums each rank's part) and divided
by the world size. Gradients are then summed across ranks (`reduce_gradients`) before clipping, so
clipping and the optimiser see exactly the one-process gradient. This is what
DistributedDataParallel does with a mean loss, written out: the losses here are not a module's
forward, and the sum keeps a rank with fewer tokens from counting as much as one with more.

With one process (`SINGLE`, the notebooks) every function here is the identity and no collective
runs, so the book's numbers do not depend on this module.
"""
from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Group:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def blocks(self, n: int) -> list[range]:
        """n items in `world` contiguous blocks, in rank order, sizes differing by at most one."""
        size, extra = divmod(n, self.world)
        starts = [r * size + min(r, extra) for r in range(self.world + 1)]
        return [range(starts[r], starts[r + 1]) for r in range(self.world)]

    def block(self, n: int) -> range:
        """This rank's block of n items (every item is in exactly one rank's block)."""
        return self.blocks(n)[self.rank]

    def take(self, items):
        """This rank's block of a list or tensor (all of it with one process)."""
        block = self.block(len(items))
        return items[block.start:block.stop]

    def sum(self, x: torch.Tensor) -> torch.Tensor:
        """x summed over ranks (a new tensor, no gradient); x itself with one process."""
        if self.world == 1:
            return x
        total = x.detach().clone()
        dist.all_reduce(total)
        return total

    def mean(self, x: torch.Tensor) -> torch.Tensor:
        """The mean of every rank's rows of x (equal to x.mean() with one process)."""
        if self.world == 1:
            return x.mean()
        count = self.sum(torch.tensor(float(x.numel()), device=x.device))
        return self.sum(x.detach().sum()) / count

    def any(self, flag: bool) -> bool:
        """True on every rank when it is true on one (to agree on stopping)."""
        if self.world == 1:
            return flag
        return bool(self.sum(torch.tensor(int(flag), device=_collective_device())).item())

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def gather_json(self, value) -> list:
        """Every rank's `value` (made of JSON's types), in rank order, on every rank. It travels as
        UTF-8 JSON in a uint8 tensor, never pickled: a rank runs no code that another sent. With one
        process, [value] after the same JSON round trip, so what comes back has the same types for
        any number of processes (a tuple comes back a list)."""
        data = json.dumps(value).encode()
        if self.world == 1:
            return [json.loads(data)]
        device = _collective_device()
        size = torch.tensor([len(data)], device=device)
        sizes = [torch.zeros_like(size) for _ in range(self.world)]
        dist.all_gather(sizes, size)
        mine = torch.zeros(max(int(s.item()) for s in sizes), dtype=torch.uint8, device=device)  # equal shapes
        mine[:len(data)] = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        parts = [torch.empty_like(mine) for _ in range(self.world)]
        dist.all_gather(parts, mine)
        return [json.loads(part[:int(n.item())].cpu().numpy().tobytes()) for part, n in zip(parts, sizes)]


SINGLE = Group()


def current() -> Group:
    """The group this process is in: torch.distributed's if it is initialised, else one process."""
    if dist.is_available() and dist.is_initialized():
        return Group(dist.get_rank(), dist.get_world_size())
    return SINGLE


def start(device: str = "cpu") -> Group:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, MASTER_ADDR/PORT in the
    environment): NCCL on CUDA, gloo on the CPU; each rank's CUDA device is cuda:LOCAL_RANK.
    Without torchrun's variables this is one process and nothing is initialised."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return SINGLE
    if dist.is_initialized():
        return current()
    cuda = str(device).startswith("cuda")
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group("nccl" if cuda else "gloo")
    return current()


def local_device(device: str) -> str:
    """The device this rank trains on: cuda:LOCAL_RANK for "cuda" under torchrun, else `device`."""
    if device == "cuda" and "LOCAL_RANK" in os.environ:
        return f"cuda:{os.environ['LOCAL_RANK']}"
    return device


def finish() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def gather_rows(local: torch.Tensor, sizes: list[int], group: Group) -> torch.Tensor:
    """Every rank's rows of a [n_r, ...] tensor, concatenated in rank order (sizes[r] rows from rank
    r), differentiably: the backward gives each rank the summed gradient of its own rows."""
    if group.world == 1:
        return local
    if local.shape[0] != sizes[group.rank]:
        raise ValueError(f"rank {group.rank} has {local.shape[0]} rows, but sizes says {sizes[group.rank]}")
    from torch.distributed.nn.functional import all_gather

    widest = max(sizes)  # all_gather needs equal shapes: pad, gather, cut
    padded = torch.cat([local, local.new_zeros(widest - local.shape[0], *local.shape[1:])])
    with warnings.catch_warnings():  # deprecated for a private API; this is the public differentiable one
        warnings.simplefilter("ignore", FutureWarning)
        parts = all_gather(padded)
    return torch.cat([part[:n] for part, n in zip(parts, sizes)])


def reduce_gradients(params, group: Group) -> None:
    """Sum every parameter's gradient over ranks, in one flat buffer (a parameter a rank's loss did
    not reach counts as a zero gradient there)."""
    if group.world == 1:
        return
    params = list(params)
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset:offset + n].view_as(p).clone()
        offset += n


def _collective_device() -> str:
    """Where tensors must be for a collective: NCCL moves CUDA tensors only."""
    return f"cuda:{torch.cuda.current_device()}" if dist.get_backend() == "nccl" else "cpu"


_BITS = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
_CHUNK = 1 << 24  # elements summed at a time: each int64 temporary is 128 MiB, whatever the tensor's size


def bit_sums(t: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """One tensor's part of `fingerprint`, int64 [2] on its own device: its bit patterns as integers,
    summed plain and weighted by position. With `dtype`, the bits of the tensor cast to it (checkpoint
    binds a bridge to its backbones' weights rounded to bfloat16). Read a chunk at a time, so a 7B LM's
    embedding matrix never has a whole int64 copy (8 bytes an element) beside it."""
    flat = t.detach().reshape(-1)
    total = torch.zeros(2, dtype=torch.int64, device=flat.device)
    for start in range(0, flat.numel(), _CHUNK):
        chunk = flat[start:start + _CHUNK]
        chunk = chunk.to(dtype) if dtype is not None else chunk
        bits = chunk.contiguous().view(_BITS[chunk.element_size()]).long()
        weights = torch.arange(start, start + bits.numel(), device=bits.device) % 8191 + 1
        total += torch.stack([bits.sum(), (bits * weights).sum()])
    return total


def fingerprint(tensors) -> torch.Tensor:
    """An exact checksum of tensors, int64 [2]: sums of their bit patterns as integers, plain and
    weighted by position (integer sums do not depend on summation order, so ranks with other thread
    counts agree, and any changed bit shows)."""
    total = torch.zeros(2, dtype=torch.int64)
    for t in tensors:
        total += bit_sums(t).cpu()
    return total


def check_replicated(tensors, group: Group, what: str) -> None:
    """Raise unless `tensors` are identical on every rank (the frozen backbones must be: a rank that
    loaded other weights would train a different model without any error)."""
    if group.world == 1:
        return
    mine = fingerprint(tensors).to(_collective_device())
    everyone = [torch.zeros_like(mine) for _ in range(group.world)]
    dist.all_gather(everyone, mine)
    differ = [r for r, other in enumerate(everyone) if not torch.equal(other, everyone[0])]
    if differ:
        raise RuntimeError(f"{what} differ between rank 0 and rank(s) {differ}: every rank must load the same weights")
