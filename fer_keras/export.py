"""Export a member or the whole ensemble for apps, and run the exported files.

Every artefact takes what an app has: raw grey faces, **uint8 (N, 48, 48, 1)**,
values 0..255, and returns the 7 FER2013 probabilities in FER2013 class order
(the member's input adapters and class reordering are inside the graph):

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
- ``tflite``: ``float32``, ``float16`` (weights in float16, computed in
  float32) and ``int8`` (full-integer: every op int8; **uint8 input** — the raw
  face, scale 1, zero point 0, so nothing to quantize — and **float32 output**,
  one dequantize at the end, so probabilities need no scale on the app side).
  The int8 calibration faces come from the Training split of ``--csv``, else
  from seeded synthetic faces.
- ``onnx``: through ``tf2onnx.convert.from_function`` on the same uint8
  serving function (Keras 3's own ONNX route; needs ``tf2onnx`` and ``onnx``).

:func:`verify` runs each artefact through its own runtime (Keras,
``tf.saved_model.load``, the LiteRT interpreter from ``ai-edge-litert`` or
else ``tf.lite.Interpreter``, ``onnxruntime``) and compares it with the Keras
original: accuracy, top-1 agreement, largest probability difference, size,
single-face latency. :class:`RuntimeModel` makes a ``.tflite`` / ``.onnx`` /
SavedModel an ensemble member, so :class:`~fer_keras.predict.FacePredictor`
runs photos, videos and webcams through it unchanged.

    members, _ = load_members("models")
    model = fuse(members)                       # one keras.Model
    paths = export_keras(model, "exported/fer_ensemble", metadata=fused_metadata(members))
    member = RuntimeModel.from_file("exported/fer_ensemble_int8.tflite")
    member.predict_proba(faces)                 # (N, 7)
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import re
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from fer_keras.ensemble import tta as tta_views
from fer_keras.constants import CLASS_NAMES, IMAGE_SIZE, INPUT_SCALES, INPUT_SHAPE, NUM_CLASSES, PIXEL_MAX
from fer_keras.errors import ConfigError, FerError, MissingPackageError, ModelFileError
from fer_keras.io_utils import atomic_path

FORMATS = ("keras", "savedmodel", "tflite", "onnx")
"""What :func:`export` can write."""

TFLITE_VARIANTS = ("float32", "float16", "int8")
"""TFLite files written for ``--format tflite``."""

RUNTIME_SUFFIXES = (".tflite", ".onnx")
"""Files :class:`RuntimeModel` runs (besides SavedModel folders)."""

INPUT_NAME = "faces"
OUTPUT_NAME = "probabilities"

REPRESENTATIVE_FACES = 300
"""Calibration faces for the int8 TFLite model."""

LATENCY_CALLS = 50
"""Single-face calls timed per artefact (after a few warm-up calls)."""

AGREEMENT_TARGETS = {"int8": 0.99}
"""Least top-1 agreement with the Keras original; 0.999 for everything else."""

DEFAULT_AGREEMENT_TARGET = 0.999

INT8_SIZE_RATIO = 3.0
"""The int8 file should be at least this many times smaller than the float32 one."""

PACKAGES = {"tf2onnx": "tf2onnx", "onnx": "onnx", "onnxruntime": "onnxruntime", "ai_edge_litert": "ai-edge-litert"}
"""Import name → the pip package that provides it (the ``export`` extra)."""

EXTRA_HINT = "pip install -r requirements-export.txt, or pip install 'fer_keras[export]'"

BATCH_SIZE = 256


def require(module, *, purpose):
    """Import ``module`` or raise :class:`MissingPackageError` naming the package to install."""
    try:
        return importlib.import_module(module)
    except ImportError:
        package = PACKAGES.get(module.split(".")[0], module)
        raise MissingPackageError(f"{purpose} needs the optional package {package!r}, which is not installed: "
                                  f"pip install {package} (or {EXTRA_HINT})") from None


# --------------------------------------------------------------------------
# One Keras model from the members
# --------------------------------------------------------------------------


def fuse(members, *, weights=None, temperatures=None, name="fer_ensemble"):
    """One Keras functional model computing the ensemble's weighted mean.

    ``members``: :class:`~fer_keras.ensemble.Member` list; ``weights`` and
    ``temperatures`` as :class:`~fer_keras.ensemble.Ensemble` takes them
    (None: the members' own weights, no temperature scaling). Members with
    weight 0 are left out. Input: ``(N, 48, 48, 1)`` float 0..255; output:
    ``(N, 7)`` probabilities in FER2013 order, equal to
    ``Ensemble(members, weights=..., temperatures=...).predict_proba`` (mean
    method, no TTA). Built only from Keras' own layers. A member it cannot
    take raises :class:`FerError` naming the member's file.
    """
    import keras
    from keras import layers

    from fer_keras.ensemble import Ensemble

    ens = Ensemble(members, weights=weights, temperatures=temperatures)
    w, temps = ens.weights_, ens.temperatures_
    face = keras.Input(shape=INPUT_SHAPE, name="face")
    outputs, columns = [], []
    for i, (member, weight, temp) in enumerate(zip(members, w, temps)):
        if weight <= 0:
            continue
        try:
            outputs.append(_member_branch(face, member, f"m{i}", temp))
        except FerError as exc:
            raise type(exc)(f"{member.path}: {exc}") from None
        except Exception as exc:  # Keras raises many types for a graph it cannot build
            raise ModelFileError(f"{member.path}: cannot be exported ({one_line(exc)})") from None
        order = member.adapter.class_order or tuple(range(NUM_CLASSES))
        columns.append((float(weight), order))
    stacked = outputs[0] if len(outputs) == 1 else layers.Concatenate(name="member_probabilities")(outputs)
    # The weighted mean, with each member's columns put in FER2013 order: one fixed matrix.
    kernel = np.zeros((NUM_CLASSES * len(outputs), NUM_CLASSES), dtype=np.float32)
    for j, (weight, order) in enumerate(columns):
        for k in range(NUM_CLASSES):
            kernel[j * NUM_CLASSES + order[k], k] = weight
    mean = layers.Dense(NUM_CLASSES, use_bias=False, trainable=False, name="weighted_mean")
    out = mean(stacked)
    mean.set_weights([kernel])
    return keras.Model(face, out, name=name)


def _member_branch(face, member, prefix, temp):
    """The fused graph's path from ``face`` to one member's probabilities (its own class order).

    Raises :class:`ModelFileError` unless it ends in one ``(None, 7)`` tensor:
    checked here, per member, so that a member the fused model cannot take is
    named, instead of a shape error in the shared weighted-mean layer.
    """
    import keras
    from keras import layers

    x = _adapter_layers(face, member.adapter, prefix)
    sub, activation = _clone_member(member.model, name=f"{prefix}_{_slug(Path(member.path).stem)}",
                                    logits=temp != 1.0)
    p = sub(x)
    if keras.tree.is_nested(p) or tuple(p.shape[1:]) != (NUM_CLASSES,):
        shapes = keras.tree.map_structure(lambda t: tuple(t.shape), p)
        raise ModelFileError(f"its output in the fused graph is {shapes}, not one (None, {NUM_CLASSES}) tensor")
    if temp != 1.0:
        p = layers.Rescaling(1.0 / float(temp), name=f"{prefix}_temperature")(p)
    if temp != 1.0 or activation == "linear":
        p = layers.Activation("softmax", name=f"{prefix}_softmax")(p)
    return p


def one_line(exc, limit=300):
    """The first line of an exception's message (else its type), at most ``limit`` characters:
    converters and runtimes raise pages of text, the CLI prints one line."""
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:limit]


def _adapter_layers(x, adapter, prefix):
    """Keras layers doing what an :class:`~fer_keras.ensemble.InputAdapter` does."""
    from keras import layers

    if (adapter.height, adapter.width) != (IMAGE_SIZE, IMAGE_SIZE):
        x = layers.Resizing(adapter.height, adapter.width, interpolation="bilinear", name=f"{prefix}_resize")(x)
    if adapter.channels == 3:
        x = layers.Concatenate(name=f"{prefix}_grey_to_rgb")([x, x, x])
    if adapter.scale == "0-1":
        x = layers.Rescaling(1.0 / PIXEL_MAX, name=f"{prefix}_scale_0_1")(x)
    elif adapter.scale == "-1-1":
        x = layers.Rescaling(2.0 / PIXEL_MAX, offset=-1.0, name=f"{prefix}_scale_pm1")(x)
    elif adapter.scale != "0-255":
        raise ModelFileError(f"input scale {adapter.scale!r} cannot be exported")
    if adapter.layout == "flat":
        x = layers.Reshape((adapter.height * adapter.width * adapter.channels,), name=f"{prefix}_flatten")(x)
    elif adapter.layout == "hw":
        x = layers.Reshape((adapter.height, adapter.width), name=f"{prefix}_drop_channel")(x)
    return x


def _activation_name(layer):
    """``softmax``, ``linear`` or another activation name of a model's output layer."""
    if type(layer).__name__ == "Softmax":
        return "softmax"
    fn = getattr(layer, "activation", None)
    if fn is None:
        return "linear"
    return getattr(fn, "__name__", str(fn))


def _output_layer(model):
    try:
        return model.outputs[0]._keras_history[0]
    except (AttributeError, IndexError, TypeError, ValueError):
        return model.layers[-1]


def _clone_member(model, *, name, logits=False):
    """A float32 copy of ``model`` named ``name`` (same weights) and the activation
    of its output layer. ``logits``: its output softmax is dropped (for temperatures)."""
    import keras

    out_layer = _output_layer(model)
    activation = _activation_name(out_layer)
    if logits and activation != "softmax":
        raise ConfigError(f"temperature scaling needs a softmax output layer to take the logits from; "
                          f"{out_layer.name} has activation {activation!r}")

    def clone(layer):
        config = layer.get_config()
        if not isinstance(layer, keras.Model) and getattr(layer, "dtype_policy", None) is not None \
                and layer.dtype_policy.name != "float32":
            config["dtype"] = "float32"  # a shipped file computes in float32 (see model_io)
        if logits and layer is out_layer:
            if type(layer).__name__ == "Softmax":
                return keras.layers.Identity(name=layer.name)
            config["activation"] = "linear"
        return layer.__class__.from_config(config)

    twin = keras.models.clone_model(model, clone_function=clone)
    twin.set_weights(model.get_weights())
    twin.name = name
    return twin, ("linear" if logits else activation)


def _slug(text):
    return re.sub(r"[^A-Za-z0-9_]+", "_", text).strip("_") or "member"


def fused_metadata(members, *, weights=None, temperatures=None, source=None):
    """fer_keras metadata of a fused model: input contract, class names, members and weights, and
    the crop margin its ten-crop TTA shifts by (:attr:`RuntimeModel.crop_margin`)."""
    from fer_keras.ensemble import Ensemble, member_keys

    ens = Ensemble(members, weights=weights, temperatures=temperatures)
    keys = member_keys(members)
    entries = []
    for key, member, w, t in zip(keys, members, ens.weights_, ens.temperatures_):
        entry = {"file": key, "weight": float(w), "temperature": float(t), "input": member.adapter.to_dict()}
        for field in ("architecture", "options", "validation", "parameters"):
            if field in member.metadata:
                entry[field] = member.metadata[field]
        entries.append(entry)
    # One graph shares one input, so ten-crop TTA can shift it for all members only when
    # they all crop alike; otherwise ``--tta tencrop`` on the file is the flip average.
    margins = {member.crop_margin for member in members}
    return {"kind": "fused_ensemble", "class_names": list(CLASS_NAMES), "input_scale": "0-255",
            "crop_margin": margins.pop() if len(margins) == 1 else 0,
            "members": entries, "weights": dict(zip(keys, map(float, ens.weights_))),
            "temperatures": dict(zip(keys, map(float, ens.temperatures_))) if ens.is_calibrated else None,
            "method": "mean", "source": None if source is None else str(source)}


# --------------------------------------------------------------------------
# Writing the artefacts
# --------------------------------------------------------------------------


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
        raise FerError(f"{shown} already exist(s); refusing to overwrite (pass --overwrite or another --out)")


def export_keras(model, path, *, metadata=None, overwrite=False):
    """Save ``model`` as ``path`` (``.keras`` or ``.h5``) with metadata, atomically."""
    from fer_keras.models import model_io

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


def export_savedmodel(model, path, *, overwrite=False):
    """Write a SavedModel folder (uint8 ``faces`` → ``probabilities``), atomically:
    built in a hidden folder next to ``path``, then renamed into place."""
    path = Path(path)
    check_free([path], overwrite=overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", suffix=f"-{path.name}", dir=path.parent))
    try:
        _write_archive(model, tmp / "model")
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
        with _quiet(), _silenced_stderr():  # the converter prints its settings from C++
            return converter.convert()


def export_tflite(model, path, variant, *, representative=None, overwrite=False):
    """Write one TFLite file (see :func:`tflite_bytes`), atomically."""
    path = Path(path)
    check_free([path], overwrite=overwrite)
    data = tflite_bytes(model, variant, representative=representative)
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
        entry.key, entry.value = "fer_keras", json.dumps(metadata, default=str)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        onnx.save(proto, str(tmp))
    return path


@contextlib.contextmanager
def _silenced_stderr():
    """Point file descriptor 2 at /dev/null (C++ code prints there directly); errors still raise.
    FER_KERAS_VERBOSE_TF=1 keeps it."""
    import sys

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


# --------------------------------------------------------------------------
# Running the artefacts
# --------------------------------------------------------------------------


class _KerasBackend:
    runtime = "keras"

    def __init__(self, path=None, model=None):
        import keras

        self.model = model if model is not None else keras.models.load_model(path, compile=False, safe_mode=True)
        self.input_dtype = "float32"
        self.input_shape = tuple(self.model.inputs[0].shape[1:])

    def run(self, x):
        return np.asarray(self.model.predict_on_batch(np.asarray(x, dtype=np.float32)))


class _SavedModelBackend:
    runtime = "tf.saved_model"

    def __init__(self, path):
        import tensorflow as tf

        self.loaded = tf.saved_model.load(str(path))
        self.fn = self.loaded.signatures["serving_default"]
        spec = self.fn.structured_input_signature[1]
        self.input_name, spec = next(iter(spec.items()))
        self.input_dtype = spec.dtype.name
        self.input_shape = tuple(spec.shape[1:])

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


class _TFLiteBackend:
    def __init__(self, path):
        interpreter_class, self.runtime = tflite_interpreter_class()
        with warnings.catch_warnings(), _silenced_stderr():  # deprecation notice; "Created XNNPACK delegate"
            warnings.simplefilter("ignore")
            self.interpreter = interpreter_class(model_path=str(path), num_threads=os.cpu_count())
            self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self.input_dtype = np.dtype(self.input["dtype"]).name
        self.input_shape = tuple(int(d) for d in self.input["shape"][1:])
        self._batch = int(self.input["shape"][0])

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
        return out.astype(np.float32)


class _OnnxBackend:
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
        return _SavedModelBackend(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".tflite":
        return _TFLiteBackend(path)
    if suffix == ".onnx":
        return _OnnxBackend(path)
    if suffix in (".keras", ".h5"):
        return _KerasBackend(path)
    raise ModelFileError(f"{path}: not a .tflite, .onnx, .keras/.h5 file or SavedModel folder")


class RuntimeModel:
    """A ``.tflite``, ``.onnx`` or SavedModel artefact as an ensemble member.

    Exposes what :class:`~fer_keras.ensemble.Ensemble` and
    :class:`~fer_keras.predict.FacePredictor` use of a
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
        from fer_keras.ensemble.members import InputAdapter, class_order, read_sidecar

        path = Path(path)
        try:
            backend = _open_backend(path)
        except FerError:
            raise
        except Exception as exc:  # runtimes raise many types for bad files
            raise ModelFileError(f"{path}: cannot load ({one_line(exc)})") from None
        meta = {}
        if getattr(backend, "metadata", None) and "fer_keras" in backend.metadata:
            with contextlib.suppress(json.JSONDecodeError):
                meta = json.loads(backend.metadata["fer_keras"])
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


# --------------------------------------------------------------------------
# Checking the artefacts
# --------------------------------------------------------------------------


def representative_faces(n=REPRESENTATIVE_FACES, *, csv=None, seed=0):
    """``(faces, source)``: ``n`` seeded faces from the Training split of ``csv``, else synthetic faces."""
    from fer_keras.constants import TRAIN_SPLIT

    if csv:
        from fer_keras.data import load_fer2013

        split = load_fer2013(csv)[TRAIN_SPLIT]
        rng = np.random.default_rng(seed)
        idx = np.sort(rng.choice(len(split), size=min(n, len(split)), replace=False))
        return split.x[idx], f"{csv} [{TRAIN_SPLIT}], {len(idx)} faces, seed {seed}"
    from fer_keras.data import synthetic_faces

    x, _ = synthetic_faces(n, seed=seed)
    return x, f"synthetic faces, {n}, seed {seed}"


def validation_faces(*, csv=None, limit=None, n_synthetic=200, seed=1):
    """``(faces, labels or None, source)``: PublicTest of ``csv`` (first ``limit``), else synthetic faces."""
    from fer_keras.constants import VALIDATION_SPLIT

    if csv:
        from fer_keras.data import load_fer2013

        split = load_fer2013(csv)[VALIDATION_SPLIT]
        x, y = split.x, split.y
        if limit:
            x, y = x[:limit], y[:limit]
        return x, y, f"{csv} [{VALIDATION_SPLIT}], {len(y)} faces"
    from fer_keras.data import synthetic_faces

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
    backend = _KerasBackend(model=model)
    return np.concatenate([backend.run(faces[i:i + batch_size]) for i in range(0, len(faces), batch_size)]) \
        if len(faces) else np.zeros((0, NUM_CLASSES), np.float32)


def target_of(fmt, variant):
    return AGREEMENT_TARGETS.get(variant, DEFAULT_AGREEMENT_TARGET)


def verify(model, artefacts, faces, labels=None, *, calls=LATENCY_CALLS):
    """Run each artefact in its runtime on ``faces`` and compare with ``model``.

    ``artefacts``: ``{(format, variant): path}``. Returns one dict per
    artefact (plus the Keras original first): file, format, variant,
    runtime, bytes, accuracy, agreement, max_prob_diff, latency_ms_p50,
    target, passed, and TFLite quantization details.
    """
    faces = np.asarray(faces, dtype=np.uint8)
    reference = keras_proba(model, faces)
    face = faces[:1]
    rows = [{"file": None, "format": "keras (in memory)", "variant": None, "runtime": "keras", "bytes": None,
             "accuracy": _accuracy(reference, labels), "agreement": 1.0, "max_prob_diff": 0.0,
             "latency_ms_p50": latency_ms(_KerasBackend(model=model).run, face.astype(np.float32), calls),
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
        if isinstance(member.backend, _TFLiteBackend):
            row["quantization"] = member.backend.quantization()
        sizes[(fmt, variant)] = row["bytes"]
        rows.append(row)
    int8, f32 = sizes.get(("tflite", "int8")), sizes.get(("tflite", "float32"))
    if int8 and f32:
        for row in rows:
            if (row["format"], row["variant"]) == ("tflite", "int8"):
                row["size_ratio_vs_float32"] = f32 / int8
                row["target"]["size_ratio"] = INT8_SIZE_RATIO
                row["passed"] = bool(row["passed"] and f32 / int8 >= INT8_SIZE_RATIO)
    return rows


def _accuracy(probs, labels):
    if labels is None or len(labels) == 0:
        return None
    return float(np.mean(np.asarray(probs).argmax(1) == np.asarray(labels)))


def results_table(rows):
    """The verification rows as a plain-text table."""
    from fer_keras.tables import format_table

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
            verdict = ("ok " if r["passed"] else "MISSED ") + want
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
                export_savedmodel(model, path, overwrite=overwrite)
            elif fmt == "tflite":
                export_tflite(model, path, variant, representative=representative, overwrite=overwrite)
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


__all__ = ["FORMATS", "TFLITE_VARIANTS", "MissingPackageError", "RuntimeModel", "artefact_paths", "check_free",
           "export", "export_keras", "export_onnx", "export_savedmodel", "export_tflite", "fuse", "fused_metadata",
           "representative_faces", "require", "results_table", "tflite_bytes", "validation_faces", "verify",
           "versions", "with_full_input_range"]
