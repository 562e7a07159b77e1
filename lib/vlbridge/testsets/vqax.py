"""VQA-X test evaluation of feedback-tuned models (ILLUME, Brack et al., ICML 2023), beside the
numbers ILLUME's official code printed for its model on the same split.

Per model: its greedy answer and rationale after the question (methods.illume.answer), scored as
- answer_acc: exact match with the answer the annotators agreed on (the book's answer accuracy);
- answer_overlap: ILLUME's "Q/A Acc" (critic_validation.ipynb, cell 17): the generated answer is
  non-empty and one of it and the gold answer contains the other;
- bleu4, meteor, rouge_l, cider of the rationales against every gold explanation of the question,
  PTB-tokenized as the COCO evaluation does (caption_scores(..., meteor=True, tokenize=True));
- critic_accept: the share of rationales that the ROUGE-L critic keeps.

How ILLUME's own evaluation differs (sampling_evaluation/vqax_magma_eval.py and
critic_validation.ipynb cell 17, ml-research/ILLUME 255c1f1): it scores one *sampled* rationale
(the column gen_explanation1, sampled at the first temperature given) after the model's greedy
answer, where this scores the greedy rationale; it lower-cases the texts and scores them with
nlg-eval, which splits on spaces without PTB tokenization, so punctuation stays attached to words.
"""
from __future__ import annotations

from ..critics import vqax_items
from ..data.vqax import load_vqax
from ..eval.captioning import caption_scores, meteor_unavailable
from ..features import image_file_features
from ..methods import illume

# ILLUME's official code's test-split scores of its tuned model: the committed output of
# sampling_evaluation/critic_validation.ipynb, cell 17 ("Evaluation on test split"), ml-research/ILLUME
# 255c1f1, printed there in percent. Not the paper's table: no copy of the paper's VQA-X table could
# be read here, so none of its numbers is printed.
OFFICIAL_NOTEBOOK = {"answer_overlap": 0.8548, "bleu4": 0.1901, "meteor": 0.1652, "rouge_l": 0.4424, "cider": 0.6018}
OFFICIAL_LABEL = "ILLUME's official code"
OFFICIAL_SOURCE = (f"{OFFICIAL_LABEL}: its tuned MAGMA model's scores as its notebook printed them (ml-research/ILLUME "
                   "255c1f1, sampling_evaluation/critic_validation.ipynb cell 17, test split); not the paper's table, "
                   "and not ours")
COLUMNS = ("answer_acc", "answer_overlap", "bleu4", "meteor", "rouge_l", "cider", "critic_accept")


def answer_overlap(generated: str, gold: str) -> bool:
    """ILLUME's answer match: a non-empty generated answer that contains the gold one or is contained in it."""
    generated = generated.strip()
    return bool(generated) and (gold in generated or generated in gold)


def vqax_test_scores(models: dict, clip, json_path, image_dir, image_input: str, critic, prompt: str = "microworld",
                     max_new_tokens: int = 40, say=print) -> dict[str, dict[str, float]]:
    """Scores every model of `models` (name -> a tuned ILLUME or SFT model) on VQA-X's test split at
    `json_path` (NLX-GPT's or ILLUME's layout) with its images in `image_dir`; `critic` is the ROUGE-L
    critic whose acceptance is reported. Says a table with the official numbers beside ours and
    returns {model name: {"items", *COLUMNS}}."""
    if not models:
        raise ValueError("vqax_test_scores needs at least one model to score")
    records = load_vqax(json_path, image_dir)
    if not records:
        raise ValueError(f"{json_path}: the VQA-X test file has no questions")
    items = vqax_items(records)
    features = image_file_features(clip, [r.image_path for r in records], image_input)
    references = [list(r.explanations) for r in records]
    scores = {}
    for name, model in models.items():
        pairs = illume.answer(model, features, items, max_new_tokens, prompt=prompt)
        rationales = [rationale or "" for _, rationale in pairs]
        text = caption_scores(rationales, references, meteor=True, tokenize=True)
        scores[name] = {
            "items": len(items),
            "answer_acc": sum(a == it.answer for (a, _), it in zip(pairs, items)) / len(items),
            "answer_overlap": sum(answer_overlap(a, it.answer) for (a, _), it in zip(pairs, items)) / len(items),
            **{k: text[k] for k in ("bleu4", "meteor", "rouge_l", "cider") if k in text},
            "critic_accept": sum(bool(r) and critic.judge(it, [r])[0] for r, it in zip(rationales, items)) / len(items),
        }
    _say_table(scores, len(items), critic, say)
    if "meteor" not in next(iter(scores.values())):
        say(meteor_unavailable())
    return scores


def _say_table(scores: dict, items: int, critic, say) -> None:
    rows = {**scores, OFFICIAL_LABEL: OFFICIAL_NOTEBOOK}
    width = max(map(len, rows))
    say(f"VQA-X test, {items} questions; critic_accept: {critic.name}")
    say(f"{'':{width}s} " + " ".join(f"{c:>14s}" for c in COLUMNS))
    for name, row in rows.items():
        say(f"{name:{width}s} " + " ".join(f"{row[c]:14.4f}" if c in row else f"{'-':>14s}" for c in COLUMNS))
    say(OFFICIAL_SOURCE)
