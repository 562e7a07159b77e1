"""Bootstrap 95% intervals over test items, for every number the scoreboard shows.

One test set of a few hundred items gives each metric a sampling error of a few hundredths; an
interval says how far another draw of test items could move it. The method is the percentile
bootstrap (Efron & Tibshirani, 1993): draw the N test items N times with replacement, recompute the
metric on the draw, do that RESAMPLES times, and take the 2.5% and 97.5% percentiles.

Every metric here is a function of *sums over items* of per-item pieces: a mean is a sum of
per-item scores over N; grounded precision / recall / F1 come from summed (agreed, claimed, true)
counts; corpus BLEU from summed n-gram counts and lengths; corpus METEOR from summed match
statistics. So a resample is a vector of multiplicities (how often each item was drawn), all the
resamples a matrix W [RESAMPLES, N], and every resample's sums one matrix product W @ pieces:
nothing is scored again per resample. The draws depend only on N and the seed, so they are the
same for every method and metric scored on the same items (paired), and the same run after run.

What is held fixed: CIDEr-D's document frequencies are those of the whole test set's references
(per-item CIDEr is computed once), as is usual when bootstrapping CIDEr; the rest is exact.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

RESAMPLES = 1000
SEED = 0
LEVEL = 0.95
DESCRIBED = (f"95% percentile bootstrap over test items ({RESAMPLES:,} resamples of the test set, "
             f"seed {SEED}, the same resamples for every method)")


@lru_cache(maxsize=16)
def resample_counts(n: int, resamples: int = RESAMPLES, seed: int = SEED) -> np.ndarray:
    """W [resamples, n]: how many times each of n items is drawn in each resample (rows sum to n)."""
    if n < 1:
        raise ValueError(f"need at least one item to resample, got {n}")
    draws = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    counts = np.bincount((draws + n * np.arange(resamples)[:, None]).ravel(), minlength=resamples * n)
    counts = counts.reshape(resamples, n).astype(np.float64)
    counts.setflags(write=False)
    return counts


def bootstrap(pieces, statistic, resamples: int = RESAMPLES, seed: int = SEED, level: float = LEVEL):
    """(lo, hi) of `statistic` over resamples of the items: `pieces` [N, ...] holds each item's pieces,
    `statistic(sums, n)` maps their sums over items [..., *pieces.shape[1:]] (any leading dimensions)
    to the metric, e.g. `lambda s, n: s / n` for a mean. lo and hi are floats for a scalar metric,
    arrays for a metric with trailing dimensions (several metrics at once)."""
    x = np.asarray(pieces, dtype=np.float64)
    if x.ndim == 0 or len(x) == 0:
        raise ValueError("pieces must be an array with one row per test item")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    values = np.asarray(statistic(np.tensordot(resample_counts(len(x), resamples, seed), x, axes=1), len(x)))
    lo, hi = np.percentile(values, [50 * (1 - level), 50 * (1 + level)], axis=0)
    return (float(lo), float(hi)) if np.ndim(lo) == 0 else (lo, hi)


def point(pieces, statistic):
    """The statistic on the test set itself (every item once): the value the interval is around."""
    x = np.asarray(pieces, dtype=np.float64)
    return statistic(x.sum(0), len(x))


def _named(names, lo, hi) -> dict[str, tuple[float, float]]:
    return {name: (float(a), float(b)) for name, a, b in zip(names, np.atleast_1d(lo), np.atleast_1d(hi), strict=True)}


def mean(sums, n):
    return sums / n


def mean_interval(values, **kw) -> tuple[float, float]:
    """The interval of a mean of per-item values (CLIPScore, ROUGE-L, CIDEr, an accuracy)."""
    values = values.detach().cpu().double().numpy() if hasattr(values, "detach") else values
    return bootstrap(values, mean, **kw)


# --- grounded attributes: (agreed, claimed, true) counts ---------------------------------------------

def precision_recall_f1(sums) -> np.ndarray:
    """[..., 3] summed (agreed, claimed, true) -> [..., 3] (precision, recall, F1), 0 where undefined,
    as AttributeCounts computes them."""
    sums = np.asarray(sums, dtype=np.float64)
    agreed, claimed, true = sums[..., 0], sums[..., 1], sums[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(claimed > 0, agreed / claimed, 0.0)
        r = np.where(true > 0, agreed / true, 0.0)
        f1 = np.where(p + r > 0, 2 * p * r / (p + r), 0.0)
    return np.stack([p, r, f1], axis=-1)


def attribute_intervals(captions, scenes, attributes=None, **kw) -> dict[str, tuple[float, float]]:
    """{"precision", "recall", "f1"} intervals of grounded_scores(captions, scenes, attributes)."""
    from .attributes import ALL_ATTRIBUTES, attribute_count_array

    counts = attribute_count_array(captions, scenes, attributes or ALL_ATTRIBUTES)
    return _named(("precision", "recall", "f1"), *bootstrap(counts, lambda s, n: precision_recall_f1(s), **kw))


def precision_by_attribute_intervals(captions, scenes, attributes, **kw) -> dict[str, tuple[float, float]]:
    """{attribute: interval} of each attribute's grounded precision on its own (the sounds' table)."""
    from .attributes import attribute_count_array

    counts = np.stack([attribute_count_array(captions, scenes, (a,)) for a in attributes], axis=1)  # [N, A, 3]
    return _named(attributes, *bootstrap(counts, lambda s, n: precision_recall_f1(s)[..., 0], **kw))


# --- BLEU, as pycocoevalcap's Bleu(4) computes it (option "closest") --------------------------------

BLEU_TINY, BLEU_SMALL = 1e-15, 1e-9  # pycocoevalcap's constants: a 0 count gives ~0, never 0 / 0


def _ngram_counts(words: list[str], n: int) -> dict[tuple, int]:
    counts: dict[tuple, int] = {}
    for k in range(1, n + 1):
        for i in range(len(words) - k + 1):
            gram = tuple(words[i:i + k])
            counts[gram] = counts.get(gram, 0) + 1
    return counts


def bleu_statistics(candidates: list[str], references: list[list[str]], n: int = 4) -> np.ndarray:
    """Per item [N, 2 + 2n]: test length, the closest reference length (ties to the shorter), then
    for k = 1..n the candidate's k-grams ("guessed") and those clipped by the most any one reference
    has ("correct"). Their sums give corpus BLEU (corpus_bleu)."""
    rows = []
    for candidate, refs in zip(candidates, references, strict=True):
        words = candidate.split()
        most: dict[tuple, int] = {}
        for ref in refs:
            for gram, count in _ngram_counts(ref.split(), n).items():
                most[gram] = max(most.get(gram, 0), count)
        reflen = min((abs(len(r.split()) - len(words)), len(r.split())) for r in refs)[1]
        correct = [0] * n
        for gram, count in _ngram_counts(words, n).items():
            correct[len(gram) - 1] += min(most.get(gram, 0), count)
        rows.append([len(words), reflen, *(max(0, len(words) - k + 1) for k in range(1, n + 1)), *correct])
    return np.array(rows, dtype=np.float64).reshape(-1, 2 + 2 * n)


def corpus_bleu(sums, n: int = 4) -> np.ndarray:
    """Summed bleu_statistics [..., 2 + 2n] -> BLEU-1..n [..., n]: geometric means of the clipped
    precisions, times the brevity penalty exp(1 - reference / test length) when the test is shorter."""
    sums = np.asarray(sums, dtype=np.float64)
    testlen, reflen = sums[..., 0], sums[..., 1]
    guess, correct = sums[..., 2:2 + n], sums[..., 2 + n:2 + 2 * n]
    bleus = np.cumprod((correct + BLEU_TINY) / (guess + BLEU_SMALL), axis=-1) ** (1.0 / np.arange(1, n + 1))
    ratio = (testlen + BLEU_TINY) / (reflen + BLEU_SMALL)
    with np.errstate(divide="ignore", over="ignore"):
        penalty = np.where(ratio < 1, np.exp(1 - 1 / ratio), 1.0)
    return bleus * penalty[..., None]


# --- METEOR 1.5: match statistics from pycocoevalcap's jar, the score from their sums ----------------

# Meteor 1.5's parameters for `-l en -norm` (the task pycocoevalcap runs): alpha, beta, gamma, delta
# and the weights of its exact, stem, synonym and paraphrase matches.
METEOR_ALPHA, METEOR_BETA, METEOR_GAMMA, METEOR_DELTA = 0.85, 0.2, 0.6, 0.75
METEOR_WEIGHTS = np.array([1.0, 0.6, 0.8, 0.6])


def meteor_statistics(candidates: list[str], references: list[list[str]]) -> np.ndarray:
    """Per item [N, 23], the jar's statistics line for the candidate against its references: test and
    reference length, their function words, (test content, reference content, test function,
    reference function) matches for each of 4 stages, chunks, test and reference word matches. As the
    jar's corpus score does, a perfect segment (everything matched in one chunk) adds no chunks."""
    from .captioning import _meteor_scorer

    scorer = _meteor_scorer()
    with scorer.lock:
        lines = [scorer._stat(c, refs) for c, refs in zip(candidates, references, strict=True)]
    return meteor_rows(lines)


