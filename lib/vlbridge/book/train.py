"""`vlbridge train MODEL`: train one of the book's models outside a notebook, on 1..N processes.

Every process (a torchrun rank) builds the same frozen backbones and the model from the merged
parameters of the chapter that saves MODEL, trains its block of every batch (`vlbridge.distributed`)
and checkpoints into the run folder; rank 0 saves the result into the store under those parameters,
where the chapter (and chapter 6) then find it. `--nproc N` starts N local processes through
torchrun; for several nodes run torchrun yourself (README, "Training at scale"):

    torchrun --nnodes 2 --nproc-per-node 8 --rdzv-backend c10d --rdzv-endpoint HOST:29500 \\
        -m vlbridge.train fromage --profile paper-fromage

The run folder (default: <cache>/runs/<chapter>/<model>-<key>, where the store key of these
parameters is used, so `--resume` finds it again) holds the checkpoints and train.json: the log,
the parameters, the number of processes, and where the model was saved.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

EPILOG = """examples:
  vlbridge train fromage --profile smoke                 one process
  vlbridge train fromage -p smoke --nproc 2               two processes on this machine (gloo on CPU, NCCL on GPUs)
  vlbridge train esper_grpo -p default --set steps=150    another parameter, another store entry
  vlbridge train fromage -p smoke --nproc 2 --resume      continue from the last complete checkpoint
  vlbridge train fromage -p paper-fromage --nproc 8 --fsdp   an LM too big for one GPU: its layers sharded over 8

