"""`vlbridge train --fsdp`: the frozen LM's decoder layers sharded over the ranks with FSDP2
(vlbridge.fsdp), on the CPU with gloo. Two ranks train FROMAGe with the smoke stand-in's layers
sharded and take exactly the steps they take with the LM whole (sharding the frozen layers changes
where the weights live, not the math); the CLI trains and saves with --fsdp; and models that sample
during training (ESPER) are refused, since a rank whose captions end sooner would stop calling the
sharded LM while the others wait in its all-gather."""
import math
import os
import subprocess
import sys
from dataclasses import replace

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

import distributed_workers as workers
from test_distributed import free_port
from vlbridge import distributed, fsdp, world
from vlbridge.distributed import Group
from vlbridge.methods.fromage import Fromage
from vlbridge.training import Run

STEPS = replace(workers.FROMAGE, steps=3)


@pytest.fixture(scope="module")
def stand_ins():
    """Built (or read from the cache) here once, so the ranks only read them."""
    return workers.smoke_backbones()


@pytest.fixture(scope="module")
def trained(stand_ins, tmp_path_factory):
    """rank -> what that rank of two ended with: FROMAGe trained with the LM whole ("whole.*"), then
    with its layers sharded ("fsdp.*"), and what the sharding left on the rank ("shards.*")."""
    out = tmp_path_factory.mktemp("fsdp")
    mp.spawn(_train_rank, args=(2, free_port(), str(out)), nprocs=2, join=True)
    return [load_file(out / f"rank{rank}.safetensors") for rank in range(2)]


def _fromage(clip, lm, ranks) -> dict:
    """STEPS steps of FROMAGe over `ranks` (workers.fromage_step's data): the bridge before and after,
    its gradients and the logged losses."""
    torch.manual_seed(0)
    model = Fromage(clip, lm, STEPS)
    start = {f"start.{name}": p.detach().clone() for name, p in model.named_parameters()}
    pool = world.scenes(0, 40)
    features = model.features(world.render_array(pool, clip.image_size))
    log = model.fit(features, lambda i, step: world.canonical_caption(pool[i]),
                    lambda i, step: world.caption(pool[i], world.scene_rng(pool[i].seed, step)), run=Run(ranks))
    result = workers.outcome(model, log, frozen=[])
    del result["frozen"]  # checked whole below: a fingerprint reads plain tensors, not shards
    return result | start


def _full(p: torch.Tensor) -> torch.Tensor:
    """A parameter's whole tensor: gathered from every rank if it is a shard (a collective)."""
    from torch.distributed.tensor import DTensor

    return p.full_tensor() if isinstance(p, DTensor) else p


def _train_rank(rank: int, world_size: int, port: int, out: str) -> None:
    from torch.distributed.tensor import DTensor

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        ranks = distributed.current()
        clip, lm = workers.smoke_backbones()
        result = {f"whole.{k}": v for k, v in _fromage(clip, lm, ranks).items()}
        before = distributed.fingerprint(lm.model.parameters())
        shards = fsdp.shard_frozen_lm(lm.model, ranks)
        result |= {f"fsdp.{k}": v for k, v in _fromage(clip, lm, ranks).items()}
        _, layers = fsdp.decoder_layers(lm.model)
        held = list(layers.parameters())
        result |= {
            "shards.layers": torch.tensor(shards.layers),
            "shards.share": torch.tensor(shards.share),
            # after training every layer is a shard again (resharded after forward and backward)
            "shards.all_dtensor": torch.tensor(all(isinstance(p, DTensor) for p in held)),
            "shards.local": torch.tensor(sum(p.to_local().numel() for p in held)),
            "shards.whole": torch.tensor(sum(p.numel() for p in held)),
            "shards.embedding_plain": torch.tensor(not isinstance(lm.model.get_input_embeddings().weight, DTensor)),
            "frozen.before": before,
            "frozen.after": distributed.fingerprint([_full(p) for p in lm.model.parameters()]),
        }
        save_file(result, os.path.join(out, f"rank{rank}.safetensors"))
    finally:
        dist.destroy_process_group()


def test_two_ranks_train_fromage_with_the_lm_layers_sharded(trained):
    rank0, rank1 = trained
    losses = rank0["fsdp.log.total"]
    assert len(losses) == STEPS.steps and all(math.isfinite(x) for x in losses.tolist())
    params = [k.removeprefix("fsdp.") for k in rank0 if k.startswith("fsdp.param.")]
    assert params
    moved = [k for k in params if not torch.equal(rank0[f"fsdp.{k}"], rank0[f"fsdp.start.{k.removeprefix('param.')}"])]
    assert moved, "the bridge did not move"
    for key in (k for k in rank0 if k.startswith("fsdp.")):
        assert torch.equal(rank0[key], rank1[key]), f"the ranks differ in {key}"


