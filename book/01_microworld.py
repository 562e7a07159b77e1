# %% [markdown]
# # 1. The microworld
#
# **Question.** Three papers taught a frozen language model to see: FROMAGe (<cite>Koh, Salakhutdinov
# & Fried, ICML 2023</cite>) with paired captions, ESPER (<cite>Yu, Chung et al., 2022</cite>) with a
# reward and no pairs at all, ILLUME (<cite>Brack et al., ICML 2023</cite>) with a critic's choices
# among the model's own explanations. Each used its own backbones, data and metrics, so they cannot
# be compared. This book runs all three on the same frozen backbones, the same data and the same
# metrics.
#
# **Why a microworld.** Nothing can be downloaded where this book is built and tested, and a reader
# should be able to run all of it on a laptop CPU in minutes. So the default profile replaces
# photographs with a procedural world whose truth is known exactly: small scenes of one to three
# coloured shapes, drawn from a seed. Because every scene is known, every caption a model writes can
# be *parsed back* into claims and checked — grounded precision and recall, which no benchmark built
# on real photographs can give. The same code reads real data: the world exports itself to the
# standard formats (COCO captions, CC3M, VIST, VisDial, VQA-X, ESPER's ESP), and the loaders that
# read those exports read the real files.
#
# This chapter shows what the world is; nothing here is trained.

# %%
import tempfile
from collections import Counter
from dataclasses import replace
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from vlbridge import data, world
from vlbridge.book.chapter import Chapter
from vlbridge.plots import image_grid, sound_figure
from vlbridge.world.export import EXPORT_FORMATS, export
from vlbridge.world.grammar import is_caption

# %% tags=["parameters"]
profile: str = "default"
seed: int = 0
threads: int = 2
device: str = "cpu"
image_size: int = 32  # what the stand-in CLIP sees
figure_scale: int = 4  # figures upsample images by this factor (nearest neighbour: pixels stay pixels)
grid_scenes: int = 12
stats_scenes: int = 2000  # scenes for the statistics and the parser check
export_scenes: int = 8

# %%
ch = Chapter("01_microworld", profile, seed=seed, threads=threads, device=device)

# %% [markdown]
# ## Scenes
#
# A scene is one to three objects on a 3x3 grid. Each object has a **shape** (circle, square,
# triangle), a **colour** (six), a **size** (small, large) and a **position** (the grid cell, in
# words: *top left*, *top*, …, *center*, …). Each object is also nudged within its cell and scaled a
# little — visual variety that no caption mentions. A scene is a pure function of its seed, so a
# data split is a seed range: training uses seeds below one million, evaluation fresh ranges above.

# %%
print(f"shapes:    {', '.join(world.SHAPES)}")
print(f"colours:   {', '.join(world.COLOUR_NAMES)}")
print(f"sizes:     {', '.join(world.SIZES)}")
print(f"positions: {', '.join(world.vocab.POSITION_PHRASES)}")
print(f"training seeds [0, {world.HELDOUT_START:,}); held-out seeds from {world.HELDOUT_START:,}; "
      f"test seeds from {world.TEST_START:,}")
first = world.sample_scene(seed)
for obj in first.objects:
    print(f"scene {seed}: {obj.size} {obj.colour} {obj.shape} at cell (row {obj.row}, col {obj.col})"
          f" = '{obj.position}'")


# %%
def big(scene, size=image_size):
    """A scene rendered at the model's resolution, upsampled for the page."""
    return np.asarray(world.render(scene, size)).repeat(figure_scale, 0).repeat(figure_scale, 1)


grid = world.scenes(seed, grid_scenes)
captions = [world.caption(s, world.scene_rng(s.seed, 1)) for s in grid]
fig = ch.figure(image_grid([big(s) for s in grid], captions, cols=4), "scenes")
plt.show()

