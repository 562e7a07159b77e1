"""VisDial 1.0 JSON: dialogs whose questions, answers and answer options are indices into two
shared string lists."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import DataError
from .images import images_by_id
from .jsonfile import field, is_int, read_json


@dataclass(frozen=True)
class Round:
    question: str
    answer: str
    options: tuple[str, ...]  # the 100 candidate answers; options[gt_index] == answer
    gt_index: int


@dataclass(frozen=True)
class DialogRecord:
    image_id: int
    caption: str
    rounds: tuple[Round, ...]
    image_path: Path | None  # None unless the loader was given an image folder


def _lookup(strings: list, index, path: Path, where: str, name: str) -> str:
    if not is_int(index):
        raise DataError(f"{path}: {where}: {name} index should be an int, got {index!r}")
    if not 0 <= index < len(strings):
        raise DataError(f"{path}: {where}: {name} index {index!r} out of range "
                        f"(the file has {len(strings)} {name}s)")
    return strings[index]


def load_visdial(json_path, image_dir=None) -> list[DialogRecord]:
    """Dialogs in file order with every index resolved to its string. Keys are looked up by name
    (the real files differ in key order). Image files are found by the id their name ends with."""
    path = Path(json_path)
    data = field(read_json(path), "data", path, "top level", dict)
    questions = field(data, "questions", path, "data", list)
    answers = field(data, "answers", path, "data", list)
    files = None if image_dir is None else images_by_id(image_dir)
    records = []
    for d, dialog in enumerate(field(data, "dialogs", path, "data", list)):
        image_id = field(dialog, "image_id", path, f"dialog {d}", int)
        where = f"dialog {d} (image_id {image_id})"
        rounds = []
        for r, turn in enumerate(field(dialog, "dialog", path, where, list)):
            at = f"{where}, round {r}"
            options = tuple(_lookup(answers, i, path, at, "answer")
                            for i in field(turn, "answer_options", path, at, list))
            gt_index = field(turn, "gt_index", path, at, int)
            answer = _lookup(answers, field(turn, "answer", path, at), path, at, "answer")
            if options and _lookup(options, gt_index, path, at, "answer option") != answer:
                raise DataError(f"{path}: {at}: answer_options[gt_index] is not the answer")
            question = _lookup(questions, field(turn, "question", path, at), path, at, "question")
            rounds.append(Round(question, answer, options, gt_index))
        image_path = None
        if files is not None:
            if image_id not in files:
                raise DataError(f"{path}: {where}: no image file for id {image_id} in {image_dir}")
            image_path = files[image_id]
        records.append(DialogRecord(image_id, field(dialog, "caption", path, where, str), tuple(rounds), image_path))
    return records
