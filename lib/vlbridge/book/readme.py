"""The README's front page shows the default profile's scoreboard: chapter 6 writes it to
results/default/scoreboard.md, `vlbridge readme` copies it between two markers in README.md, and a
test keeps the two equal."""
from __future__ import annotations

from pathlib import Path

from ..paths import atomic_write_text, repo_root

START = "<!-- scoreboard: copied from results/default/scoreboard.md by `vlbridge readme`; do not edit here -->"
END = "<!-- /scoreboard -->"


class ReadmeError(ValueError):
    """README.md has no scoreboard block, or there is no scoreboard to copy into it."""


def _split(text: str, where: str) -> tuple[str, str, str]:
    if text.count(START) != 1 or text.count(END) != 1 or text.index(START) > text.index(END):
        raise ReadmeError(f"{where} needs one scoreboard block: a line {START!r}, then a line {END!r}")
    head, rest = text.split(START, 1)
    rest = rest.removeprefix("\n")
    body, tail = rest.split(END, 1)
    return head, body, tail


def scoreboard_in(text: str, where: str = "README.md") -> str:
    """The scoreboard block of a README's text."""
    return _split(text, where)[1]


def with_scoreboard(text: str, scoreboard: str, where: str = "README.md") -> str:
    """The README's text with its scoreboard block replaced."""
    head, _, tail = _split(text, where)
    return f"{head}{START}\n{scoreboard}{END}{tail}"


def update_readme() -> Path:
    """Copy results/default/scoreboard.md into README.md (atomically); returns README.md's path."""
    root = repo_root()
    source = root / "results" / "default" / "scoreboard.md"
    if not source.is_file():
        raise ReadmeError(f"{source} does not exist: run chapter 6 on the default profile first "
                          "(`vlbridge run all --profile default`)")
    readme = root / "README.md"
    return atomic_write_text(readme, with_scoreboard(readme.read_text(), source.read_text(), str(readme)))
