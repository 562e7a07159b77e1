"""Chapters, profiles and parameters.

A chapter's parameters are the literal, type-annotated assignments of its cell tagged `parameters`;
those are its defaults and its schema. A profile (params/<name>.yaml) may set them:

    description: one line
    common:            # applies to every chapter that declares the key
      seed: 0
    02_backbones:      # applies to that chapter only
      clip_steps: 500

Merge order: chapter defaults < profile `common` < profile chapter section < --set key=value.
Unknown keys and wrong types are errors that name the key, the file and what is allowed.
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

from ..paths import PROFILE_FILE_SUFFIXES, ProfileNameError, profile_folder, repo_root

_TYPES = {"int": int, "float": float, "str": str, "bool": bool, "list": list, "dict": dict}
_CHAPTER_FILE = re.compile(r"^(\d\d)_([a-z0-9_]+)\.py$")
_PROFILE_META = ("description",)


class ConfigError(ValueError):
    """Bad chapter, profile or parameter: the message says which, where, and what is allowed."""


@dataclass(frozen=True)
class Parameter:
    name: str
    type: type
    default: object


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
        kind = _literal_annotation(stmt.annotation, line)
        try:
            value = ast.literal_eval(stmt.value)
        except ValueError as e:
            raise ConfigError(f"{line}: the default of {stmt.target.id!r} is not a literal") from e
        params[stmt.target.id] = Parameter(stmt.target.id, kind, check_type(stmt.target.id, value, kind, line))
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
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}, line {mark.line + 1}, column {mark.column + 1}" if mark else str(path)
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(f"{where}: malformed YAML: {problem}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top, got {type(data).__name__}")
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


def merged_parameters(chapter: str, profile: str, overrides=()) -> dict:
    """The parameters a run of `chapter` under `profile` gets, validated, in declaration order."""
    declared = chapter_parameters(chapter)
    data = load_profile(profile)
    path = profile_path(profile)
    all_declared = {k: p for c in chapters() for k, p in chapter_parameters(c).items()}
    common = data.get("common") or {}
    _check_keys(common, all_declared, f"{path}, section 'common'")
    section = data.get(chapter) or {}
    _check_keys(section, declared, f"{path}, section {chapter!r}")
    cli = parse_overrides(overrides)
    _check_keys(cli, declared, f"--set for chapter {chapter}")

    values = {name: p.default for name, p in declared.items()}
    for source, where in ((common, f"{path}, section 'common'"), (section, f"{path}, section {chapter!r}"),
                          (cli, "--set")):
        for key, value in source.items():
            if key in declared:
                values[key] = check_type(key, value, declared[key].type, where)
    if "profile" in declared:
        values["profile"] = profile
    return values


def validate_profile(profile: str) -> dict[str, dict]:
    """Merged parameters of every chapter under `profile` (raises on the first problem)."""
    return {chapter: merged_parameters(chapter, profile) for chapter in chapters()}
