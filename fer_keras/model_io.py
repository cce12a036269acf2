"""Saving and loading model files, with fer_keras metadata inside them.

A saved member must be self-describing: which architecture and options, the
class names, the input contract, how it was trained and how well it did. The
metadata is a JSON document stored *in* the file — an HDF5 attribute of an
``.h5`` file, an extra ``fer_keras.json`` entry in a ``.keras`` zip — so it
can be read without building the model and travels with the file.

Files are always written as float32 models: a model trained under
``mixed_bfloat16`` keeps that policy per layer when saved, and whoever loads
it would compute in bf16 even where that is slow or unsupported.
"""

from __future__ import annotations

import json
import logging
import zipfile
from pathlib import Path

from fer_keras.constants import CLASS_NAMES, INPUT_SHAPE
from fer_keras.errors import ModelFileError
from fer_keras.io_utils import atomic_path

METADATA_KEY = "fer_keras"
KERAS_ZIP_ENTRY = "fer_keras.json"
MODEL_SUFFIXES = (".h5", ".keras")

INPUT_CONTRACT = {"shape": list(INPUT_SHAPE), "dtype": "uint8 values as float", "range": "0-255",
                  "colour": "grey", "scale_inside_model": True}


def default_metadata(model):
    """Metadata for a model built by ``fer_keras.models.build``."""
    from fer_keras import __version__

    meta = dict(getattr(model, "fer_metadata", {}) or {})
    meta.setdefault("class_names", list(CLASS_NAMES))
    meta.setdefault("input_scale", "0-255")
    meta.setdefault("input_contract", INPUT_CONTRACT)
    meta.setdefault("toolkit_version", __version__)
    meta["parameters"] = int(model.count_params())
    return meta


def as_float32(model):
    """A float32 copy of a mixed-precision model (same weights), or the model itself."""
    import keras

    if all(layer.dtype_policy.name == "float32" for layer in model.layers):
        return model
    meta = getattr(model, "fer_metadata", None)
    if not meta or "architecture" not in meta:
        raise ModelFileError("cannot convert a mixed-precision model without fer_keras metadata to float32")
    from fer_keras import models

    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")
    try:
        twin = models.build(meta["architecture"], num_classes=meta["num_classes"], **meta["options"])
    finally:
        keras.mixed_precision.set_global_policy(previous)
    twin.set_weights(model.get_weights())
    twin.fer_metadata = meta
    return twin


def save_model(model, path, metadata=None, *, overwrite=False):
    """Save ``model`` as ``.h5`` or ``.keras`` with metadata, atomically, float32.

    Refuses to replace an existing file unless ``overwrite``.
    """
    path = Path(path)
    if path.suffix not in MODEL_SUFFIXES:
        raise ModelFileError(f"{path}: model files end in .h5 or .keras")
    if path.exists() and not overwrite:
        raise ModelFileError(f"{path} exists; refusing to overwrite it")
    meta = default_metadata(model)
    meta.update(metadata or {})
    model = as_float32(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(meta, default=str)
    # .h5 is the product's format on purpose; silence Keras' "legacy format" notice.
    absl_log = logging.getLogger("absl")
    level = absl_log.level
    absl_log.setLevel(logging.ERROR)
    try:
        with atomic_path(path) as tmp:
            model.save(tmp, include_optimizer=False) if path.suffix == ".h5" else model.save(tmp)
            _write_metadata(tmp, path.suffix, text)
    except OSError as exc:
        raise ModelFileError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        absl_log.setLevel(level)
    return path


def _write_metadata(path, suffix, text):
    if suffix == ".h5":
        import h5py

        with h5py.File(path, "a") as fh:
            fh.attrs[METADATA_KEY] = text
    else:
        with zipfile.ZipFile(path, "a") as zf:
            zf.writestr(KERAS_ZIP_ENTRY, text)


def read_metadata(path):
    """The fer_keras metadata dict stored in a model file ({} when there is none).

    Reads only the metadata (no model is built). Raises ModelFileError when the
    file is not a readable .h5/.keras file.
    """
    path = Path(path)
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                if KERAS_ZIP_ENTRY not in zf.namelist():
                    return {}
                return json.loads(zf.read(KERAS_ZIP_ENTRY))
        import h5py

        with h5py.File(path, "r") as fh:
            raw = fh.attrs.get(METADATA_KEY)
            if raw is None:
                return {}
            return json.loads(raw if isinstance(raw, str) else raw.decode())
    except (OSError, zipfile.BadZipFile, json.JSONDecodeError, KeyError) as exc:
        raise ModelFileError(f"{path}: not a readable Keras model file ({type(exc).__name__})") from None


def load_model(path, *, safe_mode=True):
    """Load a Keras model file (no compile). Never runs code from the file unless
    ``safe_mode=False``. Attaches its metadata as ``model.fer_metadata``."""
    import keras

    from fer_keras import augment  # noqa: F401  (registers fer_keras custom layers)

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such file")
    meta = read_metadata(path)
    try:
        model = keras.models.load_model(path, compile=False, safe_mode=safe_mode)
    except Exception as exc:  # Keras raises many types for bad files
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "lambda" in reason.lower() or "safe_mode" in reason.lower():
            reason = "contains a Lambda layer (arbitrary code); refused in safe mode (use --unsafe only for files you trust)"
        raise ModelFileError(f"{path}: cannot load ({reason[:300]})") from None
    model.fer_metadata = meta
    return model
