"""Caption metrics from pycocoevalcap (BLEU-1..4, CIDEr, ROUGE-L) against reference captions.

Microworld text is already lower-case and space-tokenized, so the PTB tokenizer (a Java program)
is not needed here; METEOR, which needs Java, is added where it is asked for."""
from __future__ import annotations


def caption_scores(candidates: list[str], references: list[list[str]]) -> dict[str, float]:
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
    return {"bleu1": bleu[0], "bleu2": bleu[1], "bleu3": bleu[2], "bleu4": bleu[3], "cider": float(cider),
            "rouge_l": float(rouge)}
