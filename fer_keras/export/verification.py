"""Checking the artefacts: each run in its runtime and compared with the Keras original.

Accuracy, top-1 agreement, largest probability difference, size and
single-face latency, on PublicTest faces of a ``csv`` (else synthetic
faces); the int8 calibration faces come from its Training split.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from fer_keras.constants import NUM_CLASSES, TRAIN_SPLIT, VALIDATION_SPLIT
from fer_keras.data import load_fer2013, synthetic_faces
from fer_keras.ensemble import BATCH_SIZE
from fer_keras.errors import FerError, ModelFileError, one_line
from fer_keras.export.runtime import KerasBackend, RuntimeModel, TFLiteBackend
from fer_keras.tables import format_table

REPRESENTATIVE_FACES = 300
"""Calibration faces for the int8 TFLite model."""

LATENCY_CALLS = 50
"""Single-face calls timed per artefact (after a few warm-up calls)."""

AGREEMENT_TARGETS = {"int8": 0.99}
"""Least top-1 agreement with the Keras original; 0.999 for everything else."""

DEFAULT_AGREEMENT_TARGET = 0.999

QUANTIZED_VARIANTS = ("float16", "int8")

INT8_SIZE_RATIO = 3.0
"""The int8 file should be at least this many times smaller than the float32 one."""


def representative_faces(n=REPRESENTATIVE_FACES, *, csv=None, seed=0):
    """``(faces, source)``: ``n`` seeded faces from the Training split of ``csv``, else synthetic faces."""
    if csv:
        split = load_fer2013(csv)[TRAIN_SPLIT]
        rng = np.random.default_rng(seed)
        idx = np.sort(rng.choice(len(split), size=min(n, len(split)), replace=False))
        return split.x[idx], f"{csv} [{TRAIN_SPLIT}], {len(idx)} faces, seed {seed}"
    x, _ = synthetic_faces(n, seed=seed)
    return x, f"synthetic faces, {n}, seed {seed}"


def validation_faces(*, csv=None, limit=None, n_synthetic=200, seed=1):
    """``(faces, labels or None, source)``: PublicTest of ``csv`` (first ``limit``), else synthetic faces."""
    if csv:
        split = load_fer2013(csv)[VALIDATION_SPLIT]
        x, y = split.x, split.y
        if limit:
            x, y = x[:limit], y[:limit]
        return x, y, f"{csv} [{VALIDATION_SPLIT}], {len(y)} faces"
    x, y = synthetic_faces(limit or n_synthetic, seed=seed)
    return x, y, f"synthetic faces, {len(y)}, seed {seed} (labels are the synthetic band classes)"


def file_size(path):
    """Bytes of a file, or of every file under a folder."""
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def latency_ms(run, face, calls=LATENCY_CALLS, warmup=5):
    """Median milliseconds of ``run(face)`` over ``calls`` calls (after ``warmup``)."""
    for _ in range(warmup):
        run(face)
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        run(face)
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000)


def keras_proba(model, faces, batch_size=BATCH_SIZE):
    """The Keras original's probabilities for uint8 faces, batched."""
    backend = KerasBackend(model=model)
    return np.concatenate([backend.run(faces[i:i + batch_size]) for i in range(0, len(faces), batch_size)]) \
        if len(faces) else np.zeros((0, NUM_CLASSES), np.float32)


def target_of(fmt, variant):
    return AGREEMENT_TARGETS.get(variant, DEFAULT_AGREEMENT_TARGET)


