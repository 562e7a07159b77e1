# %% [markdown]
# # 6. Evaluation: the three methods side by side
#
# **Question.** Chapters 3–5 each trained a bridge between the same frozen CLIP and the same frozen
# LM, with a different signal: paired captions (FROMAGe), a CLIP reward and no captions at all
# (ESPER), a critic's choices among the model's own explanations (ILLUME). On one test set and with
# one set of metrics, what does each signal buy, and at what cost?
#
# **Method.** Every model is loaded from the bridge its chapter saved (`vlbridge.book.store`: the cache,
# keyed by that chapter's parameters under this profile); nothing is trained here. The test set is
# a fresh seed range that no chapter trained or evaluated on. The metrics are the library's
# (`vlbridge.eval`), the same for every model:
#
# - **captioning**: grounded attribute precision / recall / F1 (the world's parser reads each
#   caption back and checks it against the scene), BLEU-1…4, METEOR, ROUGE-L and CIDEr against five
#   reference captions (pycocoevalcap), and CLIPScore (<cite>Hessel et al., EMNLP 2021</cite>), which reads the
#   frozen CLIP and needs no reference;
# - **retrieval**: text → image R@1/5/10, MRR and NDCG@10 over the test scenes;
# - **VQA with rationales**: answer accuracy, and rationale accuracy (the world-truth critic: true of
#   the scene and supporting the answer);
# - **styles**: style accuracy (the style classifier of chapter 4) and the styled captions' F1;
# - **audio**: attribute precision of captions of the scenes' *sounds*, against chance.
#
# Every number of the scoreboard comes with a 95% bootstrap interval over the test items
# (`vlbridge.eval.intervals`: 1,000 resamples of the test set, a fixed seed, the same resamples for every
# method), printed as ± half its width: how far another draw of test items could move the number. It
# does not cover what another training seed would change.

# %%
import json

import matplotlib.pyplot as plt
import torch

from vlbridge import backbones, world
from vlbridge.audio_encoder import audio_embeddings
from vlbridge.book import store
from vlbridge.book.chapter import Chapter
from vlbridge.contracts import Backbones
from vlbridge.critics import WorldCritic, world_items
from vlbridge.eval import (
    caption_scores,
    clip_scores,
    grounded_scores,
    mean_reciprocal_rank,
    meteor_unavailable,
    ndcg,
    recall_at_k,
    style_accuracy,
    vqa_scores,
)
from vlbridge.eval.attributes import ALL_ATTRIBUTES, attribute_counts
from vlbridge.eval.contextual import story_query, text_of
from vlbridge.eval.intervals import (
    DESCRIBED,
    attribute_intervals,
    caption_intervals,
    caption_pieces,
    intervals_overlap,
    mean_interval,
    precision_by_attribute_intervals,
    retrieval_intervals,
    style_intervals,
    vqa_intervals,
)
from vlbridge.eval.scoreboard import Scoreboard
from vlbridge.eval.style import default_style_classifier
from vlbridge.features import image_features
from vlbridge.methods import illume, saved_models
from vlbridge.paths import repo_root
from vlbridge.plots import side_by_side
from vlbridge.probes import generate

# %% tags=["parameters"]
profile: str = "default"
seed: int = 0
threads: int = 2
device: str = "cpu"
clip_model: str = "micro-clip"
lm_model: str = "micro-lm"
dtype: str = "float32"
test_start: int = 2500000  # the test set's first seed: no chapter draws a scene from here on
test_scenes: int = 300  # test scenes for captioning, retrieval, styles and sounds
test_items: int = 300  # test questions (one per scene, from the same seeds)
stories: int = 100  # test stories and dialogues, for the comparison with FROMAGe's reported numbers
examples: int = 4  # test pictures whose captions are shown side by side

# %% [markdown]
# ## The models, as their chapters saved them

