"""How sure are the figures: bootstrap intervals and McNemar's test.

- :func:`bootstrap_intervals`: percentile bootstrap 95% intervals of accuracy
  and macro-F1 for several models scored on the same faces. One seeded index
  matrix (B, N) resamples every model alike (paired), and macro-F1 comes from
  B confusion matrices built by a single ``np.bincount`` per model
  (:func:`bootstrap_macro_f1`): no Python loop over resamples.
- :func:`mcnemar_exact`: two-sided exact McNemar test of two classifiers on
  the same faces (binomial test on the discordant pairs).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

N_RESAMPLES = 1000
LEVEL = 0.95


def bootstrap_indices(n, n_resamples=N_RESAMPLES, *, seed=0):
    """(B, N) indices drawn with replacement (int32 when N allows; seeded)."""
    rng = np.random.default_rng(seed)
    dtype = np.int32 if n < 2**31 else np.int64
    return rng.integers(0, n, size=(int(n_resamples), int(n)), dtype=dtype)


def bootstrap_accuracy(correct, indices):
    """Accuracy on every resample: ``correct`` (N,) booleans, ``indices`` (B, N) → (B,)."""
    return np.asarray(correct, dtype=bool)[indices].mean(axis=1)


def bootstrap_confusion(y_true, y_pred, indices, n_classes):
    """(B, C, C) confusion matrices (rows true, columns predicted), one per resample."""
    codes = np.asarray(y_true, dtype=np.int64) * n_classes + np.asarray(y_pred, dtype=np.int64)
    n_resamples = len(indices)
    cells = n_classes * n_classes
    dtype = np.int32 if n_resamples * cells < 2**31 else np.int64
    flat = codes.astype(dtype)[indices]
    flat += (np.arange(n_resamples, dtype=dtype) * cells)[:, None]
    return np.bincount(flat.ravel(), minlength=n_resamples * cells).reshape(n_resamples, n_classes, n_classes)


def macro_f1_from_confusion(confusion):
    """Macro-F1 of (..., C, C) confusion matrices over the classes present in truth or predictions
    (scikit-learn's ``f1_score(average="macro", zero_division=0)``; see
    :data:`fer_keras.metrics.MACRO_AVERAGE`)."""
    cm = np.asarray(confusion, dtype=np.float64)
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    denom = cm.sum(axis=-1) + cm.sum(axis=-2)  # true count + predicted count = 2tp + fp + fn
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    present = (denom > 0).sum(axis=-1)
    return np.divide(f1.sum(axis=-1), present, out=np.zeros_like(f1.sum(axis=-1)), where=present > 0)


def bootstrap_macro_f1(y_true, y_pred, indices, n_classes):
    """Macro-F1 on every resample (B,), vectorised through :func:`bootstrap_confusion`."""
    return macro_f1_from_confusion(bootstrap_confusion(y_true, y_pred, indices, n_classes))


def percentile_interval(values, level=LEVEL):
    """``[low, high]``: the central ``level`` percentile interval of bootstrap ``values``."""
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(np.asarray(values, dtype=np.float64), [tail, 100 - tail])
    return [float(low), float(high)]


def bootstrap_intervals(y_true, predictions, *, n_classes, n_resamples=N_RESAMPLES, seed=0, level=LEVEL):
    """Percentile bootstrap intervals of accuracy and macro-F1 for several models on the same faces.

    ``predictions``: mapping name → predicted classes (N,). Every model is
    scored on the same resamples. Returns ``{name: {"accuracy": [lo, hi],
    "macro_f1": [lo, hi]}}``; empty when ``n_resamples`` is 0.
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    if n_resamples <= 0 or len(y_true) == 0:
        return {}
    indices = bootstrap_indices(len(y_true), n_resamples, seed=seed)
    out = {}
    for name, pred in predictions.items():
        pred = np.asarray(pred, dtype=np.int64)
        out[name] = {"accuracy": percentile_interval(bootstrap_accuracy(pred == y_true, indices), level),
                     "macro_f1": percentile_interval(bootstrap_macro_f1(y_true, pred, indices, n_classes), level)}
    return out


def binomial_two_sided_p(k, n):
    """Exact two-sided p-value of ``k`` successes in ``n`` fair coin flips: ``min(1, 2 P(X <= min(k, n-k)))``.

    Computed with exact integers (a fraction ``2 * sum C(n, i) / 2**n``), so
    it is exact for any ``n`` a test set can have.
    """
    if n == 0:
        return 1.0
    low = min(k, n - k)
    term, tail = 1, 1  # C(n, 0)
    for i in range(low):
        term = term * (n - i) // (i + 1)  # C(n, i + 1), exact
        tail += term
    return float(min(Fraction(1), Fraction(2 * tail, 2**n)))


def mcnemar_exact(correct_a, correct_b):
    """Exact McNemar test of classifiers A and B on the same faces.

    ``b`` = faces A gets right and B wrong, ``c`` = faces A gets wrong and B
    right; under "equally accurate" ``b ~ Binomial(b + c, 1/2)``. Returns
    ``{"b", "c", "p_value"}`` (two-sided; 1.0 when they never disagree).
    """
    a = np.asarray(correct_a, dtype=bool)
    b_ = np.asarray(correct_b, dtype=bool)
    b = int(np.count_nonzero(a & ~b_))
    c = int(np.count_nonzero(~a & b_))
    return {"b": b, "c": c, "p_value": binomial_two_sided_p(b, b + c)}


__all__ = ["LEVEL", "N_RESAMPLES", "binomial_two_sided_p", "bootstrap_accuracy", "bootstrap_confusion",
           "bootstrap_indices", "bootstrap_intervals", "bootstrap_macro_f1", "macro_f1_from_confusion",
           "mcnemar_exact", "percentile_interval"]
