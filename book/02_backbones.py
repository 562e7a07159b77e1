# %% [markdown]
# # 2. Frozen backbones
#
# **Question.** All three methods keep two pretrained models frozen — a CLIP vision encoder and a
# causal language model — and train only a small bridge between them. What must those backbones
# already know for a bridge to work?
#
# **Method.** In the papers the backbones are CLIP ViT-L/14 or ViT-B/32 and OPT-6.7B, GPT-2 or
# GPT-J, pretrained on the web. Here they are tiny stand-ins pretrained on the microworld, by the same
# recipes in miniature, and then frozen:
#
# - **CLIP**: an open_clip model built from a custom config (a small ResNet image tower — open_clip's
#   ModifiedResNet — on 32x32 images, a 2-layer text transformer), trained contrastively on rendered
#   scenes and texts about them — full captions, styled captions, and partial ones (*there is a red
#   circle*), since real CLIP also learns from captions that mention only part of a picture. It is
#   saved in open_clip's own folder format and loaded back through open_clip's `local-dir:` loader,
#   the same path a real checkpoint takes.
# - **Language model**: a two-layer decoder-only transformer in the Llama layout (rotary positions,
#   which let the circuits that copy from context form within a CPU budget), with its own word-level
#   tokenizer (trained with `tokenizers`), trained on microworld **text only** — it never sees an
#   image. Saved and loaded as a Hugging Face model, the same path `facebook/opt-6.7b` takes.
#
# Both are built from recipes (configs as data), trained deterministically and cached under a hash
# of the recipe, so later chapters load them rather than train them again.
#
# **The one thing that matters** (measured in a prototype): an LM trained on independent captions
# learns to ignore its context, and then no image prefix can steer it. Real LMs learn to use context
# from real text. So the stand-in LM's corpus has the redundancy real text has: a caption followed by
# itself, a paraphrase or restyled versions of itself, stories whose objects persist, dialogues
# whose answers restate the scene, rationales that restate the answer — and random strings of world
# words said twice, whose second half can be predicted only by copying. The probe at the end of this
# chapter shows that the LM learned to use its context.

# %%
import json
import textwrap

import matplotlib.pyplot as plt
import numpy as np
import torch

from vlbridge import backbones, world
from vlbridge.book.chapter import Chapter
from vlbridge.eval import recall_at_k
from vlbridge.plots import curves, image_grid
from vlbridge.probes import caption_openers_parse_rate, context_probe, sequence_nll, vqa_from_text

# %% tags=["parameters"]
profile: str = "default"
seed: int = 0
threads: int = 2
device: str = "cpu"
clip_model: str = "micro-clip"  # a built-in recipe, a recipe .json, an open_clip name or a local folder
lm_model: str = "micro-lm"  # a built-in recipe, a recipe .json, a Hugging Face name or a local folder
eval_scenes: int = 500  # held-out scenes for retrieval and perplexity
lm_samples: int = 200  # free samples for the parse check
probe_texts: int = 200  # texts for the context probe and the question answering check

# %%
ch = Chapter("02_backbones", profile, seed=seed, threads=threads, device=device)

# %% [markdown]
# ## The recipes
#
# A stand-in's name refers to a recipe in `vlbridge/backbones/recipes/`: architecture, tokenizer and
# training run in one screen.

# %%
for name in (clip_model, lm_model):
    spec = backbones.recipe(name)
    print(f"{name}:" + ("" if spec else " a real checkpoint (no recipe)"))
    for section, value in (spec or {}).items():
        print(f"  {section:9s} {json.dumps(value)}")

# %% [markdown]
# ## CLIP
#
# Loading builds the stand-in the first time (pretraining it, deterministically) and reads it from
# the cache afterwards; the training log is cached with it, so this chapter shows the same curve
# either way.

# %%
clip = backbones.load_clip(clip_model, device=device)
clip_log = backbones.training_log(clip_model, device=device)
clip_params = sum(p.numel() for p in clip.model.parameters())
print(f"{clip_params:,} parameters, frozen: {backbones.is_frozen(clip.model)}; "
      f"embedding {clip.embed_dim}-d, images {clip.image_size}x{clip.image_size}")
print(f"pretraining: {clip_log['steps']} steps, final loss {np.mean(clip_log['loss'][-20:]):.4f} "
      f"(took {clip_log['seconds']:.1f} s when it was built)")
