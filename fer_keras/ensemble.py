"""Ensembles of saved classifiers: load members, average them, evaluate.

Any Keras classifier file can be a member. Each :class:`Member` carries an
:class:`InputAdapter` built from the model's own input shape and metadata, so
every member is fed the same raw FER2013 faces (uint8, 48x48x1):

- size and colour from the model's input shape (48x48 faces are resized
  bilinearly; grey is repeated to RGB when it wants 3 channels);
- pixel scale and class order from the file's fer_keras metadata, else from a
  sidecar JSON next to it (``model.json``: ``{"input_scale": "0-1",
  "class_names": [...]}``), else 0-1 and FER2013 order, with a warning.

Members are 7-way (FER2013 classes) or, when loaded with ``class_counts=(7,
8)``, 8-way (FER2013's 7 then contempt, as FER+, AffectNet-8 and CK+ label
faces). An ensemble never mixes class sets silently: 7-way and 8-way members
together need ``class_map="drop-contempt"`` (8-way members are evaluated on
the 7 shared classes: their contempt column is dropped and the rest
renormalised); see :func:`evaluation_classes`.

Usage, in scikit-learn's spirit::

    members, skipped = load_members("models")
    ens = Ensemble(members, method="mean")
    ens.predict_proba(x, tta=True)      # (N, 7) ensemble probabilities
    ens.member_probas(x, tta=True)      # (M, N, 7), cached: no second prediction
    report = evaluate(ens, x, y, tta=True, skipped=skipped)
    report.save("reports/run1")

The member-probability matrix (``Ensemble.member_probas``, ``EnsembleReport
.member_probas``) is the common input of everything built on top: weight
fitting here, temperature scaling and calibration figures
(:mod:`fer_keras.calibration`), bootstrap intervals and McNemar tests
(:mod:`fer_keras.stats`), greedy selection and diversity
(:mod:`fer_keras.selection`); :func:`analyse_probas` gathers them for a report.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import io
import json
import logging
import re
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from fer_keras.constants import CLASS_ALIASES, CLASS_NAMES, CLASS_NAMES_8, IMAGE_SIZE, INPUT_SCALES, NUM_CLASSES
from fer_keras.errors import ConfigError, FerError, ModelFileError
from fer_keras.io_utils import natural_key, prepare_output_dir, write_json_atomic, write_text_atomic
from fer_keras.metrics import MACRO_AVERAGE
from fer_keras.models import crop_margin
from fer_keras.models.model_io import MODEL_SUFFIXES
from fer_keras.tta import describe as tta_describe
from fer_keras.tta import tta_mode

log = logging.getLogger(__name__)

METHODS = ("mean", "geometric", "vote")
"""How member probabilities are combined: arithmetic mean, geometric mean
(renormalised), or (weighted) majority vote of the members' argmax."""

BATCH_SIZE = 256
"""Faces per prediction call."""

DEFAULT_SCALE = "0-1"
"""Pixel scale assumed for a foreign file that says nothing about its input."""

REPORT_FILES = ("report.json", "report.md", "confusion_matrix.png", "per_class_f1.png", "predictions.csv",
                "reliability.png", "disagreement.png", "report.html")
"""Files every report folder holds (``worst.png`` too when asked for)."""


def report_files(*, worst=0):
    """The files :meth:`EnsembleReport.save` writes: :data:`REPORT_FILES`, and ``worst.png`` when ``worst``."""
    return [*REPORT_FILES, *(["worst.png"] if worst else [])]

CLASS_MAPS = ("drop-contempt",)
"""How members with different class sets may be evaluated together (see :func:`evaluation_classes`)."""

CLASS_COUNTS = (NUM_CLASSES, len(CLASS_NAMES_8))
"""Member output sizes the ensemble tester accepts: 7 (FER2013) and 8 (plus contempt)."""

_CONTEMPT = len(CLASS_NAMES)
_ALIASES_8 = {**CLASS_ALIASES, "contempt": _CONTEMPT, "contemptuous": _CONTEMPT}

_EPS = 1e-12


# --------------------------------------------------------------------------
# Members
# --------------------------------------------------------------------------


@dataclasses.dataclass
class InputAdapter:
    """Turns raw FER2013 faces (uint8 N x 48 x 48 x 1) into what one model takes,
    and its outputs back into FER2013 class order."""

    height: int = IMAGE_SIZE
    width: int = IMAGE_SIZE
    channels: int = 1
    scale: str = "0-255"
    layout: str = "image"
    """``image`` (N,H,W,C), ``hw`` (N,H,W) or ``flat`` (N,H*W*C)."""
    class_order: tuple | None = None
    """``order[k]`` = the model's output column of FER2013 class ``k``; None = same order."""
    source: str = "fer_keras metadata"
    """Where ``scale`` and the class order came from."""
    num_classes: int = NUM_CLASSES
    """Outputs per face: 7 (FER2013 order) or 8 (FER2013 order, then contempt)."""

    def __call__(self, faces):
        x = np.asarray(faces, dtype=np.float32)
        if x.ndim == 3:
            x = x[..., None]
        if (x.shape[1], x.shape[2]) != (self.height, self.width):
            import tensorflow as tf

            x = tf.image.resize(x, (self.height, self.width), method="bilinear").numpy()
        if self.channels == 3 and x.shape[-1] == 1:
            x = np.repeat(x, 3, axis=-1)
        if self.scale == "0-1":
            x = x / np.float32(255.0)
        elif self.scale == "-1-1":
            x = x / np.float32(127.5) - np.float32(1.0)
        if self.layout == "flat":
            x = x.reshape(len(x), -1)
        elif self.layout == "hw":
            x = x[..., 0]
        return x

    def to_fer_order(self, probs):
        """Model outputs → columns in FER2013 class order."""
        return probs if self.class_order is None else probs[:, list(self.class_order)]

    def describe(self):
        """E.g. ``64x64x3 0-1 (sidecar rgb.json)``."""
        shape = f"{self.height}x{self.width}x{self.channels}"
        if self.layout == "flat":
            shape += " flat"
        reorder = ", classes reordered" if self.class_order is not None else ""
        classes = f", {self.num_classes} classes" if self.num_classes != NUM_CLASSES else ""
        return f"{shape} {self.scale} ({self.source}{reorder}{classes})"

    def to_dict(self):
        return {"size": [self.height, self.width], "channels": self.channels, "scale": self.scale,
                "layout": self.layout, "class_order": list(self.class_order) if self.class_order else None,
                "source": self.source, "num_classes": self.num_classes}


