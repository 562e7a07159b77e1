"""Which part of a dataset one rank of a `torch.distributed` job reads, so that every item is read by
exactly one rank per epoch. Any loader whose records sit in memory (a CC3M TSV, Karpathy, VQA-X, the
microworld's index lists) takes its slice with `split_for_rank`; sharded files on disk (webdataset
tars) are dealt out whole, one shard to one rank, in `webdataset.shards_for_rank`."""
from __future__ import annotations

from ..distributed import Group
from .jsonfile import is_int


def check_rank(rank: int, world: int) -> None:
    """A ValueError unless 0 <= rank < world: a wrong rank would silently read another rank's part,
    or nothing."""
    if not (is_int(world) and world >= 1):
        raise ValueError(f"world (the number of ranks) should be an int >= 1, got {world!r}")
    if not (is_int(rank) and 0 <= rank < world):
        raise ValueError(f"rank should be an int in 0..{world - 1} for world={world}, got {rank!r}")


def split_for_rank(n_items: int, rank: int, world: int) -> range:
    """The indices of `n_items` items that `rank` of `world` reads: one contiguous block per rank,
    in rank order, the blocks' sizes differing by at most 1, together 0..n_items-1 exactly once.

    Not torch's DistributedSampler, which pads the ranks to equal length by reading some items twice:
    here an epoch reads each item once, so the ranks may differ by one item and the training loop has
    to stop every rank at the same step (or join them). With fewer items than ranks some ranks get an
    empty range. To shuffle, permute the indices with a seed every rank shares (the epoch's), then
    take `order[i] for i in split_for_rank(len(order), rank, world)`: the blocks still partition it.
    """
    check_rank(rank, world)
    if not (is_int(n_items) and n_items >= 0):
        raise ValueError(f"n_items should be an int >= 0, got {n_items!r}")
    return Group(rank, world).block(n_items)  # the blocks a training step's batch is split into, too