fig = ch.figure(curves({"contrastive loss": clip_log["loss"]}, smooth=20, title="CLIP pretraining"), "clip_loss")
plt.show()

# %% [markdown]
# **Zero-shot retrieval on held-out scenes.** Scenes from a fresh seed range, one caption each.
# Image→text: rank all captions for each image; a caption of an identical scene also counts as a
# hit. Chance for R@1 is 1 in the number of scenes.

# %%
held_out = world.scenes(world.HELDOUT_START, eval_scenes)
held_captions = [world.caption(s, world.scene_rng(s.seed, 1)) for s in held_out]
image_emb = clip.encode_images(world.render_array(held_out, clip.image_size))
text_emb = clip.encode_texts(held_captions)
same_scene = torch.tensor([[a.keys == b.keys for b in held_out] for a in held_out])
i2t = recall_at_k(image_emb @ text_emb.T, same_scene, ks=(1, 5, 10))
t2i = recall_at_k(text_emb @ image_emb.T, same_scene, ks=(1, 5, 10))
print(f"{eval_scenes} held-out scenes (chance R@1 = {1 / eval_scenes:.4f})")
print(f"image->text  R@1 {i2t[1]:.4f}  R@5 {i2t[5]:.4f}  R@10 {i2t[10]:.4f}")
print(f"text->image  R@1 {t2i[1]:.4f}  R@5 {t2i[5]:.4f}  R@10 {t2i[10]:.4f}")
ch.record(clip_i2t_r1=i2t[1], clip_i2t_r5=i2t[5], clip_i2t_r10=i2t[10], clip_t2i_r1=t2i[1], clip_t2i_r5=t2i[5],
          clip_t2i_r10=t2i[10], clip_params=clip_params, clip_pretrain_seconds=clip_log["seconds"])

# %% [markdown]
# **What CLIP gets wrong.** For each image whose best caption is wrong, compare the two scenes: which
# attributes differ?

# %%
best = (image_emb @ text_emb.T).argmax(1)
mistakes = {"shape": 0, "colour": 0, "size": 0, "position": 0, "number of objects": 0}
for i, j in enumerate(best.tolist()):
    if same_scene[i, j]:
        continue
    truth, chosen = sorted(held_out[i].keys), sorted(held_out[j].keys)
    if len(truth) != len(chosen):
        mistakes["number of objects"] += 1
        continue
    for name, index in (("shape", [0]), ("colour", [1]), ("size", [2]), ("position", [3, 4])):
        mistakes[name] += any(tuple(t[k] for k in index) != tuple(c[k] for k in index)
                              for t, c in zip(truth, chosen) if t != c)
print("image->text mistakes by attribute (a mistake can involve several):")
for name, n in mistakes.items():
    print(f"  {name:18s} {n}")
queries = ["a red circle", "a big blue square at the top left", "a small triangle at the bottom right",
           "there is a large yellow triangle in the center and a little green circle at the top"]
strips = []
for q in queries:
    top = (clip.encode_texts([q]) @ image_emb.T)[0].topk(4).indices.tolist()
    strips += [np.asarray(world.render(held_out[k], clip.image_size)).repeat(3, 0).repeat(3, 1) for k in top]
labels = [f"{q} → #1" if r == 0 else f"#{r + 1}" for q in queries for r in range(4)]  # the whole query, once
fig = ch.figure(image_grid(strips, labels, cols=4, wrap=30, cell=1.9), "clip_retrieval")
plt.show()

# %% [markdown]
# ## The language model

# %%
lm = backbones.load_lm(lm_model, device=device)
lm_log = backbones.training_log(lm_model, device=device)
lm_params = sum(p.numel() for p in lm.model.parameters())
print(f"{lm_params:,} parameters, frozen: {backbones.is_frozen(lm.model)}; vocabulary {len(lm.tokenizer)} words; "
      f"context {lm.context_length} tokens")
print(f"pretraining: {lm_log['steps']} steps x {lm_log['tokens_per_step']:,} tokens, "
      f"final loss {np.mean(lm_log['loss'][-20:]):.4f} (took {lm_log['seconds']:.1f} s when it was built)")
fig = ch.figure(curves({"next-token loss": lm_log["loss"]}, smooth=20, title="LM pretraining (text only)"), "lm_loss")
plt.show()