# %%
ch = Chapter("06_evaluation", profile, seed=seed, threads=threads, device=device)
clip = backbones.load_clip(clip_model, device=device, dtype=dtype)
lm = backbones.load_lm(lm_model, device=device, dtype=dtype)
frozen = sum(p.numel() for p in clip.model.parameters()) + sum(p.numel() for p in lm.model.parameters())
trained = saved_models()  # every model chapters 3-5 save, from the methods' table
saved = {s.name: store.trained(m.chapter, s.name, profile, device=device, threads=threads) for m, s in trained}
records = {name: store.read_record(folder) for name, folder in saved.items()}
loaded = {s.name: s.load(saved[s.name], Backbones(clip, lm)) for _, s in trained}
fromage, audio_encoder = loaded["fromage"], loaded["audio_encoder"]
mappers = {name: loaded[name] for name in ("clipcap", "esper_ppo", "esper_grpo", "esper_style", "esper_audio")}
tuned = {name: loaded[name] for name in ("grounded", "illume", "sft")}
print(f"loaded {len(saved)} trained parts on CLIP {clip_model} and LM {lm_model} ({frozen:,} frozen parameters)")

# %% [markdown]
# **The test set.** Seeds from `test_start` on. The chapters draw training scenes from 0, held-out
# scenes from 1,000,000 and (chapter 3's stories and dialogues) from 2,000,000; their parameters
# say how many, so the ranges are checked here rather than trusted.

# %%
p3, p4, p5 = (records[name]["params"] for name in ("fromage", "clipcap", "illume"))
used = {"chapter 3, training": (0, p3["train_scenes"]), "chapter 4, training": (0, p4["train_scenes"]),
        "chapter 5, training": (0, p5["train_items"]),
        "chapter 3, held-out": (world.HELDOUT_START, world.HELDOUT_START + p3["eval_scenes"]),
        "chapter 4, held-out": (world.HELDOUT_START, world.HELDOUT_START + p4["eval_scenes"]),
        "chapter 5, held-out": (world.HELDOUT_START, world.HELDOUT_START + p5["eval_items"]),
        "chapter 3, stories": (world.TEST_START, world.TEST_START + p3["stories"]),
        "chapter 3, dialogues": (world.TEST_START + 10_000, world.TEST_START + 10_000 + p3["dialogues"])}
test_end = test_start + max(test_scenes, test_items) + 20_000 + stories  # stories and dialogues come after
for what, (start, end) in used.items():
    if start < test_end and test_start < end:
        raise ValueError(f"test seeds [{test_start}, {test_end}) overlap {what} [{start}, {end})")
for what, (start, end) in used.items():
    print(f"{what:22s} seeds [{start:,}, {end:,})")
print(f"{'test set (this chapter)':22s} seeds [{test_start:,}, {test_end:,})")
test = world.scenes(test_start, test_scenes)
images = world.render_array(test, clip.image_size)
embeddings = clip.encode_images(images)
references = [[world.caption(s, world.scene_rng(s.seed, 100 + r)) for r in range(5)] for s in test]
fromage_features = fromage.features(images)
mapper_features = image_features(clip, images, p4["image_input"])
print(f"{test_scenes} test scenes, 5 reference captions each; {test_items} test questions")

# %% [markdown]
# ## Captioning
#
# Greedy captions of the test scenes. The floor is the frozen LM with no picture, sampling after
# *there is*; ESPER's and ClipCap's captions continue the prompt *there is*, so it is put back in
# front before they are compared with references. METEOR needs Java; without it the column is left
# out, with the reason.

# %%
floor = [f"there is {c.strip()}" for c in generate(lm, ["there is"] * test_scenes, 40, sample=True, seed=seed)]
captions = {"no image (the LM alone)": floor}
captions |= {s.label: s.caption(loaded[s.name], images, clip) for _, s in trained if s.caption}  # every captioner
skip_meteor = meteor_unavailable()
captioning, captioning_ci = {}, {}  # the scores, and their intervals (lo, hi)
for method, caps in captions.items():
    text = caption_scores(caps, references, meteor=True)
    clip_each = clip_scores(clip, embeddings, caps)
    captioning[method] = ({f"attr_{k}": v for k, v in grounded_scores(caps, test).items()} | text
                          | {"clipscore": clip_each.mean().item()})
    captioning_ci[method] = ({f"attr_{k}": v for k, v in attribute_intervals(caps, test).items()}
                             | caption_intervals(caption_pieces(caps, references, meteor=True))
                             | {"clipscore": mean_interval(clip_each)})
columns = {"attr_precision": "attr P", "attr_recall": "attr R", "attr_f1": "attr F1", "bleu1": "BLEU-1",
           "bleu4": "BLEU-4", "meteor": "METEOR", "rouge_l": "ROUGE-L", "cider": "CIDEr", "clipscore": "CLIPScore"}
