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

# ILLUME rows carry only a COCO image id: VQA-X's test and val questions are about COCO val2014
# images, its train questions about train2014 ones (ILLUME's vqax_magma_eval.py names them so).
ILLUME_IMAGE_NAME = "COCO_val2014_{:012d}.jpg"
ILLUME_TRAIN_IMAGE_NAME = "COCO_train2014_{:012d}.jpg"
ILLUME_EXPLANATIONS = ("explanation", "explanation_2", "explanation_3")  # the first is every row's; pandas
# writes null in the others where a question has fewer (VQA-X train gives one explanation, test three)


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


def _explanations(texts: list, path: Path, where: str) -> tuple[str, ...]:
    """The explanations of one question, each checked to be text: they are the gold rationales that
    the critic compares samples with and SFT trains on, so a number or a null must not slip in."""
    if not texts:
        raise DataError(f"{path}: {where}: no explanation (VQA-X gives every question at least one)")
    for i, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{path}: {where}: explanation {i + 1} should be non-empty text, got {text!r}")
    return tuple(texts)


def _nlx_records(data: dict, path: Path, image_dir) -> list[VQAXRecord]:
    records = []
    for key, entry in data.items():
        where = f"question {key}"
        if not (key.isascii() and key.isdigit()):  # isdigit alone takes '²', which int() refuses
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
            explanations=_explanations(field(entry, "explanation", path, where, list), path, where),
            image_path=_image_path(image_dir, name, path, where),
        ))
    return records


def _illume_records(data: dict, path: Path, image_dir) -> list[VQAXRecord]:
    def column(name: str) -> dict:
        return field(data, name, path, "top level", dict)

    def cell(name: str, label: str, kind: type):
        return field(column(name), label, path, f"column {name!r}", kind)

    # Without the first column, explanation_2 would quietly become the first explanation.
    if ILLUME_EXPLANATIONS[0] not in data:
        raise DataError(f"{path}: no {ILLUME_EXPLANATIONS[0]!r} column, which holds every row's first explanation "
                        f"(the file has columns {', '.join(map(repr, data))})")
    extra = [c for c in ILLUME_EXPLANATIONS[1:] if c in data]
    records = []
    for label in column("question_id"):
        image_id = cell("image_id", label, int)
        where = f"row {label!r}"
        name = _illume_image_name(image_id, image_dir, path, where)
        more = [cell(c, label, (str, type(None))) for c in extra]
        records.append(VQAXRecord(
            question_id=cell("question_id", label, int),
            image_id=str(image_id),
            image_name=name,
            question=cell("question", label, str),
            answer=cell("multiple_choice_answer", label, str),
            explanations=_explanations([cell(ILLUME_EXPLANATIONS[0], label, str),
                                        *(text for text in more if text is not None)], path, where),
            image_path=_image_path(image_dir, name, path, where),
        ))
    return records


def _illume_image_name(image_id: int, image_dir, path: Path, where: str) -> str:
    """The COCO file name of an ILLUME row's image: the val2014 one, or the train2014 one where the
    image folder has that instead (the train split's; COCO ids are unique across the two)."""
    names = (ILLUME_IMAGE_NAME.format(image_id), ILLUME_TRAIN_IMAGE_NAME.format(image_id))
    if image_dir is None:
        return names[0]
    for name in names:
        if (Path(image_dir) / name).is_file():
            return name
    raise DataError(f"{path}: {where}: image file not found: neither {Path(image_dir) / names[0]} nor {names[1]}")


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
