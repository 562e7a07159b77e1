"""The README's front page shows the default scoreboard exactly as chapter 6 wrote it, and each paper profile's
fidelity table exactly as its header comment has it."""
import pytest

from vlbridge.book import readme
from vlbridge.book.cli import main
from vlbridge.paths import repo_root

PAPER_PROFILES = ["params/paper-esper.yaml", "params/paper-fromage.yaml", "params/paper-illume.yaml"]


def test_the_readme_shows_the_default_scoreboard():
    root = repo_root()
    written = (root / "results" / "default" / "scoreboard.md").read_text()
    assert readme.block_in((root / "README.md").read_text(), readme.SCOREBOARD) == written, (
        "README.md's scoreboard differs from results/default/scoreboard.md: run `vlbridge readme`")


def test_the_readme_shows_each_paper_profiles_fidelity_table():
    root = repo_root()
    assert readme.paper_profiles(root) == PAPER_PROFILES
    text = (root / "README.md").read_text()
    for profile in PAPER_PROFILES:
        table = readme.fidelity_table((root / profile).read_text(), profile)
        lines = table.splitlines()
        assert lines[:2] == ["| parameter | ours | official (file:line or paper) | verdict |", "|---|---|---|---|"]
        assert len(lines) > 10 and all(line.startswith("| ") and line.endswith(" |") for line in lines[2:]), profile
        assert all(len(line.split("|")) == 6 for line in lines), f"{profile}: a row without four cells"
        assert readme.block_in(text, readme.fidelity_block(profile)) == table, (
            f"README.md's fidelity table of {profile} differs from the profile's header: run `vlbridge readme`")


def _readme_with_blocks(scoreboard: str, tables: dict[str, str]) -> str:
    parts = [f"# Title\n\nbefore\n\n{readme.SCOREBOARD.start}\n{scoreboard}{readme.SCOREBOARD.end}\n\nmiddle\n"]
    for profile, table in tables.items():
        block = readme.fidelity_block(profile)
        parts.append(f"\n<details><summary>{profile}</summary>\n\n{block.start}\n{table}{block.end}\n\n</details>\n")
    return "".join(parts) + "\nafter\n"


def test_vlbridge_readme_replaces_only_the_blocks(project, capsys):
    (project / "results" / "default").mkdir(parents=True)
    (project / "results" / "default" / "scoreboard.md").write_text("| | F1 |\n|---|---:|\n| new | 0.9 |\n")
    profiles = readme.paper_profiles(project)
    assert profiles == PAPER_PROFILES  # the fixture copies params/
    (project / "README.md").write_text(_readme_with_blocks("old table\n", {p: "old\n" for p in profiles}))
    # only the header's `# |` lines, without the `# `; a later comment in the YAML is not the header
    (project / "params" / "paper-esper.yaml").write_text(
        "# ESPER\n#\n# | parameter | ours |\n# |---|---|\n# | `seed` | 0 |\n#\n# prose\ncommon: {}\n# | nor | this |\n")
    assert main(["readme"]) == 0
    expected = {p: readme.fidelity_table((project / p).read_text(), p) for p in profiles}
    assert expected["params/paper-esper.yaml"] == "| parameter | ours |\n|---|---|\n| `seed` | 0 |\n"
    assert (project / "README.md").read_text() == _readme_with_blocks("| | F1 |\n|---|---:|\n| new | 0.9 |\n", expected)
    assert "updated" in capsys.readouterr().out


def test_a_readme_without_its_block_or_a_missing_scoreboard_is_a_clear_error(project, capsys):
    (project / "README.md").write_text("# Title\n")
    assert main(["readme"]) == 2
    assert "results/default/scoreboard.md does not exist: run chapter 6" in capsys.readouterr().err
    with pytest.raises(readme.ReadmeError, match="needs one scoreboard block"):
        readme.with_block("# Title\n", readme.SCOREBOARD, "table")
    (project / "results" / "default").mkdir(parents=True)
    (project / "results" / "default" / "scoreboard.md").write_text("| | F1 |\n")
    (project / "README.md").write_text(f"# Title\n\n{readme.SCOREBOARD.start}\n{readme.SCOREBOARD.end}\n")
    assert main(["readme"]) == 2
    assert "needs one fidelity block: a line '<!-- fidelity: params/paper-esper.yaml, copied by" in (
        capsys.readouterr().err)
    untouched = f"# Title\n\n{readme.SCOREBOARD.start}\n{readme.SCOREBOARD.end}\n"
    assert (project / "README.md").read_text() == untouched


def test_an_unclosed_fidelity_block_does_not_swallow_the_next():
    first, second = readme.fidelity_block("params/paper-a.yaml"), readme.fidelity_block("params/paper-b.yaml")
    text = f"{first.start}\n| a |\n{second.start}\n| b |\n{second.end}\n"
    with pytest.raises(readme.ReadmeError, match="needs one fidelity block"):
        readme.block_in(text, first)
    assert readme.block_in(text, second) == "| b |\n"


def test_a_paper_profile_without_a_fidelity_table_is_a_clear_error(project, capsys):
    (project / "results" / "default").mkdir(parents=True)
    (project / "results" / "default" / "scoreboard.md").write_text("| | F1 |\n")
    profiles = readme.paper_profiles(project)
    (project / "README.md").write_text(_readme_with_blocks("", {p: "" for p in profiles}))
    before = (project / "README.md").read_text()
    (project / "params" / "paper-illume.yaml").write_text("# ILLUME, no table\n#   seed  0 | 42 | ours\ncommon: {}\n")
    assert main(["readme"]) == 2
    err = capsys.readouterr().err
    assert "paper-illume.yaml has no fidelity table" in err and "'# |'" in err
    assert (project / "README.md").read_text() == before
    (project / "params" / "paper-illume.yaml").write_text("# | a |\n# |---|\n#\n# | b |\ncommon: {}\n")
    assert main(["readme"]) == 2
    assert "paper-illume.yaml: the fidelity table's '# |' lines must be contiguous" in capsys.readouterr().err
