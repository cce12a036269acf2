"""Scoring an ensemble and its members on labelled faces: :func:`evaluate` → :class:`EnsembleReport`."""

from __future__ import annotations

import time

import numpy as np

from fer_keras.ensemble.analysis import analyse_probas
from fer_keras.ensemble.combine import combine_probas, member_keys
from fer_keras.ensemble.report import EnsembleReport
from fer_keras.ensemble.stats import bootstrap_intervals
from fer_keras.ensemble.tta import tta_mode
from fer_keras.errors import ConfigError, FerError
from fer_keras.metrics import classification_metrics, negative_log_likelihood, prediction_collapse


def _figures(probas, y, class_names):
    """Classification figures and the NLL of one set of probabilities."""
    m = classification_metrics(y, probas, class_names)
    m["nll"] = negative_log_likelihood(y, probas)
    return m


def _overlap_figures(reference, seen, y, stack, probas, names, class_names, bootstrap, seed):
    """Accuracy on the faces also in ``reference`` and figures on the others, per member and ensemble."""
    rest = ~seen
    figures = {"reference": reference, "faces": int(seen.sum()), "rest": int(rest.sum()), "members": {}}

    def on(p):
        pred = p.argmax(axis=1)
        scores = {"accuracy_seen": float((pred[seen] == y[seen]).mean()) if seen.any() else None}
        if rest.any():
            m = classification_metrics(y[rest], p[rest], class_names)
            scores.update(accuracy_rest=m["accuracy"], macro_f1_rest=m["macro_f1"])
        return scores

    for name, p in zip(names, stack):
        figures["members"][name] = on(p)
    figures["ensemble"] = on(probas)
    if rest.any() and bootstrap:
        figures["ensemble"]["ci95_rest"] = bootstrap_intervals(
            y[rest], {"ensemble": probas[rest].argmax(axis=1)}, n_classes=len(class_names),
            n_resamples=bootstrap, seed=seed)["ensemble"]
    return figures


def evaluate(ensemble, faces, y, *, tta=False, skipped=(), context=None, class_names=None,
             bootstrap=1000, seed=0, n_bins=None, keep_faces=True, overlap=None):
    """Score the ensemble and each member on ``(faces, y)``; returns an :class:`EnsembleReport`.

    Each member predicts the faces once (cached in the ensemble); ``context``
    (e.g. ``{"csv": ..., "usage": ...}``) is copied into ``report.json``.
    With temperatures, member figures are those of the temperature-scaled
    members, and calibration before scaling is reported too. ``bootstrap``
    resamples (seeded by ``seed``; 0 = no intervals) give 95% intervals;
    ``n_bins`` confidence bins (default 15) the ECE; ``keep_faces`` keeps the
    faces in the report for its contact sheet of confident mistakes.
    ``class_names``: default the ensemble's (7, or 8 with contempt).
    ``overlap``: ``(split name, mask)``, the faces that are also in that
    split (:func:`fer_keras.data.seen_in`, e.g. the training split); the
    report then also scores the faces it does not hold.
    """
    class_names = tuple(class_names or ensemble.class_names)
    y = np.asarray(y, dtype=np.int64)
    if len(y) and (y.min() < 0 or y.max() >= len(class_names)):
        raise FerError(f"labels run up to {int(y.max())} but the ensemble predicts {len(class_names)} classes "
                       f"({', '.join(class_names)})")
    if len(y) == 0:
        raise FerError("nothing to evaluate: the split has no faces")
    if bootstrap < 0:
        raise ConfigError(f"bootstrap resamples must be 0 or more, got {bootstrap}")
    start = time.perf_counter()
    raw = ensemble.member_probas(faces, tta=tta)
    calibrated = ensemble.is_calibrated
    stack = ensemble.calibrated(raw) if calibrated else raw
    probas = combine_probas(stack, ensemble.weights_, ensemble.method)
    member_metrics = [_figures(p, y, class_names) for p in stack]
    info = []
    for member, p in zip(ensemble.members, stack):
        entry = {"input": {**member.adapter.to_dict(), "describe": member.adapter.describe()},
                 "notes": list(member.notes)}
        collapse = prediction_collapse(p)
        if collapse:
            entry["collapse"] = {"class": class_names[collapse[0]], "share": collapse[1]}
        for key in ("architecture", "validation", "parameters"):
            if key in member.metadata:
                entry[key] = member.metadata[key]
        info.append(entry)
    names = member_keys(ensemble.members)
    science_start = time.perf_counter()
    science = analyse_probas(stack, y, names=names, weights=ensemble.weights_, method=ensemble.method,
                             probas=probas, raw_member_probas=raw if calibrated else None,
                             temperatures=ensemble.temperatures_ if calibrated else None, n_resamples=bootstrap,
                             seed=seed, n_bins=n_bins, n_classes=len(class_names))
    if overlap is not None:
        reference, seen = overlap
        science["overlap"] = _overlap_figures(reference, np.asarray(seen, dtype=bool), y, stack, probas, names,
                                              class_names, bootstrap, seed)
    seconds = {"predict": {n: round(s, 3) for n, s in ensemble.predict_seconds_.items()
                           if n in {m.name for m in ensemble.members}},
               "evaluate": round(time.perf_counter() - start, 3),
               "analysis": round(time.perf_counter() - science_start, 3)}
    return EnsembleReport(
        member_names=names, member_files=[str(m.path) for m in ensemble.members],
        weights=ensemble.weights_, method=ensemble.method, tta=tta_mode(tta), y_true=y, member_probas=stack,
        probas=probas, metrics=_figures(probas, y, class_names), member_metrics=member_metrics,
        skipped=list(skipped), member_info=info, seconds=seconds, context=dict(context or {}),
        class_names=tuple(class_names), science=science, faces=np.asarray(faces) if keep_faces else None,
        temperatures=ensemble.temperatures_ if calibrated else None)