# %% [markdown]
# ## Language: a caption grammar with paraphrase variety
#
# Captions come from a small grammar: every object gets its full phrase
# (*a big red circle at the top left*), joined in a random order, inside one of several templates,
# with synonyms for sizes and a choice of prepositions. The same scene has many captions:

# %%
for stream in range(6):
    print(world.caption(first, world.scene_rng(first.seed, 100 + stream)))

# %% [markdown]
# **The parser** reads a caption back into the objects it claims. On thousands of scenes it recovers
# every object of every caption exactly — this is what makes every later caption checkable.

# %%
check = world.scenes(world.HELDOUT_START, stats_scenes)
recovered = sum(world.parse(world.caption(s, world.scene_rng(s.seed, 1))).objects == s.keys for s in check)
styled_recovered = sum(world.parse(world.styled_caption(s, style, world.scene_rng(s.seed, 2))).objects == s.keys
                       for s in check for style in world.STYLES)
grammatical = sum(is_caption(world.caption(s, world.scene_rng(s.seed, 1))) for s in check)
print(f"plain captions parsed back exactly:  {recovered}/{len(check)}")
print(f"styled captions parsed back exactly: {styled_recovered}/{len(check) * len(world.STYLES)}")
print(f"captions the strict recogniser accepts: {grammatical}/{len(check)}")
example = world.caption(first, world.scene_rng(first.seed, 1))
print(f"\n{example!r} ->")
for claim in world.parse(example).claims:
    print(f"  {claim.size} {claim.colour} {claim.shape} at (row {claim.row}, col {claim.col})")
ch.record(parser_recovery=recovered / len(check),
          parser_recovery_styled=styled_recovered / (len(check) * len(world.STYLES)))

# %% [markdown]
# ## Five caption styles
#
# ESPER's ESP dataset asks for captions in five styles. The microworld has the same five: the same
# objects, in the voice of a news report, a blog, a story, an instruction and a social post. Each
# style keeps every object's full phrase, so a styled caption can be checked for content *and* style.

# %%
for style in world.STYLES:
    print(f"{style:12s} {world.styled_caption(first, style, world.scene_rng(first.seed, 3))}")

# %% [markdown]
# ## Stories, dialogues, questions with rationales
#
# **Stories** (VIST-like): five scenes where one thing changes per step. The first sentence
# describes the scene; each later one says only what changed — so the last sentence alone does not
# tell which picture it is, while the whole story does. Chapter 3 uses exactly this.

# %%
told = world.story(seed + 3)
fig = ch.figure(image_grid([big(s) for s in told.scenes], list(told.sentences), cols=5, wrap=24), "story")
plt.show()

# %% [markdown]
# **Dialogues** (VisDial-like): a brief caption naming one object, then ten question–answer rounds
# that reveal the rest. Answers restate the scene, which is also what teaches the language model to
# use its context (chapter 2).

# %%
talk = world.dialogue(seed + 5)
print(f"caption: {talk.caption}")
for q, a in talk.rounds:
    print(f"  q: {q:42s} a: {a}")
fig = ch.figure(image_grid([big(talk.scene)], [talk.caption], cols=1, cell=2.0), "dialogue_scene")
plt.show()

# %% [markdown]
# **Visual questions with a gold rationale** (VQA-X-like), in six kinds: colour, shape, position,
# size, count, existence. ILLUME's prompt shape is `q : … a : <answer> because <rationale>`, and a
# rationale is itself parseable, so a critic can check it against the scene.

# %%
for kind in world.VQA_KINDS:
    item = world.vqa_item(seed + 7, kind)
    print(f"[{kind:8s}] {world.vqa_prompt(item.question, item.answer)} {item.rationale}")
kinds = Counter(world.vqa_item(s.seed).kind for s in check)
print("\nkinds over", len(check), "items:", ", ".join(f"{k} {kinds[k]}" for k in world.VQA_KINDS))

