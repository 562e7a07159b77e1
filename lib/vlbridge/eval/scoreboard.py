"""The scoreboard: tables of metrics by method, as Markdown (for people: results/<profile>/scoreboard.md,
the README's front page) and as JSON (for programs: scoreboard.json), made from the same numbers."""
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


def markdown_table(rows: dict[str, dict], columns: dict[str, str], digits: int = 3) -> str:
    """One row per entry of `rows` (name -> {metric: value}), one column per entry of `columns`
    (metric -> header); floats at `digits` decimals, ints with thousands separators, absent as '–'."""
    unknown = sorted({key for row in rows.values() for key in row} - set(columns))
    if unknown:
        raise ValueError(f"rows have metrics with no column: {unknown}; columns are {list(columns)}")
    lines = ["| | " + " | ".join(columns.values()) + " |", "|---|" + "---:|" * len(columns)]
    lines += [f"| {name} | " + " | ".join(_cell(row.get(key), digits) for key in columns) + " |"
              for name, row in rows.items()]
    return "\n".join(lines)


class Scoreboard:
    """Sections of tables, each with a title and a note; `write` puts scoreboard.md and .json in a folder."""

    def __init__(self, intro: str = ""):
        self.intro = intro
        self.sections: list[dict] = []

    def add(self, key: str, title: str, rows: dict[str, dict], columns: dict[str, str], note: str = "",
            digits: int = 3) -> str:
        """Add a section: `key` names it in the JSON (stable across profiles), `title` heads it in the
        Markdown. Returns its Markdown table (to print)."""
        if any(s["key"] == key for s in self.sections):
            raise ValueError(f"the scoreboard already has a section {key!r}")
        self.sections.append({"key": key, "title": title, "rows": rows, "columns": columns, "note": note,
                              "digits": digits})
        return markdown_table(rows, columns, digits)

    def markdown(self) -> str:
        parts = [self.intro] if self.intro else []
        for s in self.sections:
            parts += [f"### {s['title']}", markdown_table(s["rows"], s["columns"], s["digits"])]
            parts += [s["note"]] if s["note"] else []
        return "\n\n".join(parts) + "\n"

    def data(self) -> dict:
        return {s["key"]: {"title": s["title"], "rows": s["rows"], "columns": s["columns"], "note": s["note"]}
                for s in self.sections}

    def write(self, folder) -> tuple[Path, Path]:
        folder = Path(folder)
        return (atomic_write_text(folder / "scoreboard.md", self.markdown()),
                atomic_write_json(folder / "scoreboard.json", self.data()))
