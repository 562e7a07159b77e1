"""ESPER's and ClipCap's benchmark: greedy captions of COCO's Karpathy test split (5,000 val2014
images), scored the COCO way against each image's reference captions (BLEU-4, METEOR, CIDEr, after
PTB tokenization) and without references by CLIPScore, printed beside the numbers the papers report,
labelled as theirs."""
from __future__ import annotations

from dataclasses import dataclass

from ..data.errors import DataError
from ..data.karpathy import KarpathyRecord, load_karpathy
from ..eval.captioning import caption_scores, meteor_unavailable
from ..eval.clipscore import clip_scores
from ..features import karpathy_features
from ..methods.prefix import PLAIN_PROMPT

KARPATHY_TEST_IMAGES = 5000
METRICS = ("bleu4", "meteor", "cider", "clipscore")
HEADERS = {"bleu4": "BLEU-4", "meteor": "METEOR", "cider": "CIDEr", "clipscore": "CLIP-S"}

# What each paper reports on the Karpathy test split, by the name of our model that reproduces it:
# (where, {metric: value on the papers' x100 scale}). None: no copy of that table was at hand when
# this was written, so no number is printed rather than one from memory; fill it in from the table.
REPORTED: dict[str, tuple[str, dict[str, float] | None]] = {
    "ClipCap": ("ClipCap (Mokady et al. 2021, arXiv 2111.09734), Table 1", None),
    "ESPER-PPO": ("ESPER (Yu, Chung et al., arXiv 2205.12630), its COCO captioning table", None),
}


@dataclass
class KarpathyTestResult:
    records: list[KarpathyRecord]  # the test images scored, in file order
    captions: dict[str, list[str]]  # by model: one greedy caption per record
    scores: dict[str, dict[str, float]]  # by model: METRICS as pycocoevalcap and CLIPScore give them (no METEOR
    # where it cannot run)


def evaluate_karpathy_test(captioners: dict, clip, json_path, image_root, image_input: str,
                           count: int = KARPATHY_TEST_IMAGES, prompt: str = PLAIN_PROMPT,
                           batch_size: int = 256) -> KarpathyTestResult:
    """Caption the first `count` images of the Karpathy test split of `json_path` (dataset_coco.json;
    images under image_root/val2014/) greedily with each prefix captioner of `captioners` (name ->
    PrefixCaptioner reading `image_input` features of `clip`), after `prompt`; score them; print the
    table with the papers' numbers beside ours. METEOR is left out where it cannot run (no java)."""
    if count < 1:
        raise ValueError(f"count must be >= 1 test images, got {count}")
    if not captioners:
        raise ValueError("evaluate_karpathy_test got no captioners to evaluate")
    records = load_karpathy(json_path, image_root, splits="test")[:count]
    if not records:
        raise DataError(f"{json_path}: no image of the Karpathy 'test' split")
    features = karpathy_features(records, clip, image_input, batch_size)
    embeddings = features[:, :clip.embed_dim]  # the L2-normalised CLIP image embedding CLIPScore reads
    references = [list(r.captions) for r in records]
    captions, scores = {}, {}
    for name, captioner in captioners.items():
        captions[name] = captioner.caption(features, prompt, batch_size=batch_size)
        coco = caption_scores(captions[name], references, meteor=True, tokenize=True)
        clipscore = float(clip_scores(clip, embeddings, captions[name]).mean())
        scores[name] = {m: coco[m] for m in METRICS if m in coco} | {"clipscore": clipscore}
    print(karpathy_table(scores, len(records)))
    return KarpathyTestResult(records, captions, scores)


def karpathy_table(scores: dict[str, dict[str, float]], images: int) -> str:
    """Our scores on the papers' x100 scale, each model followed by the paper's row where it has one."""
    lines = [f"COCO Karpathy test, {images} images, greedy captions; all scores x100",
             f"{'':34s}" + "".join(f"{HEADERS[m]:>9s}" for m in METRICS)]
    for name, ours in scores.items():
        lines.append(f"{name + ' (ours)':34s}" + "".join(f"{100 * ours[m]:9.2f}" if m in ours else f"{'n/a':>9s}"
                                                          for m in METRICS))
        if name in REPORTED:
            where, numbers = REPORTED[name]
            row = "".join(f"{numbers[m]:9.2f}" if numbers and m in numbers else f"{'n/a':>9s}" for m in METRICS)
            lines.append(f"{'  the paper reports':34s}{row}   ({where})")
    if any(numbers is None for name, (_, numbers) in REPORTED.items() if name in scores):
        lines.append("n/a: the paper's number was not at hand when this table was written; none is made up")
    reason = meteor_unavailable()
    if reason:
        lines.append(reason)
    return "\n".join(lines)