@dataclasses.dataclass
class Member:
    """One ensemble member: a loaded model and how to feed it."""

    path: Path
    model: object
    adapter: InputAdapter
    weight: float = 1.0
    metadata: dict = dataclasses.field(default_factory=dict)
    notes: list = dataclasses.field(default_factory=list)
    """Warnings about this member (assumed input scale, logits output, ...)."""

    @property
    def name(self):
        return Path(self.path).name

    @property
    def is_distilled(self):
        """Trained by distillation (``--teacher``): a copy of other members, not an independent vote."""
        return "teacher" in self.metadata

    @property
    def num_classes(self):
        """7 (FER2013 classes) or 8 (plus contempt)."""
        return self.adapter.num_classes

    @classmethod
    def from_file(cls, path, *, safe_mode=True, weight=1.0, class_counts=(NUM_CLASSES,)):
        """Load ``path`` and work out its adapter. Raises :class:`ModelFileError`.

        ``class_counts``: the output sizes accepted (``CLASS_COUNTS`` admits 8-way models)."""
        from fer_keras.models import model_io

        path = Path(path)
        try:
            model = model_io.load_model(path, safe_mode=safe_mode)
        except ModelFileError as exc:
            raise ModelFileError(_clearer_load_error(str(exc), path)) from None
        meta = dict(getattr(model, "fer_metadata", {}) or {})
        model = _single_tensor_io(model)
        adapter, notes = _make_adapter(model, meta, path, class_counts=class_counts)
        for note in notes:
            warnings.warn(f"{path.name}: {note}", stacklevel=2)
        return cls(path=path, model=model, adapter=adapter, weight=float(weight), metadata=meta, notes=notes)

    @property
    def crop_margin(self):
        """Pixels the model's own centre crop drops on each side of the 48 px face (0: none);
        what the ten-crop views shift by. A fused ensemble (export.py) crops inside its
        members and records their common margin in its metadata."""
        return crop_margin(self.model) or int(self.metadata.get("crop_margin", 0))

    def predict_proba(self, faces, *, tta=False, batch_size=BATCH_SIZE, verbose=0):
        """Probabilities (N, 7) in FER2013 order for raw faces, batched ((N, 8),
        contempt last, for an 8-way member).

        ``tta``: a mode of :mod:`fer_keras.tta` (``True`` = ``flip``); the
        member's probabilities are averaged over the views of each face, which
        go through the model in the same batch.
        """
        from fer_keras import tta as tta_views

        faces = np.asarray(faces)
        n = len(faces)
        out = np.empty((n, self.num_classes), dtype=np.float32)
        bar = _progress(total=n, desc=self.name, verbose=verbose)
        try:
            for start in range(0, n, batch_size):
                batch = tta_views.views(faces[start:start + batch_size], tta, crop_margin=self.crop_margin)
                size = len(batch[0])
                probs = np.asarray(self.model.predict_on_batch(self.adapter(np.concatenate(batch))),
                                   dtype=np.float32)
                probs = probs.reshape(len(batch), size, -1).mean(axis=0)
                out[start:start + size] = self.adapter.to_fer_order(probs)
                bar.update(size)
        finally:
            bar.close()
        return self._as_probabilities(out)

    def _as_probabilities(self, out):
        if not np.isfinite(out).all():
            raise ModelFileError(f"{self.path}: the model returned NaN or infinite outputs")
        sums = out.sum(axis=1)
        if len(out) and ((out < -1e-4).any() or np.abs(sums - 1).max() > 1e-2):
            note = "outputs do not sum to 1 (logits?); applied softmax"
            if note not in self.notes:
                self.notes.append(note)
                warnings.warn(f"{self.name}: {note}", stacklevel=3)
            shifted = out - out.max(axis=1, keepdims=True)
            out = np.exp(shifted)
            out /= out.sum(axis=1, keepdims=True)
        return out


@dataclasses.dataclass(frozen=True)
class Skipped:
    """A file that did not become a member, and why (one line)."""

    path: Path
    reason: str

    def __str__(self):
        return f"{Path(self.path).name}: {self.reason}"


def find_model_files(models_dir):
    """``*.h5`` and ``*.keras`` files in ``models_dir``, natural order (model_2 before model_10).

    Hidden files (such as ``.tmp-*`` files being written by a training run) are ignored.
    """
    models_dir = Path(models_dir)
    if not models_dir.is_dir():
        raise ModelFileError(f"{models_dir}: no such folder")
    files = [p for p in models_dir.iterdir()
             if p.is_file() and p.suffix in MODEL_SUFFIXES and not p.name.startswith(".")]
    return sorted(files, key=natural_key)


DISTILLED_REASON = ("distilled from the other members: a student copies its teachers, so it neither votes "
                    "with them nor teaches the next student (name the file to use it)")
"""Why a folder's distilled member is set aside (see :func:`load_members`)."""


