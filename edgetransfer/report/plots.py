"""PNG figures for run directories and reports (matplotlib, headless)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .. import _lazy


def _plt():
    mpl = _lazy.require("matplotlib")
    mpl.use("Agg")
    return _lazy.require("matplotlib.pyplot")


def _save(fig, path: Path) -> Path:
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    _plt().close(fig)
    os.replace(tmp, path)
    return path


def training_curves(history: dict[str, Sequence[float]], phase_starts: Sequence[int], path: Path) -> Path:
    """Loss and accuracy per epoch, train and validation, with phase boundaries marked."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, metric in zip(axes, ("loss", "accuracy")):
        for key, style in ((metric, "-"), (f"val_{metric}", "--")):
            if history.get(key):
                ax.plot(range(1, len(history[key]) + 1), history[key], style, label=key)
        for start in phase_starts[1:]:
            ax.axvline(start + 0.5, color="grey", lw=0.8, ls=":")
            ax.text(start + 0.6, ax.get_ylim()[1], "fine-tune", va="top", fontsize=8, color="grey")
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path)


def draw_confusion(ax, matrix: np.ndarray, classes: Sequence[str], title: str, fontsize: int = 8) -> None:
    """Counts with row-normalised colour (true class per row), on ``ax``: the one confusion plot,
    used by the run's ``confusion.png`` and by the validation report."""
    n = len(classes)
    norm = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), classes, rotation=45, ha="right", fontsize=fontsize)
    ax.set_yticks(range(n), classes, fontsize=fontsize)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=fontsize + 1)
    if n <= 20:  # beyond that the numbers overprint; the colours still read
        for i in range(n):
            for j in range(n):
                colour = "white" if norm[i, j] > 0.5 else "black"
                ax.text(j, i, int(matrix[i, j]), ha="center", va="center", color=colour, fontsize=fontsize - 1)


def confusion_matrix(matrix: np.ndarray, classes: Sequence[str], path: Path, title: str = "validation") -> Path:
    """The run's ``confusion.png``."""
    plt = _plt()
    side = min(12, 2.5 + 0.45 * len(classes))
    fig, ax = plt.subplots(figsize=(side, side))
    draw_confusion(ax, matrix, classes, f"confusion matrix ({title})")
    return _save(fig, path)
