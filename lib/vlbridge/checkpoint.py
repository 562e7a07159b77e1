"""Save and load a trained bridge, so it can be shared: only the trainable parts (the module's own
parameters with requires_grad), never the frozen backbones, which are named instead.

A checkpoint is a folder with two files:

    bridge.safetensors   the trainable parameters, by their names in the module
    bridge.json          {"format": 1, "method": class name, "config": {...}, "backbones": {"clip": ...,
                         "lm": ...}, "dims": {...}, "fingerprints": {"clip": hex, "lm": hex},
                         "parameters": {name: shape}, "tensors": {sha256, bytes}}

Writes: bridge.safetensors first, bridge.json last, each atomically (a temporary file, then a rename),
so neither is ever half-written and a folder holding bridge.json always holds its tensors. bridge.json
records the sha256 of the tensors it belongs with: if a save is interrupted between the two writes
over an older checkpoint, the pair no longer matches and `load` says so instead of loading a mix.

Loads are strict and all-or-nothing: the backbones must have the names the bridge was trained on and,
where bridge.json records them, the same weights (a fingerprint of each backbone's frozen weights: a
name alone would let a stand-in rebuilt by other code, or other files under that name, pass); the saved
parameters must be exactly the module's trainable ones with the same shapes; everything is checked
before the first parameter is copied, so a failed load leaves the module as it was. bridge.json written
before fingerprints existed has none, and loads by names and dims as it always did.

`Trained.load` checks the saved config before it builds anything from it: its keys and their types
against the config class, and, while the model is built, that no tensor is asked for that is larger
than the saved ones (a config edited to `image_tokens: 10000000` would otherwise allocate terabytes).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import types
import typing
from pathlib import Path

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from .distributed import bit_sums
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


def _unreadable(t: torch.Tensor) -> bool:
    """A tensor this process does not hold whole: a meta tensor, or a shard (FSDP2's DTensor; rank 0
    saves alone, so gathering the rest would wait for ever on ranks that are not saving)."""
    if t.is_meta:
        return True
    if not torch.distributed.is_available():
        return False
    from torch.distributed.tensor import DTensor

    return isinstance(t, DTensor)


def weights_fingerprint(module: nn.Module) -> str | None:
    """A hex digest of a backbone's frozen weights (its parameters without requires_grad: LoRA adapters
    trained on a copy of the LM are the tuned model's own, saved beside it, not the backbone), or None
    where there is nothing to read here (no frozen parameter, or sharded ones: see _unreadable).

    Each weight is rounded to bfloat16 first: float32 weights loaded as bfloat16 are rounded the same
    way (round to nearest even, what .to() and from_pretrained(dtype=) do), so a bfloat16 copy of the
    same weights has the same fingerprint; a float16 copy is another rounding and does not. Per tensor,
    exact integer sums of the bits (distributed.bit_sums, on the tensor's own device: no CPU copy of a
    7B LM, and the same result on any device); the tensors' (shape, sums) are sorted, so neither the
    parameter order nor the names matter (wrapping layers, LoRA's base_layer, rename them), and hashed.
    A change of this recipe needs a new bridge.json key, so that older records are not read with it."""
    frozen = [p for p in module.parameters() if not p.requires_grad]
    if not frozen or any(_unreadable(p) for p in frozen):
        return None
    parts = sorted((list(p.shape), *bit_sums(p, torch.bfloat16).tolist()) for p in frozen)
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def save(folder, module: nn.Module, config: dict, backbones: dict[str, str], dims: dict | None = None,
         backbone_modules: dict[str, nn.Module] | None = None) -> Path:
    """Write `module`'s trainable parameters to folder/bridge.safetensors and folder/bridge.json, which
    records the method (the module's class name), `config` (a JSON-serialisable dict, or a dataclass),
    the backbones by role and name (e.g. {"clip": "micro-clip", "lm": "micro-lm"}) and, if given, their
    `dims` (see backbone_dims) and the fingerprints of `backbone_modules` (role -> the backbone's
    torch module, whose weights `load` then requires). Returns the folder."""
    folder = Path(folder)
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        config = dataclasses.asdict(config)
    if not isinstance(config, dict):
        raise TypeError(f"config must be a dict (or a dataclass), got {type(config).__name__}")
    if not backbones or not all(isinstance(k, str) and isinstance(v, str) and v for k, v in backbones.items()):
        raise ValueError(f"backbones must map each role to a model name, e.g. {{'clip': ..., 'lm': ...}}; "
                         f"got {backbones!r}")
    stray = sorted(set(backbone_modules or {}) - set(backbones))
    if stray:
        raise ValueError(f"backbone_modules has roles that backbones does not name: {stray}; "
                         f"the roles are {sorted(backbones)}")
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
    fingerprints = {role: weights_fingerprint(m) for role, m in (backbone_modules or {}).items()}
    fingerprints = {role: digest for role, digest in fingerprints.items() if digest is not None}
    if fingerprints:
        meta["fingerprints"] = fingerprints
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


def _check_fingerprints(path: Path, saved, names: dict, given: dict) -> None:
    if not isinstance(saved, dict) or not all(role in names and isinstance(v, str) for role, v in saved.items()):
        raise CheckpointError(f"{path}: 'fingerprints' should map roles of 'backbones' ({', '.join(names)}) "
                              f"to hex strings, got {saved!r}")
    for role, recorded in sorted(saved.items()):
        if role not in given:  # a caller that binds by name only (load without backbone_modules)
            continue
        digest = weights_fingerprint(given[role])  # None for a sharded backbone: it cannot be read here
        if digest is not None and digest != recorded:
            raise CheckpointError(
                f"{path}: the weights of {role} {names[role]!r} differ from those this bridge was trained on "
                f"(same name, other weights: a stand-in rebuilt by other code, or other files under that "
                f"name?); load it with the {role} it was trained on (a float32 or bfloat16 copy of it "
                "matches, a float16 one does not)")


def _tensors_path(folder: Path) -> Path:
    path = folder / TENSORS
    if not path.is_file():
        raise CheckpointNotFoundError(f"{folder} holds {META} but not {TENSORS}, the bridge's weights; "
                                      "copy the whole folder")
    return path


def load(folder, module: nn.Module, backbones: dict[str, str], dims: dict | None = None,
         backbone_modules: dict[str, nn.Module] | None = None) -> dict:
    """Load the checkpoint in `folder` into `module`'s parameters, strictly, after checking that the
    backbones (by role and name, by `dims` where both sides have them, and by the weights of
    `backbone_modules` where bridge.json has their fingerprints) are those it was trained on. Returns
    the saved config. Raises CheckpointError (CheckpointNotFoundError for missing files)."""
    folder = Path(folder)
    meta = read_meta(folder)
    meta_path = folder / META
    cls = type(module).__name__
    if meta["method"] != cls:
        raise CheckpointError(f"{meta_path}: this is a {meta['method']} bridge, not a {cls}")
    _check_backbones(meta_path, meta["backbones"], backbones)
    _check_dims(meta_path, meta.get("dims", {}), dims or {})
    _check_fingerprints(meta_path, meta.get("fingerprints", {}), meta["backbones"], backbone_modules or {})
    tensors_path = _tensors_path(folder)
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


# ---------------------------------------------------------------------------- a saved config, before it builds
_JSON_TYPES = {int: (int,), float: (int, float), str: (str,), bool: (bool,), type(None): (type(None),)}


def _json_types(hint) -> tuple | None:
    """The JSON values a config field annotated `hint` accepts (int | None: int or null), or None for a
    hint this does not read (anything is passed on as it is)."""
    union = isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union
    options = typing.get_args(hint) if union else (hint,)
    if not all(option in _JSON_TYPES for option in options):
        return None
    return tuple(t for option in options for t in _JSON_TYPES[option])


def _checked_config(path: Path, config_class, saved):
    """`config_class` built from bridge.json's config, after checking it against the class's fields:
    no unknown or missing key, and each value of its field's type (bool is not an int here, though it
    is one in Python). A dict config (config_class dict) is passed on, to be checked by its model."""
    if not isinstance(saved, dict):
        raise CheckpointError(f"{path}: 'config' should be a mapping of the config's fields, "
                              f"got {type(saved).__name__}")
    if not dataclasses.is_dataclass(config_class):
        return config_class(saved)
    fields = {f.name: f for f in dataclasses.fields(config_class) if f.init}
    allowed = f"the keys of {config_class.__name__} are {', '.join(fields)}"
    unknown = [key for key in saved if key not in fields]
    if unknown:
        raise CheckpointError(f"{path}: unknown config key(s) {', '.join(map(repr, unknown))}; {allowed}")
    missing = [name for name, f in fields.items() if name not in saved
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise CheckpointError(f"{path}: the config has no {', '.join(map(repr, missing))}, which "
                              f"{config_class.__name__} needs; {allowed}")
    hints = typing.get_type_hints(config_class)
    for key, value in saved.items():
        accepted = _json_types(hints[key])
        if accepted is not None and (not isinstance(value, accepted) or (isinstance(value, bool)
                                                                         and bool not in accepted)):
            names = " or ".join("null" if t is type(None) else t.__name__ for t in accepted)
            raise CheckpointError(f"{path}: config key {key!r} should be {names}, got {type(value).__name__} "
                                  f"({value!r})")
    return config_class(**saved)


# Building a model from a config makes its parameters, plus small temporaries (FROMAGe with patch
# features encodes one blank image to learn their width). A config that matches the saved tensors asks
# for nothing larger than the largest of them, or than this floor for the temporaries (64 MiB of
# float32); anything larger cannot be the saved model, and is refused before it is allocated.
_BUILD_FLOOR = 1 << 24


class _AllocationLimit(TorchDispatchMode):
    """While active, asking for a tensor of more than `limit` elements calls refuse(size) (which raises)
    before the allocation: every op that allocates by a size (empty, zeros, randn, resize_ ... at the
    ATen level, which nn layers reach) names it; views of a size (expand, view) allocate nothing and are
    let through. It bounds each tensor, not their sum: a config sized by a loop of many small layers
    would need a bound of its own (no method's config has one)."""

    def __init__(self, limit: int, refuse):
        super().__init__()
        self.limit, self.refuse = limit, refuse

    def __torch_dispatch__(self, func, classes, args=(), kwargs=None):
        kwargs = kwargs or {}
        schema = func._schema
        if not any(r.alias_info is not None and not r.alias_info.is_write for r in schema.returns):  # a view
            for i, argument in enumerate(schema.arguments):
                size = (args[i] if i < len(args) else kwargs.get("size")) if argument.name == "size" else None
                if size is not None and math.prod(size) > self.limit:
                    self.refuse(list(size))
        return func(*args, **kwargs)


def _saved_shapes(folder: Path) -> dict[str, list[int]]:
    """The shapes in bridge.safetensors' header, read without its tensors (safetensors checks that the
    header's sizes fit the file, so they are what the file holds, whatever bridge.json says)."""
    path = _tensors_path(folder)
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), "pt") as f:
            return {name: f.get_slice(name).get_shape() for name in f.keys()}
    except SafetensorError as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from None