# %% [markdown]
# **Held-out perplexity** of plain captions of held-out scenes, and **free samples**: the LM
# continues each caption opener (*there is …*, *we can see …*) by sampling at temperature 1; a sample
# counts as parsed if the strict recogniser accepts it as a sentence of the caption grammar.

# %%
nll, n_tokens = sequence_nll(lm, held_captions)
perplexity = float(np.exp(nll.sum() / n_tokens.sum()))
parse_rate, samples = caption_openers_parse_rate(lm, lm_samples, seed=seed)
print(f"held-out caption perplexity: {perplexity:.4f} (over {int(n_tokens.sum())} tokens)")
print(f"free samples accepted by the grammar: {parse_rate:.4f} of {lm_samples}")
for s in samples[:5]:
    print("  ", s)
ch.record(lm_heldout_ppl=perplexity, lm_sample_parse_rate=parse_rate, lm_params=lm_params,
          lm_pretrain_seconds=lm_log["seconds"], pretrain_seconds=clip_log["seconds"] + lm_log["seconds"])

# %% [markdown]
# ## Does the LM use its context?
#
# **Probe.** Take a caption of a held-out scene and measure the LM's loss on it, then on what
# follows it: the *very same* caption again, a *second caption of the same scene* (another template,
# another object order, other synonyms), or — the control — a caption of a *different* scene. An LM
# that reads its context finds a repetition far cheaper than the first statement, and a caption
# that contradicts what it has just read more expensive.

# %%
probe = context_probe(lm, held_out[:probe_texts + 1])
print(f"loss on the first caption:                    {probe['first']:.4f}")
print(f"loss on the same caption again:               {probe['repeat']:.4f}")
print(f"loss on another caption of the same scene:    {probe['paraphrase']:.4f}")
print(f"loss on a caption of a different scene:       {probe['different']:.4f}")
ch.record(probe_first_half_loss=probe["first"], probe_second_half_loss=probe["repeat"],
          probe_paraphrase_loss=probe["paraphrase"], probe_control_loss=probe["different"])

# %% [markdown]
# **What the LM knows from text alone.** Chapter 5 asks the model to answer visual questions and
# explain its answers in the prompt shape `q : … a : <answer> because …`. Given the scene's caption
# as *text* before the question, the frozen LM already answers and explains; without it, it can only
# guess. A bridge's job is to put the image where the caption was.

# %%
questions = [world.vqa_item(world.HELDOUT_START + i) for i in range(probe_texts)]
for with_caption, label in ((True, "context"), (False, "blind")):
    result = vqa_from_text(lm, questions, with_caption=with_caption)
    print(f"{'caption as context' if with_caption else 'no context':18s}: answer accuracy {result['answer_acc']:.4f}, "
          f"rationale true of the scene {result['rationale_acc']:.4f}")
    print(f"  e.g. {result['example']}")
    ch.record(**{f"lm_vqa_{label}_answer_acc": result["answer_acc"],
                 f"lm_vqa_{label}_rationale_acc": result["rationale_acc"]})

# %% [markdown]
# ## Real backbones are one profile away
#
# The same two functions load real checkpoints; nothing is downloaded here, and a missing
# checkpoint is an error that says what to download and where to put it:

# %%
for loader, name in ((backbones.load_clip, "ViT-L-14/openai"), (backbones.load_lm, "facebook/opt-6.7b")):
    try:
        loader(name)
    except backbones.BackboneNotFoundError as e:
        print(f"{loader.__name__}({name!r}) raises BackboneNotFoundError:")
        print(textwrap.fill(str(e), 100, initial_indent="  ", subsequent_indent="  "))

# %% [markdown]
# **What this shows.** The stand-in CLIP retrieves held-out scenes from their captions nearly
# always at rank 1 and always within the top five; its mistakes are mostly the shapes of small
# objects, a few pixels wide. The stand-in LM writes grammatical captions and *uses its context*:
# the same caption a second time costs it well under the first, a caption contradicting what it just
# read costs it far more — though a paraphrase is barely cheaper: it has learned to copy words, not
# yet to re-express a scene. Given a caption as text, it answers questions about the scene far more
# often than without it. (The smoke profile trains both for seconds; its numbers show only that the
# code runs.) Those are the properties the three methods rely on; from here on both models are frozen.