if skip_meteor:
    columns.pop("meteor")
    print(skip_meteor)
board = Scoreboard(f"Profile `{profile}`: every model loaded from the bridge its chapter saved, scored on "
                   f"{test_scenes} test scenes and {test_items} test questions from seeds no chapter used "
                   f"(`book/06_evaluation.py`). ± is half the width of a {DESCRIBED}; scoreboard.json "
                   f"gives each interval's bounds (lo, hi).")
print(f"± in every table: half the width of a {DESCRIBED}\n")
shown_scores = {m: {k: v for k, v in s.items() if k in columns} for m, s in captioning.items()}
print(board.add("captioning", "Captioning", shown_scores, columns,
                intervals={m: {k: v for k, v in ci.items() if k in columns} for m, ci in captioning_ci.items()},
                note="attr: grounded attribute precision, recall and F1 from the world's parser; text metrics "
                     "against 5 reference captions per scene." + (f" {skip_meteor}." if skip_meteor else
                     " METEOR's interval is of the corpus score itself: the jar's match statistics of each "
                     "caption, summed over each resample.") + " CIDEr's keeps the whole test set's document "
                     "frequencies."))
print("\nBLEU-2 and BLEU-3: " + "; ".join(f"{m} {s['bleu2']:.3f}, {s['bleu3']:.3f}" for m, s in captioning.items()))
ch.record(captioning=captioning)

# %% [markdown]
# Every method's caption of the same test pictures, each marked ✓ when every attribute it states is
# true and it names every object with all four attributes, else ✗ with the share of the scene's
# attributes it gets right (what attribute recall counts):

# %%
def marked(caption: str, scene) -> str:
    counts = attribute_counts(caption, scene)
    if counts.agreed == counts.claimed == counts.true:
        return f"{caption} ✓"
    return f"{caption} ✗ ({counts.agreed} of {counts.true} attributes right)"


side = {method.split(" (")[0]: caps[:examples] for method, caps in list(captions.items())[1:]}
side["ESPER-Style, news"] = mappers["esper_style"].caption(mapper_features[:examples], world.style_prompt("news"))
side["ESPER from the sound"] = mappers["esper_audio"].caption(audio_embeddings(audio_encoder, test[:examples]))
side = {method: [marked(c, s) for c, s in zip(caps, test)] for method, caps in side.items()}
for i in range(examples):
    print(f"true: {world.canonical_caption(test[i])}")
    for method, caps in side.items():
        print(f"  {method:22s} {caps[i]}")
fig = ch.figure(side_by_side(images[:examples], {"true": [world.canonical_caption(s) for s in test[:examples]]} | side),
                "captions")
plt.show()

# %% [markdown]
# ## Retrieval
#
# Each test scene's caption (a fresh one, in varied wording) is the query; the candidates are all
# test images, and an identical scene also counts as a hit. FROMAGe's query is the LM's hidden
# state at `[RET]`; the baseline is the frozen CLIP's own text encoder. NDCG@10 with 0/1 relevance.

# %%
queries = [world.caption(s, world.scene_rng(s.seed, 1)) for s in test]
same_scene = torch.tensor([[a.keys == b.keys for b in test] for a in test])
similarities = {"FROMAGe [RET]": fromage.text_retrieval(queries) @ fromage.image_retrieval(fromage_features).T,
                "CLIP text encoder": clip.encode_texts(queries) @ embeddings.T}
retrieval, retrieval_ci = {}, {}
for method, similarity in similarities.items():
    retrieval[method] = {f"r{k}": v for k, v in recall_at_k(similarity, same_scene).items()}
    retrieval[method] |= {"mrr": mean_reciprocal_rank(similarity, same_scene),
                          "ndcg10": ndcg(similarity, same_scene, 10)}
    retrieval_ci[method] = retrieval_intervals(similarity, same_scene)  # over queries
print(board.add("retrieval", f"Text → image retrieval ({test_scenes} candidates)", retrieval,
                {"r1": "R@1", "r5": "R@5", "r10": "R@10", "mrr": "MRR", "ndcg10": "NDCG@10"},
                intervals=retrieval_ci))
ch.record(retrieval=retrieval)

