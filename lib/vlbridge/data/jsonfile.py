"""Reading dataset files (JSON, text) with errors that say which file, which record and which key
went wrong."""
from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import DataError


def read_text(path) -> str:
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: cannot read the file ({error})") from None


def read_json(path) -> Any:
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: not valid JSON ({error})") from None


def field(record: Any, key: str, path: Path, where: str, kind: type | tuple[type, ...] = object) -> Any:
    """record[key], checked to be a `kind`; else a DataError naming the file, the record and the key."""
    if not isinstance(record, Mapping):
        raise DataError(f"{path}: {where}: expected a JSON object, got {type(record).__name__}")
    if key not in record:
        raise DataError(f"{path}: {where}: missing key {key!r}")
    value = record[key]
    if not isinstance(value, kind):
        expected = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise DataError(f"{path}: {where}: key {key!r} should be {expected}, got {type(value).__name__}")
    return value
