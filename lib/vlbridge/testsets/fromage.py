"""FROMAGe's evaluations on its paper's test sets (Koh, Salakhutdinov & Fried, ICML 2023, Tables 1
and 2), built as the official evaluation code builds them (github.com/kohjingyu/fromage b36a188,
evals/):

- **VIST contextual image retrieval** (eval_vist_retrieval.py): retrieve a story's last picture from
  its last sentence, or its five sentences (the paper's other Table 1 settings), or its five sentences
  with the first four pictures interleaved (:121-151). The candidates are every picture of the split's
  stories that is there (:51-64), less the story's own earlier pictures (:161-164). CLIP's text encoder
  reads the text-only settings.
- **VisDial text-to-image retrieval** (eval_visdial_retrieval.py): a dialogue's ten rounds as
  "Q: question? A: answer." joined by spaces, then [RET] (:90-94; the caption is not read); the
  candidates are the split's images. The official score matrix is images x dialogues and each image
  ranks the dialogues (:108-118): that is the orientation its printed numbers, the paper's, have. Both
  are computed here: each dialogue ranking the images (the task as the paper names it), and each image
  ranking the dialogues (as the notebook ranks).
- **VisDial answer ranking** (VisDial_Inference_IT2T_Generation.ipynb): for each round, the image,
  then "Q: question?" and "A: answer" lines of the rounds before, then "Q: question?\\nA:", and each of
  the 100 options scored by the LM's log-likelihood; R@1/5/10 and MRR over every round, NDCG on the
  rounds that VisDial's dense relevance file grades. Two differences: the notebook's cross-entropy
  compares each position's logits with the token at the same position, not the next one (its
  `ce_loss(logits, labels)` without a shift); here an answer's score is the summed log-probability of
  its tokens given what precedes them. And the dense file's round_id counts from 1, as VisDial's own
  evaluation code reads it (round_id - 1); the notebook takes round i*10 + round_id, one round later.

The loaders are vlbridge.data's (load_vist_sis, load_visdial), so the microworld's exports
(`vlbridge export vist|visdial`) run the same code as the real files.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..data import DataError, load_visdial, load_vist_sis
from ..data.images import image_file
from ..data.jsonfile import field as json_field
from ..data.jsonfile import read_json
from ..eval.contextual import STORY_SETTINGS, story_query, text_of
from ..eval.retrieval import mean_reciprocal_rank, ndcg, recall_at_k
from ..features import image_file_features

KS = (1, 5, 10)
PAPERS_COLUMN = "the paper's"
OFFICIAL = "kohjingyu/fromage b36a188"
# The paper's numbers: the outputs committed in the official evaluation notebooks, which evaluate the
# released checkpoint of the paper (Tables 1 and 2). The paper's other Table 1 rows (1 and 5 captions,
# CLIP) were not found in a copy we could read, so none is printed for them.
PAPER = {
    "vist_5cap4img_r1": 0.18232, "vist_5cap4img_r5": 0.42682, "vist_5cap4img_r10": 0.51775,
    "visdial_t2i_by_image_r1": 0.20785, "visdial_t2i_by_image_r5": 0.44913, "visdial_t2i_by_image_r10": 0.55959,
    "visdial_it2t_r1": 0.17573, "visdial_it2t_r5": 0.19971, "visdial_it2t_r10": 0.24414,
    "visdial_it2t_mrr": 0.21997, "visdial_it2t_ndcg": 0.16594,
}
PAPER_SOURCES = {
    "vist": "evals/VIST_Contextual_Image_Retrieval.ipynb (Table 1)",
    "visdial_t2i": "evals/VisDial_Inference_T2I_Retrieval.ipynb (Table 2)",
    "visdial_it2t": "evals/VisDial_Inference_IT2T_Generation.ipynb (Table 2)",
}
TASKS = {
    "vist_1cap": "VIST, 1 caption",
    "vist_5cap": "VIST, 5 captions",
    "vist_5cap4img": "VIST, 5 captions + 4 images",
    "visdial_t2i": "VisDial T2I, each dialogue ranks the images",
    "visdial_t2i_by_image": "VisDial T2I, each image ranks the dialogues",
    "visdial_it2t": "VisDial IT2T, 100 answers",
}


@dataclass
class BenchmarkResult:
    """Our metrics by key (task, then `_clip` for CLIP's text encoder, then the metric), what they were
    computed over (counts), and notes on what was not computed."""

    metrics: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def table(self) -> str:
        """Ours beside the paper's, where the official notebooks report one."""
        lines = [f"{'':58s} {'ours':>7s}  " + f"{PAPERS_COLUMN:>11s}"]
        for key, value in self.metrics.items():
            task, metric = key.rsplit("_", 1)
            model = "CLIP" if task.endswith("_clip") else "FROMAGe"
            name = f"R@{metric[1:]}" if metric[1:].isdigit() else metric.upper()  # r5 -> R@5, mrr -> MRR
            label = f"{TASKS[task.removesuffix('_clip')]}, {model} {name}"
            paper = f"{PAPER[key]:.4f}" if key in PAPER else "—"
            lines.append(f"{label:58s} {value:7.4f}  {paper:>11s}")
        shown = {source for key, source in PAPER_SOURCES.items() if any(k.startswith(key) for k in self.metrics)}
        lines.append(f"the paper's: the outputs of the official evaluation notebooks ({OFFICIAL}: "
                     + "; ".join(sorted(shown)) + "); —: no number of the paper's found")
        lines.append("computed over: " + ", ".join(f"{n} {what}" for what, n in self.counts.items()))
        return "\n".join(lines + self.notes)


def recall_metrics(prefix: str, similarity: torch.Tensor, relevant: torch.Tensor) -> dict[str, float]:
    return {f"{prefix}_r{k}": v for k, v in recall_at_k(similarity, relevant, KS).items()}


# ---------------------------------------------------------------------------------------------- VIST
def vist_with_pictures(json_path, image_dir) -> tuple[list, dict[str, Path]]:
    """The VIST stories whose pictures are all in image_dir, and every picture of the split that is there
    (photo id -> file, in order of first appearance): as the official code, which skips the stories with
    a picture gone from Flickr (eval_vist_retrieval.py:114-119) and ranks every picture it has (:59-64)."""
    json_path = Path(json_path)
    stories = load_vist_sis(json_path)
    found: dict[str, Path | None] = {}
    for story in stories:
        for photo in story.image_ids:
            if photo not in found:
                try:
                    found[photo] = image_file(image_dir, photo, json_path, f"story {story.story_id}")
                except DataError:
                    found[photo] = None
    complete = [s for s in stories if all(found[i] for i in s.image_ids)]
    if not complete:
        raise DataError(f"{json_path}: no story has all its pictures in {image_dir}")
    return complete, {photo: path for photo, path in found.items() if path}


def vist_retrieval(model, clip, stories: list, pictures: dict[str, Path], batch_size: int = 256) -> dict[str, float]:
    """R@1/5/10 of retrieving each story's last picture among `pictures` (vist_with_pictures), in every
    setting of STORY_SETTINGS; CLIP's text encoder in the settings without pictures."""
    for story in stories:
        if len(story.sentences) < 2:
            raise ValueError(f"story {story.story_id} has {len(story.sentences)} sentence(s); a contextual "
                             "query needs at least two")
    pool = list(pictures)
    index = {image_id: k for k, image_id in enumerate(pool)}
    features = image_file_features(clip, list(pictures.values()), model.config.image_input, batch_size)
    candidates = model.image_retrieval(features)
    relevant = torch.zeros(len(stories), len(pool), dtype=torch.bool)
    seen = torch.zeros_like(relevant)  # the story's earlier pictures are not candidates
    for q, story in enumerate(stories):
        last = story.image_ids[-1]
        relevant[q, index[last]] = True
        seen[q, [index[i] for i in story.image_ids[:-1] if i != last]] = True
    out = {}
    for setting in STORY_SETTINGS:
        queries = [story_query(s, setting, features[[index[i] for i in s.image_ids]]) for s in stories]
        similarity = model.text_retrieval(queries, batch_size) @ candidates.T
        out |= recall_metrics(f"vist_{setting}", similarity.masked_fill(seen.to(similarity.device), float("-inf")),
                              relevant)
        if setting != "5cap4img":  # CLIP cannot read pictures
            clip_similarity = clip.encode_texts([text_of(q) for q in queries]) @ features[:, :clip.embed_dim].T
            out |= recall_metrics(f"vist_{setting}_clip", clip_similarity.masked_fill(seen, float("-inf")), relevant)
    return out


# -------------------------------------------------------------------------------------------- VisDial
def dialogue_query(dialog) -> str:
    """What retrieves a VisDial image (eval_visdial_retrieval.py:90-94): every round as 'Q: …? A: ….'."""
    return " ".join(f"Q: {r.question}? A: {r.answer}." for r in dialog.rounds)


def answer_context(dialog, round_index: int) -> str:
    """The text before a round's candidate answers (the IT2T notebook): the earlier rounds as 'Q: …?'
    and 'A: …' lines, then the round's question and 'A:' (the answer follows after a space)."""
    lines = []
    for r in dialog.rounds[:round_index]:
        lines += [f"Q: {r.question}?", f"A: {r.answer}"]
    return "\n".join([*lines, f"Q: {dialog.rounds[round_index].question}?", "A:"])


def visdial_image_retrieval(model, clip, dialogs: list, features: torch.Tensor,
                            batch_size: int = 256) -> dict[str, float]:
    """R@1/5/10 of VisDial text-to-image retrieval over the dialogs' images (`features`, one row per
    dialog): each dialogue ranking the images, each image ranking the dialogues (the official
    notebook's orientation), and CLIP's text encoder reading the same text. An image that two dialogs
    share is right for both."""
    texts = [dialogue_query(d) for d in dialogs]
    ids = torch.tensor([d.image_id for d in dialogs])
    same = ids[:, None] == ids[None, :]
    similarity = model.text_retrieval(texts, batch_size) @ model.image_retrieval(features).T  # [dialogue, image]
    clip_similarity = clip.encode_texts(texts) @ features[:, :clip.embed_dim].T
    return (recall_metrics("visdial_t2i", similarity, same) | recall_metrics("visdial_t2i_clip", clip_similarity, same)
            | recall_metrics("visdial_t2i_by_image", similarity.T, same))


def load_visdial_dense(path) -> dict[int, tuple[int, list[float]]]:
    """VisDial's dense answer relevance (visdial_1.0_val_dense_annotations.json: a list of
    {image_id, round_id, gt_relevance[100]}) as image_id -> (round index from 0, relevance of each
    option). round_id counts from 1, as VisDial's own starter code reads it."""
    path = Path(path)
    entries = read_json(path)
    if not isinstance(entries, list):
        raise DataError(f"{path}: expected a list of {{image_id, round_id, gt_relevance}}, "
                        f"got {type(entries).__name__}")
    dense = {}
    for n, entry in enumerate(entries):
        where = f"entry {n}"
        image_id = json_field(entry, "image_id", path, where, int)
        round_id = json_field(entry, "round_id", path, where, int)
        relevance = json_field(entry, "gt_relevance", path, where, list)
        if round_id < 1:
            raise DataError(f"{path}: {where}: round_id counts rounds from 1, got {round_id}")
        if not relevance or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0
                                    for v in relevance):
            raise DataError(f"{path}: {where}: gt_relevance must be a non-empty list of numbers >= 0")
        dense[image_id] = (round_id - 1, [float(v) for v in relevance])
    return dense


