"""The ILLUME critics and their decision log: the ROUGE critic is fuzzy where the world critic is exact,
the world critic keeps every gold rationale and rejects false or unsupporting ones, the log survives
a crash and says what is left to judge, and the human panel records clicks and resumes after a restart."""
import json
import os
import subprocess
import sys
import textwrap
from datetime import datetime

import numpy as np
import pytest

from vlbridge import world
from vlbridge.critic_panel import CriticPanel
from vlbridge.critics import (
    AcceptAllCritic,
    DecisionLog,
    FeedbackItem,
    LogBusy,
    LoggingCritic,
    RandomCritic,
    RecordedCritic,
    RougeCritic,
    WorldCritic,
    supports_answer,
    world_items,
)
from vlbridge.repro import generator
from vlbridge.world import rationale_true

# A small red square at the top, a large blue square at the left, a small green circle at the bottom right.
SCENE = world.Scene((world.WorldObject("square", "red", "small", 0, 1),
                     world.WorldObject("square", "blue", "large", 1, 0),
                     world.WorldObject("circle", "green", "small", 2, 2)))
COLOUR_ITEM = FeedbackItem("colour", "what colour is the square at the top ?", "red",
                           "the square at the top is red", SCENE)


def decision_lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# ------------------------------------------------------------------------------ ROUGE critic


@pytest.mark.parametrize("candidate, expected", [
    ("the square at the top is red", 1.0),
    ("the  square at the top is red ", 1.0),  # whitespace does not count
    ("the square at the left is red", 0.857),  # one word of seven changed
])
def test_rouge_scores_known_pairs(candidate, expected):
    assert RougeCritic().score(COLOUR_ITEM, candidate) == pytest.approx(expected, abs=1e-3)


def test_rouge_rejects_shuffled_and_different_sentences():
    critic = RougeCritic(threshold=0.7)
    shuffled, different = "red is top the at square the", "there is no green circle"
    assert critic.score(COLOUR_ITEM, shuffled) < 0.7 and critic.score(COLOUR_ITEM, different) < 0.7
    assert critic.judge(COLOUR_ITEM, ["the square at the top is red", shuffled, different]) == [True, False, False]


def test_the_lowercase_option_compares_texts_as_illume_s_code_does():
    """ILLUME's critic lower-cases both texts (critic_validation.ipynb, cells 2 and 4); by default case counts."""
    item = FeedbackItem("q9", "what is he doing ?", "surfing", "The Man Rides A Wave")
    candidate = "the man rides a wave"
    assert RougeCritic().score(item, candidate) == 0.0  # no word in common as written
    assert RougeCritic(lowercase=True).score(item, candidate) == 1.0
    assert RougeCritic(0.7).judge(item, [candidate]) == [False]
    assert RougeCritic(0.7, lowercase=True).judge(item, [candidate]) == [True]
    assert RougeCritic(0.7, lowercase=True).name == "rouge-l>=0.7 lower-cased"


def test_a_fuzzy_critic_lets_a_wrong_rationale_through_and_the_world_critic_does_not():
    wrong = "the square at the left is red"  # the square at the left is blue
    assert RougeCritic().judge(COLOUR_ITEM, [wrong]) == [True]
    assert WorldCritic().judge(COLOUR_ITEM, [wrong]) == [False]


# ------------------------------------------------------------------------------ world critic


def test_world_critic_keeps_every_gold_rationale():
    items = world_items(0, 2000)
    assert {world.vqa_item(int(it.item_id)).kind for it in items} == set(world.VQA_KINDS)
    rejected = [it for it in items if WorldCritic().judge(it, [it.explanation]) != [True]]
    assert rejected == []


def test_world_critic_rejects_the_gold_rationale_of_another_scene_almost_always():
    items = world_items(0, 2000)
    pairs = list(zip(items, items[1:]))
    kept = np.mean([WorldCritic().judge(item, [other.explanation])[0] for item, other in pairs])
    true_of_scene = np.mean([rationale_true(other.explanation, item.scene) for item, other in pairs])
    assert kept < 0.02  # 0.35 %: the same question with a rationale that happens to be right
    assert true_of_scene > 4 * kept  # truth alone would keep ~9 %: supporting the answer matters


