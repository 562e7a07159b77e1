"""Critics for ILLUME-style feedback tuning (Brack et al., ICML 2023), and the log of their decisions.

The model samples several candidate rationales for an (image, question, answer) item; a critic keeps
the ones it prefers, and only those train the bridge. A critic is any object with
`judge(item, candidates) -> list[bool]`: one keep flag per candidate, so it may keep several or none.

- `RougeCritic` is the paper's simulated critic: ROUGE-L against the gold explanation. It is fuzzy: a
  rationale that changes one word of the gold one ("top" for "left") still passes.
- `WorldCritic` knows the microworld's truth, so it keeps exactly the rationales that are true of the
  scene and support the answer.
- `AcceptAllCritic` and `RandomCritic` are controls that do not judge: one keeps every candidate, the
  other keeps each at a given rate whatever it says. A loop run with them shows what the judging adds.
- A person judges in `critic_panel.CriticPanel`; `RecordedCritic` replays those decisions from a
  `DecisionLog`, and `LoggingCritic` writes a simulated critic's decisions in the same format, so one
  training loop reads either.
"""
from __future__ import annotations

import fcntl
import json
import os
import re
import socket
import sys
import threading
import weakref
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch

from . import world
from .world.vocab import NUMBER_WORDS, POSITION_PHRASES


@dataclass(frozen=True)
class FeedbackItem:
    item_id: str
    question: str
    answer: str
    explanation: str | None = None  # the gold rationale
    scene: world.Scene | None = None  # the microworld scene, where the item comes from one


def world_items(start: int, count: int) -> list[FeedbackItem]:
    """Microworld questions for seeds start .. start+count-1, with their gold rationales and scenes."""
    items = [world.vqa_item(seed) for seed in range(start, start + count)]
    return [FeedbackItem(str(it.seed), it.question, it.answer, it.rationale, it.scene) for it in items]


def vqax_items(records) -> list[FeedbackItem]:
    """VQA-X records (data.vqax.load_vqax) as items: the first of each record's explanations is gold."""
    return [FeedbackItem(str(r.question_id), r.question, r.answer, r.explanations[0] if r.explanations else None)
            for r in records]


def _require_candidates(item: FeedbackItem, candidates: list[str]) -> None:
    if not candidates:
        raise ValueError(f"item {item.item_id!r}: no candidate rationales to judge; sample at least one")


# ------------------------------------------------------------------------------ simulated critics


class RougeCritic:
    """Keeps a candidate whose ROUGE-L F-score against the gold explanation is >= threshold: the
    paper's simulated critic, computed by pycocoevalcap so that it is the metric the book reports.
    lowercase=True compares the texts lower-cased, as ILLUME's code does (critic_validation.ipynb,
    cells 2 and 4); microworld text is lower-case already."""

    def __init__(self, threshold: float = 0.7, lowercase: bool = False):
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"ROUGE-L threshold must be in [0, 1], got {threshold}")
        self.threshold = threshold
        self.lowercase = lowercase
        self.name = f"rouge-l>={threshold}" + (" lower-cased" if lowercase else "")

    def score(self, item: FeedbackItem, candidate: str) -> float:
        from pycocoevalcap.rouge.rouge import Rouge

        if item.explanation is None:
            raise ValueError(f"item {item.item_id!r} has no gold explanation, which the ROUGE critic compares against")
        texts = [candidate, item.explanation]
        # pycocoevalcap splits on single spaces: normalise the whitespace as the captioning metrics do.
        candidate, reference = (" ".join((t.lower() if self.lowercase else t).split()) for t in texts)
        return float(Rouge().calc_score([candidate], [reference]))

    def judge(self, item: FeedbackItem, candidates: list[str]) -> list[bool]:
        _require_candidates(item, candidates)
        return [self.score(item, c) >= self.threshold for c in candidates]


_YES_NO = ("yes", "no")
_WORLD_ANSWERS = frozenset(
    world.SHAPES + world.COLOUR_NAMES + world.SIZES + NUMBER_WORDS + _YES_NO + tuple(POSITION_PHRASES))
_AT_POSITION = re.compile(r"\bat the (" + "|".join(sorted(POSITION_PHRASES, key=len, reverse=True)) + r")\b")


