"""README.md shows parts of the project that are written elsewhere, each as a block that `vlbridge readme`
copies and a test keeps equal to its source: the default profile's scoreboard (chapter 6 writes it to
results/default/scoreboard.md) and each paper profile's fidelity table (the `# |` lines of the header
comment of params/paper-*.yaml, without the `# `)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..paths import atomic_write_text, repo_root


class ReadmeError(ValueError):
    """README.md lacks a block, or there is nothing to copy into one."""


@dataclass(frozen=True)
class Block:
    """A part of README.md between two marker lines, copied from `source` (a path from the repository root)."""

    name: str
    source: str

    @property
    def start(self) -> str:
        return f"<!-- {self.name}: {self.source}, copied by `vlbridge readme`; do not edit here -->"

    @property
    def end(self) -> str:
        return f"<!-- /{self.name} -->"


SCOREBOARD = Block("scoreboard", "results/default/scoreboard.md")


def fidelity_block(profile: str) -> Block:
    """The block of a paper profile's fidelity table, e.g. fidelity_block("params/paper-fromage.yaml")."""
    return Block("fidelity", profile)


def _split(text: str, block: Block, where: str) -> tuple[str, str, str]:
    """(before the block's start line, the block's body, from its end marker on)."""
    head, found, rest = text.partition(block.start)
    body, closed, tail = rest.partition(block.end)
    if not found or text.count(block.start) != 1 or not closed or f"<!-- {block.name}: " in body:
        raise ReadmeError(f"{where} needs one {block.name} block: a line {block.start!r}, then a line {block.end!r}")
    return head, body.removeprefix("\n"), tail


def block_in(text: str, block: Block, where: str = "README.md") -> str:
    """The body of one block of a README's text."""
    return _split(text, block, where)[1]


def with_block(text: str, block: Block, body: str, where: str = "README.md") -> str:
    """The README's text with one block's body replaced."""
    head, _, tail = _split(text, block, where)
    return f"{head}{block.start}\n{body}{block.end}{tail}"


def paper_profiles(root: Path) -> list[str]:
    """The paper profiles, as paths from the repository root: params/paper-*.yaml."""
    return sorted(p.relative_to(root).as_posix() for p in (root / "params").glob("paper-*.yaml"))


def fidelity_table(text: str, where: str) -> str:
    """The Markdown table of a profile's header comment: its one run of `# |` lines, without the `# `."""
    header = []
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            break
        header.append(line)
    rows = [i for i, line in enumerate(header) if line.startswith("# |")]
    if not rows:
        raise ReadmeError(f"{where} has no fidelity table: its header comment needs a Markdown table, one line a row, "
                          "each line starting with '# |'")
    if rows != list(range(rows[0], rows[-1] + 1)):
        raise ReadmeError(f"{where}: the fidelity table's '# |' lines must be contiguous (one table, line "
                          f"{rows[0] + 1} to the first line without '# |')")
    return "".join(header[i][2:] + "\n" for i in rows)


def update_readme() -> Path:
    """Copy the scoreboard and the paper profiles' fidelity tables into README.md (atomically); returns its path."""
    root = repo_root()
    source = root / SCOREBOARD.source
    if not source.is_file():
        raise ReadmeError(f"{source} does not exist: run chapter 6 on the default profile first "
                          "(`vlbridge run all --profile default`)")
    readme = root / "README.md"
    text = with_block(readme.read_text(), SCOREBOARD, source.read_text(), str(readme))
    for profile in paper_profiles(root):
        table = fidelity_table((root / profile).read_text(), str(root / profile))
        text = with_block(text, fidelity_block(profile), table, str(readme))
    return atomic_write_text(readme, text)
