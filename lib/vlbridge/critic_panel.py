"""The human critic: a notebook panel where a person keeps the candidate rationales they prefer.

Every click is written to a `critics.DecisionLog` before the next item is shown, so a kernel restart
loses nothing: a new panel on the same log starts at the first item not yet judged in its round.
`critics.RecordedCritic` then replays the decisions to the training loop. Needs ipywidgets (the
`book` extra); the rest of the library does not. A panel takes the log's writer lock when it opens;
a panel in another kernel (a second tab) shows who holds it instead of buttons.
tests/test_panel_browser.py clicks it in JupyterLab.

    panel = CriticPanel(items, candidates, DecisionLog(path), round=0,
                        image_fn=lambda item: world.render(item.scene, 128))
    panel.widget  # display it
"""
from __future__ import annotations

import html
import io
from collections.abc import Callable

import ipywidgets as widgets
import numpy as np
from PIL import Image

from .critics import DecisionLog, FeedbackItem, LogBusy

CRITIC_NAME = "person"


def _png_bytes(image: Image.Image | np.ndarray) -> bytes:
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise ValueError(f"image_fn must return a PIL image or a uint8 array, got an array of {image.dtype}")
        image = Image.fromarray(image)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


class CriticPanel:
    """Shows one item at a time (image, question, answer, a checkbox per candidate rationale) with
    "Keep checked" (possibly none) and "Reject all"; each click records the decision and moves on."""

    def __init__(self, items: list[FeedbackItem], candidates: dict[str, list[str]], log: DecisionLog, round: int,
                 image_fn: Callable[[FeedbackItem], Image.Image | np.ndarray] | None = None):
        missing = [it.item_id for it in items if not candidates.get(it.item_id)]
        if missing:
            raise ValueError(f"no candidate rationales for item(s) {', '.join(map(repr, missing))}; "
                             "give each item at least one")
        self.items = items
        self.candidates = candidates
        self.log = log
        self.round = round
        self.image_fn = image_fn
        self.current: FeedbackItem | None = None
        self.checkboxes: list[widgets.Checkbox] = []

        self.progress = widgets.Label()
        # A fixed width: JupyterLab would otherwise stretch the picture over the whole output area.
        self.image = widgets.Image(format="png", layout=widgets.Layout(
            display="none" if image_fn is None else None, width="256px"))
        self.question = widgets.HTML()
        self.choices = widgets.VBox()
        self.keep_button = widgets.Button(description="Keep checked", button_style="success")
        self.reject_button = widgets.Button(description="Reject all", button_style="danger")
        self.message = widgets.HTML()  # why a click was not recorded, if it was not
        self.keep_button.on_click(lambda _: self._record([i for i, box in enumerate(self.checkboxes) if box.value]))
        self.reject_button.on_click(lambda _: self._record([]))
        try:
            log.lock()  # now, so a second panel says so before the person reads anything
        except LogBusy as error:
            self.message.value = f"<span style='color:#b00'>{html.escape(str(error))}</span>"
            self.keep_button.disabled = self.reject_button.disabled = True
            self.widget = widgets.VBox([self.progress, self.message])  # no buttons to click in vain
            self.progress.value = f"{len(self.items) - len(log.pending(items, round))} of {len(items)} judged " \
                                  f"(round {round}) in {log.path.name}, by another panel"
        else:
            self.widget = widgets.VBox([self.progress, self.image, self.question, self.choices,
                                        widgets.HBox([self.keep_button, self.reject_button]), self.message])
            self._show_next()
        self.widget.add_class("vlbridge-critic-panel")  # for a page's CSS, and for the browser test to find

    def _record(self, kept: list[int]) -> None:
        if self.current is None:  # nothing to judge here: all judged, or another panel writes the log
            return
        try:
            self.log.append(self.current.item_id, self.round, self.candidates[self.current.item_id], kept,
                            CRITIC_NAME)
            self.message.value = ""
        except (ValueError, OSError) as error:  # ipywidgets would only log it: show the person why
            self.message.value = f"<span style='color:#b00'>not recorded: {html.escape(str(error))}</span>"
        self._show_next()

    def _show_next(self) -> None:
        pending = self.log.pending(self.items, self.round)
        self.progress.value = f"{len(self.items) - len(pending)} of {len(self.items)} judged (round {self.round})"
        self.current = pending[0] if pending else None
        self.keep_button.disabled = self.reject_button.disabled = self.current is None
        if self.current is None:
            self.checkboxes = []
            self.choices.children = ()
            self.question.value = f"All {len(self.items)} items are judged for round {self.round}."
            self.image.value = b""
            return
        item = self.current
        self.question.value = f"<b>Q:</b> {html.escape(item.question)}<br><b>A:</b> {html.escape(item.answer)}"
        if self.image_fn is not None:
            self.image.value = _png_bytes(self.image_fn(item))
        self.checkboxes = [widgets.Checkbox(value=False, description=text, indent=False,
                                            layout=widgets.Layout(width="auto"))
                           for text in self.candidates[item.item_id]]
        self.choices.children = tuple(self.checkboxes)