def meteor_rows(lines: list[str]) -> np.ndarray:
    """The jar's statistics lines as rows [N, 23], a perfect segment's chunks set to 0 (see meteor_statistics)."""
    stats = np.array([[float(v) for v in line.split()] for line in lines], dtype=np.float64)
    if stats.ndim != 2 or stats.shape[1] != 23:
        raise ValueError(f"expected METEOR 1.5 statistics lines of 23 numbers, got shape {stats.shape}")
    stages = stats[:, 4:20].reshape(-1, 4, 4)
    perfect = ((stages[:, :, 0] + stages[:, :, 2]).sum(1) == stats[:, 0]) & (
        (stages[:, :, 1] + stages[:, :, 3]).sum(1) == stats[:, 1]) & (stats[:, 20] == 1)
    stats[perfect, 20] = 0
    return stats


def corpus_meteor(sums) -> np.ndarray:
    """Summed meteor_statistics [..., 23] -> METEOR [...], by Meteor 1.5's formula: the weighted
    harmonic mean of weighted precision and recall, times 1 - gamma * fragmentation ** beta."""
    s = np.asarray(sums, dtype=np.float64)
    delta = METEOR_DELTA
    stages = s[..., 4:20].reshape(s.shape[:-1] + (4, 4))
    test_matched = (METEOR_WEIGHTS * (delta * stages[..., 0] + (1 - delta) * stages[..., 2])).sum(-1)
    ref_matched = (METEOR_WEIGHTS * (delta * stages[..., 1] + (1 - delta) * stages[..., 3])).sum(-1)
    test_weight = delta * (s[..., 0] - s[..., 2]) + (1 - delta) * s[..., 2]
    ref_weight = delta * (s[..., 1] - s[..., 3]) + (1 - delta) * s[..., 3]
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(test_weight > 0, test_matched / test_weight, 0.0)
        r = np.where(ref_weight > 0, ref_matched / ref_weight, 0.0)
        fmean = np.where((p > 0) & (r > 0), p * r / (METEOR_ALPHA * p + (1 - METEOR_ALPHA) * r), 0.0)
        test_total = stages[..., 0].sum(-1) + stages[..., 2].sum(-1)
        ref_total = stages[..., 1].sum(-1) + stages[..., 3].sum(-1)
        chunks, matches = s[..., 20], (s[..., 21] + s[..., 22]) / 2
        perfect = (test_total == s[..., 0]) & (ref_total == s[..., 1]) & (chunks == 1)
        frag = np.where(perfect | (matches == 0), 0.0, chunks / matches)
    return fmean * (1 - METEOR_GAMMA * frag ** METEOR_BETA)


