"""Exported files run in their own runtime: :class:`RuntimeModel` makes one an ensemble member.

``.tflite`` (the LiteRT interpreter from ``ai-edge-litert``, else
``tf.lite.Interpreter``), ``.onnx`` (``onnxruntime``) and SavedModel folders
(``tf.saved_model.load``) expose what :class:`~fer_keras.ensemble.Ensemble`
and :class:`~fer_keras.inference.FacePredictor` use of a member, so photos,
videos and webcams run through them unchanged.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from pathlib import Path

import numpy as np

from fer_keras.constants import IMAGE_SIZE, INPUT_SCALES, NUM_CLASSES, PIXEL_MAX
from fer_keras.ensemble import BATCH_SIZE, InputAdapter
from fer_keras.ensemble import tta as tta_views
from fer_keras.ensemble.members import class_order, read_sidecar
from fer_keras.errors import FerError, ModelFileError, one_line
from fer_keras.export.writers import METADATA_NAME, OUTPUT_NAME, require, silenced_stderr, tflite_schema

RUNTIME_SUFFIXES = (".tflite", ".onnx")
"""Files :class:`RuntimeModel` runs (besides SavedModel folders)."""


class KerasBackend:
    runtime = "keras"

    def __init__(self, path=None, model=None):
        import keras

        self.model = model if model is not None else keras.models.load_model(path, compile=False, safe_mode=True)
        self.input_dtype = "float32"
        self.input_shape = tuple(self.model.inputs[0].shape[1:])

    def run(self, x):
        return np.asarray(self.model.predict_on_batch(np.asarray(x, dtype=np.float32)))


class SavedModelBackend:
    runtime = "tf.saved_model"

    def __init__(self, path):
        import tensorflow as tf

        self.loaded = tf.saved_model.load(str(path))
        self.fn = self.loaded.signatures["serving_default"]
        spec = self.fn.structured_input_signature[1]
        self.input_name, spec = next(iter(spec.items()))
        self.input_dtype = spec.dtype.name
        self.input_shape = tuple(spec.shape[1:])
        written = Path(path) / "assets" / f"{METADATA_NAME}.json"
        self.metadata = {METADATA_NAME: written.read_text(encoding="utf-8")} if written.is_file() else {}

    def run(self, x):
        import tensorflow as tf

        out = self.fn(**{self.input_name: tf.constant(x, dtype=self.input_dtype)})
        return np.asarray(out[OUTPUT_NAME] if OUTPUT_NAME in out else next(iter(out.values())))


def tflite_interpreter_class():
    """``(Interpreter class, runtime name)``: LiteRT's (``ai-edge-litert``), else TensorFlow's deprecated one."""
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, "ai-edge-litert"
    except ImportError:
        import tensorflow as tf

        return tf.lite.Interpreter, "tf.lite"


class TFLiteBackend:
    def __init__(self, path):
        interpreter_class, self.runtime = tflite_interpreter_class()
        with warnings.catch_warnings(), silenced_stderr():  # deprecation notice; "Created XNNPACK delegate"
            warnings.simplefilter("ignore")
            self.interpreter = interpreter_class(model_path=str(path), num_threads=os.cpu_count())
            self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self.input_dtype = np.dtype(self.input["dtype"]).name
        self.input_shape = tuple(int(d) for d in self.input["shape"][1:])
        self._batch = int(self.input["shape"][0])
        # full-integer quantization computes in int8 (the float files' only 8-bit tensor is their uint8 input)
        self._integer = any(np.dtype(t["dtype"]) == np.int8 for t in self.interpreter.get_tensor_details())
        self.metadata = tflite_metadata(path)

    def quantization(self):
        scale, zero = self.input["quantization"]
        out_scale, out_zero = self.output["quantization"]
        return {"input": {"dtype": self.input_dtype, "scale": float(scale), "zero_point": int(zero)},
                "output": {"dtype": np.dtype(self.output["dtype"]).name, "scale": float(out_scale),
                           "zero_point": int(out_zero)}}

    def run(self, x):
        x = np.asarray(x)
        if len(x) != self._batch:
            self.interpreter.resize_tensor_input(self.input["index"], [len(x), *self.input_shape])
            self.interpreter.allocate_tensors()
            self._batch = len(x)
        scale, zero = self.input["quantization"]
        if self.input_dtype in ("int8", "uint8") and scale and (scale != 1.0 or zero != 0):
            info = np.iinfo(self.input_dtype)
            x = np.clip(np.round(x.astype(np.float32) / scale + zero), info.min, info.max)
        self.interpreter.set_tensor(self.input["index"], x.astype(self.input_dtype))
        self.interpreter.invoke()
        out = self.interpreter.get_tensor(self.output["index"])
        out_scale, out_zero = self.output["quantization"]
        if out.dtype != np.float32 and out_scale:
            out = (out.astype(np.float32) - out_zero) * out_scale
        if self._integer:  # 8-bit steps leave rows summing to 0.97-1.01: probabilities again
            out = out / np.maximum(out.sum(axis=-1, keepdims=True), np.finfo(np.float32).tiny)
        return out.astype(np.float32)


def tflite_metadata(path):
    """``{name: text}`` of a TFLite file's metadata table (:func:`~fer_keras.export.writers.with_tflite_metadata`)."""
    schema = tflite_schema()
    model = schema.Model.GetRootAs(Path(path).read_bytes(), 0)
    table = {}
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        data = model.Buffers(entry.Buffer()).DataAsNumpy()
        if isinstance(data, np.ndarray):  # 0 when the buffer is empty
            table[entry.Name().decode("utf-8", "replace")] = data.tobytes().decode("utf-8", "replace")
    return table


