"""Chapters, profiles and parameters.

A chapter's parameters are the literal, type-annotated assignments of its cell tagged `parameters`;
those are its defaults and its schema. A profile (params/<name>.yaml) may set them:

    description: one line
    common:            # applies to every chapter that declares the key
      seed: 0
    02_backbones:      # applies to that chapter only
      clip_steps: 500

Merge order: chapter defaults < profile `common` < profile chapter section < --set key=value.
Unknown keys, wrong types and numbers out of range (RANGES below) are errors that name the key, the
file and what is allowed; every section of a profile is checked whichever chapter runs.
"""
from __future__ import annotations

import ast
import math
import re
from dataclasses import dataclass
from fnmatch import fnmatchcase
from functools import lru_cache
from pathlib import Path

import yaml

from ..paths import PROFILE_FILE_SUFFIXES, ProfileNameError, profile_folder, repo_root

_TYPES = {"int": int, "float": float, "str": str, "bool": bool, "list": list, "dict": dict}
_CHAPTER_FILE = re.compile(r"^(\d\d)_([a-z0-9_]+)\.py$")
_PROFILE_META = ("description",)
# Parameters the runner sets itself, so neither a profile nor --set may: how to choose them instead.
RUNNER_KEYS = {"profile": "choose the profile with --profile (-p)"}


class ConfigError(ValueError):
    """Bad chapter, profile or parameter: the message says which, where, and what is allowed."""


# ---------------------------------------------------------------------------------------- ranges

# No count, size or seed in the book comes near this (the largest, chapter 6's test_start, is 2.5M): a
# bigger int is a typo, and would overflow or exhaust memory deep inside a chapter.
MAX_INT = 10**9


@dataclass(frozen=True)
class Range:
    """The values a number parameter allows: from `low` to `high`, a None bound being none. Beyond
    its range, every float must be finite and every int below MAX_INT in size."""

    low: float | None = None
    high: float | None = None
    open_low: bool = False  # `low` itself excluded: a learning rate must be > 0, not >= 0

    def admits(self, value: int | float) -> bool:
        if isinstance(value, float) and not math.isfinite(value):
            return False
        if isinstance(value, int) and abs(value) >= MAX_INT:
            return False
        above = self.low is None or (value > self.low if self.open_low else value >= self.low)
        return above and (self.high is None or value <= self.high)

    def describe(self, value: int | float) -> str:
        """What is allowed, for a value of `value`'s type: '>= 1 and < 1,000,000,000', '> 0 and finite'."""
        low = f"{'>' if self.open_low else '>='} {self.low:g}" if self.low is not None else None
        high = f"<= {self.high:g}" if self.high is not None else None
        if low and high:
            parts = [f"in {'(' if self.open_low else '['}{self.low:g}, {self.high:g}]"]
        else:
            parts = [b for b in (low, high) if b]
            if isinstance(value, float):
                parts.append("finite")
            else:
                parts += [f"> -{MAX_INT:,}"] * (low is None) + [f"< {MAX_INT:,}"] * (high is None)
        return " and ".join(parts)


COUNT = Range(1)  # of steps, scenes, items, tokens...: chapters divide by it, or need one at least
POSITIVE = Range(0, open_low=True)
FRACTION = Range(0, 1)

# The range of every number parameter (int or float, and the numbers of a list), by name: the first
# pattern (fnmatch) that matches wins. Every int and float parameter of every chapter must match one
# (chapter_parameters refuses it otherwise), and its default must be in range. Zero is allowed only
# where a chapter gives it a meaning.
RANGES: tuple[tuple[str, Range], ...] = (
    ("seed", Range(0)),  # numpy's generators refuse negative seeds
    ("test_start", Range(0)),  # the first seed of chapter 6's test set
    ("warmup_steps", Range(0)),  # 0: no warm-up
    ("lora_rank", Range(0)),  # 0: no LoRA adapters
    ("micro_batch", Range(0)),  # 0: no micro-batches (FROMAGe: one LM forward per kind of sequence)
    ("max_caption_tokens", Range(0)),  # 0: FROMAGe's training captions as they are (the official code cuts at 24)
    ("*grpo_group", Range(2)),  # GRPO compares the captions of one image with each other
    ("image_size", Range(1, 1024)),  # pixels a side; the renderer draws 4x larger first
    ("figure_scale", Range(1, 64)),
    ("*steps*", COUNT), ("*scenes", COUNT), ("*items*", COUNT), ("*tokens", COUNT), ("*batch_size", COUNT),
    ("*episodes", COUNT), ("*samples", COUNT), ("*texts", COUNT), ("stories", COUNT), ("*dialogues", COUNT),
    ("*_per_round", COUNT), ("rounds", COUNT), ("epochs", COUNT), ("minibatches", COUNT), ("examples", COUNT),
    ("threads", COUNT), ("retrieval_dim", COUNT), ("nproc", COUNT), ("*patience", COUNT), ("*eval_every", COUNT),
    ("stop_after", Range(0)),  # chapter 7: the checkpoint step after which a run is stopped
    ("sft_budgets", COUNT),  # items with gold rationales, one SFT run each
    ("*lr", POSITIVE), ("temperature*", POSITIVE),  # the policy samples from softmax(logits / temperature)
    ("reward_scale", POSITIVE),  # a negative scale would reward the worst captions
    ("reward_shift", Range()),  # a cosine offset, either sign
    ("weight_decay", Range(0)), ("kl_coef", Range(0)), ("kl_sweep", Range(0)), ("answer_only_per_rationale", Range(0)),
    ("gae_gamma", FRACTION), ("gae_lambda", FRACTION), ("rouge_threshold", FRACTION),
    ("clip_range", Range(0, 1, open_low=True)),  # PPO's ratio clip: 1 - clip_range must stay >= 0
    ("adam_beta*", FRACTION), ("entropy_reward_bias", Range()), ("entropy_reward_*", Range(0)),  # ESPER's options
    ("test_images", COUNT),  # chapter 4: Karpathy test images scored with real data
)


