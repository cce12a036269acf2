"""Calibration: do the probabilities mean what they say?

Plain functions of labels and probabilities, in the spirit of
:mod:`fer_keras.metrics`:

- :func:`expected_calibration_error` (15 equal-width bins on the top-1
  confidence, Guo et al. 2017), :func:`brier_score` (multi-class, mean over
  faces of ``sum_k (p_k - onehot_k)^2``) and the NLL, together in
  :func:`calibration_metrics`;
- :func:`reliability_bins`: accuracy, mean confidence and count per bin, what
  the reliability diagram draws;
- temperature scaling: :func:`fit_temperature` finds the ``T`` minimising the
  NLL of ``softmax(log p / T)`` (a bounded 1-D search) and
  :func:`apply_temperature` applies it; :func:`fit_shared_scale` then
  scales every member's temperature alike so that their *combination* is
  calibrated. Members give probabilities, not
  logits, so ``log p`` stands in for the logits (equal up to a per-face
  constant, which softmax ignores).

Dividing log-probabilities by ``T > 0`` never changes a face's top-1 class:
temperature scaling changes confidence (ECE, NLL, Brier), never accuracy.
"""

from __future__ import annotations

import numpy as np

from fer_keras.metrics import negative_log_likelihood

N_BINS = 15
"""Equal-width confidence bins for the ECE and the reliability diagram."""

TEMPERATURE_BOUNDS = (0.05, 20.0)
"""Search interval of :func:`fit_temperature`."""

_EPS = 1e-12


def _as_arrays(y_true, probs):
    probs = np.asarray(probs, dtype=np.float64)
    y_true = np.asarray(y_true, dtype=np.int64)
    if probs.ndim != 2 or len(probs) != len(y_true):
        raise ValueError(f"probs must be (N, C) with N = len(y_true); got {probs.shape} for {len(y_true)} labels")
    return y_true, probs


def _bin_index(confidence, n_bins):
    """Bin ``b`` holds confidences in ``(b/n, (b+1)/n]`` (bin 0 also takes 0)."""
    return np.clip(np.ceil(confidence * n_bins).astype(np.int64) - 1, 0, n_bins - 1)


def reliability_bins(y_true, probs, *, n_bins=N_BINS):
    """Per confidence bin: ``count``, ``accuracy`` and mean ``confidence`` (None where empty).

    Returns a dict of lists plus ``edges`` (``n_bins + 1`` values from 0 to 1).
    """
    y_true, probs = _as_arrays(y_true, probs)
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y_true
    b = _bin_index(confidence, n_bins)
    count = np.bincount(b, minlength=n_bins)
    hits = np.bincount(b, weights=correct, minlength=n_bins)
    conf_sum = np.bincount(b, weights=confidence, minlength=n_bins)
    safe = np.maximum(count, 1)
    acc, conf = hits / safe, conf_sum / safe
    return {"edges": np.linspace(0, 1, n_bins + 1).tolist(), "count": count.tolist(),
            "accuracy": [float(a) if c else None for a, c in zip(acc, count)],
            "confidence": [float(v) if c else None for v, c in zip(conf, count)]}


def expected_calibration_error(y_true, probs, *, n_bins=N_BINS):
    """ECE: ``sum_b (n_b / N) |accuracy_b - confidence_b|`` over equal-width top-1 confidence bins."""
    y_true, probs = _as_arrays(y_true, probs)
    if len(y_true) == 0:
        return 0.0
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y_true).astype(np.float64)
    b = _bin_index(confidence, n_bins)
    gap = np.bincount(b, weights=correct - confidence, minlength=n_bins)  # sum of (hit - conf) per bin
    return float(np.abs(gap).sum() / len(y_true))