def load_members(source, *, safe_mode=True, strict=False, class_counts=(NUM_CLASSES,), include_distilled=False):
    """Load every member named by ``source``: a folder, a file, or a list of them.

    Folders contribute their ``*.h5``/``*.keras`` files in natural order;
    files keep the order given. A file that cannot be a member (unreadable,
    needs code in safe mode, not a 7-way classifier, ...) is skipped with a
    one-line reason; ``strict=True`` raises :class:`ModelFileError` instead.
    ``class_counts=CLASS_COUNTS`` accepts 8-way (contempt) classifiers too.

    A folder's distilled members (trained with ``--teacher``) are set aside as
    skipped unless ``include_distilled``: a student is a compressed copy of
    the ensemble it learnt from, not an independent vote, and it must not
    teach its own successor. A distilled file named on its own is a member.

    Returns ``(members, skipped)``; raises :class:`ModelFileError` when no
    member is left.
    """
    sources = [source] if isinstance(source, (str, Path)) else list(source)
    files, seen = [], set()
    for item in sources:
        item = Path(item)
        for file in (find_model_files(item) if item.is_dir() else [item]):
            key = file.resolve()
            if key not in seen:
                seen.add(key)
                files.append((file, item.is_dir()))
    members, skipped = [], []
    for file, from_folder in files:
        try:
            member = Member.from_file(file, safe_mode=safe_mode, class_counts=class_counts)
        except ModelFileError as exc:
            reason = _strip_path(str(exc), file)
            if strict:
                raise ModelFileError(f"{file}: {reason} (--strict: no file may be skipped)") from None
            skipped.append(Skipped(file, reason))
            continue
        if from_folder and not include_distilled and member.is_distilled:
            skipped.append(Skipped(file, DISTILLED_REASON))
        else:
            members.append(member)
    if not members:
        where = ", ".join(str(s) for s in sources) or "(nothing given)"
        detail = f"; skipped: {'; '.join(str(s) for s in skipped)}" if skipped else ""
        raise ModelFileError(f"no usable model files in {where}{detail}")
    return members, skipped


def _strip_path(message, path):
    """``'models/x.h5: cannot load (...)'`` → ``'cannot load (...)'``."""
    prefix = f"{path}: "
    return message[len(prefix):] if message.startswith(prefix) else message


def _clearer_load_error(message, path):
    lowered = message.lower()
    if "lambda layer" in lowered and "safe mode" in lowered:
        return (f"{path}: contains a Lambda layer (Python code) and is refused in safe mode; "
                "pass --unsafe (safe_mode=False) only for files you trust")
    if "unknown layer" in lowered or "could not be deserialized" in lowered or "could not locate" in lowered:
        found = re.findall(r"Unknown layer: '([^']+)'", message) or _custom_names(path)
        what = f" ({', '.join(list(dict.fromkeys(found))[:3])})" if found else ""
        return (f"{path}: needs a custom layer or object{what} that is not registered here; "
                "it cannot be loaded safely (register it, or use a model file with standard layers)")
    if "not a readable keras model file" in lowered:
        return f"{path}: corrupt, truncated or not a Keras model file"
    return message


def _custom_names(path):
    """Registered names of custom objects (``package>Name``) in a model file's config."""
    import zipfile

    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                text = zf.read("config.json").decode("utf-8", "replace")
        else:
            import h5py

            with h5py.File(path, "r") as fh:
                raw = fh.attrs.get("model_config", "")
                text = raw if isinstance(raw, str) else raw.decode("utf-8", "replace")
    except Exception:  # only used to improve a message
        return []
    return re.findall(r'"registered_name":\s*"([^"]+>[^"]+)"', text)


def _single_tensor_io(model):
    """``model``, rebuilt on bare tensors where its input or output is a one-element list.

    Keras 2 writes the inputs and outputs of every functional model as lists,
    so Keras 3 loads such a ``.h5`` with ``model(x)`` returning ``[probs]``.
    Batch prediction hides that, but every graph built on a member (the fused
    export model, Grad-CAM) breaks on it. Rebuilding here, where members are
    loaded, gives the tester, predict and export one tensor in and one out;
    the layers (and so the weights) are the same objects.
    """
    import keras

    try:
        inputs, outputs = model.input, model.output
    except (AttributeError, ValueError):  # an unbuilt model has neither: _make_adapter refuses it
        return model
    flat_in, flat_out = keras.tree.flatten(inputs), keras.tree.flatten(outputs)
    nested = keras.tree.is_nested(inputs) or keras.tree.is_nested(outputs)
    if not nested or len(flat_in) != 1 or len(flat_out) != 1:
        return model  # already bare, or several inputs/outputs: _make_adapter says which
    return keras.Model(flat_in[0], flat_out[0], name=model.name)


