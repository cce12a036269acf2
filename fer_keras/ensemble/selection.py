"""Choosing members: greedy ensemble selection and how the members differ.

- :func:`greedy_selection`: forward selection with replacement (Caruana,
  Niculescu-Mizil, Crew and Ksikes, "Ensemble selection from libraries of
  models", ICML 2004). Start from the empty ensemble; at every step add the
  member (possibly again) whose addition makes the mean of the chosen
  members best on a validation split; keep the step that scored best. A
  member chosen k times gets weight k / total.
- :func:`disagreement_matrix`: fraction of faces on which two members' top-1
  classes differ.
- :func:`marginal_accuracy`: the ensemble's accuracy without each member,
  minus its accuracy with every member (negative: the member helps).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from fer_keras.ensemble.combine import combine_probas

METRICS = ("accuracy", "nll")
"""What greedy selection maximises: accuracy (ties broken by lower NLL), or minus the NLL."""

_EPS = 1e-12


@dataclasses.dataclass
class Selection:
    """What :func:`greedy_selection` found."""

    counts: np.ndarray
    """(M,) times each member was chosen (up to the best step)."""
    order: list
    """Member indices in the order they were added (up to the best step)."""
    history: list
    """Validation ``{"step", "member", "accuracy", "nll"}`` after every step, all steps."""
    best_step: int
    metric: str
    excluded: list
    """Members never considered: constant top-1 on the validation faces."""

    @property
    def weights(self):
        """Counts normalised to sum 1 (zeros for members never chosen)."""
        return self.counts / self.counts.sum()


def _scores(sums, y, total):
    """Accuracy and NLL of the mean ``sums / total`` for a batch (K, N, C) of candidate sums."""
    rows = np.arange(len(y))
    acc = (sums.argmax(axis=-1) == y).mean(axis=-1)
    picked = sums[..., rows, y] / total
    nll = -np.log(np.clip(picked, _EPS, None)).mean(axis=-1)
    return acc, nll


def greedy_selection(member_probas, y_true, *, steps=None, metric="accuracy"):
    """Greedy forward selection with replacement over the members (M, N, C) on validation labels.

    ``steps``: additions tried (default ``max(20, 2 M)``); the returned counts
    are those of the best-scoring step (earliest on ties, so the smallest
    ensemble). Members whose top-1 is one class for every validation face
    (constant predictors) are never chosen: adding one only shifts the class
    prior, which fits the validation split rather than the faces.
    """
    probas = np.asarray(member_probas, dtype=np.float64)
    y = np.asarray(y_true, dtype=np.int64)
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    if probas.ndim != 3 or probas.shape[1] != len(y):
        raise ValueError("member_probas must be (members, samples, classes) with one label per sample")
    if len(y) == 0:
        raise ValueError("cannot select members on no faces")
    m = len(probas)
    steps = int(steps or max(20, 2 * m))
    top1 = probas.argmax(axis=2)
    excluded = [i for i in range(m) if m > 1 and np.all(top1[i] == top1[i, 0])]
    candidates = np.array([i for i in range(m) if i not in excluded] or list(range(m)))

    sums = np.zeros(probas.shape[1:])
    counts = np.zeros(m, dtype=np.int64)
    order, history = [], []
    best_key, best_step, best_counts = None, 0, None
    for step in range(1, steps + 1):
        acc, nll = _scores(sums[None] + probas[candidates], y, step)
        keys = np.stack([acc, -nll], axis=1) if metric == "accuracy" else np.stack([-nll, acc], axis=1)
        pick = int(np.lexsort((-np.arange(len(candidates)), keys[:, 1], keys[:, 0]))[-1])  # max key, first index
        chosen = int(candidates[pick])
        sums += probas[chosen]
        counts[chosen] += 1
        order.append(chosen)
        history.append({"step": step, "member": chosen, "accuracy": float(acc[pick]), "nll": float(nll[pick])})
        key = tuple(keys[pick])
        if best_key is None or key > best_key:
            best_key, best_step, best_counts = key, step, counts.copy()
    return Selection(counts=best_counts, order=order[:best_step], history=history, best_step=best_step,
                     metric=metric, excluded=excluded)


def disagreement_matrix(member_probas):
    """(M, M) fraction of faces on which members i and j predict different top-1 classes."""
    top1 = np.asarray(member_probas).argmax(axis=2)
    return (top1[:, None, :] != top1[None, :, :]).mean(axis=2)


def face_disagreement(member_probas, ensemble_probas):
    """Per face (N,): fraction of members whose top-1 differs from the ensemble's top-1."""
    top1 = np.asarray(member_probas).argmax(axis=2)
    return (top1 != np.asarray(ensemble_probas).argmax(axis=1)[None, :]).mean(axis=0)


def marginal_accuracy(member_probas, y_true, weights=None, method="mean"):
    """Per member: ``{"accuracy_without", "change_without"}`` where ``change_without`` is the
    ensemble's accuracy without the member minus with all members (negative: the member
    helps). The other members keep their relative weights. None for a lone member or
    where every other member has weight 0.
    """
    probas = np.asarray(member_probas)
    y = np.asarray(y_true, dtype=np.int64)
    m = len(probas)
    w = np.ones(m) if weights is None else np.asarray(weights, dtype=np.float64)
    full = float(np.mean(combine_probas(probas, w, method).argmax(axis=1) == y))
    out = []
    for i in range(m):
        keep = np.arange(m) != i
        if m == 1 or w[keep].sum() <= 0:
            out.append({"accuracy_without": None, "change_without": None})
            continue
        acc = float(np.mean(combine_probas(probas[keep], w[keep], method).argmax(axis=1) == y))
        out.append({"accuracy_without": acc, "change_without": acc - full})
    return out


__all__ = ["METRICS", "Selection", "disagreement_matrix", "face_disagreement", "greedy_selection",
           "marginal_accuracy"]
