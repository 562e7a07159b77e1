"""The seed study: summary arithmetic, what it keeps under results/seeds/, and its refusals. The chapters
themselves are not run here (three chapters x three seeds take about 20 minutes); run_chapters is
replaced by one that writes what a chapter run writes."""
import json

import pytest

from vlbridge.book import runner, seeds
from vlbridge.book.cli import main


def test_summary_gives_each_metric_per_seed_with_mean_sd_and_range_and_names_the_constant_ones():
    by_seed = {s: {"03_grounding": {"caption_attr_f1": f1, "trainable_params": 4491778, "train_seconds": 9.0 + s,
                                    "by_round": {"1": 0.5}, "converged": True}}
               for s, f1 in ((0, 0.76), (1, 0.70), (2, 0.73))}
    summary = seeds.summarize(by_seed, "default")
    row = summary["chapters"]["03_grounding"]["caption_attr_f1"]
    assert row["values"] == [0.76, 0.70, 0.73]
    assert row["mean"] == pytest.approx(0.73) and row["sd"] == pytest.approx(0.03)
    assert (row["min"], row["max"]) == (0.70, 0.76)
    # seconds measure the machine, dicts and flags are not single numbers, a parameter count does not vary
    assert set(summary["chapters"]["03_grounding"]) == {"caption_attr_f1"}
    assert summary["constant"] == {"03_grounding": ["trainable_params"]}
    table = seeds.summary_markdown(summary)
    assert "| caption_attr_f1 | 0.7600 | 0.7000 | 0.7300 | 0.7300 | 0.0300 | 0.0600 |" in table
    assert "Equal in every seed: trainable_params." in table


def test_summary_refuses_one_seed_or_a_chapter_missing_from_a_seed():
    with pytest.raises(ValueError, match="at least two seeds"):
        seeds.summarize({0: {"03_grounding": {"f1": 0.7}}}, "default")
    with pytest.raises(ValueError, match=r"chapter 04_reward_rl has no metrics for seeds \[1\]"):
        seeds.summarize({0: {"03_grounding": {"f1": 0.7}, "04_reward_rl": {"f1": 0.5}},
                         1: {"03_grounding": {"f1": 0.6}}}, "default")


def test_run_study_keeps_each_seeds_metrics_and_record_and_writes_the_summary(tmp_path, monkeypatch):
    calls = []

    def fake_run_chapters(names, profile, overrides, out_root, show_progress=None):
        calls.append((names, profile, overrides))
        seed = int(overrides[0].split("=")[1])
        for chapter in names:
            folder = out_root / profile / chapter
            folder.mkdir(parents=True)
            (folder / "metrics.json").write_text(json.dumps({"f1": 0.5 + seed / 10}))
            (folder / "run.json").write_text(json.dumps({"params": {"seed": seed}}))
        return []

    monkeypatch.setattr(runner, "run_chapters", fake_run_chapters)
    monkeypatch.setattr(seeds, "study_folder", lambda: tmp_path / "seeds")
    written = seeds.run_study((0, 1), "smoke", chapters=("03_grounding", "05_feedback"), say=lambda text: None)
    assert calls == [(["03_grounding", "05_feedback"], "smoke", ["seed=0"]),
                     (["03_grounding", "05_feedback"], "smoke", ["seed=1"])]
    assert json.loads((tmp_path / "seeds/seed-1/05_feedback/run.json").read_text()) == {"params": {"seed": 1}}
    summary = json.loads((tmp_path / "seeds/summary.json").read_text())
    assert summary["chapters"]["05_feedback"]["f1"]["values"] == [0.5, 0.6]
    assert written == tmp_path / "seeds" / "summary.md" and "seed 0 | seed 1" in written.read_text()


def test_the_cli_refuses_a_study_of_one_seed(capsys):
    assert main(["seeds", "--seeds", "1", "1"]) == 2
    assert "needs at least two different seeds" in capsys.readouterr().err
