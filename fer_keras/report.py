"""Figures: training curves and confusion matrices (matplotlib, Agg backend).

Plot functions take ``ax=None`` and return the axes; ``save_figure`` writes
PNGs atomically. matplotlib is imported lazily so importing fer_keras stays fast.
"""

from __future__ import annotations

import numpy as np

from fer_keras.constants import CLASS_NAMES
from fer_keras.io_utils import atomic_path


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path, dpi=120):
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
    _plt().close(fig)
    return path


def plot_confusion_matrix(matrix, class_names=CLASS_NAMES, *, normalize=False, ax=None, title=None):
    """Heat map of a confusion matrix (rows: true class, columns: predicted)."""
    plt = _plt()
    matrix = np.asarray(matrix, dtype=float)
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 5.2))
    shown = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1) if normalize else matrix
    im = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalize else max(shown.max(), 1))
    ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ticks = np.arange(len(class_names))
    ax.set_xticks(ticks, class_names, rotation=45, ha="right")
    ax.set_yticks(ticks, class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or ("confusion matrix (row-normalised)" if normalize else "confusion matrix (counts)"))
    cut = shown.max() / 2 if shown.size else 0
    for i in range(shown.shape[0]):
        for j in range(shown.shape[1]):
            text = f"{shown[i, j]:.2f}" if normalize else f"{int(matrix[i, j])}"
            ax.text(j, i, text, ha="center", va="center", fontsize=8,
                    color="white" if shown[i, j] > cut else "black")
    return ax


def confusion_figure(matrix, class_names=CLASS_NAMES, title=""):
    """Counts and row-normalised matrices side by side."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.2))
    plot_confusion_matrix(matrix, class_names, ax=axes[0])
    plot_confusion_matrix(matrix, class_names, normalize=True, ax=axes[1])
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def curves_figure(history):
    """Loss and accuracy per epoch, train vs validation, from a history dict of lists."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    epochs = np.arange(1, len(history.get("loss", [])) + 1)
    for ax, key in zip(axes, ("loss", "accuracy")):
        if key in history:
            ax.plot(epochs, history[key], label=f"train {key}")
        if f"val_{key}" in history:
            ax.plot(epochs, history[f"val_{key}"], label=f"validation {key}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return fig
