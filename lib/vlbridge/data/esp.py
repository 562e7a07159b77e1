"""ESPER's ESP dataset of styled captions: COCO-style JSON, one `caption_<style>` field per style."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..world.export import ESP_CAPTION_FIELDS
from .coco import coco_images
from .errors import DataError
from .jsonfile import field, read_json


@dataclass(frozen=True)
class StyledRecord:
    image_id: int
    file_name: str
    captions: dict[str, str]  # style -> caption, only the styles the annotation has
    image_path: Path | None


def load_esp(json_path, image_dir=None) -> list[StyledRecord]:
    """One record per annotation, in file order. Real annotations carry varying subsets of the
    styles; `licenses` is `{}` in the real file, and is not read."""
    path = Path(json_path)
    data = read_json(path)
    images = coco_images(data, path, image_dir)
    records = []
    for i, annotation in enumerate(field(data, "annotations", path, "top level", list)):
        where = f"annotations[{i}]"
        image_id = field(annotation, "image_id", path, where, int)
        if image_id not in images:
            raise DataError(f"{path}: {where}: image_id {image_id} is not in 'images'")
        captions = {style: field(annotation, key, path, where, str)
                    for style, key in ESP_CAPTION_FIELDS.items() if key in annotation}
        name, image_path = images[image_id]
        records.append(StyledRecord(image_id, name, captions, image_path))
    return records