# --- every caption metric at once -------------------------------------------------------------------

def caption_pieces(candidates: list[str], references: list[list[str]], meteor: bool = False,
                   tokenize: bool = False) -> dict[str, np.ndarray]:
    """Per-item pieces of what captioning.caption_scores reports, from the same texts: "bleu"
    (bleu_statistics), "cider" and "rouge_l" (pycocoevalcap's per-item scores: their means are its
    corpus scores), and with meteor=True, where the jar runs, "meteor" (meteor_statistics)."""
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    from .captioning import meteor_unavailable, scorer_inputs

    res, gts = scorer_inputs(candidates, references, tokenize)
    candidates, references = [res[i][0] for i in range(len(res))], [gts[i] for i in range(len(gts))]
    pieces = {"bleu": bleu_statistics(candidates, references),
              "cider": np.asarray(Cider().compute_score(gts, res)[1], dtype=np.float64),
              "rouge_l": np.asarray(Rouge().compute_score(gts, res)[1], dtype=np.float64)}
    if meteor and meteor_unavailable() is None:
        pieces["meteor"] = meteor_statistics(candidates, references)
    return pieces


CAPTION_STATISTICS = {  # piece -> (metric names, statistic of the piece's sums)
    "bleu": (("bleu1", "bleu2", "bleu3", "bleu4"), lambda s, n: corpus_bleu(s)),
    "cider": (("cider",), mean),
    "rouge_l": (("rouge_l",), mean),
    "meteor": (("meteor",), lambda s, n: corpus_meteor(s)),
}