def range_for(name: str) -> Range | None:
    return next((rule for pattern, rule in RANGES if fnmatchcase(name, pattern)), None)


def check_range(name: str, value, rule: Range | None, where: str) -> None:
    """A ConfigError unless `value` (a number, or each number in a list) is admitted by `rule`; with no
    rule, numbers are still checked to be finite floats and ints below MAX_INT in size."""
    items = list(enumerate(value)) if isinstance(value, list) else [(None, value)]
    for i, item in items:
        label = name if i is None else f"{name}[{i}]"
        is_number = isinstance(item, (int, float)) and not isinstance(item, bool)
        if not is_number:
            if rule is not None and isinstance(value, list):
                raise ConfigError(f"{where}: {label!r} must be a number, got {type(item).__name__} ({item!r})")
            continue
        bounds = rule or Range()
        if not bounds.admits(item):
            raise ConfigError(f"{where}: {label!r} must be {bounds.describe(item)}, got {item!r}")


@dataclass(frozen=True)
class Parameter:
    name: str
    type: type
    default: object
    range: Range | None = None  # for numbers (and lists of them); see RANGES


# ---------------------------------------------------------------------------------------- chapters


def book_dir() -> Path:
    return repo_root() / "book"


def params_dir() -> Path:
    return repo_root() / "params"


def chapters() -> list[str]:
    """Chapter stems in reading order, e.g. ['01_microworld', '02_backbones']."""
    return sorted(p.stem for p in book_dir().glob("*.py") if _CHAPTER_FILE.match(p.name))


def resolve_chapter(name: str) -> str:
    """'02', '2', 'backbones' or '02_backbones' -> '02_backbones'."""
    available = chapters()
    key = name.strip().removesuffix(".py")
    for stem in available:
        number, slug = stem.split("_", 1)
        if key in (stem, slug, number) or (key.isdigit() and int(key) == int(number)):
            return stem
    raise ConfigError(f"unknown chapter {name!r}; chapters are: {', '.join(available) or '(none in book/)'}")


def chapter_path(chapter: str) -> Path:
    return book_dir() / f"{chapter}.py"


def _literal_annotation(node: ast.AST, where: str) -> type:
    name = node.id if isinstance(node, ast.Name) else None
    if name not in _TYPES:
        raise ConfigError(f"{where}: annotation must be one of {', '.join(_TYPES)}, got {ast.unparse(node)}")
    return _TYPES[name]


def parse_parameters_cell(source: str, where: str) -> dict[str, Parameter]:
    """The `name: type = literal` lines of a parameters cell."""
    params = {}
    for stmt in ast.parse(source).body:
        line = f"{where}, line {stmt.lineno}"
        if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.value):
            raise ConfigError(f"{line}: the parameters cell may hold only `name: type = literal` lines")
        name = stmt.target.id
        kind = _literal_annotation(stmt.annotation, line)
        try:
            value = ast.literal_eval(stmt.value)
        except ValueError as e:
            raise ConfigError(f"{line}: the default of {name!r} is not a literal") from e
        rule = range_for(name) if kind in (int, float, list) else None
        if rule is None and kind in (int, float):
            raise ConfigError(f"{line}: {kind.__name__} parameter {name!r} has no range: add a pattern for it "
                              "to RANGES in vlbridge/book/config.py")
        default = check_type(name, value, kind, line)
        check_range(name, default, rule, line)  # the chapter's own default, too
        params[name] = Parameter(name, kind, default, rule)
    return params


@lru_cache(maxsize=None)
def _chapter_parameters(path: Path, mtime: float) -> dict[str, Parameter]:
    import jupytext

    notebook = jupytext.read(path)
    cells = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    if len(cells) != 1:
        raise ConfigError(f"{path}: expected exactly one cell tagged 'parameters', found {len(cells)}")
    return parse_parameters_cell(cells[0].source, str(path))


def chapter_parameters(chapter: str) -> dict[str, Parameter]:
    path = chapter_path(chapter)
    return _chapter_parameters(path, path.stat().st_mtime)


# ---------------------------------------------------------------------------------------- profiles


def profiles() -> list[str]:
    return sorted(p.stem for p in params_dir().glob("*.yaml"))


