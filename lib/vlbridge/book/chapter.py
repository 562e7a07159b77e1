"""What a chapter needs around its narrative: a seeded, deterministic session and a place to put
its metrics and figures (results/<profile>/<chapter>/, or wherever $VLBRIDGE_RESULTS points)."""
from __future__ import annotations

import io
import math
from pathlib import Path

from .. import repro
from ..paths import atomic_write_bytes, atomic_write_json, chapter_dir


class Chapter:
    def __init__(self, name: str, profile: str, seed: int = 0, threads: int = 2, device: str = "cpu"):
        self.name, self.profile, self.seed = name, profile, seed
        self.device = repro.setup(seed, threads, device)
        self.dir: Path = chapter_dir(profile, name)
        self.metrics: dict = {}

    def figure(self, fig, name: str):
        """Save `fig` as figures/<name>.png (the file people link to) and return it for inline display."""
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
        atomic_write_bytes(self.dir / "figures" / f"{name}.png", buffer.getvalue())
        return fig

    def record(self, **metrics) -> None:
        """Add metrics and rewrite metrics.json at once, so a chapter stopped midway keeps what it had."""
        for key, value in metrics.items():
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"metric {key!r} is {value}; metrics must be finite numbers")
        self.metrics.update(metrics)
        atomic_write_json(self.dir / "metrics.json", self.metrics)
