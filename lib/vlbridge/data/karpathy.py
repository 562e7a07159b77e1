"""The COCO Karpathy split (`dataset_coco.json`, as ESPER and ClipCap read it): one entry per COCO
image with its folder (train2014/val2014), its split and its tokenized and raw captions.

Karpathy's splits: 5,000 "val" and 5,000 "test" images taken from COCO val2014, the rest of val2014
as "restval", and all of train2014 as "train"; training uses train + restval."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import DataError
from .images import image_file
from .jsonfile import field, read_json

KARPATHY_SPLITS = ("train", "restval", "val", "test")
KARPATHY_TRAIN = ("train", "restval")


@dataclass(frozen=True)
class KarpathyRecord:
    cocoid: int
    file_name: str  # e.g. "COCO_val2014_000000391895.jpg"
    split: str  # one of KARPATHY_SPLITS
    captions: tuple[str, ...]  # the sentences' raw text, without surrounding whitespace
    image_path: Path | None  # image_root/filepath/file_name; None unless the loader was given image_root


def _checked_splits(splits) -> tuple[str, ...]:
    wanted = (splits,) if isinstance(splits, str) else tuple(splits)
    unknown = [s for s in wanted if s not in KARPATHY_SPLITS]
    if not wanted or unknown:
        raise ValueError(f"splits must be some of {', '.join(KARPATHY_SPLITS)} (Karpathy's training set is "
                         f"train + restval), got {splits!r}")
    return wanted


def load_karpathy(json_path, image_root=None, splits=KARPATHY_TRAIN) -> list[KarpathyRecord]:
    """One record per image of the wanted `splits`, in file order. Every entry of the file is checked
    (keys, types, split names); image files only for the wanted ones, under
    image_root/<filepath>/<filename> (image_root holds train2014/ and val2014/)."""
    wanted = _checked_splits(splits)
    path = Path(json_path)
    data = read_json(path)
    records, seen = [], {}
    for i, image in enumerate(field(data, "images", path, "top level", list)):
        where = f"images[{i}]"
        split = field(image, "split", path, where, str)
        if split not in KARPATHY_SPLITS:
            raise DataError(f"{path}: {where}: key 'split' should be one of {', '.join(KARPATHY_SPLITS)}, "
                            f"got {split!r}")
        cocoid = field(image, "cocoid", path, where, int)
        if cocoid in seen:
            raise DataError(f"{path}: {where}: cocoid {cocoid} appears twice (also images[{seen[cocoid]}])")
        seen[cocoid] = i
        folder = field(image, "filepath", path, where, str)
        name = field(image, "filename", path, where, str)
        captions = tuple(field(sentence, "raw", path, f"{where}, sentences[{j}]", str).strip()
                         for j, sentence in enumerate(field(image, "sentences", path, where, list)))
        if split not in wanted:
            continue
        image_path = None if image_root is None else image_file(Path(image_root) / folder, name, path, where)
        records.append(KarpathyRecord(cocoid, name, split, captions, image_path))
    return records
