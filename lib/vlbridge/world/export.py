"""The microworld written out in the standard dataset formats (COCO captions, CC3M TSV, VIST SIS,
VisDial 1.0, VQA-X, ESPER's ESP, WAV audio), so that `vlbridge.data` reads microworld exports
with the same loaders, and in the same schemas, as the real datasets.

An export is staged in a temporary sibling of the output folder and moved into place only when
every file has been written: a failure leaves nothing half-written.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from .language import caption, styled_caption
from .narrative import dialogue, story, vqa_item
from .render import render
from .scene import Scene, sample_scene, scene_rng
from .sound import SAMPLE_RATE, render_sound, write_wav
from .vocab import STYLES

EXPORT_FORMATS = ("coco", "cc3m", "vist", "visdial", "vqax", "esp", "wav")

# Random streams of a scene seed used here (0 is the scene itself, 11-13 the narratives).
CAPTION_STREAM = 100  # caption k of a scene is drawn from stream CAPTION_STREAM + k
STYLE_STREAM = 200  # its caption in STYLES[i] from stream STYLE_STREAM + i
OPTIONS_STREAM = 300  # the VisDial answer options of its dialogue
VISDIAL_OPTIONS = 100
VQAX_ANSWERS = 10  # VQA-X has ten annotator answers per question; the microworld's ten agree

_INFO = {"description": "vlbridge microworld", "url": "", "version": "1.0", "year": 2025,
         "contributor": "vlbridge", "date_created": ""}

# Microworld style name -> ESP field; ESP calls the social-media style 'sns'.
ESP_CAPTION_FIELDS = {
    "news": "caption_news",
    "blog": "caption_blog",
    "story": "caption_story",
    "instruction": "caption_instruction",
    "social": "caption_sns",
}


def image_name(seed: int) -> str:
    return f"microworld_{seed:08d}.png"


def scene_captions(seed: int, count: int) -> list[str]:
    """The `count` plain captions an export gives scene `seed`, each from its own stream."""
    scene = sample_scene(seed)
    return [caption(scene, scene_rng(seed, CAPTION_STREAM + k)) for k in range(count)]


def scene_styled_captions(seed: int) -> dict[str, str]:
    """Scene `seed`'s caption in each style, as in the ESP export."""
    scene = sample_scene(seed)
    return {style: styled_caption(scene, style, scene_rng(seed, STYLE_STREAM + i)) for i, style in enumerate(STYLES)}


@dataclass(frozen=True)
class _Job:
    """One export in progress: what to write, and the staging folder to write it to."""

    stage: Path
    seeds: range
    image_size: int
    captions_per_image: int

    def image(self, name: str, scene: Scene) -> None:
        path = self.stage / "images" / name
        path.parent.mkdir(exist_ok=True)
        render(scene, self.image_size).save(path, format="PNG")

    def scene_image(self, seed: int) -> str:
        """Renders scene `seed` to images/ and returns its file name."""
        self.image(image_name(seed), sample_scene(seed))
        return image_name(seed)

    def coco_image(self, seed: int) -> dict:
        """Renders scene `seed` and returns its COCO `images` record."""
        return {"license": 1, "file_name": self.scene_image(seed), "coco_url": "", "height": self.image_size,
                "width": self.image_size, "date_captured": "", "flickr_url": "", "id": seed}

    def json(self, name: str, obj) -> None:
        (self.stage / name).write_text(json.dumps(obj), encoding="utf-8")


def _coco(job: _Job) -> None:
    images, annotations = [], []
    for seed in job.seeds:
        images.append(job.coco_image(seed))
        for k, text in enumerate(scene_captions(seed, job.captions_per_image)):
            annotations.append({"image_id": seed, "id": seed * job.captions_per_image + k, "caption": text})
    licenses = [{"url": "", "id": 1, "name": "procedurally generated (vlbridge microworld)"}]
    job.json("captions.json", {"info": _INFO, "images": images, "licenses": licenses, "annotations": annotations})


def _cc3m(job: _Job) -> None:
    # FROMAGe's layout: a header, then caption and the image's file stem.
    rows = ["caption\timage"]
    for seed in job.seeds:
        rows.append(f"{scene_captions(seed, 1)[0]}\t{Path(job.scene_image(seed)).stem}")
    (job.stage / "cc3m.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")


def _raw_text(sentence: str) -> str:
    """VIST keeps the untokenised sentence too: 'Then the square turns green.'"""
    text = re.sub(r" ([.,!?:])", r"\1", sentence)
    return text[:1].upper() + text[1:]


def _vist(job: _Job) -> None:
    images, annotations, albums = [], [], []
    for seed in job.seeds:
        told = story(seed)
        album = str(seed)
        # VIST names image files by a numeric photo id; seed * 10 + step is unique (5 steps).
        photos = [str(seed * 10 + step) for step in range(len(told.scenes))]
        for step, (scene, sentence, photo) in enumerate(zip(told.scenes, told.sentences, photos)):
            job.image(f"{photo}.png", scene)
            images.append({"datetaken": "", "license": "", "title": "", "text": "", "album_id": album,
                           "longitude": "", "url_o": "", "secret": "", "media": "photo", "latitude": "",
                           "id": photo, "tags": "microworld"})
            annotations.append([{"original_text": _raw_text(sentence), "album_id": album, "photo_flickr_id": photo,
                                 "setting": "microworld", "worker_id": "microworld", "story_id": album,
                                 "tier": "story-in-sequence", "worker_arranged_photo_order": step,
                                 "text": sentence, "storylet_id": photo}])
        albums.append({"description": "", "title": f"microworld story {seed}", "farm": "", "date_update": "",
                       "primary": photos[0], "server": "", "date_create": "", "photos": str(len(photos)),
                       "secret": "", "owner": "", "vist_label": "microworld", "id": album})
    job.json("sis.json", {"images": images, "annotations": annotations, "albums": albums})