def _asked(question: str) -> tuple:
    """The attributes by which the question names its object, as a claim key (shape, colour, size,
    row, col) with None where it says nothing: "the circle at the top", or only "at the top left"."""
    claims = world.parse(question).claims
    if claims:
        return claims[0].key
    at = _AT_POSITION.search(question)
    return (None, None, None, *POSITION_PHRASES[at.group(1)]) if at else (None,) * 5


def _about(claim: world.Claim, asked: tuple) -> bool:
    """True if the claim restates every attribute by which the question names its object."""
    return all(named is None or named == stated for named, stated in zip(asked, claim.key))


def _states(claim: world.Claim, answer: str) -> bool:
    if answer in POSITION_PHRASES:
        return (claim.row, claim.col) == POSITION_PHRASES[answer]
    return answer in (claim.shape, claim.colour, claim.size)


def supports_answer(rationale: str, question: str, answer: str) -> bool:
    """True if the rationale gives evidence for this answer to this question.

    Read through the world's parser rather than by matching words, so that "big" supports "large" and
    "at the top left" does not support "top". The evidence must be a claim about the object the
    question names ("the circle at the top"), stating the answer:
    - colour, shape, size, position: a positive claim with that attribute ("the circle ... is red");
    - count: exactly that many positive claims, and no other number of objects stated;
    - yes / no: a positive / a negated claim ("there is no red circle") about the asked object.
    """
    if answer not in _WORLD_ANSWERS:
        raise ValueError(f"{answer!r} is not a microworld answer; answers are shapes, colours, sizes, "
                         f"positions, the numbers {', '.join(NUMBER_WORDS)}, yes and no")
    parsed = world.parse(rationale)
    asked = _asked(question)
    claims = [c for c in parsed.claims if _about(c, asked)]
    if answer in _YES_NO:
        return any(c.negated == (answer == "no") for c in claims)
    if answer in NUMBER_WORDS:
        number = NUMBER_WORDS.index(answer)
        return sum(not c.negated for c in parsed.claims) == number and parsed.count in (None, number)
    return any(not c.negated and _states(c, answer) for c in claims)


class WorldCritic:
    """The exact critic the microworld allows: keeps a candidate iff every claim it makes is true of
    the item's scene and it supports the item's answer (`supports_answer`). Keeps every gold
    rationale; an upper bound on what a careful person could do."""

    name = "world"

    def judge(self, item: FeedbackItem, candidates: list[str]) -> list[bool]:
        _require_candidates(item, candidates)
        if item.scene is None:
            raise ValueError(f"item {item.item_id!r} has no scene: the world critic judges microworld items only")
        return [world.rationale_true(c, item.scene) and supports_answer(c, item.question, item.answer)
                for c in candidates]


class AcceptAllCritic:
    """Keeps every candidate: the loop then tunes on all the model's own samples (self-training)."""

    name = "accept-all"

    def judge(self, item: FeedbackItem, candidates: list[str]) -> list[bool]:
        _require_candidates(item, candidates)
        return [True] * len(candidates)


class RandomCritic:
    """Keeps each candidate with probability `rate`, blind to what it says: as many kept as a real
    critic at that acceptance rate would keep, chosen at random. Draws from `gen` (a seeded
    torch.Generator, e.g. repro.generator), so a run repeats."""

    def __init__(self, rate: float, gen: torch.Generator):
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"acceptance rate must be in [0, 1], got {rate}")
        self.rate = rate
        self.gen = gen
        self.name = f"random keeps {rate:.3f}"

    def judge(self, item: FeedbackItem, candidates: list[str]) -> list[bool]:
        _require_candidates(item, candidates)
        return (torch.rand(len(candidates), generator=self.gen) < self.rate).tolist()


# ------------------------------------------------------------------------------ the decision log