def test_sharding_the_frozen_layers_does_not_change_the_math(trained):
    for rank, result in enumerate(trained):
        whole = {k.removeprefix("whole."): v for k, v in result.items() if k.startswith("whole.")}
        assert whole and set(whole) == {k.removeprefix("fsdp.") for k in result if k.startswith("fsdp.")}
        for key, value in whole.items():
            torch.testing.assert_close(result[f"fsdp.{key}"].double(), value.double(), rtol=1e-5, atol=1e-5,
                                       msg=lambda m, key=key: f"rank {rank}, {key}: {m}")


def test_each_rank_holds_half_of_every_layer_and_the_weights_are_untouched(trained, stand_ins):
    _, lm = stand_ins
    for result in trained:
        assert result["shards.layers"].item() == lm.model.config.num_hidden_layers
        assert 0 < result["shards.share"].item() < 1
        assert result["shards.all_dtensor"].item() and result["shards.embedding_plain"].item()
        assert 2 * result["shards.local"].item() == result["shards.whole"].item()  # the smoke LM's dims are even
        assert torch.equal(result["frozen.after"], result["frozen.before"])
        assert torch.equal(result["frozen.before"], distributed.fingerprint(lm.model.parameters()))


def test_the_cli_trains_and_saves_with_fsdp(stand_ins, tmp_path):
    """Run as a cluster would run it (torchrun, two gloo processes), into a cache of its own whose
    stand-in backbones are the ones already built."""
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "backbones").symlink_to(os.path.join(os.environ["VLBRIDGE_CACHE"], "backbones"))
    command = [sys.executable, "-m", "vlbridge", "train", "fromage", "-p", "smoke", "--nproc", "2", "--fsdp",
               "--set", "threads=1", "--set", "steps=3", "--out", str(tmp_path / "run")]
    env = os.environ | {"VLBRIDGE_CACHE": str(cache), "VLBRIDGE_PROGRESS": "0"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log
    assert "--fsdp: 2 decoder layers (model.layers" in log and "sharded over 2 processes" in log
    assert "trained 3 steps" in log and f"saved {cache / 'trained'}" in log


@pytest.mark.parametrize("model", ["esper_grpo", "esper_ppo"])
def test_fsdp_refuses_models_that_sample_while_training(model, capsys):
    from vlbridge.book.train import main

    with pytest.raises(SystemExit) as stopped:
        main([model, "-p", "smoke", "--nproc", "2", "--fsdp"])
    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert f"--fsdp cannot train {model}: its rollouts sample captions" in error
    assert "--fsdp trains fromage, clipcap" in error


def _tiny(arch: str):
    import transformers

    config = {
        "gpt2": transformers.GPT2Config(vocab_size=64, n_embd=16, n_layer=3, n_head=2, n_positions=32),
        "opt": transformers.OPTConfig(vocab_size=64, hidden_size=16, num_hidden_layers=3, num_attention_heads=2,
                                      ffn_dim=32, word_embed_proj_dim=16, max_position_embeddings=32),
        "llama": transformers.LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=3,
                                          num_attention_heads=2, num_key_value_heads=2),
        "mistral": transformers.MistralConfig(vocab_size=64, hidden_size=16, intermediate_size=32,
                                              num_hidden_layers=3, num_attention_heads=2, num_key_value_heads=2),
    }[arch]
    return transformers.AutoModelForCausalLM.from_config(config)


@pytest.mark.parametrize("arch, where", [("gpt2", "transformer.h"), ("opt", "model.decoder.layers"),
                                         ("llama", "model.layers"), ("mistral", "model.layers")])
def test_the_decoder_layers_are_found_in_each_family(arch, where):
    name, layers = fsdp.decoder_layers(_tiny(arch))
    assert name == where and len(layers) == 3


def test_what_cannot_be_sharded_is_refused():
    model = _tiny("llama")
    with pytest.raises(ValueError, match="require gradients: model.embed_tokens.weight"):
        fsdp.shard_frozen_lm(model, Group(0, 2))
    model.requires_grad_(False)
    with pytest.raises(ValueError, match="torch.distributed has no group"):
        fsdp.shard_frozen_lm(model, Group(0, 2))
    with pytest.raises(ValueError, match="no nn.ModuleList of layers"):
        fsdp.shard_frozen_lm(torch.nn.Linear(2, 2).requires_grad_(False), Group(0, 2))
    tied = _tiny("gpt2").requires_grad_(False)
    tied.lm_head.weight = tied.transformer.h[0].mlp.c_fc.weight  # a layer's weight used outside it
    with pytest.raises(ValueError, match=r"parameters of transformer.h are also used outside it \(lm_head.weight"):
        fsdp.shard_frozen_lm(tied, Group(0, 2))