def _make_adapter(model, meta, path, class_counts=(NUM_CLASSES,)):
    """The member's InputAdapter and notes; raises ModelFileError when the
    model cannot be a FER2013 member (or an 8-way one, when ``class_counts`` allows)."""
    notes = []
    # === Input shape ===
    try:
        inputs, outputs = list(model.inputs or []), list(model.outputs or [])
    except (AttributeError, ValueError):  # an unbuilt model has neither
        inputs, outputs = [], []
    if len(inputs) != 1:
        raise ModelFileError(f"{path}: has {len(inputs)} inputs; a member takes one image input")
    shape = tuple(inputs[0].shape)[1:]
    layout = "image"
    if len(shape) == 3:
        height, width, channels = shape
    elif len(shape) == 2:
        (height, width), channels, layout = shape, 1, "hw"
    elif len(shape) == 1 and shape[0] in (IMAGE_SIZE * IMAGE_SIZE, IMAGE_SIZE * IMAGE_SIZE * 3):
        height, width, layout = IMAGE_SIZE, IMAGE_SIZE, "flat"
        channels = shape[0] // (IMAGE_SIZE * IMAGE_SIZE)
    else:
        raise ModelFileError(f"{path}: input shape {shape} is not an image (expected (H, W, 1) or (H, W, 3))")
    channels = channels or 1
    if channels not in (1, 3):
        raise ModelFileError(f"{path}: input has {channels} channels; only grey (1) or RGB (3) can be fed")
    height, width = height or IMAGE_SIZE, width or IMAGE_SIZE

    # === Output shape ===
    if len(outputs) != 1:
        raise ModelFileError(f"{path}: has {len(outputs)} outputs; a member returns one class-probability vector")
    out_shape = tuple(outputs[0].shape)[1:]
    if len(out_shape) != 1 or out_shape[0] not in class_counts:
        if tuple(class_counts) == (NUM_CLASSES,):
            raise ModelFileError(f"{path}: output shape {out_shape} is not {NUM_CLASSES}-way "
                                 f"(FER2013 has {NUM_CLASSES} classes)")
        ways = " or ".join(f"{c}-way" for c in class_counts)
        raise ModelFileError(f"{path}: output shape {out_shape} is not {ways} "
                             f"(FER2013 has {NUM_CLASSES} classes; FER+, AffectNet-8 and CK+ add contempt)")
    num_classes = int(out_shape[0])

    # === Scale and classes: file metadata, then sidecar, then defaults ===
    scale = meta.get("input_scale")
    names = meta.get("class_names")
    sidecar_file, sidecar = _read_sidecar(path) if scale is None or names is None else (None, {})
    source = "fer_keras metadata" if (scale or names) else None
    if scale is None and "input_scale" in sidecar:
        scale, source = sidecar["input_scale"], f"sidecar {sidecar_file.name}"
    if names is None and "class_names" in sidecar:
        names, source = sidecar["class_names"], source or f"sidecar {sidecar_file.name}"
    if scale is None:
        scale = DEFAULT_SCALE
        source = source or "defaults"
        notes.append(f"no input_scale in the file or in a sidecar {path.with_suffix('.json').name}; "
                     f"assuming {DEFAULT_SCALE}" + ("" if names else " and FER2013 class order"))
    if scale not in INPUT_SCALES:
        raise ModelFileError(f"{path}: input_scale {scale!r} is not one of {', '.join(INPUT_SCALES)}")
    order = _class_order(names, path, num_classes) if names is not None else None
    adapter = InputAdapter(height=int(height), width=int(width), channels=int(channels), scale=scale,
                           layout=layout, class_order=order, source=source, num_classes=num_classes)
    return adapter, notes


def _read_sidecar(path):
    """``(file, dict)`` of the JSON next to a model (``x.json`` or ``x.h5.json``); ``(None, {})``."""
    for candidate in (path.with_suffix(".json"), path.with_name(path.name + ".json")):
        if candidate.is_file():
            try:
                data = json.loads(candidate.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise ModelFileError(f"{path}: sidecar {candidate.name} is not valid JSON ({exc})") from None
            if not isinstance(data, dict):
                raise ModelFileError(f"{path}: sidecar {candidate.name} must hold a JSON object")
            return candidate, data
    return None, {}


def _class_order(names, path, num_classes=NUM_CLASSES):
    """``order[k]`` = the column holding FER2013 class ``k`` (contempt: 7 of 8);
    None when already in order."""
    names = [str(n) for n in names]
    aliases = _ALIASES_8 if num_classes == len(CLASS_NAMES_8) else CLASS_ALIASES
    expected = CLASS_NAMES_8 if num_classes == len(CLASS_NAMES_8) else CLASS_NAMES
    indices = [aliases.get(n.strip().lower()) for n in names]
    if len(names) != num_classes or None in indices or sorted(indices) != list(range(num_classes)):
        what = "the FER2013 classes" if num_classes == NUM_CLASSES else "the FER2013 classes plus contempt"
        raise ModelFileError(f"{path}: class names {names} are not {what} ({', '.join(expected)})")
    order = tuple(int(i) for i in np.argsort(indices))
    return None if order == tuple(range(num_classes)) else order


def _progress(*, total, desc, verbose):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"{desc:<24.24}", unit="img", disable=not verbose, leave=True,
                file=sys.stderr, dynamic_ncols=True)


# --------------------------------------------------------------------------
# Combining
# --------------------------------------------------------------------------


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
    w = _normalised(np.ones(len(probas)) if weights is None else weights, len(probas))
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


def _normalised(weights, n):
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


# --------------------------------------------------------------------------
# Class sets (7 FER2013 classes, or 8 with contempt)
# --------------------------------------------------------------------------


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
        hint = " or read the data with --num-classes 8,"
    raise FerError(f"members and data do not share one class set ({listed}{data}); refusing to mix them. "
                   f"Pass --class-map drop-contempt (class_map='drop-contempt'),{hint} to evaluate on the 7 "
                   "shared classes: 8-way members' contempt column is dropped and renormalised, and contempt "
                   "faces are left out of the data")


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
            raw = _weights_from_mapping(w, self.members)
        else:
            raw = list(w)
        return _normalised(raw, len(self.members))

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
        raw = _weights_from_mapping(t, self.members, what="temperature") if isinstance(t, dict) else list(t)
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

    def calibrate(self, faces, y, *, tta=False):
        """Fit one temperature per member on ``(faces, y)`` (minimum NLL of
        ``softmax(log p / T)``, see :func:`fer_keras.calibration.fit_temperature`),
        then, for the mean and geometric methods, one factor for all of them
        that calibrates their combination
        (:func:`fer_keras.calibration.fit_shared_scale`, kept as
        ``shared_scale_``); sets ``temperatures``; returns self."""
        from fer_keras.calibration import apply_temperatures, fit_shared_scale, fit_temperatures

        if len(np.asarray(y)) == 0:
            raise ConfigError("cannot fit temperatures on an empty split")
        raw = self.member_probas(faces, tta=tta)
        fitted = fit_temperatures(raw, y)
        self.shared_scale_ = 1.0
        if self.method != "vote":
            self.shared_scale_ = fit_shared_scale(
                apply_temperatures(raw, fitted), y, lambda p: combine_probas(p, self.weights_, self.method))
        self.temperatures = dict(zip(member_keys(self.members), (fitted * self.shared_scale_).tolist()))
        return self

    def calibrated(self, member_probas):
        """Member probabilities (M, N, C) after each member's temperature (unchanged without)."""
        from fer_keras.calibration import apply_temperatures

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


