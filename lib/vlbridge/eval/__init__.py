"""Metrics, in one place, used by every chapter."""
from .attributes import AttributeCounts, attribute_counts, grounded_scores
from .captioning import caption_scores, meteor_unavailable
from .clipscore import clip_scores
from .retrieval import mean_reciprocal_rank, ndcg, ranks_of_first_hit, recall_at_k
from .style import StyleClassifier, style_accuracy
from .vqa import vqa_scores


def ratio(score: float, reference: float) -> float:
    """score / reference, or nan when the reference is 0: a backbone that scores 0 (a random-init
    LM) has no ratio to print, and a chapter must still run to the end."""
    return score / reference if reference else float("nan")


__all__ = ["AttributeCounts", "StyleClassifier", "attribute_counts", "caption_scores", "clip_scores", "grounded_scores",
           "mean_reciprocal_rank", "meteor_unavailable", "ndcg", "ranks_of_first_hit", "ratio", "recall_at_k",
           "style_accuracy", "vqa_scores"]
