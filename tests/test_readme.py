"""The README's front page shows the default scoreboard exactly as chapter 6 wrote it."""
import pytest

from vlbridge.book import readme
from vlbridge.book.cli import main
from vlbridge.paths import repo_root


def test_the_readme_shows_the_default_scoreboard():
    root = repo_root()
    written = (root / "results" / "default" / "scoreboard.md").read_text()
    assert readme.scoreboard_in((root / "README.md").read_text()) == written, (
        "README.md's scoreboard differs from results/default/scoreboard.md: run `vlbridge readme`")


def test_vlbridge_readme_replaces_only_the_block(project, capsys):
    (project / "results" / "default").mkdir(parents=True)
    (project / "results" / "default" / "scoreboard.md").write_text("| | F1 |\n|---|---:|\n| new | 0.9 |\n")
    (project / "README.md").write_text(f"# Title\n\nbefore\n\n{readme.START}\nold table\n{readme.END}\n\nafter\n")
    assert main(["readme"]) == 0
    assert (project / "README.md").read_text() == (
        f"# Title\n\nbefore\n\n{readme.START}\n| | F1 |\n|---|---:|\n| new | 0.9 |\n{readme.END}\n\nafter\n")
    assert "updated" in capsys.readouterr().out


def test_a_readme_without_its_block_or_a_missing_scoreboard_is_a_clear_error(project, capsys):
    (project / "README.md").write_text("# Title\n")
    assert main(["readme"]) == 2
    assert "results/default/scoreboard.md does not exist: run chapter 6" in capsys.readouterr().err
    with pytest.raises(readme.ReadmeError, match="needs one scoreboard block"):
        readme.with_scoreboard("# Title\n", "table")
