"""Classification metrics: plain functions of labels and probabilities.

scikit-learn computes the figures; this module fixes the conventions
(:data:`MACRO_AVERAGE`) so every report agrees.
"""

from __future__ import annotations

import numpy as np

from fer_keras.constants import CLASS_NAMES

MACRO_AVERAGE = ("macro averages are over the classes present in the true or the predicted labels "
                 "(scikit-learn's labels=None); a class never predicted has precision 0 and one never true "
                 "has recall 0 (zero_division=0)")
"""How macro precision, recall and F1 are averaged. A class absent from both
truth and predictions (a small split without a disgust face) has no F1 at
all: counting it as 0 would understate every model alike (0.643 where
0.75 is right)."""


def classification_metrics(y_true, probs, class_names=CLASS_NAMES):
    """Accuracy, macro/weighted F1, macro precision/recall, per-class figures and
    the confusion matrix of ``argmax(probs)`` against ``y_true``.

    Per-class figures cover every class of ``class_names``; the macro
    averages follow :data:`MACRO_AVERAGE`."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    y_true = np.asarray(y_true)
    y_pred = np.asarray(probs).argmax(axis=1)
    labels = np.arange(len(class_names))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    _, _, wf, _ = precision_recall_fscore_support(y_true, y_pred, labels=labels, average="weighted",
                                                  zero_division=0)
    present = np.isin(labels, np.concatenate([y_true, y_pred]))  # see MACRO_AVERAGE

    def macro(values):
        return float(values[present].mean()) if present.any() else 0.0

    return {
        "accuracy": float(np.mean(y_true == y_pred)) if len(y_true) else 0.0,
        "macro_f1": macro(f),
        "weighted_f1": float(wf),
        "precision_macro": macro(p),
        "recall_macro": macro(r),
        "per_class": {
            name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
            for i, name in enumerate(class_names)
        },
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }


def prediction_collapse(probs, *, threshold=0.9):
    """``(class_index, share)`` when one class takes more than ``threshold`` of
    the predictions (a model stuck on one answer), else ``None``."""
    pred = np.asarray(probs).argmax(axis=1)
    if len(pred) == 0:
        return None
    counts = np.bincount(pred)
    top = int(counts.argmax())
    share = counts[top] / len(pred)
    return (top, float(share)) if share > threshold else None


def negative_log_likelihood(y_true, probs, *, eps=1e-12):
    """Mean ``-log p(true class)`` (log loss); probabilities are clipped at ``eps``."""
    probs = np.asarray(probs, dtype=np.float64)
    y_true = np.asarray(y_true, dtype=np.int64)
    if len(y_true) == 0:
        return 0.0
    picked = probs[np.arange(len(y_true)), y_true]
    return float(-np.mean(np.log(np.clip(picked, eps, None))))
