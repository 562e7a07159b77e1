"""Save and load a trained bridge, so it can be shared: only the trainable parts (the module's own
parameters with requires_grad), never the frozen backbones, which are named instead.

A checkpoint is a folder with two files:

    bridge.safetensors   the trainable parameters, by their names in the module
    bridge.json          {"format": 1, "method": class name, "config": {...}, "backbones": {"clip": ...,
                         "lm": ...}, "dims": {...}, "parameters": {name: shape}, "tensors": {sha256, bytes}}

Writes: bridge.safetensors first, bridge.json last, each atomically (a temporary file, then a rename),
so neither is ever half-written and a folder holding bridge.json always holds its tensors. bridge.json
records the sha256 of the tensors it belongs with: if a save is interrupted between the two writes
over an older checkpoint, the pair no longer matches and `load` says so instead of loading a mix.

Loads are strict and all-or-nothing: the backbones must have the names the bridge was trained on, the
saved parameters must be exactly the module's trainable ones with the same shapes; everything is
checked before the first parameter is copied, so a failed load leaves the module as it was.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import torch
from torch import nn

from .paths import atomic_write_bytes, atomic_write_json

FORMAT = 1
TENSORS = "bridge.safetensors"
META = "bridge.json"


class CheckpointError(ValueError):
    """A bridge checkpoint that cannot be loaded as asked; the message names the file and the cause."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """The folder, or one of the two files a checkpoint needs, is not there."""


def backbone_dims(clip=None, lm=None) -> dict[str, int]:
    """The dimensions that identify the backbones a bridge is trained on, to pass to save/load as `dims`:
    the CLIP embedding size, the LM's hidden size and vocabulary size."""
    dims = {}
    if clip is not None:
        dims["clip_embed_dim"] = int(clip.embed_dim)
    if lm is not None:
        dims["lm_hidden_size"] = int(lm.embed_dim)
        dims["lm_vocab_size"] = int(lm.model.get_input_embeddings().num_embeddings)
    return dims


def trainable_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """The parameters a checkpoint holds: the module's own with requires_grad (a frozen backbone kept as a
    plain attribute is not among them; one registered as a child is frozen, so is left out too)."""
    return {name: p for name, p in module.named_parameters() if p.requires_grad}


def save(folder, module: nn.Module, config: dict, backbones: dict[str, str], dims: dict | None = None) -> Path:
    """Write `module`'s trainable parameters to folder/bridge.safetensors and folder/bridge.json, which
    records the method (the module's class name), `config` (a JSON-serialisable dict, or a dataclass),
    the backbones by role and name (e.g. {"clip": "micro-clip", "lm": "micro-lm"}) and, if given, their
    `dims` (see backbone_dims). Returns the folder."""
    folder = Path(folder)
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        config = dataclasses.asdict(config)
    if not isinstance(config, dict):
        raise TypeError(f"config must be a dict (or a dataclass), got {type(config).__name__}")
    if not backbones or not all(isinstance(k, str) and isinstance(v, str) and v for k, v in backbones.items()):
        raise ValueError(f"backbones must map each role to a model name, e.g. {{'clip': ..., 'lm': ...}}; "
                         f"got {backbones!r}")
    state = trainable_state(module)
    if not state:
        raise ValueError(f"{type(module).__name__} has no trainable parameters: nothing to save")
    from safetensors.torch import save as to_bytes

    data = to_bytes({k: v.detach().cpu().clone().contiguous() for k, v in state.items()}, metadata={"format": "pt"})
    meta = {
        "format": FORMAT,
        "method": type(module).__name__,
        "config": config,
        "backbones": dict(backbones),
        "parameters": {k: list(v.shape) for k, v in state.items()},
        "tensors": {"file": TENSORS, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)},
    }
    if dims:
        meta["dims"] = {k: int(v) for k, v in dims.items()}
    try:
        json.dumps(meta)  # before anything is written: a config JSON cannot hold is an error, not half a save
    except TypeError as e:
        raise TypeError(f"the config of a bridge checkpoint must be JSON-serialisable: {e}") from None
    atomic_write_bytes(folder / TENSORS, data)
    atomic_write_json(folder / META, meta)  # last: a bridge.json always has its tensors beside it
    return folder


def read_meta(folder) -> dict:
    """bridge.json of the checkpoint in `folder` (checked to exist and to be a format this code reads),
    e.g. to build the module from meta["config"] before `load`."""
    folder = Path(folder)
    expected = f"expected {META} and {TENSORS} in it, as written by vlbridge.checkpoint.save"
    if not folder.exists():
        raise CheckpointNotFoundError(f"no bridge checkpoint at {folder}: the folder does not exist ({expected})")
    if not folder.is_dir():
        raise CheckpointNotFoundError(f"no bridge checkpoint at {folder}: it is a file, not a folder ({expected})")
    path = folder / META
    if not path.is_file():
        raise CheckpointNotFoundError(f"no bridge checkpoint at {folder}: there is no {META} ({expected})")
    try:
        meta = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise CheckpointError(f"{path}: checkpoint format {found!r} is not one this vlbridge reads ({FORMAT})")
    for key in ("method", "config", "backbones", "parameters", "tensors"):
        if key not in meta:
            raise CheckpointError(f"{path}: has no {key!r} entry")
    return meta


