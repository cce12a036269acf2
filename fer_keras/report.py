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


def plot_per_class_f1(f1_by_name, class_names=CLASS_NAMES, *, ax=None, title=None):
    """Grouped bars: per-class F1 of each named model (e.g. members and the ensemble).

    ``f1_by_name`` maps a label to a sequence of F1 values in ``class_names``
    order; bars appear in the mapping's order.
    """
    plt = _plt()
    names = list(f1_by_name)
    if ax is None:
        _, ax = plt.subplots(figsize=(max(8.0, 1.2 * len(class_names) + 0.12 * len(names) * len(class_names)), 4.5))
    ticks = np.arange(len(class_names))
    width = 0.8 / max(len(names), 1)
    for i, name in enumerate(names):
        values = np.asarray(f1_by_name[name], dtype=float)
        ax.bar(ticks - 0.4 + width * (i + 0.5), values, width, label=name,
               edgecolor="black" if name == names[-1] else None, linewidth=0.6)
    ax.set_xticks(ticks, class_names)
    ax.set_ylim(0, 1)
    ax.set_ylabel("F1")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, ncol=min(len(names), 5), loc="upper center", bbox_to_anchor=(0.5, -0.08),
              frameon=False)
    ax.set_title(title or "per-class F1")
    return ax


def per_class_f1_figure(f1_by_name, class_names=CLASS_NAMES, title=""):
    """A figure holding :func:`plot_per_class_f1`."""
    ax = plot_per_class_f1(f1_by_name, class_names, title=title or None)
    ax.figure.tight_layout()
    return ax.figure


def format_table(headers, rows, *, markdown=False, align=None):
    """Plain-text (or Markdown) table. Floats are shown with 4 decimals, None as '-'.

    ``align``: one of ``"<"``/``">"`` per column (default: first column left,
    the others right).
    """
    def cell(value):
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:.4f}"
        return str(value)

    text_rows = [[cell(v) for v in row] for row in rows]
    align = align or ["<"] + [">"] * (len(headers) - 1)
    if markdown:
        rule = ["---" if a == "<" else "---:" for a in align]
        lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(rule) + " |"]
        lines += ["| " + " | ".join(r) + " |" for r in text_rows]
        return "\n".join(lines)
    widths = [max(len(str(h)), *(len(r[i]) for r in text_rows)) if text_rows else len(str(h))
              for i, h in enumerate(headers)]
    def line(values):
        return "  ".join(f"{v:{a}{w}}" for v, a, w in zip(values, align, widths)).rstrip()
    return "\n".join([line(headers)] + [line(r) for r in text_rows])


def confusion_table(matrix, class_names=CLASS_NAMES, *, markdown=False):
    """A confusion matrix as a table: rows true class, columns predicted."""
    matrix = np.asarray(matrix)
    headers = ["true \\ predicted", *class_names]
    rows = [[name, *(int(v) for v in matrix[i])] for i, name in enumerate(class_names)]
    return format_table(headers, rows, markdown=markdown)


def per_class_table(metrics, class_names=CLASS_NAMES, *, markdown=False):
    """Precision, recall, F1 and support per class from ``classification_metrics`` output."""
    rows = []
    for name in class_names:
        c = metrics["per_class"][name]
        rows.append([name, c["precision"], c["recall"], c["f1"], c["support"]])
    rows.append(["macro avg", metrics["precision_macro"], metrics["recall_macro"], metrics["macro_f1"],
                 sum(metrics["per_class"][n]["support"] for n in class_names)])
    return format_table(["class", "precision", "recall", "f1", "support"], rows, markdown=markdown)


def plot_emotion_timeline(times, probas, class_names=CLASS_NAMES, *, colors=None, ax=None, title=None,
                          xlabel="time (s)"):
    """Probability of each class over time, one line per class.

    ``times``: (T,) seconds (or frame numbers); ``probas``: (T, C); a row of
    NaN (a frame without a face) leaves a gap in every line.
    """
    plt = _plt()
    times = np.asarray(times, dtype=float)
    probas = np.asarray(probas, dtype=float).reshape(len(times), len(class_names))
    if ax is None:
        _, ax = plt.subplots(figsize=(10, 4))
    for i, name in enumerate(class_names):
        color = colors[i] if colors is not None else None
        ax.plot(times, probas[:, i], label=name, color=color, linewidth=1.6,
                marker="o" if len(times) <= 30 else None, markersize=3)
    ax.set_ylim(0, 1)
    if len(times):
        ax.set_xlim(times.min(), max(times.max(), times.min() + 1e-9))
    ax.set_xlabel(xlabel)
    ax.set_ylabel("probability")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=len(class_names), loc="upper center", bbox_to_anchor=(0.5, -0.15), frameon=False)
    ax.set_title(title or "emotions over time")
    return ax


def timeline_figure(times, probas, class_names=CLASS_NAMES, *, colors=None, title="", xlabel="time (s)"):
    """A figure holding :func:`plot_emotion_timeline`."""
    ax = plot_emotion_timeline(times, probas, class_names, colors=colors, title=title or None, xlabel=xlabel)
    ax.figure.tight_layout()
    return ax.figure
