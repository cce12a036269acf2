"""The input adapter: raw 48x48x1 0..255 faces → what an architecture wants.

Built only from Keras' own layers (Resizing, Concatenate, Rescaling,
Normalization), so a saved model carries its preprocessing, loads in Keras
safe mode and needs no fer_keras import to be used.
"""

from __future__ import annotations

import keras
from keras import layers

from fer_keras.constants import IMAGE_SIZE

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)  # keras.applications.vgg16.preprocess_input

SCALINGS = ("0-1", "-1-1", "imagenet", "caffe", "0-255")


def adapt_input(x, *, size=IMAGE_SIZE, channels=1, scale="0-1"):
    """Resize, replicate grey to ``channels`` and scale pixels, as layers.

    ``scale``: ``"0-1"`` divides by 255; ``"-1-1"`` maps to [-1, 1] (MobileNet);
    ``"imagenet"`` is 0-1 then ImageNet mean/std (torchvision models);
    ``"caffe"`` subtracts the ImageNet BGR means from 0..255 values, as
    ``keras.applications.vgg16.preprocess_input`` does (for grey input the
    RGB→BGR swap changes nothing but the order of the means);
    ``"0-255"`` leaves values as they are.
    """
    if size != IMAGE_SIZE:
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


def face_input(name="face"):
    """The shared model input: raw grey faces, 48x48x1, values 0..255."""
    from fer_keras.constants import INPUT_SHAPE

    return keras.Input(shape=INPUT_SHAPE, name=name)


def classifier(x, num_classes, *, name="predictions"):
    """Dense logits → softmax computed in float32 (stable under mixed precision)."""
    x = layers.Dense(num_classes, name=f"{name}_logits")(x)
    return layers.Activation("softmax", dtype="float32", name=name)(x)
