"""Data parallelism on the CPU with gloo: two ranks, each with half of a step's batch, take the step
one process takes with all of it (vlbridge.distributed's rule: each rank's loss is its share)."""
import json
import socket

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file

import distributed_workers as workers
from vlbridge import distributed
from vlbridge.distributed import Group
from vlbridge.methods.fromage import Fromage
from vlbridge.training import adamw


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def stand_ins():
    """Built (or read from the cache) here once, so the ranks only read them."""
    return workers.smoke_backbones()


@pytest.fixture(scope="module", params=["fromage", "fromage_micro", "grpo", "illume", "illume_round"])
def step(request, stand_ins, tmp_path_factory):
    out = tmp_path_factory.mktemp(request.param)
    mp.spawn(workers.run_rank, args=(2, free_port(), request.param, str(out)), nprocs=2, join=True)
    workers.run_single(request.param, str(out))
    return request.param, {name: load_file(out / f"{name}.safetensors") for name in ("rank0", "rank1", "single")}


def test_two_ranks_with_half_the_batch_take_the_one_process_step(step):
    method, results = step
    single, rank0 = results["single"], results["rank0"]
    assert set(rank0) == set(single)
    grads = [k for k in single if k.startswith("grad.")]
    assert grads and any(single[k].abs().sum() > 0 for k in grads), "the step must move something"
    for key in single:
        if key.startswith(("grad.", "param.", "log.")):
            torch.testing.assert_close(rank0[key].double(), single[key].double(), rtol=1e-6, atol=1e-6,
                                       msg=lambda m, key=key: f"{method} {key}: {m}")


@pytest.mark.parametrize("step", ["fromage_micro"], indirect=True)
def test_micro_batches_take_the_one_batch_step(step, tmp_path):
    """FROMAGe's micro_batch (the LM reads each rank's sequences sorted by length, in micro-batches)
    takes the step it takes without them, one process or two."""
    _, results = step
    workers.run_single("fromage", str(tmp_path))
    whole = load_file(tmp_path / "single.safetensors")
    for key in whole:
        if key.startswith(("grad.", "log.")):
            for name in ("single", "rank0"):
                torch.testing.assert_close(results[name][key].double(), whole[key].double(), rtol=1e-5, atol=1e-6,
                                           msg=lambda m, key=key, name=name: f"{name} {key}: {m}")


@pytest.mark.parametrize("step", ["illume_round"], indirect=True)
def test_a_feedback_round_over_two_ranks_keeps_what_one_process_keeps(step):
    """Each rank judged its share of the round's items; gathered, the decisions and the kept pool are
    those of one process judging them all, in the same order (and the step above is its step)."""
    _, results = step
    single = {name: json.loads(results["single"][name].numpy().tobytes()) for name in ("kept", "judgements")}
    assert len(single["judgements"]) == workers.ROUND.items_per_round
    assert {e["index"] for e in single["kept"]} == set(range(workers.ROUND.items_per_round)), \
        "every item's gold rationale is kept"
    for rank in ("rank0", "rank1"):
        for name in ("kept", "judgements"):
            assert torch.equal(results[rank][name], results["single"][name]), f"{rank}'s {name} differ"


def test_gather_json_brings_every_ranks_value_in_rank_order():
    assert distributed.SINGLE.gather_json((1, "a")) == [[1, "a"]]  # JSON's types, as with several ranks
    mp.spawn(_gather_json, args=(2, free_port()), nprocs=2, join=True)


def _gather_json(rank, world, port):
    import os

    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        values = [[["a rationale", "é ✓"], [True, False]], {"nothing": []}]  # of other lengths
        assert distributed.current().gather_json(values[rank]) == values
        assert distributed.current().gather_json([] if rank else [1]) == [[1], []]
    finally:
        dist.destroy_process_group()


def test_the_ranks_stay_identical_and_the_frozen_weights_untouched(step, stand_ins):
    method, results = step
    for key in results["rank0"]:
        assert torch.equal(results["rank0"][key], results["rank1"][key]), f"{method}: ranks differ in {key}"
    clip, lm = stand_ins
    untouched = distributed.fingerprint([*clip.model.parameters(), *lm.model.parameters()])
    for name in ("rank0", "rank1", "single"):
        assert torch.equal(results[name]["frozen"], untouched), f"{method}: {name} changed the frozen backbones"


def test_the_optimiser_holds_only_the_bridge(stand_ins):
    clip, lm = stand_ins
    model = Fromage(clip, lm, workers.FROMAGE)
    optimizer = adamw(model.parameters(), 1e-3, 0.0)
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert held == {id(p) for p in model.parameters() if p.requires_grad}
    frozen = {id(p) for p in [*clip.model.parameters(), *lm.model.parameters()]}
    assert not held & frozen and all(not p.requires_grad for p in [*clip.model.parameters(), *lm.model.parameters()])


@pytest.mark.parametrize("n", [0, 1, 5, 6, 7, 180])
@pytest.mark.parametrize("world", [1, 2, 3, 8])
def test_every_example_of_a_batch_is_read_by_exactly_one_rank(n, world):
    blocks = Group(0, world).blocks(n)
    seen = [i for rank in range(world) for i in Group(rank, world).take(list(range(n)))]
    assert seen == list(range(n))
    assert [list(b) for b in blocks] == [list(Group(r, world).block(n)) for r in range(world)]
    assert max(map(len, blocks)) - min(map(len, blocks)) <= 1


def test_one_process_is_the_identity():
    x = torch.tensor([1.0, 2.0, 4.0])
    single = distributed.SINGLE
    assert single.sum(x) is x and torch.equal(single.mean(x), x.mean())
    assert distributed.gather_rows(x[:, None], [3], single) is not None and single.any(True) and not single.any(False)
    p = torch.nn.Parameter(torch.ones(2))
    p.grad = torch.full((2,), 3.0)
    distributed.reduce_gradients([p], single)
    assert torch.equal(p.grad, torch.full((2,), 3.0))


def test_a_rank_with_other_weights_is_refused():
    """check_replicated catches a rank whose backbone differs (different files on one node, say)."""
    mp.spawn(_check_differing, args=(2, free_port()), nprocs=2, join=True)


def _check_differing(rank, world, port):
    import os

    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        weights = [torch.full((3,), float(rank))]
        with pytest.raises(RuntimeError, match=r"differ between rank 0 and rank\(s\) \[1\]"):
            distributed.check_replicated(weights, distributed.current(), "the frozen weights")
        distributed.check_replicated([torch.ones(3)], distributed.current(), "equal weights")  # no error
    finally:
        dist.destroy_process_group()

