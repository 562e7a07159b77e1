"""Scoreboard tables (eval/scoreboard.py): Markdown for people, JSON for programs, the same numbers."""
import json

import pytest

from vlbridge.eval.scoreboard import Scoreboard, markdown_table


def test_markdown_table_formats_floats_ints_and_missing_cells():
    table = markdown_table({"FROMAGe": {"f1": 0.76749, "params": 1147906}, "floor": {"f1": 0.3}},
                           {"f1": "attr F1", "params": "trainable", "r1": "R@1"})
    assert table.splitlines() == ["| | attr F1 | trainable | R@1 |", "|---|---:|---:|---:|",
                                  "| FROMAGe | 0.767 | 1,147,906 | – |", "| floor | 0.300 | – | – |"]
    with pytest.raises(ValueError, match=r"metrics with no column: \['cider'\]"):
        markdown_table({"x": {"cider": 1.0}}, {"f1": "F1"})


def test_write_puts_the_same_numbers_in_markdown_and_json(tmp_path):
    board = Scoreboard("Profile `smoke`.")
    board.add("captioning", "Captioning", {"FROMAGe": {"f1": 0.5}}, {"f1": "attr F1"}, note="a note.")
    board.add("cost", "Cost", {"FROMAGe": {"n": 10}}, {"n": "trainable"})
    md, js = board.write(tmp_path)
    assert md.read_text() == ("Profile `smoke`.\n\n### Captioning\n\n| | attr F1 |\n|---|---:|\n| FROMAGe | 0.500 |\n\n"
                              "a note.\n\n### Cost\n\n| | trainable |\n|---|---:|\n| FROMAGe | 10 |\n")
    data = json.loads(js.read_text())
    assert data["captioning"]["rows"] == {"FROMAGe": {"f1": {"value": 0.5, "lo": None, "hi": None}}}
    assert data["captioning"]["title"] == "Captioning"
    assert data["cost"]["columns"] == {"n": "trainable"}
    with pytest.raises(ValueError, match="already has a section 'cost'"):
        board.add("cost", "Cost again", {}, {})


def test_intervals_print_as_half_widths_and_go_to_json_as_lo_and_hi(tmp_path):
    board = Scoreboard()
    rows = {"FROMAGe": {"f1": 0.753, "r5": 0.993}, "floor": {"f1": 0.304}}
    table = board.add("captioning", "Captioning", rows, {"f1": "attr F1", "r5": "R@5", "n": "trainable"},
                      intervals={"FROMAGe": {"f1": (0.722, 0.783), "r5": (0.983, 1.0)}})
    assert table.splitlines()[2:] == ["| FROMAGe | 0.753 ± 0.031 | 0.993 ± 0.009 | – |", "| floor | 0.304 | – | – |"]
    board.add("cost", "Cost", {"FROMAGe": {"n": 10}}, {"n": "trainable"})
    md, js = board.write(tmp_path)
    assert "| FROMAGe | 0.753 ± 0.031 | 0.993 ± 0.009 | – |" in md.read_text()
    data = json.loads(js.read_text())
    assert data["captioning"]["rows"] == {
        "FROMAGe": {"f1": {"value": 0.753, "lo": 0.722, "hi": 0.783}, "r5": {"value": 0.993, "lo": 0.983, "hi": 1.0}},
        "floor": {"f1": {"value": 0.304, "lo": None, "hi": None}}}
    assert data["cost"]["rows"] == {"FROMAGe": {"n": {"value": 10, "lo": None, "hi": None}}}
    with pytest.raises(ValueError, match="have no value in the rows"):
        board.add("bad", "Bad", rows, {"f1": "F1", "r5": "R@5"}, intervals={"FROMAGe": {"cider": (0, 1)}})
    with pytest.raises(ValueError, match="lo <= hi"):
        board.add("bad", "Bad", rows, {"f1": "F1", "r5": "R@5"}, intervals={"floor": {"f1": (0.4, 0.2)}})