# %% [markdown]
# ## Questions and rationales
#
# Chapter 5's three models: the grounded bridge before any feedback, after the ILLUME loop, and
# after SFT on every written rationale. Each answers greedily after `q : … a :` and explains after
# *because*; the answer is checked against the world, the rationale by the world-truth critic, and
# its words against the gold rationale.

# %%
items = world_items(test_start, test_items)
item_features = tuned["grounded"].features(world.render_array([it.scene for it in items], clip.image_size))
truth = WorldCritic()
vqa, vqa_ci, answers = {}, {}, {}
for label, name in (("grounded (before feedback)", "grounded"), ("ILLUME loop", "illume"),
                    ("SFT, all written rationales", "sft")):
    answers[label] = illume.answer(tuned[name], item_features, items)
    rationales, golds = [r or "" for _, r in answers[label]], [[it.explanation] for it in items]
    text = caption_scores(rationales, golds, meteor=True)
    vqa[label] = vqa_scores(answers[label], items, truth) | {k: text[k] for k in ("rouge_l", "cider", "meteor")
                                                             if k in text}
    vqa_ci[label] = vqa_intervals(answers[label], items, truth) | {
        k: v for k, v in caption_intervals(caption_pieces(rationales, golds, meteor=True)).items() if k in vqa[label]}
print(board.add("vqa", f"Questions with rationales ({test_items} test questions)", vqa,
                {"answer_acc": "answer acc", "rationale_acc": "rationale acc", "rouge_l": "ROUGE-L",
                 "cider": "CIDEr"} | ({} if skip_meteor else {"meteor": "METEOR"}), intervals=vqa_ci,
                note="rationale acc: the share of rationales the world-truth critic accepts (true of the scene, "
                     "supporting the answer); text metrics against the one gold rationale."))
ch.record(vqa=vqa)
def judged(answer_given: str, rationale: str | None, item) -> str:
    """The model's answer and rationale, each marked ✓ or ✗ (the rationale by the world-truth critic)."""
    said_answer = f"{answer_given} {'✓' if answer_given == item.answer else '✗'}"
    if not rationale:
        return f"{said_answer} (no rationale ✗)"
    return f"{said_answer} because {rationale} {'✓' if truth.judge(item, [rationale])[0] else '✗'}"


said = {"question": [f"{it.question} (gold: {it.answer} because {it.explanation})" for it in items[:examples]]}
said |= {label: [judged(a, r, it) for (a, r), it in zip(pairs[:examples], items)] for label, pairs in answers.items()}
for i in range(examples):
    print("\n" + "\n".join(f"  {label:28s} {texts[i]}" for label, texts in said.items()))
fig = ch.figure(side_by_side([world.render(it.scene, clip.image_size) for it in items[:examples]], said), "answers")
plt.show()

# %% [markdown]
# ## Styles and sounds
#
# ESPER's mapper prompted with each of the five styles, before and after style RL; and ESPER on
# sounds, through the audio encoder aligned to CLIP. Chance for the sounds: each caption scored
# against another clip's scene.

# %%
classifier = default_style_classifier(seed=seed)
styles, styles_ci = {}, {}
for label, name in (("ESPER, GRPO, prompted", "esper_grpo"), ("ESPER-Style (after style RL)", "esper_style")):
    by_style = {s: mappers[name].caption(mapper_features, world.style_prompt(s)) for s in world.STYLES}
    styles[label] = {"style_acc": sum(style_accuracy(classifier, c, [s] * test_scenes)
                                      for s, c in by_style.items()) / len(world.STYLES),
                     "attr_f1": sum(grounded_scores(c, test)["f1"] for c in by_style.values()) / len(world.STYLES)}
    styles_ci[label] = style_intervals(classifier, by_style, test)  # over scenes, a scene's five captions together
print(board.add("styles", "Styles (mean over news, blog, story, instruction, social)", styles,
                {"style_acc": "style acc", "attr_f1": "attr F1"}, intervals=styles_ci,
                note="attr F1: the mean over styles of each style's F1; its interval resamples scenes, each "
                     "with its five styled captions."))
