"""Ensemble members: any saved classifier file, loaded safely and fed what it expects.

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
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
import sys
import warnings
from pathlib import Path

import numpy as np

from fer_keras.constants import CLASS_ALIASES, CLASS_NAMES, CLASS_NAMES_8, IMAGE_SIZE, INPUT_SCALES, NUM_CLASSES
from fer_keras.ensemble import tta as tta_views
from fer_keras.errors import FerError, ModelFileError
from fer_keras.io_utils import natural_key, not_a_folder
from fer_keras.models import crop_margin, model_io
from fer_keras.models.model_io import MODEL_SUFFIXES

BATCH_SIZE = 256
"""Faces per prediction call."""

DEFAULT_SCALE = "0-1"
"""Pixel scale assumed for a foreign file that says nothing about its input."""

_CONTEMPT = len(CLASS_NAMES)
_ALIASES_8 = {**CLASS_ALIASES, "contempt": _CONTEMPT, "contemptuous": _CONTEMPT}


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
        """Trained by distillation (``TrainConfig.teacher``): a copy of its teachers, not an independent vote."""
        return "teacher" in self.metadata

    @property
    def teachers(self):
        """The file names of the members it was distilled from (empty unless distilled)."""
        teacher = self.metadata.get("teacher")
        return [str(name) for name in teacher.get("members", [])] if isinstance(teacher, dict) else []

    @property
    def fused_members(self):
        """The file names of the members a fused ensemble (``export.py``) holds; empty for any other file."""
        if self.metadata.get("kind") != "fused_ensemble":
            return []
        entries = self.metadata.get("members", [])
        return [Path(str(e["file"])).name for e in entries if isinstance(e, dict) and "file" in e]

    @property
    def num_classes(self):
        """7 (FER2013 classes) or 8 (plus contempt)."""
        return self.adapter.num_classes

    @classmethod
    def from_file(cls, path, *, safe_mode=True, weight=1.0, class_counts=(NUM_CLASSES,)):
        """Load ``path`` and work out its adapter. Raises :class:`ModelFileError`.

        ``class_counts``: the output sizes accepted (``CLASS_COUNTS`` admits 8-way models)."""
        path = Path(path)
        try:
            model = model_io.load_model(path, safe_mode=safe_mode)
        except ModelFileError as exc:
            raise ModelFileError(_clearer_load_error(str(exc), path), parameter=exc.parameter) from None
        meta = dict(getattr(model, "fer_metadata", {}) or {})
        model = _single_tensor_io(model)
        adapter, notes = _make_adapter(model, meta, path, class_counts=class_counts)
        for note in notes:
            warnings.warn(f"{path.name}: {note}", stacklevel=2)
        return cls(path=path, model=model, adapter=adapter, weight=float(weight), metadata=meta, notes=notes)

    @functools.cached_property
    def crop_margin(self):
        """Pixels the model's own centre crop drops on each side of the 48 px face (0: none);
        what the ten-crop views shift by. A fused ensemble (export.py) crops inside its
        members and records their common margin in its metadata. Read once: the model does
        not change, and predict_proba (every webcam frame) would otherwise walk its layers."""
        return crop_margin(self.model) or int(self.metadata.get("crop_margin", 0))

    def predict_proba(self, faces, *, tta=False, batch_size=BATCH_SIZE, verbose=0):
        """Probabilities (N, 7) in FER2013 order for raw faces, batched ((N, 8),
        contempt last, for an 8-way member).

        ``tta``: a mode of :mod:`fer_keras.ensemble.tta` (``True`` = ``flip``); the
        member's probabilities are averaged over the views of each face, which
        go through the model in the same batch.
        """
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
    """A file that did not become a member, and why (one line); ``parameter``: the
    argument that would load it (``safe_mode``), where there is one."""

    path: Path
    reason: str
    parameter: str | None = None

    def __str__(self):
        return f"{Path(self.path).name}: {self.reason}"


def find_model_files(models_dir):
    """``*.h5`` and ``*.keras`` files in ``models_dir``, natural order (model_2 before model_10).

    Hidden files (such as ``.tmp-*`` files being written by a training run) are ignored.
    """
    models_dir = Path(models_dir)
    if not models_dir.is_dir():
        raise ModelFileError(not_a_folder(models_dir))
    files = [p for p in models_dir.iterdir()
             if p.is_file() and p.suffix in MODEL_SUFFIXES and not p.name.startswith(".")]
    return sorted(files, key=natural_key)


def distilled_member(folder):
    """The newest member file of ``folder`` trained by distillation (with a ``teacher``), or None.

    The small, fast stand-in for the ensemble it learnt from: what a live
    webcam view runs alone. Files whose metadata cannot be read are passed
    over (they are reported when the ensemble loads).
    """
    if folder is None or not Path(folder).is_dir():
        return None
    distilled = []
    for file in find_model_files(folder):
        try:
            if "teacher" in model_io.read_metadata(file):
                distilled.append(file)
        except FerError:
            continue
    return distilled[-1] if distilled else None


DISTILLED_REASON = ("distilled from the other members: a student copies its teachers, so it neither votes "
                    "with them nor teaches the next student while they are all here (name the file to use it)")
"""Why a folder's distilled member is set aside (see :func:`load_members`)."""