def member_keys(members):
    """File names, or full paths where two members share a file name."""
    names = [m.name for m in members]
    duplicated = {n for n in names if names.count(n) > 1}
    return [str(m.path) if m.name in duplicated else m.name for m in members]


def _weights_from_mapping(mapping, members, what="weight"):
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
"""The calibration shipped beside the members of a folder (what ``--calibrate`` writes), applied by default."""


def folder_temperatures(folder, members):
    """``(temperatures, note)``: the calibration in ``folder/temperatures.json`` when it names exactly
    ``members``, else ``(None, note)``; ``note`` says what was done, for the user (None without a file).

    Why by default: an averaged ensemble is under-confident (its members disagree), so its raw
    probabilities overstate doubt; the folder's own calibration makes the shipped models'
    confidence honest unless the caller asks for ``uniform``. It is fitted for one set of
    members: after a file is dropped in or removed it no longer applies, and is left out with
    a note saying how to refit it rather than applied to members it never saw.
    """
    path = Path(folder) / CALIBRATION_FILE
    if not path.is_file():
        return None, None
    _, temperatures = read_weights_file(path)
    if temperatures is None:
        return None, f"{path} holds no temperatures; not applied"
    keys = set(member_keys(members))
    if set(temperatures) != keys:
        extra = sorted(set(temperatures) - keys)
        missing = sorted(keys - set(temperatures))
        differences = "; ".join(part for part in (
            f"members it has no temperature for: {', '.join(missing)}" if missing else "",
            f"files it names that are not members: {', '.join(extra)}" if extra else "") if part)
        return None, (f"{path} was fitted for other members ({differences}); not applied. Refit it: "
                      f"python test_ensemble_model.py --models-dir {folder} --calibrate PublicTest ...")
    try:
        fitted_on = json.loads(path.read_text(encoding="utf-8")).get("fitted_on", {}).get("usage")
    except (OSError, ValueError, AttributeError):
        fitted_on = None
    return temperatures, f"calibrated by {path}" + (f" (fitted on {fitted_on})" if fitted_on else "")


def read_weights(path):
    """Per-member weights from a JSON file: ``{"weights": {"model_1.h5": 0.6, ...}}``
    (a bare ``{name: weight}`` object is accepted too). None when the file holds
    only ``"temperatures"`` (see :func:`read_weights_file`)."""
    return read_weights_file(path)[0]


def read_temperatures(path):
    """Per-member temperatures from a weights file's ``"temperatures"``; None when it has none."""
    return read_weights_file(path)[1]


# --------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------


