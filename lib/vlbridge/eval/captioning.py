"""Caption metrics from pycocoevalcap (BLEU-1..4, METEOR, ROUGE-L, CIDEr) against reference captions.

Microworld text is already lower-case and space-tokenized, so the PTB tokenizer (a Java program) is
not needed for it; real captions (COCO, VQA-X) are tokenized as the COCO evaluation does
(`tokenize=True`). METEOR 1.5 is a Java program too (pycocoevalcap ships its jar): it is computed when
asked for and a `java` is on PATH; without one, `meteor_unavailable()` says why it is left out.
"""
from __future__ import annotations

import re
import shutil
from functools import lru_cache
from pathlib import Path

# What the COCO evaluation's PTB tokenization drops (pycocoevalcap's PUNCTUATIONS).
_PUNCTUATION = {"''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--", "...",
                ";"}


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


def ptb_tokenize(texts: list[str]) -> list[str]:
    """Lower-cased PTB tokens without punctuation, as the COCO caption evaluation scores text: by
    pycocoevalcap's Stanford PTBTokenizer where `java` runs, else by a Python approximation (words,
    clitics and punctuation split apart; it differs from PTB only on rare symbols)."""
    if shutil.which("java") is not None:
        from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

        tokenized = PTBTokenizer().tokenize({i: [{"caption": t}] for i, t in enumerate(texts)})
        return [tokenized[i][0] for i in range(len(texts))]
    words = (re.findall(r"'\w+|\w+|[^\w\s]+", t.lower()) for t in texts)
    return [" ".join(w for w in ws if w not in _PUNCTUATION) for ws in words]


def scorer_inputs(candidates: list[str], references: list[list[str]],
                  tokenize: bool = False) -> tuple[dict[int, list[str]], dict[int, list[str]]]:
    """pycocoevalcap's inputs, ({item: [candidate]}, {item: references}), from one candidate and its
    references per item: checked, tokenized if asked (ptb_tokenize), with whitespace collapsed."""
    if len(candidates) != len(references) or not candidates:
        raise ValueError(f"need one list of references per candidate, got {len(candidates)} and {len(references)}")
    if tokenize:
        flat = ptb_tokenize([*candidates, *(r for refs in references for r in refs)])
        candidates, rest = flat[:len(candidates)], iter(flat[len(candidates):])
        references = [[next(rest) for _ in refs] for refs in references]
    return ({i: [" ".join(c.split())] for i, c in enumerate(candidates)},
            {i: [" ".join(r.split()) for r in refs] for i, refs in enumerate(references)})


def caption_scores(candidates: list[str], references: list[list[str]], meteor: bool = False,
                   tokenize: bool = False) -> dict[str, float]:
    """Corpus BLEU-1..4, CIDEr and ROUGE-L of one candidate per item against its references; with
    meteor=True also METEOR, if it can run here (see meteor_unavailable). tokenize=True first
    tokenizes every text as the COCO evaluation does (ptb_tokenize): for real captions."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    res, gts = scorer_inputs(candidates, references, tokenize)
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    cider, _ = Cider().compute_score(gts, res)
    rouge, _ = Rouge().compute_score(gts, res)
    scores = {"bleu1": bleu[0], "bleu2": bleu[1], "bleu3": bleu[2], "bleu4": bleu[3], "cider": float(cider),
              "rouge_l": float(rouge)}
    if meteor and meteor_unavailable() is None:
        scores["meteor"] = float(_meteor_scorer().compute_score(gts, res)[0])
    return scores
