"""One Keras model from the members: each behind its own adapter, their weighted mean as output.

Built only from Keras' own layers (Resizing, Concatenate grey→RGB,
Rescaling, Reshape, a fixed Dense for the weighted mean and the class
reorder), so plain ``keras.models.load_model(path)`` loads the fused file in
safe mode without fer_keras; its input is float 0..255 like every fer_keras
member, so dropped into ``models/`` it is one member of the ensemble tester.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from fer_keras.constants import CLASS_NAMES, IMAGE_SIZE, INPUT_SHAPE, NUM_CLASSES, PIXEL_MAX
from fer_keras.ensemble import Ensemble, member_keys
from fer_keras.errors import ConfigError, FerError, ModelFileError, one_line


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
    sub, activation = _clone_member(member.model, name=f"{prefix}_{slug(Path(member.path).stem)}",
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


def slug(text):
    return re.sub(r"[^A-Za-z0-9_]+", "_", text).strip("_") or "member"


def fused_metadata(members, *, weights=None, temperatures=None, source=None):
    """fer_keras metadata of a fused model: input contract, class names, members and weights, and
    the crop margin its ten-crop TTA shifts by (:attr:`RuntimeModel.crop_margin`)."""
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
    # they all crop alike; otherwise ``tta="tencrop"`` on the file is the flip average.
    margins = {member.crop_margin for member in members}
    return {"kind": "fused_ensemble", "class_names": list(CLASS_NAMES), "input_scale": "0-255",
            "crop_margin": margins.pop() if len(margins) == 1 else 0,
            "members": entries, "weights": dict(zip(keys, map(float, ens.weights_))),
            "temperatures": dict(zip(keys, map(float, ens.temperatures_))) if ens.is_calibrated else None,
            "method": "mean", "source": None if source is None else str(source)}