sound_captions = mappers["esper_audio"].caption(audio_embeddings(audio_encoder, test))
audio, audio_ci = {}, {}
for label, scenes in (("ESPER from the sound", test), ("chance (another clip's scene)", test[1:] + test[:1])):
    audio[label] = {a: grounded_scores(sound_captions, scenes, (a,))["precision"] for a in ALL_ATTRIBUTES}
    audio_ci[label] = precision_by_attribute_intervals(sound_captions, scenes, ALL_ATTRIBUTES)
print(board.add("audio", "Sounds: attribute precision of captions of the scenes' sounds", audio,
                {a: a for a in ALL_ATTRIBUTES}, intervals=audio_ci,
                note="colour is silent: the captions name a colour, and it is a guess."))
ch.record(styles=styles, audio=audio)

# %% [markdown]
# ## Cost
#
# What each model trained and what supervision it read. Training time is the chapter's, from the
# frozen backbones to this model on 2 CPU threads (ESPER-Style: GRPO, then style RL; ESPER from
# sound: the audio encoder, then RL; ILLUME and SFT: the grounding, then the tuning).

# %%
def trainable(*modules) -> int:
    return sum(p.numel() for m in modules for p in m.parameters() if p.requires_grad)


models = {s.label: (s.name, trainable(loaded[s.name], *(loaded[part] for part in s.counted_with)))
          for _, s in trained if s.in_cost}
cost = {label: {"trainable": count, "frozen_fraction": frozen / (frozen + count),
                "captioned_images": records[name]["captioned_images"],
                "judged_items": records[name].get("judged_items", 0),
                "written_rationales": records[name].get("written_rationales", 0)}
        for label, (name, count) in models.items()}
print(board.add("cost", "Cost", cost, {"trainable": "trainable parameters", "frozen_fraction": "frozen fraction",
                               "captioned_images": "captioned images", "judged_items": "judged items",
                               "written_rationales": "written rationales"}, digits=4,
                note="ESPER from the sound: the mapper and the audio encoder. ILLUME and SFT: chapter 5's FROMAGe "
                     "bridge, grounded on captions, then its image-to-LM map tuned. PPO also trains a value head "
                     "(not counted: it is not part of the captioner). Training times vary from run to run, so "
                     "chapter 6 prints them and the scoreboard leaves them out. These are counts of what was "
                     "trained and read, not estimates from test items: they have no interval (lo and hi are null "
                     "in scoreboard.json)."))
for label, (name, _) in models.items():
    print(f"{label:30s} trained in chapter {records[name]['chapter'][:2]}: took {records[name]['train_seconds']:.1f} s")
ch.record(cost=cost)

# %% [markdown]
# ## The papers' numbers beside ours
#
# FROMAGe reports contextual retrieval with OPT-6.7B and CLIP ViT-L/14 on VIST (Table 1) and VisDial
# (Table 2): R@1 of the picture a story ends with, and of a dialogue's picture after ten rounds. We
# quote the values as <cite>Li et al. (ICML 2024, Tables 2 and 3)</cite> reprint them; we could not
# read the FROMAGe paper's own tables here. Ours are FROMAGe's `[RET]` on fresh test stories and
# dialogues, the same tasks in chapter 3's form, beside our CLIP's. **They are not comparable**: real
# photographs and text against a microworld, <cite>6.7 billion</cite> frozen parameters against
# 1,822,233 (printed at the top), `stories` candidates here against the test sets there. ESPER and
# ILLUME report their results on COCO and VQA-X with real backbones; we give their headline claims
# in words, beside what we measure, and no numbers of theirs, because we could not check them
# against the papers here (chapters 4 and 5 score their test sets when a paper profile names them).

# %%
told = [world.story(test_start + 10_000 + i) for i in range(stories)]
story_features = fromage.features(world.render_array([s for t in told for s in t.scenes], clip.image_size))
story_features = story_features.view(stories, 5, -1)
same_last = torch.tensor([[a.scenes[-1].keys == b.scenes[-1].keys for b in told] for a in told])
talks = [world.dialogue(test_start + 20_000 + i) for i in range(stories)]
talk_features = fromage.features(world.render_array([t.scene for t in talks], clip.image_size))
same_talk = torch.tensor([[a.scene.keys == b.scene.keys for b in talks] for a in talks])
tasks = {  # task: (queries, candidate features, relevance, the paper's FROMAGe R@1, the paper's CLIP R@1)
    "VIST, 1 caption": ([story_query(t, "1cap", f) for t, f in zip(told, story_features)], story_features[:, -1],
                        same_last, 11.3, 11.9),
    "VIST, 5 captions and 4 pictures": ([story_query(t, "5cap4img", f) for t, f in zip(told, story_features)],
                                        story_features[:, -1], same_last, 18.2, None),
    "VisDial, 10 rounds": ([[world.dialogue_text(t, 10)] for t in talks], talk_features, same_talk, 20.8, 17.7)}