@pytest.mark.parametrize("question, answer, rationale, keep", [
    # colour
    ("what colour is the square at the top ?", "red", "the square at the top is red", True),
    ("what colour is the square at the top ?", "red", "the square at the top is blue", False),  # false
    ("what colour is the square at the top ?", "red", "the square at the left is blue", False),  # other object
    ("what colour is the square at the top ?", "red", "there is a small square at the top", False),  # no colour
    # shape: the question names the object by its position only
    ("what shape is at the bottom right ?", "circle", "there is a little green circle in the bottom right", True),
    ("what shape is at the bottom right ?", "circle", "there is a small green circle at the bottom", False),
    ("what shape is at the bottom right ?", "square", "there is a large blue square at the left", False),
    # position: "bottom" is not "bottom right"
    ("where is the circle ?", "bottom right", "the circle is at the bottom right", True),
    ("where is the circle ?", "bottom right", "the circle is at the bottom", False),
    ("where is the circle ?", "bottom right", "the circle is green", False),
    # size: synonyms count
    ("what size is the square at the left ?", "large", "the square at the left is big", True),
    ("what size is the square at the left ?", "large", "the square at the left is small", False),
    ("what size is the square at the left ?", "large", "the square at the top is small", False),
    # count: every object, and only true ones
    ("how many objects are there ?", "three",
     "there are a small red square at the top , a big blue square at the left and a small green circle "
     "at the bottom right", True),
    ("how many objects are there ?", "three", "there are a small red square at the top and a big blue square "
     "at the left", False),
    ("how many objects are there ?", "three", "there are a small red square at the top , a big blue square "
     "at the left and a small green circle at the top right", False),
    ("how many objects are there ?", "three", "there are three objects", False),
    # exists: yes needs the asked object, no needs it negated
    ("is there a green circle ?", "yes", "there is a small green circle at the bottom right", True),
    ("is there a green circle ?", "yes", "there is no green circle", False),
    ("is there a green circle ?", "yes", "there is a large blue square at the left", False),
    ("is there a purple triangle ?", "no", "there is no purple triangle", True),
    ("is there a purple triangle ?", "no", "there is no yellow triangle", False),
    ("is there a purple triangle ?", "no", "there is a small green circle at the bottom right", False),
])
def test_world_critic_keeps_true_rationales_that_support_the_answer(question, answer, rationale, keep):
    assert WorldCritic().judge(FeedbackItem("x", question, answer, scene=SCENE), [rationale]) == [keep]


def test_supports_answer_refuses_answers_outside_the_world():
    with pytest.raises(ValueError, match="'maybe' is not a microworld answer"):
        supports_answer("there is a red square", "is there a red square ?", "maybe")


def test_critics_name_the_item_they_cannot_judge():
    with pytest.raises(ValueError, match="'colour'.*no candidate"):
        WorldCritic().judge(COLOUR_ITEM, [])
    with pytest.raises(ValueError, match="'q7' has no gold explanation"):
        RougeCritic().judge(FeedbackItem("q7", "what colour ?", "red"), ["red"])
    with pytest.raises(ValueError, match="'q7' has no scene"):
        WorldCritic().judge(FeedbackItem("q7", "what colour ?", "red"), ["red"])


def test_the_accept_all_critic_keeps_every_candidate_even_a_false_one():
    candidates = ["the square at the top is red", "the square at the top is blue", ""]
    assert AcceptAllCritic().judge(COLOUR_ITEM, candidates) == [True, True, True]
    with pytest.raises(ValueError, match="no candidate"):
        AcceptAllCritic().judge(COLOUR_ITEM, [])


def test_the_random_critic_keeps_at_its_rate_blindly_and_repeats_from_its_seed():
    candidates = ["the square at the top is red", "the square at the top is blue"] * 2000

    def decisions(seed):
        return RandomCritic(0.3, generator(seed, "random critic")).judge(COLOUR_ITEM, candidates)

    kept = decisions(0)
    assert kept == decisions(0) and kept != decisions(1)
    assert abs(np.mean(kept) - 0.3) < 0.03
    assert abs(np.mean(kept[0::2]) - np.mean(kept[1::2])) < 0.05  # true or false, kept alike
    assert not any(RandomCritic(0.0, generator(0, "x")).judge(COLOUR_ITEM, candidates))
    assert all(RandomCritic(1.0, generator(0, "x")).judge(COLOUR_ITEM, candidates))
    with pytest.raises(ValueError, match="acceptance rate"):
        RandomCritic(1.5, generator(0, "x"))


