"""Bootstrap intervals (eval/intervals.py): per-item pieces that give back the corpus scores exactly,
and intervals that are deterministic, contain the estimate and shrink with more items."""
import numpy as np
import pytest
import torch

from vlbridge import world
from vlbridge.critics import WorldCritic, world_items
from vlbridge.eval import grounded_scores, mean_reciprocal_rank, ndcg, recall_at_k, vqa_scores
from vlbridge.eval.attributes import ALL_ATTRIBUTES
from vlbridge.eval.captioning import caption_scores, meteor_unavailable
from vlbridge.eval.intervals import (
    attribute_intervals,
    bleu_statistics,
    bootstrap,
    caption_intervals,
    caption_pieces,
    caption_point,
    corpus_bleu,
    intervals_overlap,
    mean,
    mean_interval,
    meteor_statistics,
    point,
    precision_by_attribute_intervals,
    precision_recall_f1,
    resample_counts,
    retrieval_intervals,
    style_intervals,
    style_statistic,
    vqa_correct,
)
from vlbridge.eval.retrieval import ndcg_per_query


def _captions(count=40, seed=2500000):
    """Microworld captions of `count` scenes, five references each, and candidates of every quality:
    right, with words dropped (short: the brevity penalty), another scene's, one word, empty."""
    scenes = world.scenes(seed, count)
    references = [[world.caption(s, world.scene_rng(s.seed, 100 + r)) for r in range(5)] for s in scenes]
    rng = np.random.default_rng(0)
    candidates = []
    for i, s in enumerate(scenes):
        text = world.caption(s if i % 3 else scenes[i - 1], world.scene_rng(s.seed, 7))
        candidates.append(" ".join(w for w in text.split() if rng.random() > 0.1 * (i % 5)))
    candidates[1], candidates[2] = "there", ""
    return scenes, candidates, references


def test_corpus_bleu_from_per_item_statistics_equals_pycocoevalcap():
    from pycocoevalcap.bleu.bleu import Bleu

    _, candidates, references = _captions()
    expected, _ = Bleu(4).compute_score({i: r for i, r in enumerate(references)},
                                        {i: [c] for i, c in enumerate(candidates)}, verbose=0)
    stats = bleu_statistics(candidates, references)
    assert stats.shape == (40, 10)
    np.testing.assert_allclose(corpus_bleu(stats.sum(0)), expected, rtol=0, atol=1e-9)
    # long candidates (no brevity penalty) too
    long = [f"{c} {c}" for c in candidates]
    expected, _ = Bleu(4).compute_score({i: r for i, r in enumerate(references)},
                                        {i: [c] for i, c in enumerate(long)}, verbose=0)
    np.testing.assert_allclose(corpus_bleu(bleu_statistics(long, references).sum(0)), expected, rtol=0, atol=1e-9)


def test_caption_pieces_give_back_caption_scores():
    _, candidates, references = _captions()
    scores = caption_scores(candidates, references)
    pieces = caption_pieces(candidates, references)
    assert set(pieces) == {"bleu", "cider", "rouge_l"}
    got = caption_point(pieces)
    assert got.keys() == scores.keys()
    for key in scores:  # CIDEr and ROUGE-L are the means of their per-item scores
        assert got[key] == pytest.approx(scores[key], abs=1e-9), key
    intervals = caption_intervals(pieces)
    assert all(lo <= scores[k] <= hi for k, (lo, hi) in intervals.items())


def test_corpus_meteor_of_recorded_statistics_equals_the_jars_score():
    """Statistics lines and scores as pycocoevalcap's METEOR 1.5 jar gave them (the first segment is perfect:
    score 1, and the corpus score counts no chunks for it)."""
    from vlbridge.eval.intervals import corpus_meteor, meteor_rows

    zeros = " ".join(["0.0"] * 12)
    lines = [f"11.0 11.0 6.0 6.0 5.0 5.0 6.0 6.0 {zeros} 1.0 11.0 11.0",
             f"3.0 10.0 1.0 6.0 2.0 2.0 1.0 1.0 {zeros} 2.0 3.0 3.0",
             f"10.0 9.0 6.0 6.0 3.0 3.0 6.0 6.0 {zeros} 2.0 9.0 9.0"]
    rows = meteor_rows(lines)
    assert rows[0, 20] == 0 and rows[1, 20] == 2
    assert corpus_meteor(rows.sum(0)) == pytest.approx(0.4700026055316012, abs=1e-12)
    raw = np.array([[float(v) for v in line.split()] for line in lines])
    np.testing.assert_allclose(corpus_meteor(raw), [1.0, 0.19126279949704858, 0.5396809640926369], atol=1e-12)
    with pytest.raises(ValueError, match="23 numbers"):
        meteor_rows(["1.0 2.0"])


