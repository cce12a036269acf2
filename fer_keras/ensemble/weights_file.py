"""Weights files: the JSON that carries member weights and temperatures between runs.

``weights.json``, ``temperatures.json`` and ``selection.json`` (written by
the ensemble tester) are all weights files; :func:`read_weights_file` reads any of
them back; a folder's own ``temperatures.json`` (:data:`CALIBRATION_FILE`) is its
calibration, applied by default (:func:`folder_temperatures`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from fer_keras.ensemble.combine import member_keys
from fer_keras.errors import ConfigError
from fer_keras.io_utils import file_sha256, write_json_atomic


def read_weights_file(path):
    """``(weights, temperatures)`` from a weights file; either may be None.

    The file is a JSON object with ``"weights"`` (member file name → weight),
    ``"temperatures"`` (member file name → temperature scaling ``T``), or
    both; a bare ``{name: weight}`` object is accepted too. Other keys (how
    the figures were fitted) are ignored.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such weights file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not a JSON weights file ({exc})") from None
    if not isinstance(data, dict):
        data = None
    has_temps = isinstance(data, dict) and "temperatures" in data
    weights = data.get("weights", None if has_temps else data) if isinstance(data, dict) else None
    usage = (f'{path}: expected {{"weights": {{"model_1.h5": 0.6, ...}}}} and/or '
             f'{{"temperatures": {{"model_1.h5": 1.4, ...}}}}')
    if data is None or (weights is None and not has_temps):
        raise ConfigError(usage)
    if weights is not None and (not isinstance(weights, dict) or not weights):
        raise ConfigError(usage)
    temps = data.get("temperatures") if has_temps else None
    if has_temps and (not isinstance(temps, dict) or not temps):
        raise ConfigError(usage)
    try:
        weights = None if weights is None else {str(k): float(v) for k, v in weights.items()}
    except (TypeError, ValueError):
        raise ConfigError(f"{path}: every weight must be a number") from None
    try:
        temps = None if temps is None else {str(k): float(v) for k, v in temps.items()}
    except (TypeError, ValueError):
        raise ConfigError(f"{path}: every temperature must be a number") from None
    if temps is not None and not all(np.isfinite(v) and v > 0 for v in temps.values()):
        raise ConfigError(f"{path}: every temperature must be positive")
    return weights, temps


CALIBRATION_FILE = "temperatures.json"
"""The calibration shipped beside the members of a folder (:func:`write_temperatures`), applied by default."""


def folder_temperatures(folder, members):
    """``(temperatures, note)``: the calibration in ``folder/temperatures.json`` when it names exactly
    ``members``, else ``(None, note)``; ``note`` says what was done, for the user (None without a file).

    Why by default: an averaged ensemble is under-confident (its members disagree), so its raw
    probabilities overstate doubt; the folder's own calibration makes the shipped models'
    confidence honest unless the caller asks for ``uniform``. It is fitted for one set of
    members: after a file is dropped in or removed it no longer applies, and is left out with
    a note saying how to refit it rather than applied to members it never saw. One of its
    members alone gets its own temperature, the one fitted for it before the shared factor;
    a distilled file the ensemble sets aside (the webcam's and the live view's) gets the one
    fitted for it alone (``"alone"``). A distilled member is under-confident alone
    (``model_6.h5``'s temperature is 0.49).
    """
    path = Path(folder) / CALIBRATION_FILE
    if not path.is_file():
        return None, None
    _, temperatures = read_weights_file(path)
    if temperatures is None:
        return None, f"{path} holds no temperatures; not applied"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        fitted_on = doc.get("fitted_on", {}).get("usage")
        shared_scale = float(doc.get("shared_scale", 1.0))
    except (OSError, ValueError, AttributeError, TypeError):
        doc, fitted_on, shared_scale = {}, None, 1.0
    where = f" (fitted on {fitted_on})" if fitted_on else ""
    keys = set(member_keys(members))
    changed = _changed_files(doc if isinstance(doc, dict) else {}, members)
    if changed:
        return None, (f"{path} was fitted for other files of the same name ({', '.join(changed)}: their contents "
                      "changed since); not applied: refit it for the members now there, on a held-out split")
    alone = doc.get("alone") if isinstance(doc, dict) else None
    if len(keys) == 1 and isinstance(alone, dict) and keys <= set(alone):
        (key,) = keys
        try:
            own = float(alone[key])
        except (TypeError, ValueError):
            own = 0.0
        if np.isfinite(own) and own > 0:
            return [own], f"calibrated by {path}{where}: {key}'s own temperature (fitted alone), {own:.3f}"
    if len(keys) == 1 < len(temperatures) and keys <= set(temperatures) and shared_scale > 0:
        (key,) = keys
        own = temperatures[key] / shared_scale
        return [own], f"calibrated by {path}{where}: {key}'s own temperature, {own:.3f}"
    if set(temperatures) != keys:
        extra = sorted(set(temperatures) - keys)
        missing = sorted(keys - set(temperatures))
        differences = "; ".join(part for part in (
            f"members it has no temperature for: {', '.join(missing)}" if missing else "",
            f"files it names that are not members: {', '.join(extra)}" if extra else "") if part)
        return None, (f"{path} was fitted for other members ({differences}); not applied: refit it for the "
                      "members now there, on a held-out split")
    return temperatures, f"calibrated by {path}{where}"


def read_weights(path):
    """Per-member weights from a JSON file: ``{"weights": {"model_1.h5": 0.6, ...}}``
    (a bare ``{name: weight}`` object is accepted too). None when the file holds
    only ``"temperatures"`` (see :func:`read_weights_file`)."""
    return read_weights_file(path)[0]


def write_weights(path, ensemble, **extra):
    """Write the ensemble's normalised weights (and its temperatures, when it has
    any) as a weights file (atomic)."""
    doc = {"weights": ensemble.weights_dict()}
    if ensemble.temperatures is not None:
        doc["temperatures"] = ensemble.temperatures_dict()
    doc.update(extra)
    write_json_atomic(path, doc)
    return Path(path)


def write_temperatures(path, ensemble, *, alone=(), **extra):
    """Write the ensemble's temperatures as a weights file holding only ``"temperatures"``, and the
    sha256 of each member's file (:func:`folder_temperatures` checks them), atomically.

    ``alone``: ``(member, temperature)`` pairs for files set aside from the ensemble but run on
    their own (a folder's distilled member: the webcam's), kept under ``"alone"``; the
    ensemble's own temperatures do not change with them.
    """
    solo = [member for member, _ in alone]
    everyone = list(ensemble.members) + solo
    hashes = {key: file_sha256(member.path) for key, member in zip(member_keys(everyone), everyone)
              if Path(member.path).is_file()}
    doc = {"temperatures": ensemble.temperatures_dict(), "sha256": hashes, **extra}
    if solo:
        doc["alone"] = {key: float(t) for key, (_, t) in zip(member_keys(solo), alone)}
    write_json_atomic(path, doc)
    return Path(path)


def _changed_files(doc, members):
    """Names of ``members`` whose file differs from the one ``doc``'s temperatures were fitted for (by
    sha256): a new file under a retired member's name must not inherit its temperature."""
    recorded = doc.get("sha256") or {}
    return [key for key, member in zip(member_keys(members), members)
            if key in recorded and Path(member.path).is_file() and file_sha256(member.path) != recorded[key]]