def test_world_items_carry_the_gold_rationale_and_scene():
    item, vqa = world_items(5, 1)[0], world.vqa_item(5)
    assert item == FeedbackItem("5", vqa.question, vqa.answer, vqa.rationale, vqa.scene)


# ------------------------------------------------------------------------------ decision log


def test_decision_log_round_trip_and_resume(tmp_path):
    path = tmp_path / "new" / "folder" / "decisions.jsonl"
    log = DecisionLog(path)
    assert log.decisions(0) == {} and not path.exists()
    log.append("a", 0, ["x", "y", "z"], [2, 0], "person")
    log.append("b", 0, ["x"], [], "world")
    log.append("a", 1, ["w"], [0], "person")  # the same item again in the next round

    reread = DecisionLog(path)
    assert list(reread.decisions(0)) == ["a", "b"]
    first = reread.decisions(0)["a"]
    assert (first["candidates"], first["kept"], first["critic"], first["round"]) == (["x", "y", "z"], [0, 2],
                                                                                     "person", 0)
    datetime.fromisoformat(first["time"])
    assert reread.decisions(1)["a"]["kept"] == [0]
    items = [FeedbackItem(i, "q", "a") for i in "abc"]
    assert reread.done(["a", "b", "c"], 0) == ["a", "b"]
    assert [it.item_id for it in reread.pending(items, 0)] == ["c"]
    assert [it.item_id for it in reread.pending(items, 1)] == ["b", "c"]


def test_decision_log_refuses_a_second_decision_and_bad_indices(tmp_path):
    log = DecisionLog(tmp_path / "d.jsonl")
    log.append("a", 0, ["x", "y"], [1], "person")
    with pytest.raises(ValueError, match="'a' was already judged in round 0"):
        DecisionLog(tmp_path / "d.jsonl").append("a", 0, ["x", "y"], [], "person")
    with pytest.raises(ValueError, match="distinct indices into the 2 candidates, got \\[2\\]"):
        log.append("b", 0, ["x", "y"], [2], "person")
    assert len(decision_lines(tmp_path / "d.jsonl")) == 1


@pytest.mark.parametrize("bad_line, problem", [
    ("{not json", "line 2: not valid JSON"),
    ('{"item_id": "b", "round": 0, "candidates": ["x"], "critic": "person", "time": "t"}',
     "line 2: missing key 'kept'"),
    ('{"item_id": "b", "round": "0", "candidates": ["x"], "kept": [], "critic": "person", "time": "t"}',
     "line 2: 'round' must be of type int"),
])
def test_a_damaged_line_is_named_by_file_and_number(tmp_path, bad_line, problem):
    path = tmp_path / "d.jsonl"
    DecisionLog(path).append("a", 0, ["x"], [0], "person")
    with open(path, "a") as file:
        file.write(bad_line + "\n")
    with pytest.raises(ValueError, match=f"d.jsonl, {problem}"):
        DecisionLog(path).decisions(0)


def test_a_crash_mid_session_keeps_every_earlier_decision(tmp_path):
    path = tmp_path / "d.jsonl"
    script = textwrap.dedent(f"""
        import os
        from vlbridge.critics import DecisionLog
        log = DecisionLog({str(path)!r})
        for item_id in ("0", "1", "2"):
            log.append(item_id, 0, ["x", "y"], [1], "person")
        os._exit(1)  # the kernel dies before the fourth decision
        log.append("3", 0, ["x", "y"], [0], "person")
    """)
    assert subprocess.run([sys.executable, "-c", script]).returncode == 1
    assert [r["item_id"] for r in decision_lines(path)] == ["0", "1", "2"]
    items = [FeedbackItem(str(i), "q", "a") for i in range(5)]
    assert [it.item_id for it in DecisionLog(path).pending(items, 0)] == ["3", "4"]


