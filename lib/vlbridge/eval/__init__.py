"""Metrics, in one place, used by every chapter."""
from .retrieval import mean_reciprocal_rank, ndcg, ranks_of_first_hit, recall_at_k

__all__ = ["mean_reciprocal_rank", "ndcg", "ranks_of_first_hit", "recall_at_k"]