print(f"{'text → image R@1 (%)':34s} {'FROMAGe':>8s} {'CLIP':>6s}   {'ours: [RET]':>11s} {'CLIP':>6s}")
print(f"{'':34s} {'(the paper)':>15s}")
reported = {}
for task, (queries, candidates, relevant, paper_fromage, paper_clip) in tasks.items():
    ret = recall_at_k(fromage.text_retrieval(queries) @ fromage.image_retrieval(candidates).T, relevant)[1]
    ours_clip = None if paper_clip is None else recall_at_k(  # CLIP reads text only
        clip.encode_texts([text_of(q) for q in queries]) @ candidates[:, :clip.embed_dim].T, relevant)[1]
    reported[task] = {"paper_fromage": paper_fromage, "paper_clip": paper_clip, "ours_ret": ret, "ours_clip": ours_clip}
    print(f"{task:34s} {paper_fromage:8.1f} {'–' if paper_clip is None else f'{paper_clip:.1f}':>6s}   "
          f"{100 * ret:11.1f} {'–' if ours_clip is None else f'{100 * ours_clip:.1f}':>6s}")
grpo_share = captioning["ESPER, GRPO"]["attr_f1"] / captioning["ClipCap (supervised)"]["attr_f1"]
sft_acc = vqa["SFT, all written rationales"]["rationale_acc"]
illume_share = vqa["ILLUME loop"]["rationale_acc"] / sft_acc if sft_acc > 0 else None  # None: SFT scored nothing
label_share = cost["ILLUME loop"]["judged_items"] / max(cost["SFT, all written rationales"]["written_rationales"], 1)
print(f"\nESPER's claim: captions from a CLIP reward alone, no paired captions. Ours: GRPO reaches "
      f"{grpo_share:.3f} of the supervised mapper's attribute F1 with 0 captions read.")
print(f"ILLUME's claim: competitive with SFT with far less training data. Ours: the loop reaches "
      f"{'n/a' if illume_share is None else f'{illume_share:.3f}'} of SFT's rationale accuracy with "
      f"{label_share:.2f} as many labels (judgements, not written rationales).")
ch.record(paper_comparison=reported,
          grpo_vs_supervised=grpo_share, illume_vs_sft=illume_share, illume_label_share=label_share)

# %% [markdown]
# ## The scoreboard
#
# The tables above, written as `results/<profile>/scoreboard.md` and `scoreboard.json`; the README's
# front page shows the default profile's.

# %%
paths = board.write(ch.dir.parent)  # results/<profile>/, beside the chapters' folders
print("wrote " + " and ".join(p.name for p in paths))

# %% [markdown]
# ## Which differences the test set can tell apart
#
# The comparisons the summary below makes, each with both numbers' intervals. Where the intervals do
# not overlap, the difference is larger than what another draw of test items would likely give;
# where they overlap, this test set cannot tell the two apart, and the summary says the difference is
# within the interval. (Overlap is the cautious reading: a paired test could separate some.)

# %%
tables = {"captioning": (captioning, captioning_ci), "retrieval": (retrieval, retrieval_ci), "vqa": (vqa, vqa_ci),
          "styles": (styles, styles_ci), "audio": (audio, audio_ci)}