@dataclasses.dataclass
class EnsembleReport:
    """Everything an evaluation found; ``save`` writes the report folder."""

    member_names: list
    member_files: list
    weights: np.ndarray
    method: str
    tta: str
    """Test-time augmentation mode (:mod:`fer_keras.tta`): none, flip or tencrop."""
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
    def _tta_suffix(self):
        """E.g. ``, flip TTA`` for titles and labels; empty without TTA."""
        return "" if self.tta == "none" else f", {self.tta} TTA"

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
        from fer_keras.calibration import entropy

        return entropy(self.probas)

    @property
    def face_disagreement(self):
        """(N,) fraction of members whose top-1 differs from the ensemble's, per face."""
        if "face_disagreement" in self.science:
            return self.science["face_disagreement"]
        from fer_keras.selection import face_disagreement

        return face_disagreement(self.member_probas, self.probas)

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

    # === Text ===

    def _summary_rows(self):
        headers = ["model", "weight", "accuracy", "macro-F1", "weighted-F1", "precision", "recall"]
        rows = [[name, float(w), m["accuracy"], m["macro_f1"], m["weighted_f1"], m["precision_macro"],
                 m["recall_macro"]]
                for name, w, m in zip(self.member_names, self.weights, self.member_metrics)]
        e = self.metrics
        label = f"ensemble ({self.method}{self._tta_suffix})"
        rows.append([label, None, e["accuracy"], e["macro_f1"], e["weighted_f1"], e["precision_macro"],
                     e["recall_macro"]])
        return headers, rows

    def summary_table(self, *, markdown=False):
        from fer_keras.tables import format_table

        headers, rows = self._summary_rows()
        return format_table(headers, rows, markdown=markdown)

    def science_tables(self):
        """The analysis as tables: a list of ``{"caption", "headers", "rows", "align", "note"}``
        (calibration, intervals and McNemar, disagreement, selection), for text, Markdown and HTML."""
        sci, tables = self.science, []
        label = f"ensemble ({self.method}{self._tta_suffix})"
        if "calibration" in sci:
            cal = sci["calibration"]
            scaled = self.temperatures is not None and "temperature_scaling" in sci
            before = sci.get("temperature_scaling", {}).get("ece_before", {})
            headers = ["model"] + (["T", "ECE before"] if scaled else []) + ["ECE", "NLL", "Brier"]
            rows = []
            for i, name in enumerate(self.member_names):
                m = cal["members"][name]
                rows.append([name] + ([float(self.temperatures[i]), before.get(name)] if scaled else [])
                            + [m["ece"], m["nll"], m["brier"]])
            e = cal["ensemble"]
            rows.append([label] + ([None, before.get("ensemble")] if scaled else []) + [e["ece"], e["nll"], e["brier"]])
            note = (f"ECE: expected calibration error over {cal['n_bins']} equal-width bins of the top-1 confidence; "
                    "NLL: mean -log p(true class); Brier: mean sum over classes of (p - onehot)^2.")
            if scaled:
                ts = self.context.get("temperature_scaling", {})
                where = f" fitted on {ts['fitted_on']}" if ts.get("fitted_on") else ""
                note += (f" T: temperature{where} (p -> softmax(log p / T)); "
                         "'ECE before' is without temperature scaling, on the evaluated faces.")
            tables.append({"caption": "Calibration", "headers": headers, "rows": rows, "note": note})
        if sci.get("bootstrap", {}).get("ensemble") or "mcnemar" in sci:
            boot = sci.get("bootstrap", {})
            have_ci = bool(boot.get("ensemble"))

            def ci(entry, key):
                return f"[{entry[key][0]:.4f}, {entry[key][1]:.4f}]" if entry else None

            headers = ["model", "accuracy"] + (["accuracy 95% CI"] if have_ci else []) + ["macro-F1"] + \
                (["macro-F1 95% CI"] if have_ci else []) + ["b", "c", "McNemar p", "Δacc without"]
            rows = []
            for name, m in zip(self.member_names, self.member_metrics):
                mc = sci.get("mcnemar", {}).get(name, {})
                marginal = sci.get("diversity", {}).get("marginal", {}).get(name, {})
                b_ci = boot.get("members", {}).get(name)
                rows.append([name, m["accuracy"]] + ([ci(b_ci, "accuracy")] if have_ci else []) + [m["macro_f1"]]
                            + ([ci(b_ci, "macro_f1")] if have_ci else [])
                            + [mc.get("b"), mc.get("c"), _p_value(mc.get("p_value")),
                               _signed(marginal.get("change_without"))])
            e = self.metrics
            rows.append([label, e["accuracy"]] + ([ci(boot["ensemble"], "accuracy")] if have_ci else [])
                        + [e["macro_f1"]] + ([ci(boot["ensemble"], "macro_f1")] if have_ci else [])
                        + [None, None, None, None])
            note = ((f"95% percentile bootstrap intervals over {boot['resamples']} resamples of the faces "
                     f"(seed {boot['seed']}); " if have_ci else "")
                    + "McNemar: exact two-sided test of each member against the ensemble; b = faces the member "
                    "gets right and the ensemble wrong, c = the reverse. Δacc without: ensemble accuracy without "
                    "the member minus with it (negative: the member helps).")
            tables.append({"caption": "How sure are the figures", "headers": headers, "rows": rows, "note": note})
        div = sci.get("diversity")
        if div and len(self.member_names) > 1:
            short = [f"m{i + 1}" for i in range(len(self.member_names))]
            rows = [[f"{s} {n}", *map(float, row)] for s, n, row in zip(short, self.member_names,
                                                                        div["disagreement"])]
            tables.append({"caption": "Pairwise disagreement (fraction of faces whose top-1 differ)",
                           "headers": ["member", *short], "rows": rows,
                           "note": f"mean pairwise disagreement {div['mean_pairwise']:.4f}"})
        sel = self.context.get("selection")
        if sel and "evaluated" in sel:
            rows = [[f"{k} members", sel["evaluated"][k]["n_members"], sel["evaluated"][k]["accuracy"],
                     sel["evaluated"][k]["macro_f1"], sel["evaluated"][k]["nll"]] for k in ("all", "selected")]
            chosen = ", ".join(f"{n} {w:.3f}" for n, w in sel["weights"].items() if w > 0)
            tables.append({"caption": f"Greedy selection (fitted on {sel['fitted_on']}) vs all members, "
                                      f"on the evaluated faces", "headers": ["ensemble", "members", "accuracy",
                                                                             "macro-F1", "NLL"],
                           "rows": rows, "note": f"selected weights: {chosen}"})
        unc = sci.get("uncertainty")
        if unc and unc.get("mean_entropy") is not None:
            tables.append({"caption": "Per-face uncertainty", "headers": ["figure", "value"],
                           "rows": [["mean entropy of the ensemble (nats)", unc["mean_entropy"]],
                                    ["mean member disagreement with the ensemble", unc["mean_member_disagreement"]],
                                    ["faces where every member agrees with the ensemble", unc["unanimous_share"]]],
                           "note": "per face in predictions.csv (entropy, member_disagreement)"})
        return tables

    def to_text(self):
        """What the CLI prints: member table, confusion matrix, per-class report, the analysis tables."""
        import textwrap

        from fer_keras.tables import confusion_table, format_table, per_class_table

        ctx = self.context
        where = ctx.get("csv") or ctx.get("images") or ctx.get("data_root") or "faces"
        lines = [f"{where} [{ctx.get('usage', '?')}]: {len(self.y_true)} faces, "
                 f"method {self.method}, TTA {tta_describe(self.tta)}", "",
                 self.summary_table(), ""]
        collapsed = [f"  {name}: predicts {i['collapse']['class']} for {i['collapse']['share']:.0%} of the faces"
                     for name, i in zip(self.member_names, self.member_info) if "collapse" in i]
        if collapsed:
            lines += ["collapsed members (one class for almost every face):"] + collapsed + [""]
        if self.skipped:
            lines += ["skipped:"] + [f"  {s}" for s in self.skipped] + [""]
        lines += ["ensemble confusion matrix (rows: true, columns: predicted):",
                  confusion_table(self.metrics["confusion_matrix"], self.class_names), "",
                  "ensemble per-class report:", per_class_table(self.metrics, self.class_names)]
        for table in self.science_tables():
            caption = table["caption"]
            lines += ["", f"{caption[:1].lower()}{caption[1:]}:", format_table(table["headers"], table["rows"])]
            if table.get("note"):
                lines += [textwrap.fill(table["note"], width=110)]
        return "\n".join(lines)

    def to_markdown(self):
        from fer_keras.tables import confusion_table, format_table, per_class_table

        ctx = self.context
        where = ctx.get("csv") or ctx.get("images") or ctx.get("data_root") or "faces"
        parts = [f"# Ensemble report: {len(self.member_names)} member(s) on {where} [{ctx.get('usage', '?')}]", "",
                 f"- faces: {len(self.y_true)}",
                 f"- method: {self.method}; test-time augmentation: {tta_describe(self.tta)}",
                 f"- weights: {ctx.get('weights_source', 'uniform')}",
                 f"- ensemble accuracy **{self.metrics['accuracy']:.4f}**, macro-F1 "
                 f"**{self.metrics['macro_f1']:.4f}**, NLL {self.metrics['nll']:.4f}", "",
                 "## Members and ensemble", "", self.summary_table(markdown=True), ""]
        if self.skipped:
            parts += ["## Skipped files", "",
                      format_table(["file", "reason"], [[str(s.path), s.reason] for s in self.skipped],
                                   markdown=True, align=["<", "<"]), ""]
        parts += ["## Member inputs", "",
                  format_table(["model", "input"], [[n, i["input"]["describe"]] for n, i in
                                                    zip(self.member_names, self.member_info)],
                               markdown=True, align=["<", "<"]), "",
                  "## Ensemble confusion matrix", "", "Rows: true class; columns: predicted class.", "",
                  confusion_table(self.metrics["confusion_matrix"], self.class_names, markdown=True), "",
                  "![confusion matrix](confusion_matrix.png)", "",
                  "## Ensemble per-class report", "", per_class_table(self.metrics, self.class_names, markdown=True),
                  "", "![per-class F1](per_class_f1.png)", ""]
        for table in self.science_tables():
            parts += [f"## {table['caption']}", "", format_table(table["headers"], table["rows"], markdown=True), ""]
            if table.get("note"):
                parts += [table["note"], ""]
            if table["caption"] == "Calibration":
                parts += ["![reliability diagram](reliability.png)", ""]
            elif table["caption"].startswith("Pairwise disagreement"):
                parts += ["![disagreement](disagreement.png)", ""]
        return "\n".join(parts)

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

    # === Files ===

    def save(self, out_dir, *, overwrite=False, worst=0):
        """Write report.json, report.md, report.html, the figures and predictions.csv into
        ``out_dir`` (created; an existing report is kept unless ``overwrite``).

        ``worst``: also write ``worst.png``, a contact sheet of the ``worst`` most
        confidently wrong faces (needs the faces: ``evaluate(..., keep_faces=True)``).
        """
        from fer_keras import plots as figures

        out = prepare_output_dir(out_dir, overwrite=overwrite, names=report_files(worst=worst))
        title = f"ensemble of {len(self.member_names)} ({self.method}{self._tta_suffix})"
        pngs = []
        figures.save_figure(figures.confusion_figure(self.metrics["confusion_matrix"], self.class_names, title),
                            out / "confusion_matrix.png")
        pngs.append(("ensemble confusion matrix", out / "confusion_matrix.png"))
        f1 = {name: [m["per_class"][c]["f1"] for c in self.class_names]
              for name, m in zip(self.member_names, self.member_metrics)}
        f1["ensemble"] = [self.metrics["per_class"][c]["f1"] for c in self.class_names]
        fig = figures.per_class_f1_figure(f1, self.class_names, title="per-class F1: members vs ensemble")
        figures.save_figure(fig, out / "per_class_f1.png")
        pngs.append(("per-class F1: members vs ensemble", out / "per_class_f1.png"))
        pngs += self._save_science_figures(out, worst=worst)
        write_text_atomic(out / "predictions.csv", self.predictions_csv())
        markdown = self.to_markdown()
        if worst:
            markdown += "\n## Most confidently wrong faces\n\n![most confidently wrong faces](worst.png)\n"
        write_text_atomic(out / "report.md", markdown)
        self._save_html(out / "report.html", pngs)
        write_json_atomic(out / "report.json", self.to_dict())  # last: its presence marks a complete report
        return out

    def _save_science_figures(self, out, *, worst=0):
        """reliability.png, disagreement.png and (``worst`` > 0) worst.png; returns ``[(caption, path)]``."""
        from fer_keras import plots as figures
        from fer_keras.calibration import reliability_bins

        written = []
        cal = self.science.get("calibration")
        if cal is None:  # a report built by hand: work the bins out here
            bins = {n: reliability_bins(self.y_true, p) for n, p in zip(self.member_names, self.member_probas)}
            bins["ensemble"] = reliability_bins(self.y_true, self.probas)
            n_bins = len(bins["ensemble"]["count"])
        else:
            bins = {n: cal["members"][n]["bins"] for n in self.member_names}
            bins["ensemble"] = cal["ensemble"]["bins"]
            n_bins = cal["n_bins"]
        before = self.science.get("temperature_scaling", {}).get("ensemble_before")
        if before is not None:
            bins["ensemble before temperature scaling"] = before["bins"]
        scaled = " (temperature-scaled)" if before is not None else ""
        fig = figures.reliability_figure(bins, title=f"reliability{scaled}: members and ensemble, {n_bins} bins")
        figures.save_figure(fig, out / "reliability.png")
        written.append(("reliability diagram and faces per confidence bin", out / "reliability.png"))

        matrix = self.science.get("diversity", {}).get("disagreement")
        if matrix is None:
            from fer_keras.selection import disagreement_matrix

            matrix = disagreement_matrix(self.member_probas)
        figures.save_figure(figures.disagreement_figure(matrix, self.member_names), out / "disagreement.png")
        written.append(("pairwise disagreement of the members", out / "disagreement.png"))

        if worst:
            if self.faces is None:
                raise FerError("the contact sheet of mistakes needs the faces (evaluate with keep_faces=True)")
            idx = self.worst_indices(worst)
            names, conf = self.class_names, self.confidence
            captions = [f"#{i} true {names[self.y_true[i]]}\npred {names[self.y_pred[i]]} {conf[i]:.2f}"
                        for i in idx]
            shown = f"{len(idx)} most confidently wrong faces" + \
                (f" (only {len(idx)} wrong of {worst} asked)" if len(idx) < worst else "")
            fig = figures.faces_sheet_figure(self.faces[idx], captions, title=shown)
            figures.save_figure(fig, out / "worst.png")
            written.append((shown, out / "worst.png"))
        return written

    def _save_html(self, path, pngs):
        from fer_keras.html_report import write_html
        from fer_keras.tables import confusion_rows, per_class_rows

        ctx = self.context
        where = ctx.get("csv") or ctx.get("images") or ctx.get("data_root") or "faces"
        e = self.metrics
        facts = [f"data: {where} [{ctx.get('usage', '?')}], {len(self.y_true)} faces",
                 f"method: {self.method}; test-time augmentation: {tta_describe(self.tta)}",
                 f"weights: {ctx.get('weights_source', 'uniform')}",
                 f"ensemble accuracy {e['accuracy']:.4f}, macro-F1 {e['macro_f1']:.4f}, NLL {e['nll']:.4f}"]
        headers, rows = self._summary_rows()
        sections = [("Members and ensemble", [{"headers": headers, "rows": rows}])]
        if self.skipped:
            sections.append(("Skipped files", [{"headers": ["file", "reason"], "align": ["<", "<"],
                                                "rows": [[str(s.path), s.reason] for s in self.skipped]}]))
        sections += [(t["caption"], [t]) for t in self.science_tables()]
        headers, rows = confusion_rows(e["confusion_matrix"], self.class_names)
        sections.append(("Ensemble confusion matrix", [{"headers": headers, "rows": rows,
                                                        "note": "rows: true class; columns: predicted class"}]))
        headers, rows = per_class_rows(e, self.class_names)
        sections.append(("Ensemble per-class report", [{"headers": headers, "rows": rows,
                                                         "note": MACRO_AVERAGE}]))
        title = f"Ensemble report: {len(self.member_names)} member(s) on {where} [{ctx.get('usage', '?')}]"
        write_html(path, title, facts, [(h, [{**b, "caption": None} for b in blocks]) for h, blocks in sections],
                   pngs)


