"""Grad-CAM: where in the face a model looked for the emotion it reports.

Which layer is explained (the rule, so any Keras model works):

    the **last layer whose output is 4-D (batch, height, width, channels) with
    height and width above 1**, searching the model's layers in reverse and
    descending into nested models (a ``keras.applications`` base, a backbone
    sub-model) before looking at the nested model's own output.

That is the last convolutional feature map that still has a spatial layout:
for VGG-16 at 48 px the 3x3 map of the last conv block, not the 1x1 one after
the final pooling. Input layers and layers whose output cannot be read are
passed over. In a model without convolutions (Flatten → Dense) the rule lands
on a preprocessing layer (rescaling, resizing): the map is then little more
than the gradient times the input. A model with no 4-D layer at all raises
:class:`~fer_keras.errors.FerError`.

The map: gradients of the class score (the model's output for that class)
with respect to the layer's output, averaged over height and width as
channel weights; the ReLU of the weighted sum of the channels, divided by its
maximum (0..1; all zeros when no part of the face argues for the class),
resized to the input face (48x48) with bilinear interpolation.

    cam = GradCAM(member.model)                 # finds the layer by the rule above
    heat = face_gradcam(member, face, class_index=3)   # (48, 48) float32 in [0, 1]
    picture = overlay_heatmap(crop_bgr, heat)         # colour overlay, crop size
"""

from __future__ import annotations

import numpy as np

from fer_keras.constants import IMAGE_SIZE
from fer_keras.errors import FerError
from fer_keras.inference.faces import to_bgr


def _output_shape(layer):
    try:
        return tuple(layer.output.shape)
    except (AttributeError, ValueError, RuntimeError):  # unbuilt, or called more than once
        return None


def _is_spatial(shape):
    return (shape is not None and len(shape) == 4
            and (shape[1] is None or shape[1] > 1) and (shape[2] is None or shape[2] > 1))


def find_target_layer(model):
    """The layer Grad-CAM explains, as a path ``[nested model, ..., layer]`` from ``model``.

    See the module docstring for the rule. Raises FerError when no layer fits.
    """
    path = _search(model)
    if path is None:
        raise FerError(f"model {model.name!r} has no layer with a spatial (batch, height, width, channels) output "
                       "above 1x1; Grad-CAM needs a convolutional model")
    return path


def _search(model):
    for layer in reversed(list(getattr(model, "layers", []))):
        if type(layer).__name__ == "InputLayer":
            continue
        if _is_nested_model(layer):
            inner = _search(layer)
            if inner is not None:
                return [layer, *inner]
        if _is_spatial(_output_shape(layer)):
            return [layer]
    return None


def _is_nested_model(layer):
    import keras

    return isinstance(layer, keras.Model) and bool(getattr(layer, "layers", None))


class GradCAM:
    """Grad-CAM for one Keras classifier (see the module docstring).

    Args:
      model: a Keras model taking images (batch, H, W, C).
      layer: the layer (or a path ``[nested model, ..., layer]``) to explain;
        default: :func:`find_target_layer`.
    """

    def __init__(self, model, layer=None):
        self.model = model
        if layer is None:
            self.layer_path = find_target_layer(model)
        else:
            self.layer_path = list(layer) if isinstance(layer, (list, tuple)) else [layer]
        self._feature_models = {}

    @property
    def layer(self):
        return self.layer_path[-1]

    @property
    def layer_name(self):
        """E.g. ``vgg16/block5_conv3`` for a layer inside a nested model."""
        return "/".join(layer.name for layer in self.layer_path)

    def __call__(self, x, class_index=None, *, output_column=None):
        """Heat map for one model input ``x`` (1, H, W, C) → ``(map (h, w) float32 in [0, 1], class index)``.

        ``class_index``: the output column explained (default: the model's top
        class). The map has the layer's spatial size; see :func:`resize_map`.
        """
        import tensorflow as tf

        x = tf.convert_to_tensor(np.asarray(x, dtype=np.float32))
        if x.shape[0] != 1:
            raise ValueError("GradCAM explains one image at a time (batch of 1)")
        with tf.GradientTape() as tape:
            tape.watch(x)  # records every op, even before the first layer with weights
            features, output = self._features_and_output(self.model, self.layer_path, x)
            output = tf.reshape(output, (1, -1))
            if class_index is None:
                class_index = int(tf.argmax(output[0]))
            score = output[:, class_index]
        grads = tape.gradient(score, features)
        if grads is None:
            raise FerError(f"no gradient flows from the output of {self.model.name!r} to layer {self.layer_name} "
                           "(its feature map is not on the path to the prediction)")
        weights = tf.reduce_mean(grads, axis=(1, 2))  # (1, C): one weight per channel
        cam = tf.nn.relu(tf.reduce_sum(features * weights[:, None, None, :], axis=-1))[0].numpy()
        return normalise(cam), int(class_index)

    def _features_and_output(self, model, path, x):
        """``(path[-1]'s output, model's output)`` for ``x``, both on the tape."""
        if len(path) == 1:
            # The plain case: one model giving the feature map and the prediction.
            key = id(model)
            if key not in self._feature_models:
                self._feature_models[key] = _feature_model(model, path[0])
            features, output = self._feature_models[key](x, training=False)
            return features, output
        # The layer sits in a nested model: a nested layer's output is not a tensor of the outer
        # graph, so run the outer model with the nested one swapped (for this call only) for a
        # function that also hands back the feature map from inside it.
        nested, captured = path[0], {}

        def call(inputs, *args, **kwargs):
            captured["features"], out = self._features_and_output(nested, path[1:], inputs)
            return out

        nested.call = call
        try:
            output = model(x, training=False)
        finally:
            del nested.call
        return captured["features"], output