floor_label, clipcap, ppo, grpo = "no image (the LM alone)", "ClipCap (supervised)", "ESPER, PPO", "ESPER, GRPO"
comparisons = [("captioning", "attr_f1", "FROMAGe", clipcap), ("captioning", "attr_f1", clipcap, ppo),
               ("captioning", "attr_f1", ppo, grpo), ("captioning", "attr_f1", grpo, floor_label),
               ("captioning", "clipscore", ppo, clipcap), ("captioning", "clipscore", grpo, clipcap),
               ("captioning", "attr_precision", ppo, clipcap), ("captioning", "attr_precision", grpo, clipcap),
               ("retrieval", "r1", "CLIP text encoder", "FROMAGe [RET]"),
               ("vqa", "answer_acc", "SFT, all written rationales", "ILLUME loop"),
               ("vqa", "rationale_acc", "SFT, all written rationales", "ILLUME loop"),
               ("vqa", "answer_acc", "ILLUME loop", "grounded (before feedback)"),
               ("vqa", "rationale_acc", "ILLUME loop", "grounded (before feedback)"),
               ("styles", "style_acc", "ESPER-Style (after style RL)", "ESPER, GRPO, prompted"),
               ("styles", "attr_f1", "ESPER-Style (after style RL)", "ESPER, GRPO, prompted")]
comparisons += [("audio", a, "ESPER from the sound", "chance (another clip's scene)") for a in ALL_ATTRIBUTES]
overlaps = {}
for section, metric, a, b in comparisons:
    scores, ci = tables[section]
    if metric not in scores[a]:  # METEOR-less runs, or a metric this profile leaves out
        continue
    overlaps[f"{section}/{metric}: {a} vs {b}"] = same = intervals_overlap(ci[a][metric], ci[b][metric])
    print(f"{metric:14s} {a:28s} {scores[a][metric]:.3f} [{ci[a][metric][0]:.3f}, {ci[a][metric][1]:.3f}]  "
          f"{b:30s} {scores[b][metric]:.3f} [{ci[b][metric][0]:.3f}, {ci[b][metric][1]:.3f}]  "
          f"{'within the intervals' if same else 'beyond the intervals'}")
ch.record(interval_overlaps=overlaps)

# %% [markdown]
# ## How far another training seed moves the numbers
#
# The intervals above are over test items: they say nothing of training. The seed study (`make
# seeds`: chapters 3–5 on the default profile, trained with seeds 0, 1 and 2, each run's metrics kept
# in `results/seeds/`) trains every model again. Its summary, read here, gives each chapter's
# headline numbers per seed, with their mean and standard deviation over seeds; a difference between
# two methods smaller than a few of these standard deviations is one a seed could make.

# %%
SEED_HEADLINES = {  # chapter: its numbers the summary above and chapters 3-5 compare
    "03_grounding": ["caption_attr_f1", "noimage_attr_f1", "t2i_r1_ret", "t2i_r1_clip", "story_r1_5cap4img",
                     "dialog_t2i_r1"],
    "04_reward_rl": ["supervised_attr_f1", "ppo_attr_f1", "grpo_attr_f1", "plain_reward_attr_f1", "noimage_attr_f1",
                     "style_acc"],
    "05_feedback": ["answer_acc_final", "rationale_acc_final", "sft_answer_acc", "sft_rationale_acc"],
}
seed_summary = repo_root() / "results" / "seeds" / "summary.json"
if profile != "default":
    print(f"the seed study is of the default profile (`make seeds`); profile {profile} has none")
elif not seed_summary.is_file():
    print(f"no seed study at {seed_summary}: run `make seeds` (about 30 minutes)")
else:
    study = json.loads(seed_summary.read_text())
    runs = seed_summary.parent.glob("seed-*/*/run.json")
    made_at = sorted({json.loads(path.read_text())["git_sha"][:7] for path in runs})
    print(f"seeds {study['seeds']} ({study['profile']} profile, made at commit {', '.join(made_at)}): "
          "value per seed, mean ± standard deviation")
    spread = {}
    for chapter, names in SEED_HEADLINES.items():
        for name in names:
            row = study["chapters"][chapter].get(name)
            if row is None:  # equal in every seed
                continue
            spread[f"{chapter}/{name}"] = {"mean": row["mean"], "sd": row["sd"]}
            print(f"  {chapter[:2]} {name:22s} " + "  ".join(f"{v:.3f}" for v in row["values"])
                  + f"   {row['mean']:.3f} ± {row['sd']:.3f}")
    ch.record(seed_spread=spread)

