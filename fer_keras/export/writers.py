"""Writing the artefacts: one Keras model as ``.keras`` / ``.h5``, SavedModel, TFLite and ONNX.

Every artefact takes raw grey faces, uint8 (N, 48, 48, 1), and returns the 7
FER2013 probabilities in FER2013 class order. Each is written atomically, and
an existing one is replaced only with ``overwrite``:

- ``keras``: the ensemble fused into ONE Keras functional model (``.keras``
  and ``.h5``) built only from Keras' own layers, so plain
  ``keras.models.load_model(path)`` loads it in safe mode without fer_keras.
  Each member sits behind its own adapter (Resizing, Concatenate grey→RGB,
  Rescaling, Reshape); a Dense layer with fixed, non-trainable weights
  reorders the members' classes and takes their weighted mean. Its input is
  float 0..255 like every fer_keras member, so dropped into ``models/`` it is
  one member of the ensemble tester.
- ``savedmodel``: a TensorFlow SavedModel whose ``serving_default`` signature
  takes ``faces`` uint8 and returns ``probabilities`` float32.

Each file carries the fer_keras metadata (class names, members, crop margin,
temperatures) where its format keeps what its runtime ignores: the Keras
file's own metadata, ONNX's ``metadata_props``, TFLite's metadata table and
SavedModel's ``assets/`` folder, each under the name ``fer_keras``.
- ``tflite``: ``float32``, ``float16`` (weights in float16, computed in
  float32) and ``int8`` (full-integer: every op int8; **uint8 input** — the raw
  face, scale 1, zero point 0, so nothing to quantize — and **float32 output**,
  one dequantize at the end, so probabilities need no scale on the app side).
  The int8 calibration faces come from the Training split of a ``csv``, else
  from seeded synthetic faces.
- ``onnx``: through ``tf2onnx.convert.from_function`` on the same uint8
  serving function (Keras 3's own ONNX route; needs ``tf2onnx`` and ``onnx``).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

from fer_keras.constants import INPUT_SHAPE, PIXEL_MAX
from fer_keras.errors import ConfigError, FerError, MissingPackageError, one_line
from fer_keras.io_utils import atomic_path
from fer_keras.models import model_io

FORMATS = ("keras", "savedmodel", "tflite", "onnx")
"""What :func:`export` can write."""

TFLITE_VARIANTS = ("float32", "float16", "int8")
"""TFLite files written for the ``tflite`` format."""

INPUT_NAME = "faces"

OUTPUT_NAME = "probabilities"
"""The serving signature's names: uint8 ``faces`` in, float32 ``probabilities`` out."""

METADATA_NAME = "fer_keras"
"""The name the metadata JSON goes under in TFLite and ONNX files (``fer_keras.json`` in a SavedModel's assets)."""

PACKAGES = {"tf2onnx": "tf2onnx", "onnx": "onnx", "onnxruntime": "onnxruntime", "ai_edge_litert": "ai-edge-litert"}
"""Import name → the pip package that provides it (the ``export`` extra)."""

EXTRA_HINT = "pip install -r requirements-export.txt, or pip install 'fer_keras[export]'"


def require(module, *, purpose):
    """Import ``module`` or raise :class:`MissingPackageError` naming the package to install."""
    try:
        return importlib.import_module(module)
    except ImportError:
        package = PACKAGES.get(module.split(".")[0], module)
        raise MissingPackageError(f"{purpose} needs the optional package {package!r}, which is not installed: "
                                  f"pip install {package} (or {EXTRA_HINT})") from None


def artefact_paths(out, name, formats, variants=TFLITE_VARIANTS):
    """``{(format, variant): path}`` that :func:`export` writes (variant None outside tflite/keras)."""
    out = Path(out)
    paths = {}
    for fmt in formats:
        if fmt == "keras":
            paths[("keras", "keras")] = out / f"{name}.keras"
            paths[("keras", "h5")] = out / f"{name}.h5"
        elif fmt == "savedmodel":
            paths[("savedmodel", None)] = out / f"{name}_savedmodel"
        elif fmt == "tflite":
            for variant in variants:
                paths[("tflite", variant)] = out / f"{name}_{variant}.tflite"
        elif fmt == "onnx":
            paths[("onnx", None)] = out / f"{name}.onnx"
        else:
            raise ConfigError(f"unknown export format {fmt!r}; choose from {', '.join(FORMATS)}")
    return paths


def check_free(paths, *, overwrite=False):
    """Raise FerError when any of ``paths`` exists and ``overwrite`` is not set."""
    taken = [Path(p) for p in paths if Path(p).exists()]
    if taken and not overwrite:
        shown = ", ".join(str(p) for p in taken[:3]) + (f" and {len(taken) - 3} more" if len(taken) > 3 else "")
        raise FerError(f"{shown} already exist(s); refusing to overwrite (pass overwrite=True or choose another "
                       "output folder)", parameter="overwrite")