# %% [markdown]
# ## Sound
#
# Every scene also sounds. Shape is pitch, size is loudness, left/right is the stereo pan, and
# top/middle/bottom is *when* the tone plays (first, second or last third of half a second).
# **Colour is silent.** ESPER captions audio zero-shot (chapter 4); here the sound can carry shape,
# size and position, never colour. Below: each channel's waveform and log-mel spectrogram
# (`transformers.audio_utils`), with the three slices of time marked, and a check that recolouring
# every object leaves the sound unchanged.

# %%
# a scene whose objects differ in row and in column, so that both timing and pan show
scene = next(s for s in world.scenes(seed + 2, 100) if len({o.row for o in s.objects}) > 1
             and len({o.col for o in s.objects}) > 1)
wave = world.render_sound(scene)
mel = world.log_mel(wave)
print("objects:", "; ".join(f"{o.size} {o.colour} {o.shape} at the {o.position}" for o in scene.objects))
print(f"waveform {wave.shape[0]} channels x {wave.shape[1]} samples at {world.SAMPLE_RATE} Hz; "
      f"log-mel {mel.shape[1]} bins x {mel.shape[2]} frames")
recoloured = scene.with_objects([replace(o, colour="white") for o in scene.objects])
difference = np.abs(world.render_sound(recoloured) - wave).max()
print(f"max |difference| after recolouring every object white: {difference:.1f}")
fig = ch.figure(sound_figure(wave, mel, world.SAMPLE_RATE, segments=("top row", "middle row", "bottom row")),
                "sound")
plt.show()

# %% [markdown]
# ## The same loaders for the microworld and for real data
#
# The world exports itself to the real datasets' formats, and `vlbridge.data` reads them back. The
# loaders are tested on excerpts of the real files too (COCO captions, CC3M TSV, VisDial v1.0, VQA-X
# in NLX-GPT's and ILLUME's layouts, ESPER's ESP), so switching to real data is a change of paths.

# %%
loaders = {
    "coco": lambda d: data.load_coco_captions(d / "captions.json", d / "images"),
    "cc3m": lambda d: data.load_cc3m_tsv(d / "cc3m.tsv", d / "images"),
    "vist": lambda d: data.load_vist_sis(d / "sis.json", d / "images"),
    "visdial": lambda d: data.load_visdial(d / "visdial.json", d / "images"),
    "vqax": lambda d: data.load_vqax(d / "vqax.json", d / "images"),
    "esp": lambda d: data.load_esp(d / "esp.json", d / "images"),
    "wav": lambda d: data.load_audio_captions(d / "audio.json", d / "audio"),
}
assert tuple(loaders) == EXPORT_FORMATS
with tempfile.TemporaryDirectory() as tmp:
    for fmt in EXPORT_FORMATS:
        folder = Path(tmp) / fmt
        files = export(fmt, folder, world.HELDOUT_START, export_scenes, image_size=image_size)
        records = loaders[fmt](folder)
        print(f"{fmt:8s} wrote {len(files):3d} files, read back {len(records)} records")

# %% [markdown]
# ## Statistics

# %%
counts = Counter(len(s.objects) for s in check)
lengths = [len(world.caption(s, world.scene_rng(s.seed, 1)).split()) for s in check]
words = {w for s in check for w in world.caption(s, world.scene_rng(s.seed, 1)).split()}
print("objects per scene:", ", ".join(f"{n}: {counts[n] / len(check):.3f}" for n in sorted(counts)))
print(f"caption length in words: mean {np.mean(lengths):.2f}, max {max(lengths)}")
print(f"distinct words in {len(check)} plain captions: {len(words)}")
ch.record(objects_per_scene={str(n): counts[n] / len(check) for n in sorted(counts)},
          caption_words_mean=float(np.mean(lengths)), caption_vocabulary=len(words))

# %% [markdown]
# **What this shows.** The world is small enough to know completely and rich enough to need
# grounding: a caption must get four attributes of up to three objects right, and a story or a
# dialogue must be read as a whole. Chapter 2 pretrains the two frozen backbones on it — a CLIP on
# images and captions, a language model on text alone.
