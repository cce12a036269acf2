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
import os
import shutil
import zipfile
from pathlib import Path

from fer_keras import __version__
from fer_keras.constants import CLASS_NAMES, INPUT_SHAPE
from fer_keras.errors import ModelFileError, WriteError
from fer_keras.io_utils import atomic_path, next_model_path
from fer_keras.models import layers  # noqa: F401  (registers fer_keras' own layers, so files holding one load)
from fer_keras.models._registry import build

METADATA_KEY = "fer_keras"
KERAS_ZIP_ENTRY = "fer_keras.json"
MODEL_SUFFIXES = (".h5", ".keras")

INPUT_CONTRACT = {"shape": list(INPUT_SHAPE), "dtype": "uint8 values as float", "range": "0-255",
                  "colour": "grey", "scale_inside_model": True}


def default_metadata(model):
    """Metadata for a model built by ``fer_keras.models.build``."""
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
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")
    try:
        twin = build(meta["architecture"], num_classes=meta["num_classes"], **meta["options"])
    finally:
        keras.mixed_precision.set_global_policy(previous)
    twin.set_weights(model.get_weights())
    twin.fer_metadata = meta
    return twin


def save_model(model, path, metadata=None, *, overwrite=False):
    """Save ``model`` as ``.h5`` or ``.keras`` with metadata, atomically, float32.

    Refuses to replace an existing file unless ``overwrite`` — also one that
    another process creates while this one is writing. A crash, a kill or a
    full disk never leaves half a file under ``path``.
    """
    path = Path(path)
    if path.suffix not in MODEL_SUFFIXES:
        raise ModelFileError(f"{path}: model files end in .h5 or .keras")
    if path.exists() and not overwrite:
        raise ModelFileError(f"{path} exists; refusing to overwrite it")
    meta = default_metadata(model)
    meta.update(metadata or {})
    model = as_float32(model)
    text = json.dumps(meta, default=str)
    # .h5 is the product's format on purpose; silence Keras' "legacy format" notice.
    absl_log = logging.getLogger("absl")
    level = absl_log.level
    absl_log.setLevel(logging.ERROR)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path, overwrite=overwrite) as tmp:
            model.save(tmp, include_optimizer=False) if path.suffix == ".h5" else model.save(tmp)
            _write_metadata(tmp, path.suffix, text)
    except FileExistsError:
        raise ModelFileError(f"{path} exists (written by another process meanwhile); refusing to overwrite it") from None
    except OSError as exc:
        raise ModelFileError(f"cannot write {path}: {_reason(exc)}") from None
    finally:
        absl_log.setLevel(level)
    return path


def save_new_model(model, models_dir, metadata=None, *, suffix=".h5", attempts=100):
    """Save ``model`` as ``models_dir/model_<i><suffix>`` with the next free index.

    Two runs finishing at the same moment both see the same free index; the
    one that loses the race takes the next index instead of overwriting.
    Returns the path written.
    """
    for _ in range(attempts):
        path = next_model_path(models_dir, suffix)
        try:
            return save_model(model, path, metadata)
        except ModelFileError:
            if not path.exists():
                raise
    raise ModelFileError(f"{models_dir}: no free model_<i>{suffix} name after {attempts} attempts")


def write_metadata(path, metadata):
    """Replace the fer_keras metadata of an existing model file; its weights are not touched.

    For correcting a stored figure (say, a score rescored from the float32
    file) without saving the model again, which could change its weights. The
    file is copied next to itself, the copy gets the new metadata and is
    renamed over the original: a crash leaves the old file whole.
    """
    path = Path(path)
    read_metadata(path)  # refuses what is not a readable model file, before copying anything
    text = json.dumps(metadata, default=str)
    try:
        with atomic_path(path) as tmp:
            if zipfile.is_zipfile(path):  # .keras: copy every entry but the old metadata
                with zipfile.ZipFile(path) as src, zipfile.ZipFile(tmp, "w") as dst:
                    for info in src.infolist():
                        if info.filename != KERAS_ZIP_ENTRY:
                            dst.writestr(info, src.read(info))
            else:
                shutil.copyfile(path, tmp)
            _write_metadata(tmp, path.suffix, text)
    except OSError as exc:
        raise ModelFileError(f"cannot write {path}: {_reason(exc)}") from None
    return path


def _reason(exc):
    if isinstance(exc, WriteError):
        return exc.strerror
    return exc.strerror or (os.strerror(exc.errno) if exc.errno else "") or str(exc) or type(exc).__name__


def _write_metadata(path, suffix, text):
    if suffix == ".h5":
        import h5py

        with h5py.File(path, "a") as fh:
            fh.attrs[METADATA_KEY] = text
    else:
        with zipfile.ZipFile(path, "a") as zf:
            zf.writestr(KERAS_ZIP_ENTRY, text)


MAX_CONFIG_BYTES = 64 << 20
"""A ``.keras`` file's JSON entries (config, metadata) may not unpack to more
than this: a small file must not make the loader allocate gigabytes."""


def read_metadata(path):
    """The fer_keras metadata dict stored in a model file ({} when there is none).

    Reads only the metadata (no model is built). Raises ModelFileError when the
    file is not a readable .h5/.keras file.
    """
    path = Path(path)
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                _check_zip_entries(zf, path)
                if KERAS_ZIP_ENTRY not in zf.namelist():
                    return {}
                meta = json.loads(zf.read(KERAS_ZIP_ENTRY).decode("utf-8"))
        else:
            import h5py

            with h5py.File(path, "r") as fh:
                raw = fh.attrs.get(METADATA_KEY)
                if raw is None:
                    return {}
                meta = json.loads(raw if isinstance(raw, str) else bytes(raw).decode("utf-8"))
    except (OSError, zipfile.BadZipFile, ValueError, KeyError, TypeError) as exc:
        # ValueError: bad JSON or UTF-8; TypeError: an attribute that is not text
        raise ModelFileError(f"{path}: not a readable Keras model file ({type(exc).__name__})") from None
    if not isinstance(meta, dict):
        raise ModelFileError(f"{path}: its fer_keras metadata is not a JSON object")
    return meta


def _check_zip_entries(zf, path):
    for name in ("config.json", "metadata.json", KERAS_ZIP_ENTRY):
        try:
            size = zf.getinfo(name).file_size
        except KeyError:
            continue
        if size > MAX_CONFIG_BYTES:
            raise ModelFileError(f"{path}: its {name} unpacks to {size:,} bytes (limit {MAX_CONFIG_BYTES:,}); "
                                 "refused (a zip bomb?)")


def load_model(path, *, safe_mode=True):
    """Load a Keras model file (no compile). Never runs code from the file unless
    ``safe_mode=False``. Attaches its metadata as ``model.fer_metadata``."""
    import keras

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such file")
    meta = read_metadata(path)
    try:
        model = keras.models.load_model(path, compile=False, safe_mode=safe_mode)
    except Exception as exc:  # Keras raises many types for bad files
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        parameter = None
        if "lambda" in reason.lower() or "safe_mode" in reason.lower():
            reason = ("contains a Lambda layer (arbitrary code); refused in safe mode (load it with safe_mode=False "
                      "only if you trust the file)")
            parameter = "safe_mode"
        elif "no model config found" in reason.lower():
            reason = "an HDF5 file with no Keras model in it (weights only, or other data)"
        raise ModelFileError(f"{path}: cannot load ({reason[:300]})", parameter=parameter) from None
    model.fer_metadata = meta
    return model
