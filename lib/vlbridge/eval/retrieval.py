"""Retrieval metrics over a similarity matrix [queries, candidates] and a relevance mask of the
same shape (several candidates may be right: a caption of an identical scene is a hit). The metrics
are computed where the similarity matrix is; the relevance moves there."""
from __future__ import annotations

import torch


def ranks_of_first_hit(similarity: torch.Tensor, relevant: torch.Tensor) -> torch.Tensor:
    """1-based rank of the best-ranked relevant candidate for each query; ties count against us
    (a relevant candidate tied with an irrelevant one ranks after it)."""
    if similarity.shape != relevant.shape:
        raise ValueError(f"similarity {tuple(similarity.shape)} and relevant {tuple(relevant.shape)} differ in shape")
    if not relevant.any(1).all():
        raise ValueError("every query needs at least one relevant candidate")
    relevant = relevant.to(similarity.device)
    best = similarity.masked_fill(~relevant, float("-inf")).max(1).values
    return (similarity.masked_fill(relevant, float("-inf")) >= best[:, None]).sum(1) + 1


def recall_at_k(similarity: torch.Tensor, relevant: torch.Tensor, ks=(1, 5, 10)) -> dict[int, float]:
    ranks = ranks_of_first_hit(similarity, relevant)
    return {k: (ranks <= k).float().mean().item() for k in ks}


def mean_reciprocal_rank(similarity: torch.Tensor, relevant: torch.Tensor) -> float:
    return (1.0 / ranks_of_first_hit(similarity, relevant).float()).mean().item()


def ndcg(similarity: torch.Tensor, relevance: torch.Tensor, k: int | None = None) -> float:
    """Normalised discounted cumulative gain with graded relevance [queries, candidates] (VisDial's
    dense annotations give such grades; a 0/1 mask works too)."""
    return ndcg_per_query(similarity, relevance, k).mean().item()


def ndcg_per_query(similarity: torch.Tensor, relevance: torch.Tensor, k: int | None = None) -> torch.Tensor:
    """Each query's NDCG [queries] (`ndcg` is their mean): per-query pieces for a bootstrap over queries."""
    relevance = relevance.float().to(similarity.device)
    k = k or similarity.shape[1]
    order = torch.sort(similarity, dim=1, descending=True, stable=True).indices[:, :k]
    discounts = 1.0 / torch.log2(torch.arange(2, k + 2, dtype=torch.float, device=similarity.device))
    gains = (relevance.gather(1, order) * discounts).sum(1)
    ideal = (relevance.sort(1, descending=True).values[:, :k] * discounts).sum(1)
    return gains / ideal.clamp_min(1e-12)
