"""The :class:`Ensemble` estimator: members combined, in scikit-learn's spirit.

``predict_proba`` / ``predict`` / ``score`` on raw faces; weights and
temperatures fitted on a split (``fit_weights``, ``calibrate``); member
probabilities cached per input, so evaluating, calibrating and selecting on
the same faces predicts only once.
"""

from __future__ import annotations

import collections
import hashlib
import os
import time
import warnings

import numpy as np

from fer_keras.ensemble.calibration import apply_temperatures, fit_ensemble_temperatures
from fer_keras.ensemble.combine import (METHODS, combine_probas, drop_contempt, evaluation_classes, fit_weights,
                                        member_keys, normalise_weights, weights_from_mapping)
from fer_keras.ensemble.members import BATCH_SIZE, load_members
from fer_keras.ensemble.tta import tta_mode
from fer_keras.ensemble.weights_file import folder_temperatures
from fer_keras.errors import ConfigError, ModelFileError


class Ensemble:
    """Combine members' probabilities (scikit-learn style ``predict_proba`` / ``predict`` / ``score``).

    Args:
      members: list of :class:`Member`.
      method: ``"mean"`` (default), ``"geometric"`` or ``"vote"``.
      weights: None (each member's own ``weight``, 1.0 unless set),
        ``"uniform"``, a sequence (one per member), or a mapping from member
        file name (or path) to weight; normalised to sum 1.
      batch_size: faces per prediction call.
      verbose: show a progress bar per member.
      temperatures: None (no temperature scaling), a sequence (one per
        member) or a mapping from member file name to temperature ``T``;
        each member's probabilities become ``softmax(log p / T)`` before
        they are combined (see :meth:`calibrate`).
      class_map: None (every member has the same class set: 7, or 8 with
        contempt) or ``"drop-contempt"`` (evaluate on the 7 FER2013 classes;
        8-way members' contempt column is dropped and renormalised).

    Member probabilities are cached per input array (and TTA flag), so
    ``predict_proba``, ``predict``, ``score`` and :func:`evaluate` on the same
    faces predict only once. ``member_probas_`` holds the latest matrix.
    """

    def __init__(self, members, *, method="mean", weights=None, batch_size=BATCH_SIZE, verbose=0,
                 temperatures=None, class_map=None):
        if not members:
            raise ModelFileError("an ensemble needs at least one member")
        if method not in METHODS:
            raise ConfigError(f"unknown ensemble method {method!r}; choose one of {', '.join(METHODS)}")
        evaluation_classes(members, class_map=class_map)  # mixed class sets fail here, not mid-way
        self.class_map = class_map
        self.members = list(members)
        self.method = method
        self.weights = weights
        self.batch_size = batch_size
        self.verbose = verbose
        self.temperatures = temperatures
        self._cache = collections.OrderedDict()
        self.predict_seconds_ = {}

    @classmethod
    def from_dir(cls, path="models", *, safe_mode=True, include_distilled=False, **options):
        """Every member file in ``path`` as one ensemble: ``Ensemble.from_dir("models")``.

        ``path``: a folder, a file or a list of them, as :func:`~fer_keras.ensemble.load_members`
        takes; ``options`` go to :class:`Ensemble` (``method``, ``weights`` ...). A file that
        cannot be a member is skipped with a warning naming it and why, so nothing drops out
        unseen; :class:`~fer_keras.errors.ModelFileError` when no member is left.

        A folder's own calibration (its ``temperatures.json``, see
        :func:`~fer_keras.ensemble.folder_temperatures`) is applied, as the
        tester, ``predict.py``, ``serve.py`` and ``export.py`` apply it, so the
        library gives their probabilities; ``temperatures=None`` turns it off,
        and a file fitted for other members is left out with a warning.
        """
        members, skipped = load_members(path, safe_mode=safe_mode, include_distilled=include_distilled)
        for item in skipped:
            warnings.warn(f"skipped {item}", stacklevel=2)
        if "temperatures" not in options and isinstance(path, (str, os.PathLike)) and os.path.isdir(path):
            options["temperatures"], note = folder_temperatures(path, members)
            if note and options["temperatures"] is None:
                warnings.warn(note, stacklevel=2)
        return cls(members, **options)

    # === Weights ===

    @property
    def weights_(self):
        """The normalised weights, one per member (array summing to 1)."""
        w = self.weights
        if w is None:
            raw = [m.weight for m in self.members]
        elif isinstance(w, str):
            if w != "uniform":
                raise ConfigError(f"weights must be 'uniform', a list or a mapping; got {w!r} "
                                  "(read a weights file with read_weights)")
            raw = [1.0] * len(self.members)
        elif isinstance(w, dict):
            raw = weights_from_mapping(w, self.members)
        else:
            raw = list(w)
        return normalise_weights(raw, len(self.members))

    def weights_dict(self):
        """``{member key: weight}``, keys as written to a weights file."""
        keys = member_keys(self.members)
        return {k: float(v) for k, v in zip(keys, self.weights_)}

    def fit_weights(self, faces, y, *, tta=False):
        """Fit weights on ``(faces, y)`` (see :func:`fit_weights`); sets ``weights``; returns self.

        Members are temperature-scaled first when the ensemble has temperatures."""
        probas = self.calibrated(self.member_probas(faces, tta=tta))
        fitted = fit_weights(probas, y)
        self.weights = dict(zip(member_keys(self.members), fitted.tolist()))
        return self

    # === Temperatures ===

    @property
    def temperatures_(self):
        """One temperature per member (array); all 1.0 without temperature scaling."""
        t = self.temperatures
        if t is None:
            return np.ones(len(self.members))
        raw = weights_from_mapping(t, self.members, what="temperature") if isinstance(t, dict) else list(t)
        temps = np.asarray(raw, dtype=np.float64).ravel()
        if len(temps) != len(self.members):
            raise ConfigError(f"{len(temps)} temperatures for {len(self.members)} members")
        if not np.isfinite(temps).all() or (temps <= 0).any():
            raise ConfigError(f"temperatures must be positive and finite, got {temps.tolist()}")
        return temps

    @property
    def is_calibrated(self):
        """Whether any member is temperature-scaled (a temperature other than 1)."""
        return bool(np.any(self.temperatures_ != 1.0))

    def temperatures_dict(self):
        """``{member key: temperature}``, keys as written to a weights file."""
        return {k: float(v) for k, v in zip(member_keys(self.members), self.temperatures_)}

    def calibrate(self, faces, y, *, tta=False, member_probas=None):
        """Fit one temperature per member on ``(faces, y)`` (minimum NLL of
        ``softmax(log p / T)``, see :func:`fer_keras.ensemble.calibration.fit_temperature`),
        then, for the mean and geometric methods, one factor for all of them
        that calibrates their combination
        (:func:`fer_keras.ensemble.calibration.fit_shared_scale`, kept as
        ``shared_scale_``); sets ``temperatures``; returns self.
        ``member_probas``: the members' (M, N, C) probabilities of ``faces``
        when the caller has them already (running the members is the slow part)."""
        if len(np.asarray(y)) == 0:
            raise ConfigError("cannot fit temperatures on an empty split")
        raw = self.member_probas(faces, tta=tta) if member_probas is None else member_probas
        temps, self.shared_scale_ = fit_ensemble_temperatures(raw, y, self.combination_of_members())
        self.temperatures = dict(zip(member_keys(self.members), temps.tolist()))
        return self

    def combination_of_members(self):
        """The function from member probabilities (M, N, C) to this ensemble's (N, C) ones, with its
        weights and method; None for a vote (its output carries no confidence to calibrate)."""
        if self.method == "vote":
            return None
        return lambda p: combine_probas(p, self.weights_, self.method)

    def calibrated(self, member_probas):
        """Member probabilities (M, N, C) after each member's temperature (unchanged without)."""
        return apply_temperatures(member_probas, self.temperatures_) if self.temperatures is not None \
            else member_probas

    # === Prediction ===

    @property
    def class_names(self):
        """The classes the ensemble predicts: FER2013's 7, or 8 with contempt."""
        return evaluation_classes(self.members, class_map=self.class_map)

    def member_probas(self, faces, *, tta=False):
        """Every member's probabilities, shape (M, N, C), FER2013 order (C = 7, or 8 with
        contempt last; see :attr:`class_names`); cached."""
        faces = np.asarray(faces)
        key = (faces_fingerprint(faces), tta_mode(tta))
        if key in self._cache:
            self._cache.move_to_end(key)
            self.member_probas_ = self._cache[key]
            return self.member_probas_
        n_classes = len(self.class_names)
        stack = np.empty((len(self.members), len(faces), n_classes), dtype=np.float32)
        for i, member in enumerate(self.members):
            start = time.perf_counter()
            probs = member.predict_proba(faces, tta=tta, batch_size=self.batch_size, verbose=self.verbose)
            stack[i] = drop_contempt(probs) if probs.shape[1] > n_classes else probs
            self.predict_seconds_[member.name] = time.perf_counter() - start
        self._cache[key] = stack
        while len(self._cache) > 4:
            self._cache.popitem(last=False)
        self.member_probas_ = stack
        return stack

    def combine(self, member_probas):
        """Ensemble probabilities from a member-probability matrix (M, N, 7)
        (temperature-scaled first when the ensemble has temperatures)."""
        return combine_probas(self.calibrated(member_probas), self.weights_, self.method)

    def predict_proba(self, faces, *, tta=False):
        """Ensemble probabilities (N, 7) for raw faces (uint8, N x 48 x 48 x 1)."""
        return self.combine(self.member_probas(faces, tta=tta))

    def predict(self, faces, *, tta=False):
        """Predicted FER2013 class indices (N,)."""
        return self.predict_proba(faces, tta=tta).argmax(axis=1)

    def score(self, faces, y, *, tta=False):
        """Accuracy on ``(faces, y)``."""
        return float(np.mean(self.predict(faces, tta=tta) == np.asarray(y)))

    def clear_cache(self):
        self._cache.clear()


def faces_fingerprint(faces):
    """``(shape, dtype, blake2b digest)`` of a face array: the key of prediction caches."""
    digest = hashlib.blake2b(np.ascontiguousarray(faces).view(np.uint8).ravel(), digest_size=16)
    return (faces.shape, str(faces.dtype), digest.hexdigest())