class OnnxBackend:
    runtime = "onnxruntime"

    def __init__(self, path):
        ort = require("onnxruntime", purpose="running an ONNX model")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.input_dtype = {"tensor(uint8)": "uint8", "tensor(float)": "float32"}.get(inp.type)
        if self.input_dtype is None:
            raise ModelFileError(f"{path}: ONNX input type {inp.type} is not uint8 or float")
        self.input_shape = tuple(d if isinstance(d, int) else None for d in inp.shape[1:])
        self.metadata = self.session.get_modelmeta().custom_metadata_map

    def run(self, x):
        return np.asarray(self.session.run(None, {self.input_name: np.asarray(x, dtype=self.input_dtype)})[0])


def _open_backend(path):
    path = Path(path)
    if path.is_dir():
        if not (path / "saved_model.pb").is_file():
            raise ModelFileError(f"{path}: a folder without saved_model.pb is not a SavedModel")
        return SavedModelBackend(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".tflite":
        return TFLiteBackend(path)
    if suffix == ".onnx":
        return OnnxBackend(path)
    if suffix in (".keras", ".h5"):
        return KerasBackend(path)
    raise ModelFileError(f"{path}: not a .tflite, .onnx, .keras/.h5 file or SavedModel folder")


class RuntimeModel:
    """A ``.tflite``, ``.onnx`` or SavedModel artefact as an ensemble member.

    Exposes what :class:`~fer_keras.ensemble.Ensemble` and
    :class:`~fer_keras.inference.FacePredictor` use of a
    :class:`~fer_keras.ensemble.Member` (``predict_proba``, ``name``,
    ``path``, ``weight``, ``adapter``, ``notes``), but runs in the file's own
    runtime. Files exported here take uint8 48x48x1 faces and return FER2013
    probabilities; other files are fed through an
    :class:`~fer_keras.ensemble.InputAdapter` from their input shape (scale
    and class names from a sidecar JSON, else 0-255 and FER2013 order).
    ``model`` is None: Grad-CAM needs a Keras member.
    """

    def __init__(self, path, backend, adapter, *, weight=1.0, metadata=None, notes=()):
        self.path = Path(path)
        self.backend = backend
        self.adapter = adapter
        self.weight = float(weight)
        self.metadata = dict(metadata or {})
        self.notes = list(notes)
        self.model = None

    @property
    def name(self):
        return self.path.name

    @property
    def runtime(self):
        return self.backend.runtime

    @classmethod
    def from_file(cls, path, *, weight=1.0):
        """Open ``path`` in its runtime. Raises :class:`ModelFileError` / :class:`MissingPackageError`."""
        path = Path(path)
        try:
            backend = _open_backend(path)
        except FerError:
            raise
        except Exception as exc:  # runtimes raise many types for bad files
            raise ModelFileError(f"{path}: cannot load ({one_line(exc)})") from None
        meta = {}
        if getattr(backend, "metadata", None) and METADATA_NAME in backend.metadata:
            with contextlib.suppress(json.JSONDecodeError):
                meta = json.loads(backend.metadata[METADATA_NAME])
        shape = backend.input_shape
        if len(shape) != 3 or shape[-1] not in (1, 3):
            raise ModelFileError(f"{path}: input shape {shape} is not an image (expected (H, W, 1) or (H, W, 3))")
        height, width, channels = (d or IMAGE_SIZE for d in shape)
        _, sidecar = read_sidecar(path) if path.is_file() else (None, {})
        scale = meta.get("input_scale") or sidecar.get("input_scale", "0-255")
        if scale not in INPUT_SCALES:
            raise ModelFileError(f"{path}: input_scale {scale!r} is not one of {', '.join(INPUT_SCALES)}")
        names = meta.get("class_names") or sidecar.get("class_names")
        order = class_order(names, path) if names else None
        source = f"{backend.runtime}, {backend.input_dtype} input"
        adapter = InputAdapter(height=int(height), width=int(width), channels=int(channels), scale=scale,
                               class_order=order, source=source)
        return cls(path, backend, adapter, weight=weight, metadata=meta)

    def run(self, faces):
        """Raw model outputs for uint8 faces (one call, no batching)."""
        x = self.adapter(faces)
        if self.backend.input_dtype == "uint8":
            x = np.clip(np.round(x), 0, PIXEL_MAX)
        out = np.asarray(self.backend.run(x), dtype=np.float32).reshape(len(x), -1)
        if out.shape[1] != NUM_CLASSES:
            raise ModelFileError(f"{self.path}: returns {out.shape[1]} values per face, not {NUM_CLASSES} "
                                 "FER2013 probabilities")
        return self.adapter.to_fer_order(out)

    @property
    def crop_margin(self):
        """The ten-crop shift recorded at export for a file whose members all crop alike (0: flip only)."""
        return int(self.metadata.get("crop_margin", 0))

    def predict_proba(self, faces, *, tta=False, batch_size=BATCH_SIZE, verbose=0):
        """Probabilities (N, 7) in FER2013 order, as :meth:`Member.predict_proba`."""
        faces = np.asarray(faces)
        if faces.ndim == 3:
            faces = faces[..., None]
        out = np.empty((len(faces), NUM_CLASSES), dtype=np.float32)
        for start in range(0, len(faces), batch_size):
            batch = tta_views.views(faces[start:start + batch_size], tta, crop_margin=self.crop_margin)
            size = len(batch[0])
            out[start:start + size] = self.run(np.concatenate(batch)).reshape(len(batch), size, -1).mean(axis=0)
        if not np.isfinite(out).all():
            raise ModelFileError(f"{self.path}: the model returned NaN or infinite outputs")
        return out