def test_a_half_written_last_line_is_named_and_blocks_appending(tmp_path):
    path = tmp_path / "d.jsonl"
    log = DecisionLog(path)
    log.append("a", 0, ["x"], [0], "person")
    log.append("b", 0, ["x"], [], "person")
    whole = json.dumps({"item_id": "c", "round": 0, "candidates": ["x"], "kept": [0], "critic": "person",
                        "time": "t"})
    with open(path, "a") as file:
        file.write(whole[:len(whole) // 2])
    with pytest.raises(ValueError, match="d.jsonl, line 3: the line is cut off"):
        DecisionLog(path).decisions(0)
    with pytest.raises(ValueError, match="line 3"):  # appending would glue a decision onto the broken line
        log.append("c", 0, ["x"], [0], "person")


# ------------------------------------------------------------------------------ recorded and logged critics


def test_recorded_critic_replays_the_logged_decisions(tmp_path):
    log = DecisionLog(tmp_path / "d.jsonl")
    log.append("colour", 0, ["p", "q", "r"], [0, 2], "person")
    critic = RecordedCritic(log, round=0)
    assert critic.judge(COLOUR_ITEM, ["p", "q", "r"]) == [True, False, True]
    with pytest.raises(ValueError, match="'colour': the candidates differ"):
        critic.judge(COLOUR_ITEM, ["p", "q"])
    with pytest.raises(LookupError, match="'colour' has no decision for round 1.*judge it in the critic panel"):
        RecordedCritic(log, round=1).judge(COLOUR_ITEM, ["p", "q", "r"])
    with pytest.raises(ValueError, match="no candidate"):
        critic.judge(COLOUR_ITEM, [])


def test_a_logging_critic_writes_what_a_recorded_critic_replays(tmp_path):
    log = DecisionLog(tmp_path / "d.jsonl")
    items = world_items(0, 5)
    candidates = {it.item_id: [it.explanation, items[(i + 1) % 5].explanation] for i, it in enumerate(items)}
    logging_critic = LoggingCritic(WorldCritic(), log, round=2)
    judged = [logging_critic.judge(it, candidates[it.item_id]) for it in items]
    assert {r["critic"] for r in decision_lines(log.path)} == {"world"}
    assert [RecordedCritic(log, 2).judge(it, candidates[it.item_id]) for it in items] == judged


# ------------------------------------------------------------------------------ the human critic's panel


def render(item):
    return world.render(item.scene, 128)


def test_panel_records_clicks_and_resumes_after_a_restart(tmp_path):
    items = world_items(0, 3)
    candidates = {it.item_id: [it.explanation, "there is a big red triangle at the top"] for it in items}
    path = tmp_path / "feedback" / "round0.jsonl"
    panel = CriticPanel(items, candidates, DecisionLog(path), round=0, image_fn=render)
    assert panel.current == items[0] and panel.progress.value.startswith("0 of 3 judged")
    assert bytes(panel.image.value).startswith(b"\x89PNG")
    assert [box.description for box in panel.checkboxes] == candidates["0"]

    panel.checkboxes[1].value = True
    panel.keep_button.click()
    assert panel.current == items[1] and not any(box.value for box in panel.checkboxes)
    panel.reject_button.click()
    assert [(r["item_id"], r["round"], r["kept"], r["critic"]) for r in decision_lines(path)] == [
        ("0", 0, [1], "person"), ("1", 0, [], "person")]

    restarted = CriticPanel(items, candidates, DecisionLog(path), round=0, image_fn=render)
    assert restarted.current == items[2] and restarted.progress.value.startswith("2 of 3 judged")
    restarted.keep_button.click()  # nothing checked: keeps none
    assert restarted.current is None and restarted.keep_button.disabled
    assert "All 3 items are judged" in restarted.question.value
    assert RecordedCritic(DecisionLog(path), 0).judge(items[0], candidates["0"]) == [False, True]


def test_a_stale_panel_says_why_its_click_was_not_recorded(tmp_path):
    items = world_items(0, 2)
    candidates = {it.item_id: ["there is a circle"] for it in items}
    log = DecisionLog(tmp_path / "d.jsonl")
    stale, fresh = CriticPanel(items, candidates, log, 0), CriticPanel(items, candidates, log, 0)
    fresh.keep_button.click()
    stale.reject_button.click()  # item 0 was judged meanwhile in the other panel
    assert "already judged" in stale.message.value and stale.current == items[1]
    assert [r["kept"] for r in decision_lines(log.path)] == [[]]


def test_panel_needs_candidates_and_uint8_images(tmp_path):
    items = world_items(0, 2)
    with pytest.raises(ValueError, match="no candidate rationales for item\\(s\\) '1'"):
        CriticPanel(items, {"0": ["x"], "1": []}, DecisionLog(tmp_path / "d.jsonl"), 0)
    with pytest.raises(ValueError, match="uint8 array, got an array of float32"):
        CriticPanel(items, {"0": ["x"], "1": ["y"]}, DecisionLog(tmp_path / "d.jsonl"), 0,
                    image_fn=lambda item: np.zeros((8, 8, 3), np.float32))


# ------------------------------------------------------------------------------ one writer: the log's lock

HOLD_THE_LOG = """
import sys
from vlbridge.critics import DecisionLog
log = DecisionLog(sys.argv[1])
log.append("held", 0, ["x"], [0], "person")
print("holding", flush=True)
sys.stdin.read()  # until the test closes our stdin
"""


@pytest.fixture
def other_writer(tmp_path):
    """Another process that has written to tmp_path/d.jsonl and holds it until the test ends."""
    process = subprocess.Popen([sys.executable, "-c", HOLD_THE_LOG, str(tmp_path / "d.jsonl")],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline() == "holding\n"
    yield process
    process.stdin.close()
    assert process.wait(30) == 0


def test_a_second_process_cannot_write_and_nothing_is_lost(tmp_path, other_writer):
    path = tmp_path / "d.jsonl"
    log = DecisionLog(path)
    with pytest.raises(LogBusy, match=f"d.jsonl is open for writing by process {other_writer.pid} "
                                      "\\(.*\\) on .* since .*stop that process \\(its lock on d.jsonl.lock"):
        log.append("a", 0, ["x"], [0], "person")
    assert list(log.decisions(0)) == ["held"]  # still readable, and the refused decision is not in it
    other_writer.stdin.close()
    other_writer.wait(30)  # the process ends, and its lock with it: no stale lock to delete
    log.append("a", 0, ["x"], [0], "person")
    assert [r["item_id"] for r in decision_lines(path)] == ["held", "a"]


def test_a_closed_log_lets_another_process_write(tmp_path):
    path = tmp_path / "d.jsonl"
    log = DecisionLog(path)
    log.append("a", 0, ["x"], [0], "person")
    write_b = f"from vlbridge.critics import DecisionLog; DecisionLog({str(path)!r}).append('b', 0, ['x'], [], 'world')"
    refused = subprocess.run([sys.executable, "-c", write_b], capture_output=True, text=True)
    assert refused.returncode == 1 and "LogBusy" in refused.stderr and f"process {os.getpid()}" in refused.stderr
    log.close()
    assert subprocess.run([sys.executable, "-c", write_b]).returncode == 0
    assert [(r["item_id"], r["critic"]) for r in decision_lines(path)] == [("a", "person"), ("b", "world")]


def test_two_writers_in_one_process_share_the_lock_and_refuse_a_duplicate(tmp_path):
    path = tmp_path / "d.jsonl"
    first, second = DecisionLog(path), DecisionLog(path)
    first.append("a", 0, ["x"], [0], "person")
    second.append("b", 0, ["x"], [], "person")  # one kernel, two panels: both may write...
    with pytest.raises(ValueError, match="'a' was already judged in round 0"):
        second.append("a", 0, ["x"], [], "person")  # ...but never the same item twice
    first.append("c", 0, ["x"], [0], "person")
    assert [r["item_id"] for r in decision_lines(path)] == ["a", "b", "c"]
    assert list(DecisionLog(path).decisions(0)) == ["a", "b", "c"]


def test_a_duplicate_line_names_the_line_to_delete(tmp_path):
    path = tmp_path / "d.jsonl"
    DecisionLog(path).append("a", 0, ["x"], [0], "person")
    path.write_text(path.read_text() * 2)  # what two unlocked writers used to leave
    with pytest.raises(ValueError, match="d.jsonl, line 2: item 'a' was already judged in round 0 at line 1 "
                                         ".*delete line 2 to keep the first decision, or line 1 to keep this one"):
        DecisionLog(path).decisions(0)


def test_a_panel_on_a_log_another_process_writes_shows_who_instead_of_buttons(tmp_path, other_writer):
    items = world_items(0, 2)
    candidates = {it.item_id: ["there is a circle"] for it in items}
    panel = CriticPanel(items, candidates, DecisionLog(tmp_path / "d.jsonl"), 0)
    assert f"is open for writing by process {other_writer.pid}" in panel.message.value
    assert panel.keep_button not in panel.widget.children and panel.current is None
    panel.keep_button.click()  # even a click from code records nothing
    assert [r["item_id"] for r in decision_lines(tmp_path / "d.jsonl")] == ["held"]
