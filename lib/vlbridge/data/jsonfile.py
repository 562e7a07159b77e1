"""Reading dataset files (JSON, text) with errors that say which file, which record and which key
went wrong."""
from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import DataError

BOM = "\ufeff"


def decode_text(data: bytes, name) -> str:
    """UTF-8 bytes as text, without a leading byte-order mark. Windows tools (Notepad, Excel's "CSV
    UTF-8") write one; left in, it becomes part of the first line, so a TSV's header reads as a record
    and JSON refuses the file. Every text file the loaders read comes through here."""
    try:
        return data.decode("utf-8").removeprefix(BOM)
    except UnicodeDecodeError as error:
        raise DataError(f"{name} is not UTF-8 text ({error})") from None


def read_text(path) -> str:
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as error:
        raise DataError(f"{path}: cannot read the file ({error})") from None
    return decode_text(data, path)


def read_json(path) -> Any:
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: not valid JSON ({error})") from None


def is_int(value) -> bool:
    """An integer, and not a bool: Python's bool is an int subclass, so a JSON `true` would pass for
    the id 1 (or a VisDial index 1) under a plain isinstance check."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_a(value, kind: type | tuple[type, ...]) -> bool:
    """isinstance(value, kind), except that a bool passes only where bool is asked for (see is_int)."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool):
        return bool in kinds or object in kinds
    return isinstance(value, kinds)


def field(record: Any, key: str, path: Path, where: str, kind: type | tuple[type, ...] = object) -> Any:
    """record[key], checked to be a `kind`; else a DataError naming the file, the record and the key."""
    if not isinstance(record, Mapping):
        raise DataError(f"{path}: {where}: expected a JSON object, got {type(record).__name__}")
    if key not in record:
        raise DataError(f"{path}: {where}: missing key {key!r}")
    value = record[key]
    if not is_a(value, kind):
        expected = " or ".join(_type_name(k) for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise DataError(f"{path}: {where}: key {key!r} should be {expected}, got {_type_name(type(value))}")
    return value


def _type_name(kind: type) -> str:
    return "null" if kind is type(None) else kind.__name__  # as the file spells it