def visdial_ndcg(similarity: torch.Tensor, relevance: torch.Tensor) -> float:
    """VisDial's NDCG: for each round, the discounted gain of the top k options, k being the number of
    options with relevance > 0, over the best possible."""
    scores = [ndcg(similarity[q:q + 1], relevance[q:q + 1], k=int((relevance[q] > 0).sum()))
              for q in range(len(similarity))]
    return sum(scores) / len(scores)


def visdial_answer_ranking(model, dialogs: list, features: torch.Tensor, dense: dict | None = None,
                           batch_size: int = 100) -> dict[str, float]:
    """R@1/5/10 and MRR of the ground-truth answer among each round's options, ranked by their
    log-likelihood after the image and the dialogue so far; NDCG on the rounds `dense`
    (load_visdial_dense) grades, if given."""
    graded = graded_rounds(dialogs, dense) if dense is not None else {}  # checked before the costly scoring
    rows = []  # per round: the log-likelihood of each option
    truth = []
    for dialog, image in zip(dialogs, features):
        for r, turn in enumerate(dialog.rounds):
            if not turn.options:
                raise ValueError(f"VisDial image {dialog.image_id}, round {r}: no answer options to rank")
            context = [image, answer_context(dialog, r)]
            rows.append(model.log_likelihood([context] * len(turn.options), [f" {o}" for o in turn.options],
                                             batch_size).float().cpu())
            truth.append(turn.gt_index)
    width = max(map(len, rows))
    similarity = torch.full((len(rows), width), float("-inf"))
    for q, row in enumerate(rows):
        similarity[q, :len(row)] = row
    relevant = torch.zeros_like(similarity, dtype=torch.bool)
    relevant[torch.arange(len(rows)), torch.tensor(truth)] = True
    out = {f"visdial_it2t_r{k}": v for k, v in recall_at_k(similarity, relevant, KS).items()}
    out["visdial_it2t_mrr"] = mean_reciprocal_rank(similarity, relevant)
    if dense is not None:
        grades = torch.zeros(len(graded), width)
        for g, relevance in enumerate(graded.values()):
            grades[g, :len(relevance)] = torch.tensor(relevance)
        out["visdial_it2t_ndcg"] = visdial_ndcg(similarity[list(graded)], grades)
    return out


