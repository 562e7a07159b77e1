"""COCO captions JSON (`captions_val2014.json` and the microworld's `captions.json`)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import DataError
from .images import image_file
from .jsonfile import field, read_json


@dataclass(frozen=True)
class CaptionRecord:
    image_id: int
    file_name: str
    captions: tuple[str, ...]
    image_path: Path | None  # None unless the loader was given an image folder


def coco_images(data, path: Path, image_dir) -> dict[int, tuple[str, Path | None]]:
    """The `images` list of a COCO-style file (COCO captions, ESP) as id -> (file_name, image path)."""
    images = {}
    for i, image in enumerate(field(data, "images", path, "top level", list)):
        where = f"images[{i}]"
        image_id = field(image, "id", path, where, int)
        name = field(image, "file_name", path, where, str)
        if image_id in images:
            raise DataError(f"{path}: {where}: image id {image_id} appears twice in 'images'")
        images[image_id] = (name, None if image_dir is None else image_file(image_dir, name, path, where))
    return images


def load_coco_captions(json_path, image_dir=None) -> list[CaptionRecord]:
    """One record per image, in the file's image order, with all its captions in annotation order.
    Captions lose surrounding whitespace (real COCO captions often end in a space)."""
    path = Path(json_path)
    data = read_json(path)
    images = coco_images(data, path, image_dir)
    captions: dict[int, list[str]] = {image_id: [] for image_id in images}
    for i, annotation in enumerate(field(data, "annotations", path, "top level", list)):
        where = f"annotations[{i}]"
        image_id = field(annotation, "image_id", path, where, int)
        if image_id not in captions:
            raise DataError(f"{path}: {where}: image_id {image_id} is not in 'images'")
        captions[image_id].append(field(annotation, "caption", path, where, str).strip())
    return [CaptionRecord(image_id, name, tuple(captions[image_id]), image_path)
            for image_id, (name, image_path) in images.items()]
