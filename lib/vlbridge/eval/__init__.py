"""Metrics, in one place, used by every chapter."""
from .attributes import AttributeCounts, attribute_counts, grounded_scores
from .captioning import caption_scores, meteor_unavailable
from .clipscore import clip_scores
from .retrieval import mean_reciprocal_rank, ndcg, ranks_of_first_hit, recall_at_k
from .style import StyleClassifier, style_accuracy
from .vqa import vqa_scores

__all__ = ["AttributeCounts", "StyleClassifier", "attribute_counts", "caption_scores", "clip_scores", "grounded_scores",
           "mean_reciprocal_rank", "meteor_unavailable", "ndcg", "ranks_of_first_hit", "recall_at_k", "style_accuracy",
           "vqa_scores"]