def graded_rounds(dialogs: list, dense: dict) -> dict[int, list[float]]:
    """The rounds that `dense` grades, by their index among all the dialogs' rounds in order, with the
    grade of each of their options."""
    starts = torch.tensor([0, *[len(d.rounds) for d in dialogs]]).cumsum(0).tolist()
    graded = {}
    for dialog, start in zip(dialogs, starts):
        if dialog.image_id not in dense:
            continue
        round_index, relevance = dense[dialog.image_id]
        if round_index >= len(dialog.rounds) or len(relevance) != len(dialog.rounds[round_index].options):
            raise DataError(f"dense annotation of image {dialog.image_id}: round {round_index + 1} with "
                            f"{len(relevance)} grades does not fit its dialog ({len(dialog.rounds)} rounds)")
        if not any(relevance):
            raise DataError(f"dense annotation of image {dialog.image_id}: no option has relevance > 0")
        graded[start + round_index] = relevance
    if not graded:
        raise DataError("the dense annotations grade none of the dialogs' images")
    return graded


# ------------------------------------------------------------------------------------------- together
def fromage_benchmarks(model, clip, vist_json: str = "", vist_images: str = "", visdial_json: str = "",
                       visdial_images: str = "", visdial_dense: str = "", batch_size: int = 100) -> BenchmarkResult:
    """Every evaluation whose data is named (paths; "" skips it): VIST retrieval, VisDial retrieval and
    answer ranking. Returns our metrics, to print beside the paper's (BenchmarkResult.table)."""
    if bool(vist_json) != bool(vist_images):
        raise ValueError("VIST needs both vist_json (the SIS JSON) and vist_images (its image folder)")
    if bool(visdial_json) != bool(visdial_images):
        raise ValueError("VisDial needs both visdial_json and visdial_images (its image folder)")
    if visdial_dense and not visdial_json:
        raise ValueError("visdial_dense grades the answers of visdial_json: name visdial_json too")
    result = BenchmarkResult()
    if vist_json:
        stories, pictures = vist_with_pictures(vist_json, vist_images)
        result.metrics |= vist_retrieval(model, clip, stories, pictures)
        result.counts |= {"VIST stories": len(stories), "VIST candidate pictures": len(pictures)}
    if visdial_json:
        dialogs = load_visdial(visdial_json, visdial_images)
        features = image_file_features(clip, [d.image_path for d in dialogs], model.config.image_input)
        dense = load_visdial_dense(visdial_dense) if visdial_dense else None
        result.metrics |= visdial_image_retrieval(model, clip, dialogs, features)
        result.metrics |= visdial_answer_ranking(model, dialogs, features, dense, batch_size)
        result.counts |= {"VisDial dialogs": len(dialogs), "VisDial rounds": sum(len(d.rounds) for d in dialogs)}
        if dense is None:
            result.notes.append("VisDial NDCG: not computed; it needs VisDial's dense relevance file "
                                "(visdial_1.0_val_dense_annotations.json, parameter visdial_dense)")
    return result