class DecisionLog:
    """An append-only JSON-lines file of critic decisions, one line per judged item and round:
    {"item_id", "round", "candidates", "kept" (indices into candidates), "critic", "time"}.

    Each decision is one write of one whole line, flushed to disk before `append` returns, so a crash
    loses at most the decision being made and never an earlier one; `pending` then says what is left
    to judge. A missing file is an empty log. Decisions are keyed by (item_id, round) and a second
    decision for the same key is refused.

    One writing process at a time: the first `append` (or `lock()`, which the panel calls when it
    opens) takes an exclusive lock on `<log>.lock` and keeps it until `close()`, until every
    DecisionLog of this process on that file is gone, or until the process ends (the OS drops the
    lock of a killed kernel, so there is never a stale lock to delete). Another process gets
    `LogBusy`, naming the file and the holder. Within one process the writers share the lock and
    each append re-reads the file under it, so a duplicate is refused, never written.
    """

    FIELDS = {"item_id": str, "round": int, "candidates": list, "kept": list, "critic": str, "time": str}

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self._cache: tuple[tuple, dict[int, dict[str, dict]]] | None = None  # (file stat, round -> id -> record)
        self._release: weakref.finalize | None = None  # set while this log holds the writer's lock

    def lock(self) -> None:
        """Makes this process the log's writer (idempotent); raises `LogBusy` if another process is."""
        if self._release is None:
            _hold(self.lock_path, self.path)
            # Released when this object goes, however it goes: a panel forgotten in a kernel keeps it.
            self._release = weakref.finalize(self, _unhold, self.lock_path)

    def close(self) -> None:
        """Stops writing: the lock goes once no other DecisionLog of this process writes to the file."""
        if self._release is not None:
            self._release()
            self._release = None

    def append(self, item_id: str, round: int, candidates: list[str], kept: list[int], critic: str) -> dict:
        """Records one decision and returns it; `kept` are indices into `candidates`."""
        record = {"item_id": item_id, "round": round, "candidates": list(candidates), "kept": list(kept),
                  "critic": critic, "time": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        problem = _problem(record)
        if problem:
            raise ValueError(f"decision for item {item_id!r}: {problem}")
        record["kept"].sort()
        self.lock()
        with _IN_PROCESS:  # the check and the write as one step, for every writer of this process
            by_round = self._by_round()
            if item_id in by_round.get(round, {}):
                raise ValueError(f"{self.path}: item {item_id!r} was already judged in round {round}; "
                                 f"judge only DecisionLog.pending(items, {round})")
            line = (json.dumps(record) + "\n").encode("utf-8")
            with open(self.path, "ab", buffering=0) as file:  # unbuffered: the line goes out in this one write
                if file.write(line) != len(line):
                    raise OSError(f"{self.path}: the decision for item {item_id!r} was written only in part")
                os.fsync(file.fileno())
            by_round.setdefault(round, {})[item_id] = record
            self._cache = (self._stat(), by_round)
        return record

    def decisions(self, round: int) -> dict[str, dict]:
        """The decisions of one round, by item id, in the order they were made."""
        return dict(self._by_round().get(round, {}))

    def done(self, item_ids: list[str], round: int) -> list[str]:
        judged = self._by_round().get(round, {})
        return [i for i in item_ids if i in judged]

    def pending(self, items: list[FeedbackItem], round: int) -> list[FeedbackItem]:
        """The items still to judge in this round, in their order: where a resumed session starts."""
        judged = self._by_round().get(round, {})
        return [it for it in items if it.item_id not in judged]

    def _stat(self) -> tuple | None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return None
        return stat.st_ino, stat.st_size, stat.st_mtime_ns

    def _by_round(self) -> dict[int, dict[str, dict]]:
        """The file's decisions, read again only when the file changed since the last read."""
        stat = self._stat()
        if self._cache is None or self._cache[0] != stat:
            self._cache = (stat, self._read() if stat else {})
        return self._cache[1]

    def _read(self) -> dict[int, dict[str, dict]]:
        lines = self.path.read_bytes().split(b"\n")
        if lines[-1]:
            raise ValueError(f"{self.path}, line {len(lines)}: the line is cut off (no newline at its end), so "
                             "the write that made it did not finish; delete that line to resume")
        by_round: dict[int, dict[str, dict]] = {}
        first_line = {}
        for number, raw in enumerate(lines[:-1], start=1):
            where = f"{self.path}, line {number}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise ValueError(f"{where}: not UTF-8 text ({error.reason} at byte {error.start}); the log holds "
                                 "only what the panel wrote: delete or fix that line") from None
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{where}: not valid JSON ({error})") from None
            problem = _problem(record)
            if problem:
                raise ValueError(f"{where}: {problem}")
            key = (record["item_id"], record["round"])
            if key in first_line:
                raise ValueError(f"{where}: item {key[0]!r} was already judged in round {key[1]} at line "
                                 f"{first_line[key]} (two writers at once?); delete line {number} to keep the "
                                 f"first decision, or line {first_line[key]} to keep this one, then open the "
                                 "log again")
            first_line[key] = number
            by_round.setdefault(record["round"], {})[record["item_id"]] = record
        return by_round


