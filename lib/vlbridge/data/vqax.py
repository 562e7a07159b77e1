"""VQA-X: questions with answers and explanations, in NLX-GPT's record format
({question_id: {question, answers, image_id, image_name, explanation}}) or ILLUME's pandas column
layout ({column: {row_label: value}}); the layout is read off the file's structure."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from .errors import DataError
from .images import image_file
from .jsonfile import field, read_json

# ILLUME rows carry only a COCO image id; its VQA-X splits come from COCO val2014.
ILLUME_IMAGE_NAME = "COCO_val2014_{:012d}.jpg"
ILLUME_EXPLANATIONS = ("explanation", "explanation_2", "explanation_3")


@dataclass(frozen=True)
class VQAXRecord:
    question_id: int
    image_id: str
    image_name: str
    question: str
    answer: str  # the most common of the annotators' answers (ILLUME: multiple_choice_answer)
    explanations: tuple[str, ...]
    image_path: Path | None  # None unless the loader was given an image folder


def _image_path(image_dir, name: str, path: Path, where: str) -> Path | None:
    return None if image_dir is None else image_file(image_dir, name, path, where)


def _nlx_records(data: dict, path: Path, image_dir) -> list[VQAXRecord]:
    records = []
    for key, entry in data.items():
        where = f"question {key}"
        if not key.isdigit():
            raise DataError(f"{path}: {where}: expected a numeric question id as the key")
        answers = [field(a, "answer", path, f"{where}, answers[{i}]", str)
                   for i, a in enumerate(field(entry, "answers", path, where, list))]
        if not answers:
            raise DataError(f"{path}: {where}: 'answers' is empty")
        name = field(entry, "image_name", path, where, str)
        records.append(VQAXRecord(
            question_id=int(key),
            image_id=field(entry, "image_id", path, where, str),
            image_name=name,
            question=field(entry, "question", path, where, str),
            answer=Counter(answers).most_common(1)[0][0],  # ties: the first given
            explanations=tuple(field(entry, "explanation", path, where, list)),
            image_path=_image_path(image_dir, name, path, where),
        ))
    return records


def _illume_records(data: dict, path: Path, image_dir) -> list[VQAXRecord]:
    def column(name: str) -> dict:
        return field(data, name, path, "top level", dict)

    def cell(name: str, label: str, kind: type):
        return field(column(name), label, path, f"column {name!r}", kind)

    records = []
    for label in column("question_id"):
        image_id = cell("image_id", label, int)
        name = ILLUME_IMAGE_NAME.format(image_id)
        records.append(VQAXRecord(
            question_id=cell("question_id", label, int),
            image_id=str(image_id),
            image_name=name,
            question=cell("question", label, str),
            answer=cell("multiple_choice_answer", label, str),
            # pandas writes a missing explanation as null
            explanations=tuple(data[c][label] for c in ILLUME_EXPLANATIONS
                               if isinstance(data.get(c), dict) and data[c].get(label)),
            image_path=_image_path(image_dir, name, path, f"row {label}"),
        ))
    return records


def load_vqax(json_path, image_dir=None) -> list[VQAXRecord]:
    path = Path(json_path)
    data = read_json(path)
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object (NLX-GPT records or ILLUME columns), "
                        f"got {type(data).__name__}")
    # ILLUME's 'question' is a column (a dict of rows); NLX-GPT has no such top-level key.
    if isinstance(data.get("question"), dict):
        return _illume_records(data, path, image_dir)
    return _nlx_records(data, path, image_dir)