def brier_score(y_true, probs):
    """Multi-class Brier score: mean over faces of ``sum_k (p_k - onehot_k)^2`` (0 best, 2 worst)."""
    y_true, probs = _as_arrays(y_true, probs)
    if len(y_true) == 0:
        return 0.0
    sq = np.square(probs).sum(axis=1)
    picked = probs[np.arange(len(y_true)), y_true]
    return float(np.mean(sq - 2 * picked + 1))


def calibration_metrics(y_true, probs, *, n_bins=N_BINS, bins=True):
    """``{"ece", "nll", "brier", "n_bins"}`` and (``bins=True``) the reliability ``bins``."""
    out = {"ece": expected_calibration_error(y_true, probs, n_bins=n_bins),
           "nll": negative_log_likelihood(y_true, probs), "brier": brier_score(y_true, probs), "n_bins": n_bins}
    if bins:
        out["bins"] = reliability_bins(y_true, probs, n_bins=n_bins)
    return out


def entropy(probs):
    """Shannon entropy (nats) of each row: 0 for a one-hot row, ``log C`` for a uniform one."""
    p = np.asarray(probs, dtype=np.float64)
    return -(p * np.log(np.clip(p, _EPS, None))).sum(axis=-1)


# --------------------------------------------------------------------------
# Temperature scaling
# --------------------------------------------------------------------------


def _log_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def apply_temperature(probs, temperature):
    """``softmax(log p / T)``: ``T > 1`` softens, ``T < 1`` sharpens; the top-1 class is unchanged."""
    p = np.asarray(probs, dtype=np.float64)
    t = float(temperature)
    if not np.isfinite(t) or t <= 0:
        raise ValueError(f"a temperature must be positive and finite, got {temperature!r}")
    if t == 1.0:
        return p
    return np.exp(_log_softmax(np.log(np.clip(p, _EPS, None)) / t))


def apply_temperatures(member_probas, temperatures):
    """:func:`apply_temperature` per member of an (M, N, C) matrix; ``temperatures`` None = all 1."""
    stack = np.asarray(member_probas)
    if temperatures is None:
        return stack
    temps = np.asarray(temperatures, dtype=np.float64).ravel()
    if len(temps) != len(stack):
        raise ValueError(f"{len(temps)} temperatures for {len(stack)} members")
    if np.all(temps == 1.0):
        return stack
    return np.stack([apply_temperature(p, t) for p, t in zip(stack, temps)])


def fit_temperature(probs, y_true, *, bounds=TEMPERATURE_BOUNDS):
    """The temperature in ``bounds`` minimising the NLL of ``softmax(log p / T)``.

    The NLL is a smooth function of ``1/T`` with one minimum; a bounded scalar
    search (scipy's Brent, over ``log T``) finds it in a few dozen NLL evaluations.
    """
    from scipy.optimize import minimize_scalar

    y_true, probs = _as_arrays(y_true, probs)
    if len(y_true) == 0:
        raise ValueError("cannot fit a temperature on no faces")
    logp = np.log(np.clip(probs, _EPS, None))
    rows = np.arange(len(y_true))

    def nll(log_t):
        z = _log_softmax(logp / np.exp(log_t))
        return -np.mean(z[rows, y_true])

    lo, hi = np.log(bounds[0]), np.log(bounds[1])
    result = minimize_scalar(nll, bounds=(lo, hi), method="bounded", options={"xatol": 1e-5})
    best = float(result.x)
    # The bounded search can stop just inside a bound when the optimum is beyond it.
    for edge in (lo, hi):
        if nll(edge) < nll(best):
            best = edge
    return float(np.exp(best))


def fit_temperatures(member_probas, y_true, *, bounds=TEMPERATURE_BOUNDS):
    """One temperature per member of an (M, N, C) matrix (array (M,))."""
    return np.array([fit_temperature(p, y_true, bounds=bounds) for p in np.asarray(member_probas)])


