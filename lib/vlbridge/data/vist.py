"""VIST story-in-sequence (SIS) JSON: stories of photo-aligned sentences."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import DataError
from .images import image_file
from .jsonfile import field, read_json


@dataclass(frozen=True)
class StoryRecord:
    story_id: str
    sentences: tuple[str, ...]  # the tokenised, lower-cased `text` of each annotation
    image_ids: tuple[str, ...]  # photo_flickr_id per sentence
    image_paths: tuple[Path, ...] | None  # None unless the loader was given an image folder


def load_vist_sis(json_path, image_dir=None) -> list[StoryRecord]:
    """Stories in order of first appearance, sentences by worker_arranged_photo_order. Each
    `annotations` item is a one-element list; VIST image files are named by photo id."""
    path = Path(json_path)
    data = read_json(path)
    stories: dict[str, list[tuple[int, str, str]]] = {}
    for i, item in enumerate(field(data, "annotations", path, "top level", list)):
        where = f"annotations[{i}]"
        if not (isinstance(item, list) and len(item) == 1):
            raise DataError(f"{path}: {where}: expected a one-element list holding an annotation")
        annotation = item[0]
        story_id = field(annotation, "story_id", path, where, str)
        order = field(annotation, "worker_arranged_photo_order", path, where, int)
        text = field(annotation, "text", path, where, str)
        photo = field(annotation, "photo_flickr_id", path, where, str)
        stories.setdefault(story_id, []).append((order, text, photo))
    records = []
    for story_id, steps in stories.items():
        steps.sort(key=lambda step: step[0])
        photos = tuple(photo for _, _, photo in steps)
        paths = None if image_dir is None else tuple(
            image_file(image_dir, photo, path, f"story {story_id}") for photo in photos)
        records.append(StoryRecord(story_id, tuple(text for _, text, _ in steps), photos, paths))
    return records
