"""The scoreboard: tables of metrics by method, as Markdown (for people: results/<profile>/scoreboard.md,
the README's front page) and as JSON (for programs: scoreboard.json), made from the same numbers.

A number may come with an interval (eval/intervals.py: a 95% bootstrap over test items). The JSON
schema is the same for every cell: rows[method][metric] = {"value": v, "lo": lo, "hi": hi}, with lo
and hi null where the number has no interval (a count, such as a cost); a metric that does not apply
to a row is absent. The Markdown prints "0.753 ± 0.031", the interval's half-width, at the table's
digits: it keeps nine-column tables readable and lets a reader see at a glance whether two rows'
intervals overlap. Percentile intervals can be asymmetric (near 0 or 1: R@5 0.993 may have hi 1.000);
the exact bounds are in the JSON."""
from __future__ import annotations

from pathlib import Path

from ..paths import atomic_write_json, atomic_write_text

MISSING = "–"  # a metric that does not apply to a row (a captioner has no retrieval score)


def _cell(value, digits: int) -> str:
    if value is None:
        return MISSING
    if isinstance(value, (bool, str)):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}f}"


def _with_interval(value, interval, digits: int) -> str:
    cell = _cell(value, digits)
    if interval is None or value is None:
        return cell
    lo, hi = interval
    return f"{cell} ± {(hi - lo) / 2:.{digits}f}"


def _check_intervals(rows: dict[str, dict], intervals: dict[str, dict] | None) -> None:
    for name, row in (intervals or {}).items():
        extra = sorted(set(row) - set(rows.get(name, {})))
        if name not in rows or extra:
            raise ValueError(f"intervals for {name!r} {extra or ''} have no value in the rows")
        for key, bounds in row.items():
            if bounds is not None and (len(bounds) != 2 or not bounds[0] <= bounds[1]):
                raise ValueError(f"interval of {name!r} {key!r} must be (lo, hi) with lo <= hi, got {bounds}")


def markdown_table(rows: dict[str, dict], columns: dict[str, str], digits: int = 3,
                   intervals: dict[str, dict] | None = None) -> str:
    """One row per entry of `rows` (name -> {metric: value}), one column per entry of `columns`
    (metric -> header); floats at `digits` decimals, ints with thousands separators, absent as '–'.
    `intervals` (name -> {metric: (lo, hi)}) adds ' ± half-width' to those cells."""
    unknown = sorted({key for row in rows.values() for key in row} - set(columns))
    if unknown:
        raise ValueError(f"rows have metrics with no column: {unknown}; columns are {list(columns)}")
    _check_intervals(rows, intervals)
    intervals = intervals or {}
    lines = ["| | " + " | ".join(columns.values()) + " |", "|---|" + "---:|" * len(columns)]
    lines += [f"| {name} | " + " | ".join(_with_interval(row.get(key), intervals.get(name, {}).get(key), digits)
                                          for key in columns) + " |"
              for name, row in rows.items()]
    return "\n".join(lines)


class Scoreboard:
    """Sections of tables, each with a title and a note; `write` puts scoreboard.md and .json in a folder."""

    def __init__(self, intro: str = ""):
        self.intro = intro
        self.sections: list[dict] = []

    def add(self, key: str, title: str, rows: dict[str, dict], columns: dict[str, str], note: str = "",
            digits: int = 3, intervals: dict[str, dict] | None = None) -> str:
        """Add a section: `key` names it in the JSON (stable across profiles), `title` heads it in the
        Markdown; `intervals` (row -> {metric: (lo, hi)}) gives numbers their intervals (a number
        without one gets lo and hi null). Returns its Markdown table (to print)."""
        if any(s["key"] == key for s in self.sections):
            raise ValueError(f"the scoreboard already has a section {key!r}")
        table = markdown_table(rows, columns, digits, intervals)
        self.sections.append({"key": key, "title": title, "rows": rows, "columns": columns, "note": note,
                              "digits": digits, "intervals": intervals or {}})
        return table

    def markdown(self) -> str:
        parts = [self.intro] if self.intro else []
        for s in self.sections:
            parts += [f"### {s['title']}", markdown_table(s["rows"], s["columns"], s["digits"], s["intervals"])]
            parts += [s["note"]] if s["note"] else []
        return "\n\n".join(parts) + "\n"

    def data(self) -> dict:
        """{section key: {"title", "rows", "columns", "note"}}, each row's numbers as {"value", "lo", "hi"}."""
        def cell(value, bounds) -> dict:
            lo, hi = bounds if bounds is not None else (None, None)
            return {"value": value, "lo": lo, "hi": hi}

        return {s["key"]: {"title": s["title"],
                           "rows": {name: {key: cell(value, s["intervals"].get(name, {}).get(key))
                                           for key, value in row.items()} for name, row in s["rows"].items()},
                           "columns": s["columns"], "note": s["note"]}
                for s in self.sections}

    def write(self, folder) -> tuple[Path, Path]:
        folder = Path(folder)
        return (atomic_write_text(folder / "scoreboard.md", self.markdown()),
                atomic_write_json(folder / "scoreboard.json", self.data()))