def _p_value(p):
    """A p-value for a table: 4 significant digits, never rounded to 0."""
    if p is None:
        return None
    return f"{p:.4f}" if p >= 1e-4 else f"{p:.1e}"


def _signed(value):
    return None if value is None else f"{value:+.4f}"


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
    from fer_keras import calibration, selection, stats

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


def _figures(probas, y, class_names):
    from fer_keras.metrics import classification_metrics, negative_log_likelihood

    m = classification_metrics(y, probas, class_names)
    m["nll"] = negative_log_likelihood(y, probas)
    return m


def evaluate(ensemble, faces, y, *, tta=False, skipped=(), context=None, class_names=None,
             bootstrap=1000, seed=0, n_bins=None, keep_faces=True):
    """Score the ensemble and each member on ``(faces, y)``; returns an :class:`EnsembleReport`.

    Each member predicts the faces once (cached in the ensemble); ``context``
    (e.g. ``{"csv": ..., "usage": ...}``) is copied into ``report.json``.
    With temperatures, member figures are those of the temperature-scaled
    members, and calibration before scaling is reported too. ``bootstrap``
    resamples (seeded by ``seed``; 0 = no intervals) give 95% intervals;
    ``n_bins`` confidence bins (default 15) the ECE; ``keep_faces`` keeps the
    faces in the report for its contact sheet of confident mistakes.
    ``class_names``: default the ensemble's (7, or 8 with contempt).
    """
    from fer_keras.metrics import prediction_collapse

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


def write_weights(path, ensemble, **extra):
    """Write the ensemble's normalised weights (and its temperatures, when it has
    any) as a weights file (atomic)."""
    doc = {"weights": ensemble.weights_dict()}
    if ensemble.temperatures is not None:
        doc["temperatures"] = ensemble.temperatures_dict()
    doc.update(extra)
    write_json_atomic(path, doc)
    return Path(path)


def write_temperatures(path, ensemble, **extra):
    """Write the ensemble's temperatures as a weights file holding only ``"temperatures"`` (atomic)."""
    write_json_atomic(path, {"temperatures": ensemble.temperatures_dict(), **extra})
    return Path(path)


__all__ = ["METHODS", "Ensemble", "EnsembleReport", "InputAdapter", "Member", "Skipped", "combine_probas",
           "evaluate", "find_model_files", "fit_weights", "load_members", "member_keys",
           "read_weights", "write_weights"]
__all__ += ["CALIBRATION_FILE", "analyse_probas", "faces_fingerprint", "folder_temperatures", "read_temperatures", "read_weights_file", "report_files",
            "write_temperatures"]