FUSED_REASON = ("a fused ensemble (export.py) of members that are in this folder too: beside them it would count "
                "their votes twice (name the file to use it alone)")
"""Why a folder's fused ensemble is set aside (see :func:`load_members`)."""


def load_members(source, *, safe_mode=True, strict=False, class_counts=(NUM_CLASSES,), include_distilled=False):
    """Load every member named by ``source``: a folder, a file, or a list of them.

    Folders contribute their ``*.h5``/``*.keras`` files in natural order;
    files keep the order given. A file that cannot be a member (unreadable,
    needs code in safe mode, not a 7-way classifier, ...) is skipped with a
    one-line reason; ``strict=True`` raises :class:`ModelFileError` instead.
    ``class_counts=CLASS_COUNTS`` accepts 8-way (contempt) classifiers too.

    A folder's distilled member (trained with a ``teacher``) is set aside as
    skipped while every teacher it learnt from is a member from the same
    folder, unless ``include_distilled``: it is then a compressed copy of
    them, not an independent vote, and it must not teach its own successor.
    Once a teacher has left the folder the student is the only holder of what
    that teacher knew, and it votes (the shipped ``model_6.h5``, whose
    teachers ``model_2.h5`` and ``model_4.h5`` were retired, raised the
    ensemble by 0.4 points on PublicTest). A distilled file named on its own
    is a member.

    Likewise a folder's fused ensemble (``export.py`` writing into it) is set
    aside while any member it holds is a member from the same folder: it
    already averages them, so beside them it would count their votes twice.

    Returns ``(members, skipped)``; raises :class:`ModelFileError` when no
    member is left.
    """
    sources = [source] if isinstance(source, (str, Path)) else list(source)
    files, seen = [], set()
    for item in sources:
        item = Path(item)
        # A missing path without a model file's suffix was meant as a folder: say so, not "no such file".
        as_folder = item.is_dir() or (not item.exists() and item.suffix not in MODEL_SUFFIXES)
        for file in (find_model_files(item) if as_folder else [item]):
            key = file.resolve()
            if key not in seen:
                seen.add(key)
                files.append((file, item.is_dir()))
    loaded, skipped = [], []
    for file, from_folder in files:
        try:
            loaded.append((Member.from_file(file, safe_mode=safe_mode, class_counts=class_counts), from_folder))
        except ModelFileError as exc:
            reason = _strip_path(str(exc), file)
            if strict:
                raise ModelFileError(f"{file}: {reason} (strict=True: no file may be skipped)",
                                     parameter="strict") from None
            skipped.append(Skipped(file, reason, exc.parameter))
    members = []
    for member, from_folder in loaded:
        if from_folder and not include_distilled and member.is_distilled and _teachers_present(member, loaded):
            skipped.append(Skipped(Path(member.path), DISTILLED_REASON))
        elif from_folder and member.fused_members and _fused_members_present(member, loaded):
            skipped.append(Skipped(Path(member.path), FUSED_REASON))
        else:
            members.append(member)
    if not members:
        where = ", ".join(str(s) for s in sources) or "(nothing given)"
        detail = f"; skipped: {'; '.join(str(s) for s in skipped)}" if skipped else ""
        raise ModelFileError(f"no usable model files in {where}{detail}",
                             parameter=next((s.parameter for s in skipped if s.parameter), None))
    return members, skipped


def _neighbours(member, loaded):
    """The names of the other files loaded from ``member``'s folder."""
    folder = Path(member.path).parent
    return {m.name for m, from_folder in loaded if from_folder and Path(m.path).parent == folder and m is not member}


def _teachers_present(student, loaded):
    """Whether every teacher of ``student`` is among the members loaded from its folder."""
    return set(student.teachers) <= _neighbours(student, loaded)


def _fused_members_present(fused, loaded):
    """Whether any member a fused ensemble holds was loaded from its folder too."""
    return bool(set(fused.fused_members) & _neighbours(fused, loaded))


def _strip_path(message, path):
    """``'models/x.h5: cannot load (...)'`` → ``'cannot load (...)'``."""
    prefix = f"{path}: "
    return message[len(prefix):] if message.startswith(prefix) else message


def _clearer_load_error(message, path):
    lowered = message.lower()
    if "lambda layer" in lowered and "safe mode" in lowered:
        return (f"{path}: contains a Lambda layer (Python code) and is refused in safe mode; "
                "pass safe_mode=False only for files you trust")
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
    sidecar_file, sidecar = read_sidecar(path) if scale is None or names is None else (None, {})
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
    order = class_order(names, path, num_classes) if names is not None else None
    adapter = InputAdapter(height=int(height), width=int(width), channels=int(channels), scale=scale,
                           layout=layout, class_order=order, source=source, num_classes=num_classes)
    return adapter, notes


def read_sidecar(path):
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


def class_order(names, path, num_classes=NUM_CLASSES):
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

