"""Caption metrics from pycocoevalcap (BLEU-1..4, METEOR, ROUGE-L, CIDEr) against reference captions.

Microworld text is already lower-case and space-tokenized, so the PTB tokenizer (a Java program) is
not needed here. METEOR 1.5 is a Java program too (pycocoevalcap ships its jar): it is computed when
asked for and a `java` is on PATH; without one, `meteor_unavailable()` says why it is left out.
"""
from __future__ import annotations

import shutil
from functools import lru_cache
from pathlib import Path


def meteor_unavailable() -> str | None:
    """None if METEOR can run here, else a one-line reason."""
    if shutil.which("java") is None:
        return "METEOR skipped: it runs pycocoevalcap's METEOR 1.5 jar, and no `java` is on PATH"
    from pycocoevalcap.meteor import meteor

    jar = Path(meteor.__file__).parent / meteor.METEOR_JAR
    if not jar.is_file():
        return f"METEOR skipped: pycocoevalcap's jar is missing ({jar})"
    return None


@lru_cache(maxsize=1)
def _meteor_scorer():
    from pycocoevalcap.meteor.meteor import Meteor

    return Meteor()  # one Java process for the session: it takes seconds to start and load its tables


def caption_scores(candidates: list[str], references: list[list[str]], meteor: bool = False) -> dict[str, float]:
    """Corpus BLEU-1..4, CIDEr and ROUGE-L of one candidate per item against its references; with
    meteor=True also METEOR, if it can run here (see meteor_unavailable)."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    if len(candidates) != len(references) or not candidates:
        raise ValueError(f"need one list of references per candidate, got {len(candidates)} and {len(references)}")
    res = {i: [" ".join(c.split())] for i, c in enumerate(candidates)}
    gts = {i: [" ".join(r.split()) for r in refs] for i, refs in enumerate(references)}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    cider, _ = Cider().compute_score(gts, res)
    rouge, _ = Rouge().compute_score(gts, res)
    scores = {"bleu1": bleu[0], "bleu2": bleu[1], "bleu3": bleu[2], "bleu4": bleu[3], "cider": float(cider),
              "rouge_l": float(rouge)}
    if meteor and meteor_unavailable() is None:
        scores["meteor"] = float(_meteor_scorer().compute_score(gts, res)[0])
    return scores