def _visdial_text(text: str) -> str:
    """VisDial stores questions without '?' and answers without a final period."""
    return text.removesuffix(" ?").removesuffix(" .")


def _visdial(job: _Job) -> None:
    dialogues = [dialogue(seed) for seed in job.seeds]
    questions: dict[str, int] = {}  # text -> index, in order of first use
    answers: dict[str, int] = {}
    for d in dialogues:
        for _, a in d.rounds:
            answers.setdefault(_visdial_text(a), len(answers))
    # Too few distinct answers for 100 options: add those of the dialogues that follow the range
    # (the grammar has thousands, so this ends after a few).
    extra = job.seeds.stop
    while len(answers) < VISDIAL_OPTIONS:
        for _, a in dialogue(extra).rounds:
            answers.setdefault(_visdial_text(a), len(answers))
        extra += 1
    dialogs = []
    for d in dialogues:
        rng = scene_rng(d.seed, OPTIONS_STREAM)
        rounds = []
        for q, a in d.rounds:
            true = answers[_visdial_text(a)]
            # 99 distinct wrong options: draw from the pool without the true answer, then shift past it.
            others = [int(i) + int(i >= true) for i in rng.choice(len(answers) - 1, VISDIAL_OPTIONS - 1, replace=False)]
            gt_index = int(rng.integers(VISDIAL_OPTIONS))
            rounds.append({"question": questions.setdefault(_visdial_text(q), len(questions)), "answer": true,
                           "gt_index": gt_index, "answer_options": others[:gt_index] + [true] + others[gt_index:]})
        job.scene_image(d.seed)
        dialogs.append({"image_id": d.seed, "caption": d.caption, "dialog": rounds})
    job.json("visdial.json", {"version": "1.0", "split": "microworld",
                              "data": {"dialogs": dialogs, "questions": list(questions), "answers": list(answers)}})


def _vqax(job: _Job) -> None:
    entries = {}
    for seed in job.seeds:
        item = vqa_item(seed)
        answers = [{"answer": item.answer, "answer_confidence": "yes", "answer_id": i + 1} for i in range(VQAX_ANSWERS)]
        entries[str(seed)] = {"question": item.question, "answers": answers, "image_id": str(seed),
                              "image_name": job.scene_image(seed), "explanation": [item.rationale]}
    job.json("vqax.json", entries)


def _esp(job: _Job) -> None:
    images, annotations = [], []
    for seed in job.seeds:
        images.append(job.coco_image(seed))
        styled = scene_styled_captions(seed)
        annotations.append({"image_id": seed, "id": seed,
                            **{ESP_CAPTION_FIELDS[style]: text for style, text in styled.items()}})
    info = {**_INFO, "changelog": ""}  # ESP's info has one key more than COCO's
    job.json("esp.json", {"info": info, "images": images, "licenses": {}, "annotations": annotations})


def _wav(job: _Job) -> None:
    (job.stage / "audio").mkdir()
    entries = []
    for seed in job.seeds:
        name = Path(image_name(seed)).with_suffix(".wav").name
        write_wav(job.stage / "audio" / name, render_sound(sample_scene(seed)), SAMPLE_RATE)
        entries.append({"seed": seed, "file_name": name, "caption": scene_captions(seed, 1)[0]})
    job.json("audio.json", entries)


_WRITERS = {"coco": _coco, "cc3m": _cc3m, "vist": _vist, "visdial": _visdial, "vqax": _vqax, "esp": _esp, "wav": _wav}
assert tuple(_WRITERS) == EXPORT_FORMATS


def _publish(stage: Path, out_dir: Path) -> list[Path]:
    """Moves the staged files into `out_dir`: in one rename when it does not exist yet, else file
    by file, keeping what other exports put there (formats may share images/)."""
    files = sorted(p.relative_to(stage) for p in stage.rglob("*") if p.is_file())
    if not out_dir.exists():
        os.replace(stage, out_dir)
    else:
        for relative in files:
            (out_dir / relative).parent.mkdir(parents=True, exist_ok=True)
            os.replace(stage / relative, out_dir / relative)
    return [out_dir / relative for relative in files]


def export(fmt: str, out_dir, start: int, count: int, image_size: int = 32, captions_per_image: int = 5) -> list[Path]:
    """Writes the scenes with seeds [start, start + count) in format `fmt` under `out_dir`;
    returns the paths written."""
    if fmt not in _WRITERS:
        raise ValueError(f"unknown export format {fmt!r}; formats are {', '.join(EXPORT_FORMATS)}")
    if start < 0 or count < 1 or image_size < 1 or captions_per_image < 1:
        raise ValueError(f"need start >= 0 and count, image_size, captions_per_image >= 1; got start={start}, "
                         f"count={count}, image_size={image_size}, captions_per_image={captions_per_image}")
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    # A sibling, so that the final moves stay on one file system and are renames; made with mkdir,
    # not mkdtemp, so that it gets the usual permissions when it becomes out_dir.
    stage = out_dir.parent / f".{out_dir.name}.export-{uuid.uuid4().hex}"
    stage.mkdir()
    try:
        _WRITERS[fmt](_Job(stage, range(start, start + count), image_size, captions_per_image))
        return _publish(stage, out_dir)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