def fit_shared_scale(member_probas, y_true, combine, *, bounds=TEMPERATURE_BOUNDS):
    """The factor ``s`` for every member's temperature minimising the NLL of ``combine``'s output.

    Why: members calibrated one by one do not make a calibrated ensemble. Where
    they disagree their mean is flatter than any of them, so the average of
    calibrated members is under-confident. Multiplying every temperature by one
    ``s`` (``s < 1`` sharpens) calibrates the combination and keeps the
    members' relative temperatures. Unlike one member's temperature, it can
    change the combination's top-1 class of a few faces (sharper members
    weigh their confident votes more), so accuracy is measured again after it.
    ``member_probas`` (M, N, C) are already
    scaled by the members' own temperatures; ``combine`` maps such a matrix to
    the ensemble's (N, C) probabilities.
    """
    from scipy.optimize import minimize_scalar

    stack = np.asarray(member_probas, dtype=np.float64)
    y_true = np.asarray(y_true, dtype=int)
    if len(y_true) == 0:
        raise ValueError("cannot fit a temperature on no faces")
    logp = np.log(np.clip(stack, _EPS, None))
    rows = np.arange(len(y_true))

    def nll(log_s):
        probs = combine(np.exp(_log_softmax(logp / np.exp(log_s))))
        return -np.mean(np.log(np.clip(probs[rows, y_true], _EPS, None)))

    lo, hi = np.log(bounds[0]), np.log(bounds[1])
    best = float(minimize_scalar(nll, bounds=(lo, hi), method="bounded", options={"xatol": 1e-5}).x)
    for edge in (lo, hi):
        if nll(edge) < nll(best):
            best = edge
    return float(np.exp(best))


def fit_ensemble_temperatures(member_probas, y_true, combine=None, *, bounds=TEMPERATURE_BOUNDS):
    """``(temperatures, shared_scale)``: one temperature per member (:func:`fit_temperatures`), each
    multiplied by the factor that calibrates their combination (:func:`fit_shared_scale`; 1.0 when
    ``combine`` is None, e.g. for a vote, whose output has no confidence to calibrate)."""
    fitted = fit_temperatures(member_probas, y_true, bounds=bounds)
    scale = 1.0 if combine is None else fit_shared_scale(apply_temperatures(member_probas, fitted), y_true,
                                                         combine, bounds=bounds)
    return fitted * scale, scale


def held_out_ece(member_probas, y_true, combine, *, seed=0):
    """The ensemble's ECE before and after temperatures fitted on *other* faces.

    Why: ECE measured on the faces the temperatures were fitted on flatters
    them. The faces are split in two seeded halves; temperatures fitted on one
    half (:func:`fit_ensemble_temperatures`) are judged on the other, both
    ways, and the two figures averaged. Returns ``{"held_out_before": ...,
    "held_out_after": ...}``.
    """
    stack = np.asarray(member_probas, dtype=np.float64)
    y_true = np.asarray(y_true, dtype=np.int64)
    if len(y_true) < 2:
        raise ValueError(f"held-out ECE needs at least 2 faces, one a half; got {len(y_true)}")
    order = np.random.default_rng(seed).permutation(len(y_true))
    halves = np.array_split(order, 2)
    before, after = [], []
    for fit, judge in (halves, halves[::-1]):
        temps, _ = fit_ensemble_temperatures(stack[:, fit], y_true[fit], combine)
        before.append(expected_calibration_error(y_true[judge], combine(stack[:, judge])))
        after.append(expected_calibration_error(y_true[judge], combine(apply_temperatures(stack[:, judge], temps))))
    return {"held_out_before": float(np.mean(before)), "held_out_after": float(np.mean(after))}


__all__ = ["N_BINS", "TEMPERATURE_BOUNDS", "apply_temperature", "apply_temperatures", "brier_score",
           "calibration_metrics", "entropy", "expected_calibration_error", "fit_ensemble_temperatures",
           "fit_shared_scale", "fit_temperature", "fit_temperatures", "held_out_ece", "reliability_bins"]