def caption_point(pieces: dict[str, np.ndarray]) -> dict[str, float]:
    """The corpus scores the pieces give on the whole test set (they equal caption_scores')."""
    out = {}
    for piece, values in pieces.items():
        names, statistic = CAPTION_STATISTICS[piece]
        out |= dict(zip(names, np.atleast_1d(point(values, statistic)).tolist(), strict=True))
    return out


def caption_intervals(pieces: dict[str, np.ndarray], **kw) -> dict[str, tuple[float, float]]:
    """Intervals of every caption metric the pieces hold (bleu1..4, cider, rouge_l, meteor)."""
    out = {}
    for piece, values in pieces.items():
        names, statistic = CAPTION_STATISTICS[piece]
        out |= _named(names, *bootstrap(values, statistic, **kw))
    return out


# --- retrieval, questions, styles --------------------------------------------------------------------

def retrieval_intervals(similarity, relevant, ks=(1, 5, 10), ndcg_k: int = 10, **kw) -> dict[str, tuple]:
    """{"r1", "r5", "r10", "mrr", "ndcg10"} intervals over queries: per-query hits within k,
    reciprocal rank of the first hit, and NDCG@ndcg_k (retrieval.ndcg_per_query)."""
    from .retrieval import ndcg_per_query, ranks_of_first_hit

    ranks = ranks_of_first_hit(similarity, relevant).cpu().double().numpy()
    per_query = np.column_stack([*(ranks <= k for k in ks), 1 / ranks,
                                 ndcg_per_query(similarity, relevant, ndcg_k).cpu().double().numpy()])
    return _named([f"r{k}" for k in ks] + ["mrr", f"ndcg{ndcg_k}"], *bootstrap(per_query, mean, **kw))


def vqa_correct(pairs, items, truth) -> np.ndarray:
    """Per item [N, 2]: the answer is right; the rationale is accepted by the truth critic (a missing
    one is wrong). Their means are vqa_scores' answer_acc and rationale_acc."""
    pairs, items = list(pairs), list(items)
    if not items or len(pairs) != len(items):
        raise ValueError(f"need one (answer, rationale) pair per item, got {len(pairs)} pairs and {len(items)} items")
    return np.array([[a == it.answer, bool(r) and truth.judge(it, [r])[0]] for (a, r), it in zip(pairs, items)],
                    dtype=np.float64)


def vqa_intervals(pairs, items, truth, **kw) -> dict[str, tuple[float, float]]:
    return _named(("answer_acc", "rationale_acc"), *bootstrap(vqa_correct(pairs, items, truth), mean, **kw))


def style_pieces(classifier, by_style: dict[str, list[str]], scenes) -> np.ndarray:
    """Per scene [N, styles, 4]: the caption in each style is classified as that style; its
    (agreed, claimed, true) attribute counts."""
    from .attributes import attribute_count_array

    return np.stack([np.column_stack([np.array(classifier.predict(captions)) == style,
                                      attribute_count_array(captions, scenes)])
                     for style, captions in by_style.items()], axis=1).astype(np.float64)


def style_statistic(sums, n) -> np.ndarray:
    """[..., styles, 4] sums -> [..., 2]: style accuracy over every (scene, style), and the mean over
    styles of each style's corpus attribute F1."""
    sums = np.asarray(sums)
    accuracy = sums[..., 0].sum(-1) / (n * sums.shape[-2])
    return np.stack([accuracy, precision_recall_f1(sums[..., 1:])[..., 2].mean(-1)], axis=-1)


def style_intervals(classifier, by_style: dict[str, list[str]], scenes, **kw) -> dict[str, tuple[float, float]]:
    """{"style_acc", "attr_f1"} intervals over scenes (a scene's five styled captions stay together)."""
    return _named(("style_acc", "attr_f1"), *bootstrap(style_pieces(classifier, by_style, scenes), style_statistic,
                                                      **kw))


def intervals_overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Whether two (lo, hi) intervals share a point: if they do, this test set does not tell the two
    numbers apart (a conservative reading: a paired test could still separate some)."""
    return a[0] <= b[1] and b[0] <= a[1]