Checkpoints are written every --checkpoint-every steps and when SIGTERM arrives; --resume continues
from the newest complete one with the same number of processes, and ends with the weights an
uninterrupted run ends with."""


def parser() -> argparse.ArgumentParser:
    from .recipes import RECIPES

    p = argparse.ArgumentParser(
        prog="vlbridge train", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train one of the book's models from its chapter's parameters, on 1..N processes, into the "
                    "store the chapters load from.")
    p.add_argument("model", choices=list(RECIPES), metavar="MODEL",
                   help=f"what to train: {', '.join(f'{n} (chapter {r.chapter[:2]})' for n, r in RECIPES.items())}")
    p.add_argument("--profile", "-p", default="default", help="a profile name or a custom profile's .yaml path")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one of the chapter's parameters (value read as YAML); repeatable")
    p.add_argument("--nproc", type=int, default=1, help="processes on this machine, started through torchrun")
    p.add_argument("--resume", action="store_true", help="continue from the run folder's last complete checkpoint")
    p.add_argument("--checkpoint-every", type=int, default=50, metavar="K",
                   help="steps between checkpoints (default 50; 0: only on SIGTERM)")
    p.add_argument("--out", type=Path, default=None,
                   help="the run folder: checkpoints and train.json (default: under the cache, by parameters)")
    p.add_argument("--fsdp", action="store_true",
                   help="shard the frozen LM's decoder layers over the processes with FSDP2, for an LM too big for "
                        f"one GPU (the models trained teacher-forced only: {_fsdp_models()})")
    return p


def _launch(args, argv: list[str]) -> int:
    """Start args.nproc copies of this command under torchrun (single node, a free port)."""
    rest, skip = [], False
    for arg in argv:  # every argument but --nproc goes to the workers
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            rest.append(arg)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={args.nproc}",
               "-m", "vlbridge.train", *rest]
    # torchrun starts each worker in a session of its own, so a signal to this command's process group
    # (a scheduler's SIGTERM, Ctrl-C's SIGINT) reaches no worker: this command passes it to torchrun,
    # which passes it on. torchrun has a session of its own too, so it gets each signal once.
    torchrun = subprocess.Popen(command, start_new_session=True)
    for stop in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop, lambda signum, frame: torchrun.send_signal(signum))
    return torchrun.wait()


def run_folder(args, chapter: str, params: dict) -> Path:
    from ..paths import cache_root
    from . import store

    return args.out or cache_root() / "runs" / chapter / store.entry_dir(chapter, args.model, params).name


def train(args) -> Path:
    """Train on this process's rank; returns the store entry (rank 0; None on the others)."""
    from .. import backbones, distributed, fsdp, repro
    from ..contracts import Backbones
    from ..paths import atomic_write_json
    from ..resume import RunCheckpoints
    from ..training import Run
    from . import config, recipes

    found = recipes.recipe(args.model)
    params = config.merged_parameters(found.chapter, args.profile, args.overrides)
    device = distributed.local_device(params["device"])
    ranks = distributed.start(device)

    def say(text: str) -> None:
        if ranks.main:
            print(f"[vlbridge train] {text}", flush=True)

    repro.setup(params["seed"], params["threads"], device)
    folder = run_folder(args, found.chapter, params)
    say(f"{args.model} (chapter {found.chapter}), profile {args.profile}, {ranks.world} process(es); "
        f"run folder {folder}")
    # Rank 0 builds any missing stand-in backbone first; the others then read it from the cache.
    if not ranks.main:
        ranks.barrier()
    shard = args.fsdp and ranks.world > 1
    # A real LM to shard is read into CPU memory and reaches the device a layer at a time (it may not
    # fit there whole); a stand-in is built for its device (the cache keys it by device), and is small.
    lm_device = "cpu" if shard and backbones.recipe(params["lm_model"]) is None else device
    clip = backbones.load_clip(params["clip_model"], device=device, dtype=params.get("dtype", "float32"))
    lm = backbones.load_lm(params["lm_model"], device=lm_device, dtype=params.get("dtype", "float32"))
    if ranks.main:
        ranks.barrier()
    distributed.check_replicated([*clip.model.parameters(), *lm.model.parameters()], ranks,
                                 "the frozen backbones' weights")
    if shard:  # after the check, which reads whole tensors, not shards
        shards = fsdp.shard_frozen_lm(lm.model, ranks, device)
        say(f"--fsdp: {shards.layers} decoder layers ({shards.where}, {shards.share:.0%} of the LM's parameters) "
            f"sharded over {ranks.world} processes")
    elif args.fsdp:
        say("--fsdp with one process: nothing to shard over; the LM stays whole")
    start = time.time()
    trained_by = {"trained_by": f"vlbridge train, {ranks.world} process(es)"}
    with RunCheckpoints(folder, args.checkpoint_every, ranks, args.resume, say) as checkpoints:
        model, record, entry = recipes.train_and_save(args.model, params, Backbones(clip, lm),
                                                      Run(ranks, checkpoints), trained_by)
    log = record["log"]
    seconds = round(time.time() - start, 2)
    distributed.check_replicated([p for p in model.parameters() if p.requires_grad], ranks, "the trained weights")
    if ranks.main:
        atomic_write_json(folder / "train.json", {"model": args.model, "chapter": found.chapter, "params": params,
                                                  "processes": ranks.world, "seconds": seconds, "entry": str(entry),
                                                  "log": log})
        say(f"trained {log['steps']} steps in {seconds:.1f} s; saved {entry}")
    ranks.barrier()
    distributed.finish()
    return entry


def _fsdp_models() -> str:
    from .recipes import RECIPES

    return ", ".join(name for name, r in RECIPES.items() if r.lockstep)


def _check_fsdp(model: str) -> None:
    """Refuse --fsdp for a model whose training samples: each sharded layer's forward is a collective
    every rank must join, and sampling stops when a rank's own captions end (vlbridge.fsdp)."""
    from .recipes import RECIPES

    if not RECIPES[model].lockstep:
        parser().error(f"--fsdp cannot train {model}: its rollouts sample captions, and a rank whose captions end "
                       "sooner would stop calling the sharded LM while the others wait for its shards for ever; "
                       f"--fsdp trains {_fsdp_models()}")


def main(argv=None) -> int:
    from ..resume import Stopped

    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser().parse_args(argv)
    if args.nproc < 1:
        parser().error(f"--nproc must be at least 1, got {args.nproc}")
    if args.fsdp:
        _check_fsdp(args.model)
    if args.nproc > 1 and "RANK" not in os.environ:
        return _launch(args, argv)
    try:
        train(args)
    except Stopped as e:
        if os.environ.get("RANK", "0") == "0":
            print(f"[vlbridge train] {e}", file=sys.stderr, flush=True)
        return 143
    return 0