def _build(cls, folder: Path, config, backbones):
    """cls.from_config(config, backbones), refusing any tensor larger than the saved ones allow (see
    _BUILD_FLOOR), and turning the model's own refusal of a config value into a CheckpointError."""
    path = folder / META
    shapes = _saved_shapes(folder)
    largest = max((math.prod(shape) for shape in shapes.values()), default=0)
    widest = max((d for shape in shapes.values() for d in shape), default=0)

    def refuse(size: list[int]) -> None:
        values = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
        numbers = sorted(((v, k) for k, v in values.items() if type(v) is int and v > widest), reverse=True)
        suspects = ", ".join(f"{k}={v}" for v, k in numbers) or "none"
        raise CheckpointError(
            f"{path}: building {cls.__name__} from this config would allocate a tensor of shape {size} "
            f"({math.prod(size):,} elements), but the largest tensor in {TENSORS} has {largest:,}: the config "
            f"does not describe the saved weights (its numbers larger than any saved dimension, {widest}: "
            f"{suspects})")

    try:
        with _AllocationLimit(max(largest, _BUILD_FLOOR), refuse):
            return cls.from_config(config, backbones)
    except CheckpointError:
        raise
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: {cls.__name__} refuses the saved config: {e}") from e


class Trained:
    """save / load / trainable_parameters of a model a method trains (contracts.TrainedModel), written
    once. A subclass (an nn.Module) has `config` (a dataclass or dict), `config_class` (what builds the
    config back from JSON), `backbone_record()` and `from_config(config, backbones)`."""

    config_class = dict

    def backbone_modules(self, names: dict[str, str]) -> dict[str, nn.Module]:
        """The torch modules of the backbones this model holds, by role, for their fingerprints: an
        attribute named after the role, with the recorded name (Fromage's clip and lm, a
        PrefixCaptioner's lm). A role it knows by name only (a PrefixCaptioner's encoder, an
        AudioEncoder's CLIP) has none, and is bound by name and dims alone."""
        held = {}
        for role, name in names.items():
            backbone = getattr(self, role, None)
            if getattr(backbone, "name", None) == name and isinstance(getattr(backbone, "model", None), nn.Module):
                held[role] = backbone.model
        return held

    def save(self, folder) -> None:
        """The trained parameters (safetensors) and a JSON config naming the backbones, with their
        sizes and fingerprints."""
        names, dims = self.backbone_record()
        save(folder, self, self.config, names, dims, self.backbone_modules(names))

    @classmethod
    def load(cls, folder, backbones):
        """A saved model on `backbones` (contracts.Backbones); other backbones than it was trained on
        (by name, sizes or weights) are a CheckpointError that names both. The saved config is checked
        before the model is built (see _checked_config and _build)."""
        folder = Path(folder)
        meta = read_meta(folder)
        if meta["method"] != cls.__name__:
            raise CheckpointError(f"{folder / META}: this is a {meta['method']} bridge, not a {cls.__name__}")
        model = _build(cls, folder, _checked_config(folder / META, cls.config_class, meta["config"]), backbones)
        names, dims = model.backbone_record()
        load(folder, model, names, dims, model.backbone_modules(names))
        return model.eval()

    def trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