@pytest.mark.skipif(meteor_unavailable() is not None, reason="METEOR needs java and pycocoevalcap's jar")
def test_corpus_meteor_from_summed_statistics_equals_the_jar():
    from vlbridge.eval.intervals import corpus_meteor

    _, candidates, references = _captions()
    candidates[5] = references[5][0]  # a perfect segment: the jar's corpus score counts no chunks for it
    expected = caption_scores(candidates, references, meteor=True)["meteor"]
    stats = meteor_statistics(candidates, references)
    assert corpus_meteor(stats.sum(0)) == pytest.approx(expected, abs=1e-9)


def test_bootstrap_is_deterministic_contains_the_estimate_and_shrinks_with_more_items():
    rng = np.random.default_rng(1)
    small, large = rng.random(100) < 0.3, rng.random(1600) < 0.3
    lo, hi = bootstrap(small, mean)
    assert lo < point(small, mean) < hi and (lo, hi) == bootstrap(small, mean)
    continuous = rng.random(100)
    assert bootstrap(continuous, mean) == bootstrap(continuous, mean) != bootstrap(continuous, mean, seed=1)
    lo_l, hi_l = bootstrap(large, mean)
    assert lo_l < point(large, mean) < hi_l
    assert 2.5 < (hi - lo) / (hi_l - lo_l) < 6  # ~ sqrt(16) = 4
    # a 95% interval of a proportion near 0.3 with 100 items is about +-0.09
    assert 0.13 < hi - lo < 0.23
    counts = resample_counts(100)
    assert counts.shape == (1000, 100) and (counts.sum(1) == 100).all() and not counts.flags.writeable


def test_bootstrap_of_several_metrics_at_once_and_of_a_tensor():
    values = np.arange(10.0)
    lo, hi = bootstrap(np.column_stack([values, 2 * values]), mean)
    np.testing.assert_allclose(hi, [hi[0], 2 * hi[0]])
    assert mean_interval(torch.arange(10.0)) == bootstrap(values, mean)
    with pytest.raises(ValueError, match="one row per test item"):
        bootstrap([], mean)
    assert intervals_overlap((0.1, 0.3), (0.3, 0.5)) and not intervals_overlap((0.1, 0.29), (0.3, 0.5))


def test_attribute_counts_give_back_grounded_scores_and_their_intervals():
    scenes, candidates, _ = _captions()
    scores = grounded_scores(candidates, scenes)
    from vlbridge.eval.attributes import attribute_count_array

    counts = attribute_count_array(candidates, scenes)
    np.testing.assert_array_equal(precision_recall_f1(counts.sum(0)), [scores["precision"], scores["recall"],
                                                                      scores["f1"]])
    intervals = attribute_intervals(candidates, scenes)
    assert all(lo <= scores[k] <= hi for k, (lo, hi) in intervals.items())
    by_attribute = precision_by_attribute_intervals(candidates, scenes, ALL_ATTRIBUTES)
    for a, (lo, hi) in by_attribute.items():
        assert lo <= grounded_scores(candidates, scenes, (a,))["precision"] <= hi
    assert precision_recall_f1(np.zeros(3)).tolist() == [0.0, 0.0, 0.0]


def test_retrieval_intervals_are_over_queries():
    g = torch.Generator().manual_seed(0)
    relevant = torch.eye(50, dtype=torch.bool)
    similarity = torch.randn(50, 50, generator=g) + 3 * torch.eye(50)
    intervals = retrieval_intervals(similarity, relevant)
    points = {f"r{k}": v for k, v in recall_at_k(similarity, relevant).items()}
    points |= {"mrr": mean_reciprocal_rank(similarity, relevant), "ndcg10": ndcg(similarity, relevant, 10)}
    assert intervals.keys() == points.keys()
    assert all(lo - 1e-6 <= points[k] <= hi + 1e-6 for k, (lo, hi) in intervals.items())
    assert ndcg_per_query(similarity, relevant, 10).mean().item() == ndcg(similarity, relevant, 10)


def test_vqa_correct_gives_back_vqa_scores():
    items = world_items(2500000, 12)
    pairs = [(it.answer if i % 2 else "no", it.explanation if i % 3 else None) for i, it in enumerate(items)]
    truth = WorldCritic()
    correct = vqa_correct(pairs, items, truth)
    assert correct.mean(0).tolist() == pytest.approx(list(vqa_scores(pairs, items, truth).values()))


def test_style_intervals_keep_a_scenes_captions_together():
    scenes, candidates, _ = _captions(count=20)

    class Always:  # a classifier that calls everything "news"
        def predict(self, texts):
            return ["news"] * len(texts)

    by_style = {"news": candidates, "blog": candidates[::-1]}
    intervals = style_intervals(Always(), by_style, scenes)
    assert intervals["style_acc"] == (0.5, 0.5)
    f1 = (grounded_scores(candidates, scenes)["f1"] + grounded_scores(candidates[::-1], scenes)["f1"]) / 2
    lo, hi = intervals["attr_f1"]
    assert lo <= f1 <= hi
    from vlbridge.eval.intervals import style_pieces

    assert point(style_pieces(Always(), by_style, scenes), style_statistic)[1] == pytest.approx(f1, abs=1e-12)
