"""Combining member probabilities: methods, weights, class sets. A leaf: plain arrays in, arrays out.

Everything here works on the member-probability matrix (M, N, C) and on
members only through their names and class counts, so the estimator, the
evaluation, member selection and export all share it without importing one
another.
"""

from __future__ import annotations

import collections
import logging

import numpy as np

from fer_keras.constants import CLASS_NAMES, CLASS_NAMES_8, NUM_CLASSES
from fer_keras.errors import ConfigError, FerError

log = logging.getLogger(__name__)

METHODS = ("mean", "geometric", "vote")
"""How member probabilities are combined: arithmetic mean, geometric mean
(renormalised), or (weighted) majority vote of the members' argmax."""

CLASS_MAPS = ("drop-contempt",)
"""How members with different class sets may be evaluated together (see :func:`evaluation_classes`)."""

CLASS_COUNTS = (NUM_CLASSES, len(CLASS_NAMES_8))
"""Member output sizes the ensemble tester accepts: 7 (FER2013) and 8 (plus contempt)."""

_EPS = 1e-12


def combine_probas(member_probas, weights=None, method="mean"):
    """Ensemble probabilities (N, C) from member probabilities (M, N, C).

    ``weights``: non-negative, any scale (normalised here); None = uniform.
    ``geometric`` renormalises the weighted geometric mean; ``vote`` returns
    each class's (weighted) share of the members' votes, ties broken by the
    mean probability.
    """
    probas = np.asarray(member_probas, dtype=np.float64)
    if probas.ndim != 3:
        raise ValueError("member_probas must have shape (members, samples, classes)")
    w = normalise_weights(np.ones(len(probas)) if weights is None else weights, len(probas))
    if method == "mean":
        return np.tensordot(w, probas, axes=1)
    if method == "geometric":
        logp = np.tensordot(w, np.log(np.clip(probas, _EPS, None)), axes=1)
        logp -= logp.max(axis=1, keepdims=True)
        p = np.exp(logp)
        return p / p.sum(axis=1, keepdims=True)
    if method == "vote":
        votes = np.zeros(probas.shape[1:])
        rows = np.arange(probas.shape[1])
        for weight, p in zip(w, probas):
            votes[rows, p.argmax(axis=1)] += weight
        tie_break = 1e-6 * np.tensordot(w, probas, axes=1)
        return (votes + tie_break) / (1 + 1e-6)
    raise ConfigError(f"unknown ensemble method {method!r}; choose one of {', '.join(METHODS)}")


def normalise_weights(weights, n):
    """``weights`` (one per member, non-negative, any scale) as an array summing to 1; ConfigError otherwise."""
    w = np.asarray(weights, dtype=np.float64).ravel()
    if len(w) != n:
        raise ConfigError(f"{len(w)} weights for {n} members")
    if not np.isfinite(w).all() or (w < 0).any():
        raise ConfigError(f"weights must be finite and non-negative, got {w.tolist()}")
    if w.sum() <= 0:
        raise ConfigError("weights sum to 0; at least one member needs a positive weight")
    return w / w.sum()


def fit_weights(member_probas, y_true):
    """Non-negative weights summing to 1 that minimise the NLL of the weighted mean.

    A convex problem (mixture weights); solved with SLSQP from the uniform
    start, with EM iterations as fallback. Returns an array (M,).
    """
    probas = np.asarray(member_probas, dtype=np.float64)
    y = np.asarray(y_true, dtype=np.int64)
    if len(y) == 0:
        raise ConfigError("cannot fit weights on an empty split")
    m = len(probas)
    picked = np.clip(probas[:, np.arange(len(y)), y].T, 0, None)  # (N, M): p_m(true class)
    if m == 1:
        return np.ones(1)

    def nll(w):
        return -np.mean(np.log(picked @ w + _EPS))

    def grad(w):
        return -np.mean(picked / (picked @ w + _EPS)[:, None], axis=0)

    start = np.full(m, 1.0 / m)
    w = None
    try:
        from scipy.optimize import minimize

        result = minimize(nll, start, jac=grad, method="SLSQP", bounds=[(0.0, 1.0)] * m,
                          constraints=[{"type": "eq", "fun": lambda v: v.sum() - 1.0,
                                        "jac": lambda v: np.ones_like(v)}],
                          options={"maxiter": 500, "ftol": 1e-12})
        if result.success:
            w = np.clip(result.x, 0, None)
    except ImportError:  # scipy ships with scikit-learn; EM below needs only numpy
        pass
    if w is None or w.sum() <= 0:
        w = start
        for _ in range(5000):  # EM for mixture weights: monotone, converges to the optimum
            resp = picked * w
            resp /= resp.sum(axis=1, keepdims=True) + _EPS
            new = resp.mean(axis=0)
            if np.abs(new - w).max() < 1e-10:
                w = new
                break
            w = new
    w[w < 1e-6] = 0.0
    return w / w.sum()