# %% [markdown]
# **What this shows** (numbers of the default profile; the smoke profile's backbones are barely
# trained and its numbers only show that the code runs).
#
# - **Paired captions buy the most.** The supervised ClipCap mapper's captions of test scenes reach
#   attribute F1 0.803, FROMAGe's 0.753, ESPER's 0.475 (GRPO) and 0.409 (PPO), the LM with no picture
#   0.304; each step down this order is beyond the intervals. METEOR, ROUGE-L and CIDEr put ClipCap and
#   FROMAGe far above ESPER, and ESPER above the LM alone; BLEU-1 and BLEU-2 put the LM alone above
#   GRPO, and BLEU-1 above PPO too. FROMAGe and ClipCap are not a controlled pair — FROMAGe reads
#   CLIP's patch tokens as ClipCap does, but trains 4,491,778 parameters for a fixed number of steps
#   on 10,000 captioned images and shares them with retrieval, ClipCap 1,639,936 on 4,000 until its
#   held-out loss stops improving (the cost table, chapter 4) — but ClipCap and ESPER are: the same
#   mapper on the same pictures, with and without captions. Without reading one caption, GRPO gets
#   0.591 of the supervised mapper's F1, from RL runs that chapter 4 shows were still improving
#   when they stopped.
# - **Seeds move the RL numbers more than test items do.** GRPO's lead over PPO is beyond the test-set
#   intervals here, but in the seed study chapter 4's held-out F1 is 0.417, 0.483 and 0.501 for PPO
#   and 0.461, 0.510 and 0.478 for GRPO over three seeds: which optimiser is ahead is a seed's doing.
#   The paper's plain reward, chapter 4's control, gives 0.445 and 0.473 on seeds 0 and 1, and 0.187
#   on seed 2, below the LM alone (0.312 on that seed); the contrastive reward's lowest is 0.461.
#   ClipCap, trained until its held-out loss stops improving, ranges from 0.824 to 0.868. The loop's
#   rationale accuracy in chapter 5 moves from 0.270 to 0.427 with the seed, while SFT's stays
#   between 0.410 and 0.417.
# - **CLIPScore does not favour the RL captions here.** ESPER's reward is CLIP's image–text
#   similarity, yet the supervised captions score higher CLIPScore (1.398, against 0.934 for GRPO and
#   0.573 for PPO, beyond the intervals), as they score higher attribute precision (0.807, against
#   0.612 and 0.471, beyond the intervals). Half-trained RL captions say less about the scene, and
#   more of what they say is false. A reference-free metric read by the same model that gave the
#   reward would not be an independent judge of RL that had run longer and overtaken ClipCap on it.
# - **Retrieval**: `[RET]` finds the test scene from a caption at R@1 0.800 among 300, CLIP's own
#   text encoder at 0.953, a gap beyond the intervals.
# - **Feedback against written explanations.** On the test questions ILLUME's loop answers 0.680
#   right and explains 0.383 right, from 0.277 and 0.150 before feedback, gains beyond the intervals;
#   SFT on every written rationale reaches 0.717 and 0.440, and the loop's gap to SFT is within the
#   intervals on both. The loop gets 0.871 of SFT's rationale accuracy with 0.25 as many labels, and
#   its labels are judgements of its own samples, not written rationales — on this seed: over seeds
#   (above) the loop is less steady than SFT.
# - **Styles and sounds.** Prompted with a style, ESPER's mapper writes in it 0.891 of the time;
#   after style RL, 0.997, beyond the intervals, and its F1 moves from 0.420 to 0.436, within them. From
#   sounds alone, captions get shape (precision 0.628 against 0.414 by chance), size (0.684 against
#   0.528) and position (0.546 against 0.176) beyond the intervals; colour, which no sound carries,
#   stays at chance (0.266 against 0.252, within the intervals).
# - **The paper's contextual retrieval does not carry over.** FROMAGe reports `[RET]` gaining from
#   context on VIST (<cite>11.3%</cite> with one caption, <cite>18.2%</cite> with the whole story and
#   its pictures) and beating CLIP on VisDial (<cite>20.8% against 17.7%</cite>); here `[RET]` reaches
#   2.0% in both VIST settings and 0.0% on VisDial, below our CLIP (6.0% and 19.0%). Chapter 3 traces
#   this to the stand-in LM: reading a story or a dialogue for what it says about the last picture is
#   what OPT-6.7B brings from the web.
#
# Which differences are "beyond" or "within the intervals" is printed by the comparisons above. The
# intervals cover another draw of test items, not another training seed: the seed study above shows
# how far a seed moves each chapter's headline numbers, and a difference beyond the intervals can
# still be one that another seed would move.
