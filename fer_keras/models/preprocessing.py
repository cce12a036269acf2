"""The input adapter: raw 48x48x1 0..255 faces → what an architecture wants.

Built only from Keras' own layers (Resizing, Concatenate, Rescaling,
Normalization), so a saved model carries its preprocessing, loads in Keras
safe mode and needs no fer_keras import to be used.
"""

from __future__ import annotations

import keras
from keras import layers

from fer_keras.constants import IMAGE_SIZE, INPUT_SHAPE
from fer_keras.errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)  # keras.applications.vgg16.preprocess_input

SCALINGS = ("0-1", "-1-1", "imagenet", "caffe", "0-255")


def checked_crop(crop):
    """``crop`` as a whole number of pixels (None or 0: no crop); ConfigError for one that cannot be central.

    Why here and not only in the builder: the registry checks ``-o crop=…`` with
    this before a run reads its data, so a typo costs no loading."""
    if isinstance(crop, float) and crop.is_integer():
        crop = int(crop)  # -o crop=44.0
    if crop and not (isinstance(crop, int) and not isinstance(crop, bool) and 8 <= crop <= IMAGE_SIZE
                     and (IMAGE_SIZE - crop) % 2 == 0):
        # An even margin keeps the crop central, so shifts by the margin reach every corner.
        raise ConfigError(f"crop must be an even number of pixels between 8 and {IMAGE_SIZE} "
                          f"(e.g. 44 or 40), got {crop}")
    return crop


def adapt_input(x, *, size=None, channels=1, scale="0-1", crop=None):
    """Crop, resize, replicate grey to ``channels`` and scale pixels, as layers.

    ``crop``: keep the central ``crop`` x ``crop`` pixels of the 48x48 face
    (Keras' ``CenterCrop``). This is how the crop recipe lives inside the
    file: training shifts each face by up to ``(48 - crop) / 2`` pixels
    (``augment="crop"``), so the centre crop sees a random crop of the face,
    while inference sees the central one with no extra code; the ten-crop
    average shifts the face the same way (:func:`input_crop` tells by how
    much). ``size``: the side the net runs at, resized to when it differs
    from the (cropped) face; None keeps it.

    ``scale``: ``"0-1"`` divides by 255; ``"-1-1"`` maps to [-1, 1] (MobileNet);
    ``"imagenet"`` is 0-1 then ImageNet mean/std (torchvision models);
    ``"caffe"`` subtracts the ImageNet BGR means from 0..255 values, as
    ``keras.applications.vgg16.preprocess_input`` does (for grey input the
    RGB→BGR swap changes nothing but the order of the means);
    ``"0-255"`` leaves values as they are.
    """
    side = IMAGE_SIZE
    crop = checked_crop(crop)
    if crop:
        if crop < IMAGE_SIZE:
            x = layers.CenterCrop(crop, crop, name="center_crop")(x)
            side = crop
    if size and size != side:
        x = layers.Resizing(size, size, interpolation="bilinear", name="resize")(x)
    if channels == 3:
        x = layers.Concatenate(name="grey_to_rgb")([x, x, x])
    elif channels != 1:
        raise ValueError("channels must be 1 or 3")
    if scale == "0-1":
        x = layers.Rescaling(1.0 / 255, name="scale_0_1")(x)
    elif scale == "-1-1":
        x = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="scale_pm1")(x)
    elif scale == "imagenet":
        x = layers.Rescaling(1.0 / 255, name="scale_0_1")(x)
        mean = IMAGENET_MEAN if channels == 3 else (sum(IMAGENET_MEAN) / 3,)
        var = [s * s for s in (IMAGENET_STD if channels == 3 else (sum(IMAGENET_STD) / 3,))]
        x = layers.Normalization(mean=list(mean), variance=var, name="imagenet_norm")(x)
    elif scale == "caffe":
        mean = CAFFE_BGR_MEAN if channels == 3 else (sum(CAFFE_BGR_MEAN) / 3,)
        x = layers.Normalization(mean=list(mean), variance=[1.0] * len(mean), name="caffe_norm")(x)
    elif scale != "0-255":
        raise ValueError(f"scale must be one of {SCALINGS}")
    return x


def input_crop(model):
    """The side of the central crop ``model`` takes of its 48x48 input (None: no crop).

    Read from the model's own ``CenterCrop`` layer, not from fer_keras
    metadata, so a file trained elsewhere with the same layer gets its
    ten-crop average too.
    """
    for layer in model.layers:
        if isinstance(layer, layers.CenterCrop):
            return int(layer.height)
    return None


def crop_margin(model):
    """Pixels ``model``'s central crop drops on each side of the 48 px face (0: no crop):
    what ``augment="crop"`` shifts training faces by, and what the ten-crop views shift by."""
    crop = input_crop(model)
    return (IMAGE_SIZE - crop) // 2 if crop else 0


def face_input(name="face"):
    """The shared model input: raw grey faces, 48x48x1, values 0..255."""
    return keras.Input(shape=INPUT_SHAPE, name=name)


def classifier(x, num_classes, *, name="predictions"):
    """Dense logits → softmax computed in float32 (stable under mixed precision)."""
    x = layers.Dense(num_classes, name=f"{name}_logits")(x)
    return layers.Activation("softmax", dtype="float32", name=name)(x)
