"""What an accuracy table does not say: calibration, intervals, significance, diversity.

:func:`analyse_probas` runs every analysis on the member-probability matrix
(M, N, C): calibration figures (:mod:`~fer_keras.ensemble.calibration`),
bootstrap intervals and McNemar tests (:mod:`~fer_keras.ensemble.stats`),
disagreement and each member's marginal contribution
(:mod:`~fer_keras.ensemble.selection`), and per-face uncertainty.
"""

from __future__ import annotations

import time

import numpy as np

from fer_keras.constants import NUM_CLASSES
from fer_keras.ensemble import calibration, selection, stats
from fer_keras.ensemble.combine import combine_probas


def analyse_probas(member_probas, y, *, names, weights=None, method="mean", probas=None, raw_member_probas=None,
                   temperatures=None, n_resamples=1000, seed=0, n_bins=None, n_classes=NUM_CLASSES):
    """Calibration, bootstrap intervals, McNemar tests, diversity and per-face
    uncertainty of members (M, N, C) and their ensemble on labels ``y``.

    ``probas``: the ensemble's (N, C) probabilities (default: ``combine_probas``
    of the members with ``weights`` and ``method``). ``raw_member_probas``:
    the members before temperature scaling, to report figures before and after.
    Returns a dict: JSON-ready figures plus the per-face arrays ``entropy`` and
    ``face_disagreement`` (N,) and ``seconds`` per part.
    """
    n_bins = n_bins or calibration.N_BINS
    stack = np.asarray(member_probas)
    y = np.asarray(y, dtype=np.int64)
    w = np.ones(len(stack)) if weights is None else np.asarray(weights, dtype=np.float64)
    if probas is None:
        probas = combine_probas(stack, w, method)
    seconds, out = {}, {}

    tick = time.perf_counter()
    out["calibration"] = {"n_bins": n_bins, "ensemble": calibration.calibration_metrics(y, probas, n_bins=n_bins),
                          "members": {n: calibration.calibration_metrics(y, p, n_bins=n_bins)
                                      for n, p in zip(names, stack)}}
    if raw_member_probas is not None:
        raw = np.asarray(raw_member_probas)
        raw_ensemble = combine_probas(raw, w, method)
        before = {"ensemble": calibration.calibration_metrics(y, raw_ensemble, n_bins=n_bins),
                  "members": {n: calibration.calibration_metrics(y, p, n_bins=n_bins, bins=False)
                              for n, p in zip(names, raw)}}
        temps = np.ones(len(stack)) if temperatures is None else np.asarray(temperatures, dtype=np.float64)
        out["temperature_scaling"] = {
            "temperatures": dict(zip(names, map(float, temps))),
            "ece_before": {"ensemble": before["ensemble"]["ece"],
                           **{n: m["ece"] for n, m in before["members"].items()}},
            "ece_after": {"ensemble": out["calibration"]["ensemble"]["ece"],
                          **{n: m["ece"] for n, m in out["calibration"]["members"].items()}},
            "nll_before": {"ensemble": before["ensemble"]["nll"],
                           **{n: m["nll"] for n, m in before["members"].items()}},
            "nll_after": {"ensemble": out["calibration"]["ensemble"]["nll"],
                          **{n: m["nll"] for n, m in out["calibration"]["members"].items()}},
            "ensemble_before": before["ensemble"]}
    seconds["calibration"] = time.perf_counter() - tick

    tick = time.perf_counter()
    preds = {"ensemble": probas.argmax(axis=1)}
    member_preds = stack.argmax(axis=2)
    keyed = {f"m{i}": p for i, p in enumerate(member_preds)}
    intervals = stats.bootstrap_intervals(y, {**preds, **keyed}, n_classes=n_classes, n_resamples=n_resamples,
                                          seed=seed)
    out["bootstrap"] = {"resamples": int(n_resamples), "seed": seed, "level": stats.LEVEL, "method": "percentile",
                        "ensemble": intervals.get("ensemble"),
                        "members": {n: intervals.get(f"m{i}") for i, n in enumerate(names)}}
    seconds["bootstrap"] = time.perf_counter() - tick

    tick = time.perf_counter()
    ens_correct = preds["ensemble"] == y
    out["mcnemar"] = {n: stats.mcnemar_exact(p == y, ens_correct) for n, p in zip(names, member_preds)}
    seconds["mcnemar"] = time.perf_counter() - tick

    tick = time.perf_counter()
    matrix = selection.disagreement_matrix(stack)
    upper = matrix[np.triu_indices(len(stack), k=1)]
    out["diversity"] = {"members": list(names), "disagreement": matrix.round(6).tolist(),
                        "mean_pairwise": float(upper.mean()) if upper.size else None,
                        "marginal": dict(zip(names, selection.marginal_accuracy(stack, y, w, method)))}
    seconds["diversity"] = time.perf_counter() - tick

    tick = time.perf_counter()
    out["entropy"] = calibration.entropy(probas)
    # Members with weight 0 (e.g. left out by greedy selection) are not part of the ensemble here.
    out["face_disagreement"] = selection.face_disagreement(stack[w > 0] if (w > 0).any() else stack, probas)
    out["uncertainty"] = {"mean_entropy": float(out["entropy"].mean()) if len(y) else None,
                          "mean_member_disagreement": float(out["face_disagreement"].mean()) if len(y) else None,
                          "unanimous_share": float(np.mean(out["face_disagreement"] == 0)) if len(y) else None}
    seconds["uncertainty"] = time.perf_counter() - tick
    out["seconds"] = {k: round(v, 4) for k, v in seconds.items()}
    return out