def _feature_model(model, layer):
    """``keras.Model(inputs, [layer output, model output])`` over the graph ``model`` runs."""
    import keras

    if isinstance(model, keras.Sequential):
        # A Sequential (loaded from .h5 especially) may have called each layer several times
        # while building; layer.output is then the first call's tensor, not on the path to
        # model.output. Calling the layers once more on a fresh input gives one connected graph.
        x = inputs = keras.Input(shape=tuple(model.inputs[0].shape[1:]), dtype=model.inputs[0].dtype)
        features = None
        for inner in model.layers:
            x = inner(x)
            if inner is layer:
                features = x
        return keras.Model(inputs, [features, x])
    if len(model.outputs) != 1:
        raise FerError(f"model {model.name!r} has {len(model.outputs)} outputs; Grad-CAM explains one")
    return keras.Model(model.inputs, [layer.output, model.outputs[0]])


def normalise(cam):
    """ReLU'd map divided by its maximum: float32 in [0, 1] (zeros stay zeros)."""
    cam = np.maximum(np.nan_to_num(np.asarray(cam, dtype=np.float32)), 0)
    peak = float(cam.max()) if cam.size else 0.0
    return cam / peak if peak > 0 else np.zeros_like(cam)


def resize_map(cam, size):
    """``cam`` resized to ``size`` = (width, height), bilinear, still in [0, 1]."""
    import cv2

    out = cv2.resize(np.asarray(cam, dtype=np.float32), tuple(int(v) for v in size), interpolation=cv2.INTER_LINEAR)
    return np.clip(out, 0.0, 1.0)


def face_gradcam(member, face, class_index=None, *, explainer=None):
    """Grad-CAM of one ensemble :class:`~fer_keras.ensemble.Member` on one raw face.

    ``face``: uint8 (48, 48) or (48, 48, 1); ``class_index``: FER2013 class to
    explain (default: the member's top class). Returns ``(map (48, 48) float32
    in [0, 1], FER2013 class index)``.
    """
    face = np.asarray(face)
    face = face.reshape(1, face.shape[0], face.shape[1], 1)
    explainer = explainer or GradCAM(member.model)
    order = member.adapter.class_order
    column = None if class_index is None else (order[class_index] if order is not None else class_index)
    cam, column = explainer(member.adapter(face), column)
    fer_class = list(order).index(column) if order is not None else column
    return resize_map(cam, (IMAGE_SIZE, IMAGE_SIZE)), fer_class


def overlay_heatmap(image_bgr, cam, *, alpha=0.45):
    """``image_bgr`` with ``cam`` (any size, 0..1) resized onto it as a JET colour map."""
    import cv2

    image = to_bgr(image_bgr)
    heat = resize_map(cam, (image.shape[1], image.shape[0]))
    colour = cv2.applyColorMap(np.uint8(np.rint(heat * 255)), cv2.COLORMAP_JET)
    return cv2.addWeighted(colour, alpha, image, 1 - alpha, 0)


__all__ = ["GradCAM", "face_gradcam", "find_target_layer", "normalise", "overlay_heatmap", "resize_map"]