def export_keras(model, path, *, metadata=None, overwrite=False):
    """Save ``model`` as ``path`` (``.keras`` or ``.h5``) with metadata, atomically."""
    return model_io.save_model(model, path, metadata, overwrite=overwrite)


def _serving_fn(model, dtype):
    import tensorflow as tf

    spec = tf.TensorSpec((None, *INPUT_SHAPE), dtype, name=INPUT_NAME)

    @tf.function(input_signature=[spec])
    def serve(faces):
        return {OUTPUT_NAME: model(tf.cast(faces, tf.float32), training=False)}

    return serve, spec


def _write_archive(model, path, *, float_endpoint=False):
    """A SavedModel at ``path``: ``serve`` (= ``serving_default``) takes uint8 faces;
    with ``float_endpoint``, ``serve_float`` takes float32 0..255 faces too."""
    import keras
    import tensorflow as tf

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serve", _serving_fn(model, tf.uint8)[0])
    if float_endpoint:
        archive.add_endpoint("serve_float", _serving_fn(model, tf.float32)[0])
    with _quiet():
        archive.write_out(str(path), verbose=False)
    return Path(path)


def export_savedmodel(model, path, *, metadata=None, overwrite=False):
    """Write a SavedModel folder (uint8 ``faces`` → ``probabilities``), atomically:
    built in a hidden folder next to ``path``, then renamed into place; ``metadata``
    goes into ``assets/fer_keras.json``."""
    path = Path(path)
    check_free([path], overwrite=overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", suffix=f"-{path.name}", dir=path.parent))
    try:
        _write_archive(model, tmp / "model")
        if metadata is not None:
            (tmp / "model" / "assets").mkdir(exist_ok=True)
            (tmp / "model" / "assets" / f"{METADATA_NAME}.json").write_text(json.dumps(metadata, default=str))
        old = None
        if path.exists():
            old = path.with_name(f".old-{os.getpid()}-{path.name}")
            os.replace(path, old)
        os.replace(tmp / "model", path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


PIN_BLOCK = 6
"""Side of the 0 and 255 blocks that pin the int8 input range (they survive a member's resizing)."""


def with_full_input_range(faces):
    """The calibration faces, plus one that pins the int8 input range to 0..255 if they do not span it.

    The uint8 input is meant to have scale 1 and zero point 0, so that apps
    feed raw pixels; the converter takes the input range from the calibration
    faces (and, through a member's resize, from the resized faces, where a
    lone extreme pixel is smoothed away). Real FER2013 samples already span
    0..255. Otherwise one face is put first: a copy of the first face with a
    6x6 block of 0 and one of 255 in its corner. A synthetic 0..255 ramp
    would pin the input too, but its unnatural activations widen every later
    layer's range: on the shipped VGG-16 it cost 0.4 points of top-1
    agreement (98.4% vs 98.8% on PublicTest).
    """
    faces = np.asarray(faces, dtype=np.uint8)
    if faces.min() == 0 and faces.max() == PIXEL_MAX:
        return faces
    pinned = faces[:1].copy()
    pinned[0, :PIN_BLOCK, :PIN_BLOCK] = 0
    pinned[0, :PIN_BLOCK, PIN_BLOCK:2 * PIN_BLOCK] = PIXEL_MAX
    return np.concatenate([pinned, faces])


def tflite_bytes(model, variant, *, representative=None):
    """A TFLite flatbuffer of ``model``: ``float32``, ``float16`` or ``int8``.

    float32/float16 take uint8 faces (a Cast op first); int8 is full-integer
    with uint8 input (scale 1, zero point 0) and float32 output, calibrated on
    ``representative`` (uint8 faces; required for int8).
    """
    import tensorflow as tf

    if variant not in TFLITE_VARIANTS:
        raise ConfigError(f"unknown TFLite variant {variant!r}; choose from {', '.join(TFLITE_VARIANTS)}")
    with tempfile.TemporaryDirectory() as tmp:
        _write_archive(model, Path(tmp) / "sm", float_endpoint=variant == "int8")
        key = "serve_float" if variant == "int8" else "serve"
        converter = tf.lite.TFLiteConverter.from_saved_model(str(Path(tmp) / "sm"), signature_keys=[key])
        if variant == "float16":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_types = [tf.float16]
        elif variant == "int8":
            if representative is None or len(representative) == 0:
                raise ConfigError("the int8 TFLite model needs representative faces for calibration")
            faces = with_full_input_range(representative)

            def calibration():
                for face in faces:
                    yield {INPUT_NAME: face[None].astype(np.float32)}

            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = calibration
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.uint8
            converter.inference_output_type = tf.float32
        with _quiet(), silenced_stderr():  # the converter prints its settings from C++
            return converter.convert()


def tflite_schema():
    """The TFLite flatbuffer schema's Python module, from LiteRT or TensorFlow."""
    try:
        from ai_edge_litert import schema_py_generated
    except ImportError:
        from tensorflow.lite.python import schema_py_generated
    return schema_py_generated


def with_tflite_metadata(data, name, text):
    """The TFLite flatbuffer ``data`` with ``text`` stored under ``name`` in its metadata table.

    Why there: TFLite's runtime ignores the table, and it travels inside the one
    file (as TFLite Support's model metadata does), so a cropping member
    exported to TFLite still tells the reader its crop margin.
    """
    import flatbuffers

    schema = tflite_schema()
    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(text.encode("utf-8"), np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name, entry.buffer = name, len(model.buffers) - 1
    model.metadata = [*(model.metadata or []), entry]
    builder = flatbuffers.Builder(len(data) + len(text) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def export_tflite(model, path, variant, *, representative=None, metadata=None, overwrite=False):
    """Write one TFLite file (see :func:`tflite_bytes`), with ``metadata`` in its metadata table, atomically."""
    path = Path(path)
    check_free([path], overwrite=overwrite)
    data = tflite_bytes(model, variant, representative=representative)
    if metadata is not None:
        data = with_tflite_metadata(data, METADATA_NAME, json.dumps(metadata, default=str))
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)
    return path


def export_onnx(model, path, *, metadata=None, opset=None, overwrite=False):
    """Write an ONNX file (uint8 ``faces`` → ``probabilities``) with tf2onnx, atomically.

    ``metadata`` goes into the file's ``metadata_props`` as ``fer_keras`` (JSON).
    """
    path = Path(path)
    check_free([path], overwrite=overwrite)
    tf2onnx = require("tf2onnx", purpose="ONNX export")
    onnx = require("onnx", purpose="ONNX export")
    with contextlib.suppress(ImportError), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from keras.src.export.tf2onnx_lib import patch_tf2onnx  # Keras' numpy-2 fixes for tf2onnx (private)

        patch_tf2onnx()
    serve, spec = _serving_fn(model, "uint8")
    with _quiet():
        proto, _ = tf2onnx.convert.from_function(serve, input_signature=[spec], opset=opset)
    if metadata is not None:
        entry = proto.metadata_props.add()
        entry.key, entry.value = METADATA_NAME, json.dumps(metadata, default=str)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        onnx.save(proto, str(tmp))
    return path


@contextlib.contextmanager
def silenced_stderr():
    """Point file descriptor 2 at /dev/null (C++ code prints there directly); errors still raise.
    FER_KERAS_VERBOSE_TF=1 keeps it."""
    if os.environ.get("FER_KERAS_VERBOSE_TF"):
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr (e.g. captured): nothing to silence
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


@contextlib.contextmanager
def _quiet():
    """Hide converters' INFO chatter (absl/tf2onnx loggers and warnings) while they run."""
    import logging

    names = ("absl", "tensorflow", "tf2onnx", "keras")
    levels = {n: logging.getLogger(n).level for n in names}
    for n in names:
        logging.getLogger(n).setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for n, level in levels.items():
            logging.getLogger(n).setLevel(level)


def check_converters(formats, *, verify=True):
    """Raise :class:`MissingPackageError` before any work when a format's converter (or, with
    ``verify``, its runtime) is absent. TFLite needs nothing beyond TensorFlow."""
    if "onnx" in formats:
        require("tf2onnx", purpose="ONNX export")
        require("onnx", purpose="ONNX export")
        if verify:
            require("onnxruntime", purpose="checking the ONNX export")


def export(model, out, *, name="fer_ensemble", formats=("keras",), variants=TFLITE_VARIANTS, metadata=None,
           representative=None, overwrite=False, on_written=None):
    """Write every artefact of ``formats`` into ``out``; returns ``{(format, variant): path}``.

    Refuses (before writing anything) when a target exists and ``overwrite``
    is not set, or when a format's converter is not installed. A converter
    that fails raises :class:`FerError`: one line naming the file and the
    members in it (from ``metadata``), not the converter's pages of text.
    """
    out = Path(out)
    paths = artefact_paths(out, name, formats, variants)
    check_free(paths.values(), overwrite=overwrite)
    check_converters(formats, verify=False)
    if ("tflite", "int8") in paths and (representative is None or len(representative) == 0):
        raise ConfigError("the int8 TFLite model needs representative faces for calibration")
    out.mkdir(parents=True, exist_ok=True)
    members = ", ".join(entry["file"] for entry in (metadata or {}).get("members", [])) or model.name
    for (fmt, variant), path in paths.items():
        try:
            if fmt == "keras":
                export_keras(model, path, metadata=metadata, overwrite=overwrite)
            elif fmt == "savedmodel":
                export_savedmodel(model, path, metadata=metadata, overwrite=overwrite)
            elif fmt == "tflite":
                export_tflite(model, path, variant, representative=representative, metadata=metadata,
                              overwrite=overwrite)
            elif fmt == "onnx":
                export_onnx(model, path, metadata=metadata, overwrite=overwrite)
        except FerError:
            raise
        except Exception as exc:  # converters raise many types, with pages of text
            what = f"{fmt} {variant}" if fmt == "tflite" else fmt
            raise FerError(f"{path.name}: exporting {members} as {what} failed ({one_line(exc)})") from None
        if on_written:
            on_written(fmt, variant, path)
    return paths