def profile_path(profile: str) -> Path:
    """params/<profile>.yaml, or a custom profile given by its file path (its results go under its stem)."""
    try:
        profile_folder(profile)
    except ProfileNameError as e:
        raise ConfigError(f"{e}; profiles are: {', '.join(profiles())}") from None
    if profile.endswith(PROFILE_FILE_SUFFIXES):
        path = Path(profile).expanduser()
        if not path.is_file():
            raise ConfigError(f"profile file {path} does not exist")
        return path
    path = params_dir() / f"{profile}.yaml"
    if not path.is_file():
        raise ConfigError(f"unknown profile {profile!r}; profiles are: {', '.join(profiles())} (in {params_dir()}), "
                          "or give a custom profile by its file path (my-profile.yaml)")
    return path


def load_profile(profile: str) -> dict:
    path = profile_path(profile)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}, line {mark.line + 1}, column {mark.column + 1}" if mark else str(path)
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(f"{where}: malformed YAML: {problem}") from e
    if data is None or data == {}:  # an empty file, or only comments: a run with the defaults, surely not meant
        raise ConfigError(f"{path}: the profile is empty; a profile is a mapping with a description and "
                          "sections ('common:' or a chapter's, like '01_microworld:'), as in params/smoke.yaml")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top, got {type(data).__name__}")
    if "description" in data and not isinstance(data["description"], str):
        raise ConfigError(f"{path}: 'description' must be one line of text, got {data['description']!r}")
    allowed = [*_PROFILE_META, "common", *chapters()]
    for section, body in data.items():
        if section not in allowed:
            raise ConfigError(f"{path}: unknown section {section!r}; allowed sections are: {', '.join(allowed)}")
        if section not in _PROFILE_META and not isinstance(body, dict):
            raise ConfigError(f"{path}: section {section!r} must be a mapping of parameters")
    return data


# -------------------------------------------------------------------------------------- validation


def check_type(name: str, value, kind: type, where: str):
    """`value` as `kind` (an int, or a number written like 1e-3, is accepted where a float is asked),
    or a ConfigError."""
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is float and isinstance(value, str):
        try:  # PyYAML reads 1e-3 (no dot) as a string; as a float parameter, that is what was meant
            return float(value)
        except ValueError:
            pass
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    raise ConfigError(f"{where}: {name!r} must be {kind.__name__}, got {type(value).__name__} ({value!r})")


def _check_keys(section: dict, declared: dict, where: str) -> None:
    for key in section:
        if key in RUNNER_KEYS:  # the runner's value would silently replace it
            raise ConfigError(f"{where}: {key!r} is set by the runner, not by a profile or --set: {RUNNER_KEYS[key]}")
        if key not in declared:
            raise ConfigError(f"{where}: unknown key {key!r}; allowed keys are: {', '.join(sorted(declared))}")


def parse_overrides(overrides) -> dict:
    """['seed=3', 'lr=1e-3'] -> {'seed': 3, 'lr': 0.001}: values are read as YAML."""
    parsed = {}
    for item in overrides or ():
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected key=value")
        try:
            parsed[key.strip()] = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ConfigError(f"--set {item!r}: the value is not valid YAML ({e})") from e
    return parsed


def _checked(param: Parameter, value, where: str, chapter: str):
    value = check_type(param.name, value, param.type, where)
    check_range(param.name, value, param.range, f"{where}, for chapter {chapter}")
    return value


def _profile_values(chapter: str, data: dict, path: Path, profile: str) -> dict:
    """Chapter defaults < the profile's `common` < its chapter section, checked, in declaration order."""
    declared = chapter_parameters(chapter)
    section = data.get(chapter) or {}
    _check_keys(section, declared, f"{path}, section {chapter!r}")
    values = {name: p.default for name, p in declared.items()}
    for source, where in ((data.get("common") or {}, f"{path}, section 'common'"),
                          (section, f"{path}, section {chapter!r}")):
        for key, value in source.items():
            if key in declared:
                values[key] = _checked(declared[key], value, where, chapter)
    if "profile" in declared:
        values["profile"] = profile
    return values


def validate_profile(profile: str) -> dict[str, dict]:
    """Merged parameters of every chapter under `profile`, without --set (raises on the first problem)."""
    data = load_profile(profile)
    path = profile_path(profile)
    all_declared = {k: p for c in chapters() for k, p in chapter_parameters(c).items()}
    _check_keys(data.get("common") or {}, all_declared, f"{path}, section 'common'")
    return {chapter: _profile_values(chapter, data, path, profile) for chapter in chapters()}


def merged_parameters(chapter: str, profile: str, overrides=()) -> dict:
    """The parameters a run of `chapter` under `profile` gets, validated, in declaration order. The
    whole profile is validated, not only what this chapter reads: a typo in another chapter's section
    is reported now, not when that chapter runs (maybe hours later, after this one's results)."""
    declared = chapter_parameters(chapter)
    values = validate_profile(profile)[chapter]
    cli = parse_overrides(overrides)
    _check_keys(cli, declared, f"--set for chapter {chapter}")
    for key, value in cli.items():
        values[key] = _checked(declared[key], value, "--set", chapter)
    return values
