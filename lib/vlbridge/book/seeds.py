"""The seed study (`vlbridge seeds`, `make seeds`): the training chapters run again with other seeds,
so that a difference between two methods can be read against how far a seed alone moves each number.

Each seed's run goes to a scratch folder; results/seeds/ keeps what the study is about: every seed's
metrics.json and run.json per chapter, and a summary (summary.json for programs, summary.md for
people; chapter 6 shows it) with each metric's value per seed, mean, standard deviation and range."""
from __future__ import annotations

import json
import shutil
import statistics
import tempfile
from pathlib import Path

from ..paths import atomic_write_json, atomic_write_text, profile_folder, repo_root

SEED_CHAPTERS = ("03_grounding", "04_reward_rl", "05_feedback")  # the chapters that train
SEEDS = (0, 1, 2)


def study_folder() -> Path:
    return repo_root() / "results" / "seeds"


def _scalars(metrics: dict) -> dict[str, float]:
    """The metrics that are single numbers; durations are left out (they measure the machine)."""
    return {k: float(v) for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and "seconds" not in k}


def summarize(metrics_by_seed: dict[int, dict[str, dict]], profile: str) -> dict:
    """{"seeds", "profile", "chapters": {chapter: {metric: {values, mean, sd, min, max}}}, "constant"}:
    metrics equal in every seed (parameter and step counts) are listed by name under "constant"."""
    seeds = sorted(metrics_by_seed)
    if len(seeds) < 2:
        raise ValueError(f"a seed study needs at least two seeds, got {seeds}")
    chapters, constant = {}, {}
    for chapter in sorted({c for by_chapter in metrics_by_seed.values() for c in by_chapter}):
        missing = [s for s in seeds if chapter not in metrics_by_seed[s]]
        if missing:
            raise ValueError(f"chapter {chapter} has no metrics for seeds {missing}")
        per_seed = [_scalars(metrics_by_seed[s][chapter]) for s in seeds]
        names = [k for k in per_seed[0] if all(k in m for m in per_seed)]
        rows = {}
        for name in names:
            values = [m[name] for m in per_seed]
            if len(set(values)) == 1:
                constant.setdefault(chapter, []).append(name)
                continue
            rows[name] = {"values": values, "mean": statistics.fmean(values), "sd": statistics.stdev(values),
                          "min": min(values), "max": max(values)}
        chapters[chapter] = rows
    return {"seeds": seeds, "profile": profile, "chapters": chapters, "constant": constant}


def summary_markdown(summary: dict) -> str:
    seeds = summary["seeds"]
    lines = [f"Seed study of profile `{summary['profile']}`: chapters {', '.join(summary['chapters'])} run with seeds "
             f"{', '.join(map(str, seeds))} (`make seeds`). sd: the standard deviation over seeds."]
    for chapter, rows in summary["chapters"].items():
        lines += ["", f"### {chapter}", "",
                  "| metric | " + " | ".join(f"seed {s}" for s in seeds) + " | mean | sd | range |",
                  "|---|" + "---:|" * (len(seeds) + 3)]
        lines += [f"| {name} | " + " | ".join(f"{v:.4f}" for v in row["values"])
                  + f" | {row['mean']:.4f} | {row['sd']:.4f} | {row['max'] - row['min']:.4f} |"
                  for name, row in rows.items()]
        if summary["constant"].get(chapter):
            lines += ["", f"Equal in every seed: {', '.join(summary['constant'][chapter])}."]
    return "\n".join(lines) + "\n"


def run_study(seeds=SEEDS, profile: str = "default", chapters=SEED_CHAPTERS, show_progress: bool | None = None,
              say=print) -> Path:
    """Run `chapters` once per seed (into a scratch folder), keep each run's metrics.json and run.json
    under results/seeds/seed-S/, and write the summary there; returns summary.md's path."""
    from .runner import run_chapters

    folder = profile_folder(profile)
    out = study_folder()
    collected: dict[int, dict[str, dict]] = {}
    with tempfile.TemporaryDirectory(prefix="vlbridge-seeds-") as scratch:
        for seed in seeds:
            say(f"seed {seed}: running {', '.join(chapters)} ({profile})")
            run_chapters(list(chapters), profile, [f"seed={seed}"], Path(scratch) / f"seed-{seed}", show_progress)
            for chapter in chapters:
                ran = Path(scratch) / f"seed-{seed}" / folder / chapter
                kept = out / f"seed-{seed}" / chapter
                kept.mkdir(parents=True, exist_ok=True)
                for name in ("metrics.json", "run.json"):
                    shutil.copyfile(ran / name, kept / name)
                collected.setdefault(seed, {})[chapter] = json.loads((ran / "metrics.json").read_text())
    summary = summarize(collected, profile)
    atomic_write_json(out / "summary.json", summary)
    return atomic_write_text(out / "summary.md", summary_markdown(summary))