def _check_backbones(path: Path, saved: dict, given: dict) -> None:
    trained = ", ".join(f"{role} {name!r}" for role, name in saved.items())
    for role, name in saved.items():
        if role not in given:
            raise CheckpointError(f"{path}: this bridge was trained on {role} {name!r}, but no {role} was given; "
                                  f"load it with the same backbones ({trained})")
        if given[role] != name:
            raise CheckpointError(f"{path}: this bridge was trained on {role} {name!r}, not {given[role]!r}; "
                                  "load it with the same backbones")
    extra = sorted(set(given) - set(saved))
    if extra:
        raise CheckpointError(f"{path}: this bridge was trained on {trained} only; it uses no {', '.join(extra)}")


def _check_dims(path: Path, saved: dict, given: dict) -> None:
    for key in sorted(set(saved) & set(given)):
        if int(saved[key]) != int(given[key]):
            raise CheckpointError(f"{path}: this bridge was trained on backbones with {key} {saved[key]}, the "
                                  f"given ones have {given[key]}; load it with the same backbones")


def load(folder, module: nn.Module, backbones: dict[str, str], dims: dict | None = None) -> dict:
    """Load the checkpoint in `folder` into `module`'s parameters, strictly, after checking that the
    backbones (by role and name, and by `dims` where both sides have them) are those it was trained
    on. Returns the saved config. Raises CheckpointError (CheckpointNotFoundError for missing files)."""
    folder = Path(folder)
    meta = read_meta(folder)
    meta_path, tensors_path = folder / META, folder / TENSORS
    cls = type(module).__name__
    if meta["method"] != cls:
        raise CheckpointError(f"{meta_path}: this is a {meta['method']} bridge, not a {cls}")
    _check_backbones(meta_path, meta["backbones"], backbones)
    _check_dims(meta_path, meta.get("dims", {}), dims or {})
    if not tensors_path.is_file():
        raise CheckpointNotFoundError(f"{folder} holds {META} but not {TENSORS}, the bridge's weights; "
                                      "copy the whole folder")
    data = tensors_path.read_bytes()
    if hashlib.sha256(data).hexdigest() != meta["tensors"].get("sha256"):
        raise CheckpointError(f"{tensors_path} is not the file {meta_path} was saved with (its sha256 differs): "
                              "an interrupted save or a partial copy? Save or copy the checkpoint again")
    from safetensors import SafetensorError
    from safetensors.torch import load as from_bytes

    try:
        saved = from_bytes(data)
    except SafetensorError as e:
        raise CheckpointError(f"{tensors_path}: not a readable safetensors file ({e})") from None

    params = dict(module.named_parameters())
    missing = sorted(set(trainable_state(module)) - set(saved))
    unexpected = sorted(set(saved) - set(params))
    if missing or unexpected:
        parts = ([f"missing parameters {missing}"] if missing else []) + (
            [f"parameters this {cls} does not have {unexpected}"] if unexpected else [])
        raise CheckpointError(f"{tensors_path} does not fit this {cls}: {'; '.join(parts)}")
    wrong = [f"parameter {name!r} was saved with shape {tuple(t.shape)}, this {cls} has {tuple(params[name].shape)}"
             for name, t in saved.items() if t.shape != params[name].shape]
    if wrong:
        raise CheckpointError(f"{tensors_path}: {'; '.join(wrong)} (the saved config: {meta['config']})")
    with torch.no_grad():
        for name, tensor in saved.items():
            params[name].copy_(tensor)
    return meta["config"]


class Trained:
    """save / load / trainable_parameters of a model a method trains (contracts.TrainedModel), written
    once. A subclass (an nn.Module) has `config` (a dataclass or dict), `config_class` (what builds the
    config back from JSON), `backbone_record()` and `from_config(config, backbones)`."""

    config_class = dict

    def save(self, folder) -> None:
        """The trained parameters (safetensors) and a JSON config naming the backbones."""
        names, dims = self.backbone_record()
        save(folder, self, self.config, names, dims)

    @classmethod
    def load(cls, folder, backbones):
        """A saved model on `backbones` (contracts.Backbones); other backbones than it was trained on are
        a CheckpointError that names both."""
        model = cls.from_config(cls.config_class(**read_meta(folder)["config"]), backbones)
        names, dims = model.backbone_record()
        load(folder, model, names, dims)
        return model.eval()

    def trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
