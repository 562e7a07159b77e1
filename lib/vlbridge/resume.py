"""Checkpoints of a training run that resume it exactly: a run killed at step 700 and resumed ends
with the same weights, bit for bit, as one never stopped.

What a step depends on, and so what a checkpoint holds:
- the trainable weights, by name (frozen backbones are named by the run's parameters, not copied);
- the optimiser's state (AdamW's moments and step counts) and its learning rates;
- every named random stream the loop draws from (`repro.generator`s): the data order, the samples;
  a stream of one rank's own (ESPER's samples) is saved per rank;
- the step, which with those streams is the data position, and the log so far.

Layout, under the run's folder:

    step-000120/   weights.safetensors, optimizer.safetensors, streams-rank0.safetensors, ...,
                   state.json (step, log, learning rates, the sha256 of every file above: written last)
    .step-000120.partial/   a checkpoint being written (renamed to step-000120 when whole)

Tensors go to safetensors, everything else to JSON: no pickle, so a checkpoint from elsewhere
cannot run code. A checkpoint is complete when its state.json is there and every file matches the
checksum it records; `latest` skips any other with a message (a save cut off by SIGKILL, a
copy that lost a file). The two newest complete checkpoints are kept.

Every K steps, and when SIGTERM arrives (a scheduler's pre-emption: torchrun passes it to every
rank), the run saves after the step in progress and `Stopped` is raised, to exit cleanly.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import signal
from pathlib import Path

import torch

from .distributed import SINGLE, Group
from .paths import atomic_write_bytes, atomic_write_json

STATE = "state.json"
FORMAT = 1
KEEP = 2


class Stopped(Exception):
    """SIGTERM arrived: the run saved a checkpoint at `step` (resume it with --resume)."""

    def __init__(self, step: int, folder: Path):
        super().__init__(f"stopped by SIGTERM after step {step}; checkpoint {folder}: resume with --resume")
        self.step, self.folder = step, folder


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _save_tensors(path: Path, tensors: dict) -> None:
    from safetensors.torch import save

    atomic_write_bytes(path, save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}))


def _load_tensors(path: Path) -> dict:
    from safetensors.torch import load

    return load(path.read_bytes())


def _optimizer_parts(optimizer) -> tuple[dict, dict]:
    """The optimiser's state_dict as (tensors by flat name, the JSON rest)."""
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, slots in state["state"].items():
        for key, value in slots.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{key}"] = value
            else:
                scalars[f"{index}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _optimizer_state(tensors: dict, rest: dict, device) -> dict:
    state: dict = {}
    for name, value in tensors.items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value if key == "step" else value.to(device)
    for name, value in rest["scalars"].items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    return {"state": state, "param_groups": rest["param_groups"]}


class RunCheckpoints:
    """The checkpoints of one run in `folder`, every `every` steps (0: only on SIGTERM).

    A loop calls `restore` once, before its first step, and `after_step` after each; both take what
    the step depends on: the trained module (its parameters with requires_grad), the optimiser, and
    the named streams: `shared` (the same on every rank) and `own` (this rank's). The optimiser may be
    None: a state saved with `save` between training runs has none (ILLUME's rounds each make their own)."""

    def __init__(self, folder, every: int = 100, group: Group = SINGLE, resume: bool = False, say=print):
        if every < 0:
            raise ValueError(f"checkpoint interval must be >= 0 steps (0: only on SIGTERM), got {every}")
        self.folder, self.every, self.group, self.resume, self.say = Path(folder), every, group, resume, say
        self._term = {"arrived": False}  # shared with the checkpoints of a run within this one (`within`)
        self._previous_handler = None

    def within(self, name: str) -> "RunCheckpoints":
        """The checkpoints of a run that this run makes first (a model it starts from), in the sub-folder
        `name`: the same interval, ranks and --resume, and the same SIGTERM (this run's handler)."""
        inner = RunCheckpoints(self.folder / name, self.every, self.group, self.resume, self.say)
        inner._term = self._term
        return inner

    # ------------------------------------------------------------------ SIGTERM
    def __enter__(self):
        self._previous_handler = signal.signal(signal.SIGTERM, self._on_term)
        return self

    def __exit__(self, *exc):
        signal.signal(signal.SIGTERM, self._previous_handler or signal.SIG_DFL)
        return False

    def _on_term(self, signum, frame):
        self._term["arrived"] = True  # acted on after the step in progress, when the state is whole

    # ------------------------------------------------------------------ finding one
    def _check(self, folder: Path) -> dict:
        """state.json of a complete checkpoint, or ValueError saying what is wrong."""
        try:
            state = json.loads((folder / STATE).read_text())
        except FileNotFoundError:
            raise ValueError("no state.json (a save that did not finish)") from None
        except ValueError as e:
            raise ValueError(f"state.json is not JSON ({e})") from None
        if state.get("format") != FORMAT:
            raise ValueError(f"format {state.get('format')!r}, this code reads {FORMAT}")
        if state.get("world") != self.group.world:
            raise ValueError(f"saved by {state.get('world')} processes, this run has {self.group.world}: the "
                             "per-rank streams would not match (resume with the same --nproc)")
        for name, digest in state["files"].items():
            path = folder / name
            if not path.is_file():
                raise ValueError(f"{name} is missing")
            if _sha256(path) != digest:
                raise ValueError(f"{name} does not match its checksum")
        return state

    def latest(self) -> tuple[Path, dict] | None:
        """The newest complete checkpoint and its state; incomplete ones are skipped, with a message."""
        for partial in sorted(self.folder.glob(".step-*.partial")):
            self.say(f"ignoring half-written checkpoint {partial}")
        for folder in sorted(self.folder.glob("step-*"), reverse=True):
            try:
                return folder, self._check(folder)
            except ValueError as e:
                self.say(f"ignoring checkpoint {folder}: {e}")
        return None

    # ------------------------------------------------------------------ restore / save
    def restore(self, model, optimizer, shared: dict, own: dict | None = None) -> tuple[int, dict]:
        """(the step to start at, the log so far): (0, {}) unless resuming from a complete checkpoint,
        whose weights, optimiser state and streams are then put in place."""
        if not self.resume:
            return 0, {}
        found = self.latest()
        if found is None:
            self.say(f"no complete checkpoint in {self.folder}: starting from step 0")
            return 0, {}
        folder, state = found
        params = dict(model.named_parameters())
        weights = _load_tensors(folder / "weights.safetensors")
        trainable = {n for n, p in params.items() if p.requires_grad}
        if set(weights) != trainable:
            raise ValueError(f"{folder}: its weights {sorted(set(weights) ^ trainable)[:4]}... do not match this "
                             "model's trainable parameters: it is another model's checkpoint")
        with torch.no_grad():
            for name, value in weights.items():
                params[name].copy_(value)
        if optimizer is not None:
            optimizer.load_state_dict(_optimizer_state(_load_tensors(folder / "optimizer.safetensors"),
                                                       state["optimizer"], next(model.parameters()).device))
        for streams, file in ((shared, "streams-shared"), (own or {}, f"streams-rank{self.group.rank}")):
            saved = _load_tensors(folder / f"{file}.safetensors")
            if set(saved) != set(streams):
                raise ValueError(f"{folder}/{file}: streams {sorted(saved)}, this run draws from {sorted(streams)}")
            for name, generator in streams.items():
                generator.set_state(saved[name])
        self.say(f"resuming from {folder} (after step {state['step']})")
        return state["step"] + 1, state["log"]

    def after_step(self, step: int, last: int, model, optimizer, shared: dict, own: dict | None, log: dict) -> None:
        """Save after `step` when it is due (every `every` steps, or SIGTERM on any rank); on SIGTERM,
        raise Stopped once saved. `last` is the run's final step (no checkpoint is needed there: the
        run's result is saved instead)."""
        term = self.group.any(self._term["arrived"])
        due = self.every and (step + 1) % self.every == 0 and step != last
        if not (term or due):
            return
        folder = self.save(step, model, optimizer, shared, own or {}, log)
        if term:
            raise Stopped(step, folder)

    def save(self, step: int, model, optimizer, shared: dict, own: dict, log: dict) -> Path:
        group = self.group
        final = self.folder / f"step-{step:06d}"
        stage = self.folder / f".step-{step:06d}.partial"
        if group.main:
            shutil.rmtree(stage, ignore_errors=True)
            stage.mkdir(parents=True)
        group.barrier()
        _save_tensors(stage / f"streams-rank{group.rank}.safetensors",
                      {name: g.get_state() for name, g in own.items()})
        if group.main:
            _save_tensors(stage / "weights.safetensors",
                          {n: p for n, p in model.named_parameters() if p.requires_grad})
            rest = None  # no optimiser: a state between training runs (a feedback round's start)
            if optimizer is not None:
                tensors, rest = _optimizer_parts(optimizer)
                _save_tensors(stage / "optimizer.safetensors", tensors)
            _save_tensors(stage / "streams-shared.safetensors", {name: g.get_state() for name, g in shared.items()})
        group.barrier()  # every rank's streams are on disk before the checksums are taken
        if group.main:
            files = {p.name: _sha256(p) for p in sorted(stage.iterdir())}
            atomic_write_json(stage / STATE, {"format": FORMAT, "step": step, "world": group.world, "files": files,
                                              "optimizer": rest, "log": log})
            shutil.rmtree(final, ignore_errors=True)
            stage.rename(final)
            for old in sorted(self.folder.glob("step-*"))[:-KEEP]:
                shutil.rmtree(old, ignore_errors=True)
        group.barrier()
        return final