def drop_contempt(probs):
    """8-way probabilities (N, 8) → the 7 FER2013 classes (N, 7): contempt's
    column is dropped and each row renormalised (uniform where nothing is left)."""
    kept = np.asarray(probs, dtype=np.float32)[:, :NUM_CLASSES]
    total = kept.sum(axis=1, keepdims=True)
    return np.divide(kept, total, out=np.full_like(kept, 1.0 / NUM_CLASSES), where=total > 0)


def _classes_of(member):
    """7 or 8; duck-typed members (export.RuntimeModel) carry it on their adapter, 7 by default."""
    adapter = getattr(member, "adapter", None)
    return int(getattr(member, "num_classes", None) or getattr(adapter, "num_classes", NUM_CLASSES))


def evaluation_classes(members, *, data_classes=None, class_map=None):
    """The class names members (and data with ``data_classes`` classes) are evaluated on.

    Everything 7-way → the FER2013 classes; everything 8-way → those plus
    contempt. A mix is refused with a :class:`FerError` unless ``class_map``
    says how: ``"drop-contempt"`` evaluates on the 7 shared classes (8-way
    members lose their contempt column, renormalised; the caller drops
    contempt faces from the data).
    """
    if class_map is not None and class_map not in CLASS_MAPS:
        raise ConfigError(f"unknown class map {class_map!r}; choose one of {', '.join(CLASS_MAPS)}")
    if class_map == "drop-contempt":
        return CLASS_NAMES
    counts = {_classes_of(m) for m in members}
    if data_classes is not None:
        counts.add(int(data_classes))
    if len(counts) <= 1:
        return CLASS_NAMES_8 if counts == {len(CLASS_NAMES_8)} else CLASS_NAMES
    ways = collections.defaultdict(list)
    for m in members:
        ways[_classes_of(m)].append(m.name)
    listed = "; ".join(f"{n}-way: {', '.join(names[:3])}{' ...' if len(names) > 3 else ''}"
                       for n, names in sorted(ways.items()))
    data = "" if data_classes is None else \
        f"; the data has {data_classes} classes{' (with contempt)' if data_classes == 8 else ''}"
    hint = ""
    if data_classes == NUM_CLASSES and set(ways) == {len(CLASS_NAMES_8)}:
        hint = " (or read the data with num_classes=8)"
    raise FerError(f"members and data do not share one class set ({listed}{data}); refusing to mix them. "
                   f"Pass class_map='drop-contempt'{hint} to evaluate on the 7 shared classes: 8-way members' "
                   "contempt column is dropped and renormalised, and contempt faces are left out of the data",
                   parameter="class_map")


def member_keys(members):
    """File names, or full paths where two members share a file name."""
    names = [m.name for m in members]
    duplicated = {n for n in names if names.count(n) > 1}
    return [str(m.path) if m.name in duplicated else m.name for m in members]


def weights_from_mapping(mapping, members, what="weight"):
    """One value per member from ``{file name or path: value}``; ConfigError naming the members it misses."""
    keys = member_keys(members)
    raw, missing = [], []
    for member, key in zip(members, keys):
        for candidate in (key, str(member.path), member.name):
            if candidate in mapping:
                raw.append(float(mapping[candidate]))
                break
        else:
            missing.append(key)
    if missing:
        raise ConfigError(f"the {what}s give no {what} for {', '.join(missing)} "
                          f"({what}s are given for: {', '.join(map(str, mapping)) or 'nothing'})")
    unused = set(map(str, mapping)) - set(keys) - {str(m.path) for m in members}
    if unused:
        log.warning("%ss for files that are not members ignored: %s", what, ", ".join(sorted(unused)))
    return raw