class LogBusy(OSError):
    """Another process is writing to this decision log."""


_IN_PROCESS = threading.Lock()
_HELD: dict[Path, list] = {}  # lock file -> [its open file, holding the flock; DecisionLogs writing through it]


def _hold(lock_path: Path, log_path: Path) -> None:
    with _IN_PROCESS:
        held = _HELD.get(lock_path)
        if held is None:
            lock_path.parent.mkdir(parents=True, exist_ok=True)
            file = open(lock_path, "a+", encoding="utf-8")
            try:
                fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                file.seek(0)
                holder = file.read().strip() or "another process"
                file.close()
                raise LogBusy(f"{log_path} is open for writing by {holder}, so this one does not write to it "
                              "(two writers would judge the same items twice). Judge there, or stop that "
                              f"process (its lock on {lock_path.name} goes with it) and open the log again") from None
            file.truncate(0)  # who holds it, for the message above; the flock itself is the lock
            file.write(f"process {os.getpid()} ({Path(sys.argv[0]).name or 'python'}) on {socket.gethostname()} "
                       f"since {datetime.now(timezone.utc).isoformat(timespec='seconds')}\n")
            file.flush()
            held = _HELD[lock_path] = [file, 0]
        held[1] += 1


def _unhold(lock_path: Path) -> None:
    with _IN_PROCESS:
        held = _HELD[lock_path]
        held[1] -= 1
        if held[1] == 0:
            del _HELD[lock_path]
            held[0].close()  # closing the file drops the flock


def _problem(record) -> str | None:
    """What is wrong with a decision record, or None: the one check for writing and reading."""
    if not isinstance(record, dict):
        return f"a decision is a JSON object, got {type(record).__name__}"
    for field, kind in DecisionLog.FIELDS.items():
        if field not in record:
            return f"missing key {field!r}; a decision has the keys {', '.join(DecisionLog.FIELDS)}"
        if not isinstance(record[field], kind) or isinstance(record[field], bool):
            return f"{field!r} must be of type {kind.__name__}, got {record[field]!r}"
    if not all(isinstance(c, str) for c in record["candidates"]):
        return f"'candidates' must be strings, got {record['candidates']!r}"
    indices = range(len(record["candidates"]))
    kept = record["kept"]
    if len(set(kept)) != len(kept) or not all(type(i) is int and i in indices for i in kept):
        return f"'kept' must be distinct indices into the {len(indices)} candidates, got {kept!r}"
    return None


# ------------------------------------------------------------------------------ logged critics


class RecordedCritic:
    """Replays the decisions recorded in a log for one round: a person's, made in the critic panel,
    so a training loop takes a human critic exactly as it takes a simulated one."""

    def __init__(self, log: DecisionLog, round: int):
        self.log = log
        self.round = round

    def judge(self, item: FeedbackItem, candidates: list[str]) -> list[bool]:
        _require_candidates(item, candidates)
        record = self.log.decisions(self.round).get(item.item_id)
        if record is None:
            raise LookupError(f"item {item.item_id!r} has no decision for round {self.round} in {self.log.path}; "
                              "judge it in the critic panel first")
        if record["candidates"] != list(candidates):
            raise ValueError(f"item {item.item_id!r}: the candidates differ from those judged in round "
                             f"{self.round} ({record['candidates']!r}), so the recorded decision does not apply")
        return [i in record["kept"] for i in range(len(candidates))]


class LoggingCritic:
    """Judges with a simulated critic and appends each decision to a log, in the panel's format."""

    def __init__(self, critic, log: DecisionLog, round: int):
        self.critic = critic
        self.log = log
        self.round = round
        self.name = getattr(critic, "name", type(critic).__name__)

    def judge(self, item: FeedbackItem, candidates: list[str]) -> list[bool]:
        keep = self.critic.judge(item, candidates)
        self.log.append(item.item_id, self.round, candidates, [i for i, k in enumerate(keep) if k], self.name)
        return keep
