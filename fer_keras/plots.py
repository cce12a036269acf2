"""Figures: training curves, confusion matrices, reliability diagrams (matplotlib, Agg backend).

Shared by the stages that draw: training (curves, confusion matrix), the
ensemble report and the video timeline. Plot functions take ``ax=None`` and
return the axes; ``save_figure`` writes PNGs atomically. matplotlib is
imported lazily so importing fer_keras stays fast.
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


def plot_reliability(bins_by_name, *, ax=None, count_ax=None, title=None, highlight="ensemble"):
    """Reliability diagram: accuracy against mean confidence per bin, with the diagonal.

    ``bins_by_name`` maps a label to :func:`fer_keras.ensemble.calibration.reliability_bins`
    output; the ``highlight`` entry is drawn thick. ``count_ax``, when given,
    gets the per-bin face counts of every entry (the highlighted one as bars).
    """
    plt = _plt()
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 5))
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfect calibration")
    for name, bins in bins_by_name.items():
        pts = [(c, a) for c, a in zip(bins["confidence"], bins["accuracy"]) if c is not None]
        if not pts:
            continue
        conf, acc = np.array(pts).T
        strong = name == highlight
        ax.plot(conf, acc, marker="o", markersize=4 if strong else 2.5, linewidth=2.4 if strong else 1,
                alpha=1 if strong else 0.7, label=name, zorder=3 if strong else 2,
                color="black" if strong else None)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (top-1 probability)")
    ax.set_ylabel("accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    ax.set_title(title or "reliability diagram")
    if count_ax is not None:
        for name, bins in bins_by_name.items():
            edges = np.asarray(bins["edges"])
            counts = np.asarray(bins["count"], dtype=float)
            if name == highlight:
                count_ax.bar(edges[:-1], counts, width=np.diff(edges), align="edge", color="lightgrey",
                             edgecolor="black", linewidth=0.6, label=name)
            else:
                count_ax.step(edges, np.append(counts, counts[-1]), where="post", linewidth=0.9, alpha=0.7,
                              label=name)
        count_ax.set_xlim(0, 1)
        count_ax.set_xlabel("confidence (top-1 probability)")
        count_ax.set_ylabel("faces per bin")
        count_ax.grid(alpha=0.3)
    return ax


def reliability_figure(bins_by_name, title="", highlight="ensemble"):
    """Reliability diagram over a panel of per-bin counts."""
    plt = _plt()
    fig, (ax, count_ax) = plt.subplots(2, 1, figsize=(6.5, 7.5), sharex=True,
                                       gridspec_kw={"height_ratios": [3, 1.2]})
    plot_reliability(bins_by_name, ax=ax, count_ax=count_ax, title=title or None, highlight=highlight)
    ax.set_xlabel("")
    fig.tight_layout()
    return fig


def plot_disagreement(matrix, names, *, ax=None, title=None):
    """Heat map of the pairwise disagreement of members (fraction of faces whose top-1 differ)."""
    plt = _plt()
    matrix = np.asarray(matrix, dtype=float)
    if ax is None:
        size = 2.5 + 0.55 * len(names)
        _, ax = plt.subplots(figsize=(size + 1, size))
    top = max(float(matrix.max()) if matrix.size else 0.0, 1e-9)
    im = ax.imshow(matrix, cmap="magma_r", vmin=0, vmax=top)
    ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="disagreement")
    ticks = np.arange(len(names))
    ax.set_xticks(ticks, names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(ticks, names, fontsize=8)
    if len(names) <= 16:
        for i in range(len(names)):
            for j in range(len(names)):
                ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if matrix[i, j] > top / 2 else "black")
    ax.set_title(title or "pairwise disagreement (top-1 differs)")
    return ax


def disagreement_figure(matrix, names, title=""):
    """A figure holding :func:`plot_disagreement`."""
    ax = plot_disagreement(matrix, names, title=title or None)
    ax.figure.tight_layout()
    return ax.figure


def faces_sheet_figure(faces, captions, *, ncols=None, title=""):
    """A contact sheet: grey faces (N, H, W[, 1]) in a grid, one caption under each."""
    plt = _plt()
    faces = np.asarray(faces)
    n = max(len(faces), 1)
    ncols = ncols or min(n, 6)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.9 * ncols, 2.3 * nrows + (0.4 if title else 0)),
                             squeeze=False)
    for k, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if k < len(faces):
            face = faces[k][..., 0] if faces[k].ndim == 3 else faces[k]
            ax.imshow(face, cmap="gray", vmin=0, vmax=255)
            ax.set_title(captions[k], fontsize=7)
    if not len(faces):
        axes[0, 0].text(0.5, 0.5, "no faces", ha="center", va="center")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
