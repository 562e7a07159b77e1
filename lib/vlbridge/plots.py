"""Figures the chapters share: image grids with captions, strips, training curves, spectrograms."""
from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt
import numpy as np


def _wrapped(text: str, wrap: int, keep_lines: bool) -> list[str]:
    """`text` wrapped at `wrap` characters; with keep_lines, each of its lines on its own."""
    return [line for part in (text.split("\n") if keep_lines else [text]) for line in textwrap.wrap(part, wrap)]


def image_grid(images, captions=None, cols: int = 4, wrap: int = 28, cell: float = 2.4, title: str | None = None,
               keep_lines: bool = False):
    """Images (uint8 arrays or PIL) in a grid, each with its caption wrapped underneath (keep_lines:
    a caption's line breaks are kept). A single row is a strip (a story, a retrieval result)."""
    n = len(images)
    cols = min(cols, n)
    rows = -(-n // cols)
    lines = max((len(_wrapped(c, wrap, keep_lines)) for c in captions), default=0) if captions else 0
    fig, axes = plt.subplots(rows, cols, figsize=(cell * cols, (cell + 0.16 * lines) * rows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        ax.imshow(np.asarray(images[i]), interpolation="nearest")
        if captions:  # hung from the image's bottom edge, so every caption starts at the same height
            ax.text(0, -0.03, "\n".join(_wrapped(captions[i], wrap, keep_lines)), fontsize=7.5, ha="left", va="top",
                    transform=ax.transAxes)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def curves(series: dict[str, list[float]], xlabel: str = "step", ylabel: str = "loss", smooth: int = 1,
           title: str | None = None, ax=None):
    """Line plot of named series; `smooth` > 1 adds a running mean over that many points."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.2))
    for name, values in series.items():
        values = np.asarray(values, dtype=float)
        if smooth > 1 and len(values) >= smooth:
            ax.plot(values, alpha=0.25)
            kernel = np.ones(smooth) / smooth
            ax.plot(np.arange(smooth - 1, len(values)), np.convolve(values, kernel, mode="valid"), label=name,
                    color=ax.lines[-1].get_color())
        else:
            ax.plot(values, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    if len(series) > 1 or smooth > 1:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    ax.figure.tight_layout()
    return ax.figure


def sound_figure(wave: np.ndarray, log_mel: np.ndarray, sample_rate: int, title: str | None = None,
                 segments: tuple[str, ...] = ()):
    """Each channel's waveform above its log-mel spectrogram, on one time axis (so a pan shows as
    one channel louder than the other); `segments` names equal slices of time, marked on every panel
    (the microworld plays the top, middle and bottom rows one after another)."""
    fig, axes = plt.subplots(4, 1, figsize=(6, 6.4), sharex=True, gridspec_kw={"height_ratios": [1, 1.2, 1, 1.2]})
    t = np.arange(wave.shape[1]) / sample_rate
    peak = max(float(np.abs(wave).max()), 1e-6)
    for channel, name in enumerate(("left", "right")):
        top, below = axes[2 * channel], axes[2 * channel + 1]
        top.plot(t, wave[channel], lw=0.5, color=f"C{channel}")
        top.set_ylim(-1.05 * peak, 1.05 * peak)  # one scale for both channels: louder is taller
        top.set_ylabel(f"{name}\namplitude")
        below.imshow(log_mel[channel], origin="lower", aspect="auto", cmap="magma",
                     extent=[0, t[-1], 0, log_mel.shape[1]])
        below.set_ylabel(f"{name}\nmel bin")
    for i, label in enumerate(segments):
        for ax in axes:
            if i:
                ax.axvline(t[-1] * i / len(segments), color="grey", lw=0.8, ls=":")
        axes[0].text(t[-1] * (i + 0.5) / len(segments), 1.02, label, transform=axes[0].get_xaxis_transform(),
                     ha="center", va="bottom", fontsize=8)
    axes[-1].set_xlabel("seconds")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def side_by_side(images, texts: dict[str, list[str]], wrap: int = 100, cell: float = 1.9):
    """One row per image: the image, then each method's text for it (method: text), so several
    methods' captions of the same picture read as one column. The text column is as wide as `wrap`
    characters and each row as tall as its text."""
    n = len(images)
    blocks = [[textwrap.fill(f"{method}: {values[i]}", wrap, subsequent_indent="    ")
               for method, values in texts.items()] for i in range(n)]
    heights = [max(cell, 0.16 * sum(b.count("\n") + 1 for b in block) + 0.2) for block in blocks]
    text_width = 0.056 * wrap  # inches for `wrap` characters at 7.5 pt
    fig, axes = plt.subplots(n, 2, figsize=(cell + text_width, sum(heights)), squeeze=False,
                             gridspec_kw={"width_ratios": [cell, text_width], "height_ratios": heights})
    for (picture, panel), block, image in zip(axes, blocks, images):
        picture.imshow(np.asarray(image), interpolation="nearest")
        panel.text(0, 0.5, "\n".join(block), fontsize=7.5, va="center", ha="left", transform=panel.transAxes)
        for ax in (picture, panel):
            ax.axis("off")
    fig.tight_layout()
    return fig
