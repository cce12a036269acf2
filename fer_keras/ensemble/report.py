"""What an evaluation found, as data: :class:`EnsembleReport` and its ``report.json``.

The figures (members', the ensemble's, and the analysis of
:func:`~fer_keras.ensemble.analysis.analyse_probas`) live here;
:mod:`~fer_keras.ensemble.display` renders them as text, Markdown, HTML and
figures. ``report.json`` keeps a stable schema: keys are only ever added.
"""

from __future__ import annotations

import dataclasses
import io

import numpy as np

from fer_keras.constants import CLASS_NAMES
from fer_keras.ensemble import calibration, display, selection
from fer_keras.metrics import MACRO_AVERAGE


@dataclasses.dataclass
class EnsembleReport:
    """Everything an evaluation found; ``save`` writes the report folder."""

    member_names: list
    member_files: list
    weights: np.ndarray
    method: str
    tta: str
    """Test-time augmentation mode (:mod:`fer_keras.ensemble.tta`): none, flip or tencrop."""
    y_true: np.ndarray
    member_probas: np.ndarray
    """(M, N, 7) member probabilities, FER2013 order (after temperature scaling, when the ensemble has temperatures)."""
    probas: np.ndarray
    """(N, 7) ensemble probabilities."""
    metrics: dict
    """Ensemble figures (:func:`fer_keras.metrics.classification_metrics` plus ``nll``)."""
    member_metrics: list
    skipped: list
    member_info: list
    seconds: dict
    context: dict = dataclasses.field(default_factory=dict)
    class_names: tuple = CLASS_NAMES
    science: dict = dataclasses.field(default_factory=dict)
    """:func:`analyse_probas` output: calibration, bootstrap, McNemar, diversity, uncertainty."""
    faces: np.ndarray | None = None
    """The evaluated faces (N, 48, 48, 1), for the contact sheet of confident mistakes."""
    temperatures: np.ndarray | None = None
    """(M,) member temperatures when the members were temperature-scaled, else None."""


    @property
    def y_pred(self):
        return self.probas.argmax(axis=1)

    @property
    def confidence(self):
        """(N,) the ensemble's top-1 probability per face."""
        return self.probas.max(axis=1)

    @property
    def entropy(self):
        """(N,) entropy (nats) of the ensemble's probabilities per face."""
        if "entropy" in self.science:
            return self.science["entropy"]
        return calibration.entropy(self.probas)

    @property
    def face_disagreement(self):
        """(N,) fraction of members whose top-1 differs from the ensemble's, per face."""
        if "face_disagreement" in self.science:
            return self.science["face_disagreement"]
        return selection.face_disagreement(self.member_probas, self.probas)

    def worst_indices(self, n):
        """Indices of the ``n`` most confidently wrong faces (highest ensemble confidence first)."""
        wrong = np.flatnonzero(self.y_pred != self.y_true)
        order = np.argsort(-self.confidence[wrong], kind="stable")
        return wrong[order[:max(int(n), 0)]]

    def to_dict(self):
        """The ``report.json`` document (stable schema; extra keys only added)."""
        e = self.metrics
        members = []
        sci = self.science
        for i, (name, file, m, info, w) in enumerate(zip(self.member_names, self.member_files, self.member_metrics,
                                                         self.member_info, self.weights)):
            members.append({"file": file, "accuracy": m["accuracy"], "macro_f1": m["macro_f1"],
                            "weighted_f1": m["weighted_f1"], "skipped": None,
                            "precision_macro": m["precision_macro"], "recall_macro": m["recall_macro"],
                            "nll": m["nll"], "weight": float(w),
                            "per_class_f1": {c: m["per_class"][c]["f1"] for c in self.class_names},
                            **info, **self._member_science(name, i)})
        for s in self.skipped:
            members.append({"file": str(s.path), "accuracy": None, "macro_f1": None, "weighted_f1": None,
                            "skipped": s.reason})
        ctx = dict(self.context)
        doc = {"csv": ctx.pop("csv", None), "usage": ctx.pop("usage", None), "n_samples": int(len(self.y_true)),
               "classes": list(self.class_names), "method": self.method,
               "tta": self.tta != "none", "tta_mode": self.tta,
               "ensemble": {k: e[k] for k in ("accuracy", "macro_f1", "weighted_f1", "precision_macro",
                                              "recall_macro", "per_class", "confusion_matrix", "nll")},
               "members": members,
               "weights": dict(zip(self.member_names, map(float, self.weights))),
               "seconds": self.seconds, "macro_average": MACRO_AVERAGE}
        # === Added by the calibration/statistics analysis (new keys only) ===
        if "calibration" in sci:
            doc["ensemble"]["calibration"] = sci["calibration"]["ensemble"]
            doc["ensemble"]["brier"] = sci["calibration"]["ensemble"]["brier"]
            doc["ensemble"]["ece"] = sci["calibration"]["ensemble"]["ece"]
        if sci.get("bootstrap", {}).get("ensemble"):
            doc["ensemble"]["ci95"] = sci["bootstrap"]["ensemble"]
        if "bootstrap" in sci:
            doc["bootstrap"] = {k: sci["bootstrap"][k] for k in ("resamples", "seed", "level", "method")}
        if "mcnemar" in sci:
            doc["mcnemar"] = {"test": "exact two-sided binomial test on the discordant faces, member vs ensemble",
                              "b": "faces the member gets right and the ensemble wrong",
                              "c": "faces the member gets wrong and the ensemble right"}
        if "diversity" in sci:
            doc["diversity"] = sci["diversity"]
        if "uncertainty" in sci:
            doc["uncertainty"] = sci["uncertainty"]
        if "overlap" in sci:
            doc["overlap"] = sci["overlap"]
        if "temperature_scaling" in sci or "temperature_scaling" in ctx:
            scaling = {**ctx.pop("temperature_scaling", {}), **sci.get("temperature_scaling", {})}
            doc["temperature_scaling"] = scaling
        doc.update(ctx)
        return doc

    def _member_science(self, name, index):
        """The per-member keys the analysis adds to a ``report.json`` member entry."""
        sci, extra = self.science, {}
        if "calibration" in sci:
            extra["calibration"] = sci["calibration"]["members"][name]
            extra["ece"] = extra["calibration"]["ece"]
            extra["brier"] = extra["calibration"]["brier"]
        if sci.get("bootstrap", {}).get("members", {}).get(name):
            extra["ci95"] = sci["bootstrap"]["members"][name]
        if name in sci.get("mcnemar", {}):
            extra["mcnemar_vs_ensemble"] = sci["mcnemar"][name]
        if "diversity" in sci:
            extra["marginal"] = sci["diversity"]["marginal"][name]
        if self.temperatures is not None:
            extra["temperature"] = float(self.temperatures[index])
        return extra

    def predictions_csv(self):
        """index, true, predicted (indices and names), the 7 ensemble probabilities, the
        ensemble's entropy (nats) and the fraction of members whose top-1 differs from the ensemble's."""
        out = io.StringIO()
        out.write(",".join(["index", "true", "predicted", "true_name", "predicted_name",
                            *(f"p_{c}" for c in self.class_names), "entropy", "member_disagreement"]) + "\n")
        pred = self.y_pred
        for i, (t, p, row, h, d) in enumerate(zip(self.y_true, pred, self.probas, self.entropy,
                                                   self.face_disagreement)):
            probs = ",".join(f"{v:.6f}" for v in row)
            out.write(f"{i},{int(t)},{int(p)},{self.class_names[t]},{self.class_names[p]},{probs},{h:.6f},{d:.6f}\n")
        return out.getvalue()

    # === Display (fer_keras.ensemble.display) ===

    def summary_table(self, *, markdown=False):
        """Members and ensemble: accuracy, macro/weighted F1, precision, recall."""
        return display.summary_table(self, markdown=markdown)

    def science_tables(self):
        """The analysis as tables (see :func:`fer_keras.ensemble.display.science_tables`)."""
        return display.science_tables(self)

    def to_text(self):
        """What the CLI prints."""
        return display.to_text(self)

    def to_markdown(self):
        """``report.md``."""
        return display.to_markdown(self)

    def save(self, out_dir, *, overwrite=False, worst=0):
        """Write the report folder (see :func:`fer_keras.ensemble.display.save`); returns it."""
        return display.save(self, out_dir, overwrite=overwrite, worst=worst)