def verify(model, artefacts, faces, labels=None, *, calls=LATENCY_CALLS, synthetic=False):
    """Run each artefact in its runtime on ``faces`` and compare with ``model``.

    ``artefacts``: ``{(format, variant): path}``. Returns one dict per
    artefact (plus the Keras original first): file, format, variant,
    runtime, bytes, accuracy, agreement, max_prob_diff, latency_ms_p50,
    target, passed, and TFLite quantization details. With ``synthetic``
    faces a quantized file's ``passed`` is None (unverified): agreement on
    them says little of real faces (``model_6.h5`` in int8 agreed on 99.5%
    of synthetic faces and 97.6% of PublicTest).
    """
    faces = np.asarray(faces, dtype=np.uint8)
    reference = keras_proba(model, faces)
    face = faces[:1]
    rows = [{"file": None, "format": "keras (in memory)", "variant": None, "runtime": "keras", "bytes": None,
             "accuracy": _accuracy(reference, labels), "agreement": 1.0, "max_prob_diff": 0.0,
             "latency_ms_p50": latency_ms(KerasBackend(model=model).run, face.astype(np.float32), calls),
             "target": None, "passed": None}]
    sizes = {}
    for (fmt, variant), path in artefacts.items():
        member = RuntimeModel.from_file(path)
        try:
            probs = member.predict_proba(faces)
        except FerError:
            raise
        except Exception as exc:  # runtimes raise their own types
            raise ModelFileError(f"{path}: running it in {member.runtime} failed ({one_line(exc)})") from None
        agreement = float(np.mean(probs.argmax(1) == reference.argmax(1))) if len(faces) else None
        target = target_of(fmt, variant)
        row = {"file": str(path), "format": fmt, "variant": variant, "runtime": member.runtime,
               "bytes": file_size(path), "accuracy": _accuracy(probs, labels), "agreement": agreement,
               "max_prob_diff": float(np.abs(probs - reference).max()) if len(faces) else None,
               "latency_ms_p50": latency_ms(member.run, face, calls), "target": {"agreement": target},
               "passed": agreement is not None and agreement >= target}
        if synthetic and variant in QUANTIZED_VARIANTS:
            row["passed"] = None
        if isinstance(member.backend, TFLiteBackend):
            row["quantization"] = member.backend.quantization()
        sizes[(fmt, variant)] = row["bytes"]
        rows.append(row)
    int8, f32 = sizes.get(("tflite", "int8")), sizes.get(("tflite", "float32"))
    if int8 and f32:
        for row in rows:
            if (row["format"], row["variant"]) == ("tflite", "int8"):
                row["size_ratio_vs_float32"] = f32 / int8
                row["target"]["size_ratio"] = INT8_SIZE_RATIO
                if row["passed"] is not None:
                    row["passed"] = bool(row["passed"] and f32 / int8 >= INT8_SIZE_RATIO)
    return rows


def _accuracy(probs, labels):
    if labels is None or len(labels) == 0:
        return None
    return float(np.mean(np.asarray(probs).argmax(1) == np.asarray(labels)))


def results_table(rows):
    """The verification rows as a plain-text table."""
    headers = ["artefact", "runtime", "size MB", "accuracy", "agreement", "max |dp|", "p50 ms", "target"]
    body = []
    for r in rows:
        name = Path(r["file"]).name if r["file"] else r["format"]
        target = r.get("target") or {}
        if not target:
            verdict = "-"
        else:
            want = f">={target['agreement']:.1%}" + (f", {target['size_ratio']:g}x smaller" if "size_ratio" in target
                                                     else "")
            verdict = {True: "ok ", False: "MISSED ", None: "unverified "}[r["passed"]] + want
        size = None if r["bytes"] is None else round(r["bytes"] / 2**20, 3)
        body.append([name, r["runtime"], size, r["accuracy"], r["agreement"], r["max_prob_diff"],
                     round(r["latency_ms_p50"], 3), verdict])
    return format_table(headers, body, align=["<", "<", ">", ">", ">", ">", ">", "<"])


def versions():
    """Versions of TensorFlow, Keras and the optional export packages (None when absent)."""
    from importlib import metadata

    out = {}
    for package in ("tensorflow", "keras", "numpy", "tf2onnx", "onnx", "onnxruntime", "ai-edge-litert"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = None
    return out
