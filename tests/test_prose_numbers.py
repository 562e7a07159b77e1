"""Every number a chapter's prose states is printed by that chapter's own run: the markdown cells of
results/default/NN_slug.ipynb are checked against the text of its outputs, so prose cannot drift
from the numbers (a rerun that moves a number fails here until the prose says the new one).

Exempt, because no run prints them: what is inside <cite>…</cite> (the papers' numbers, years and
references, marked where they are written), code spans and link targets, numbers naming a chapter,
section, table, figure or equation, heading and list numbering, numbers inside names (ViT-L/14,
OPT-6.7B, R@10, v1.0), and the integers 0-9 (counts such as "k = 4", written as digits). A prose
number matches a printed one written at the same or more decimals that rounds to it; a percentage
also matches a printed fraction (73% ~ 0.7312)."""
import re
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "results" / "default").glob("[0-9][0-9]_*.ipynb"))

_EXEMPT_SPANS = re.compile(r"<cite>.*?</cite>|`[^`]*`|\]\([^)]*\)|<[^>]+>", re.S)
_NAMED = re.compile(r"(?i)\b(?:chapters?|sections?|tables?|figures?|fig\.|eq\.|equation|§)\s*\d+(?:\s*[–-]\s*\d+)?"
                    r"(?:\s*(?:,|and|or)\s*\d+)*")
_NUMBERING = re.compile(r"(?m)^\s*(?:#+\s*\d+(?:\.\d+)*\.?|\d+\.)\s")
NUMBER = re.compile(r"(?<![\w.,/@-])(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(%?)(?![\w])")


def stated_numbers(markdown: str) -> list[tuple[str, str]]:
    """(number as written, its context) for every number the prose states and must be printed."""
    text = _NUMBERING.sub(" ", _NAMED.sub(" ", _EXEMPT_SPANS.sub(" ", markdown)))
    found = []
    for match in NUMBER.finditer(text):
        whole, fraction, percent = match.groups()
        if not fraction and not percent and int(whole.replace(",", "")) < 10:
            continue
        context = text[max(0, match.start() - 40):match.end() + 20].replace("\n", " ")
        found.append((match.group(0), context))
    return found


def printed_numbers(notebook) -> list[str]:
    """Every number in the text of the notebook's outputs (streams, plain text, Markdown, errors)."""
    texts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            texts.append(output.get("text", ""))
            data = output.get("data", {})
            texts += [data.get("text/plain", ""), data.get("text/markdown", "")]
            texts += output.get("traceback", [])
    joined = "\n".join(t if isinstance(t, str) else "".join(t) for t in texts)
    return [m.group(0) for m in re.finditer(r"-?\d[\d,]*(?:\.\d+)?%?", joined)]


def _decimal(text: str) -> Decimal:
    return Decimal(text.rstrip("%").replace(",", "").lstrip("-"))


def _rounds_to(printed: Decimal, stated: Decimal) -> bool:
    places = Decimal(1).scaleb(stated.as_tuple().exponent)
    return any(printed.quantize(places, rounding=mode) == stated for mode in (ROUND_HALF_UP, ROUND_HALF_EVEN))


def is_printed(stated: str, printed: list[str]) -> bool:
    value = _decimal(stated)
    for shown in printed:
        candidate = _decimal(shown.rstrip(","))
        digits = -candidate.as_tuple().exponent
        if digits >= -value.as_tuple().exponent and _rounds_to(candidate, value):
            return True
        if stated.endswith("%") and not shown.endswith("%") and digits >= 2 - value.as_tuple().exponent \
                and _rounds_to(candidate * 100, value):
            return True
    return False


def unprinted(notebook) -> list[str]:
    printed = printed_numbers(notebook)
    missing = []
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "markdown":
            missing += [f"cell {index}: {number!r} in '…{context}…'" for number, context in stated_numbers(cell.source)
                        if not is_printed(number, printed)]
    return missing


@pytest.mark.parametrize("notebook_path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_number_in_the_prose_is_printed_by_the_chapter(notebook_path):
    missing = unprinted(nbformat.read(notebook_path, as_version=4))
    assert not missing, (f"{notebook_path.relative_to(REPO)}: numbers in the prose that no output prints "
                         "(print them, correct them, or mark a paper's number <cite>…</cite>):\n" + "\n".join(missing))


def _notebook(markdown: str, output: str):
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("print(...)")
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=output)]
    nb.cells = [nbformat.v4.new_markdown_cell(markdown), cell]
    return nb


def test_a_planted_mismatch_is_caught_and_a_rounded_or_cited_number_is_not():
    printed = "caption F1 0.7671  R@1 0.7312  trained 4,491,778 parameters on 10000 scenes\n"
    assert unprinted(_notebook("F1 0.77, R@1 73%, 4,491,778 parameters, 10,000 scenes, two-layer, k = 4.", printed)) \
        == []
    planted = unprinted(_notebook("F1 0.78 against <cite>the paper's 11.3 (ICML 2023)</cite>, see chapter 12.",
                                  printed))
    assert len(planted) == 1 and "'0.78'" in planted[0]
    assert unprinted(_notebook("R@1 0.731 and 0.7312 and `lr=0.01`", printed)) == []
    assert len(unprinted(_notebook("R@1 0.73120", printed))) == 1  # more decimals than were printed
    assert len(unprinted(_notebook("## 3. Results\n\n1. first, 25 of them", printed))) == 1
