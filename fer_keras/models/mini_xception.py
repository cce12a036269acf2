"""mini-Xception: a fully convolutional net of depthwise-separable residual modules.

Arriaga, Valdenegro-Toro & Plöger, "Real-time Convolutional Neural Networks
for Emotion and Gender Classification" (arXiv 1710.07557, 2017): the model
behind many real-time FER demos, with about 60,000 parameters and 66% on
FER2013 in the paper. Faces are 64x64 grey, scaled to [-1, 1]:

- two plain conv 3x3 (8 filters, valid padding, no bias) → BN → ReLU;
- four residual modules with 16, 32, 64 and 128 filters: separable conv 3x3
  → BN → ReLU → separable conv 3x3 → BN → max-pool 3x3/2, added to a strided
  1x1 conv → BN shortcut, so each module halves the map (60 → 4 px);
- a classifier on the globally averaged features.

Why it is worth a place beside VGG, Inception and ResEmoteNet: its
depthwise-separable filters see each channel's spatial pattern apart from
the channel mixing, a different kind of model from their dense 3x3 stacks,
and it is tiny. At width 2 and 48 px (188k parameters, a 0.9 MB file) it
reached 66.76% on PublicTest after 73 minutes on two CPU cores, the best
single member we ship, and disagrees with each of the others on 25-29% of
faces. It trains slower than its size suggests: TensorFlow's CPU kernels
for depthwise convolutions are slow to train (width 4: 94 img/s).

What we changed: the paper's last layer is a 3x3 conv to one map per class
followed by global average pooling; up to its border effects that is a
linear layer on the pooled features, so we pool first and use the shared
Dense classifier (named like every family's, which fine-tuning from ``init`` to
another class count relies on). The paper's L2 penalty (0.01 on every conv)
is left to the optimiser's weight decay. ``width`` scales every channel
count: width 1 has 49,783 trainable parameters at 7 classes (51,255 with
batch-norm statistics; the paper's 3x3 classifier conv brings that to the
original's 58,423), width 4 has 728,263. ``dropout`` before the classifier
is 0 in the paper and a knob for the wider variants.
"""

from __future__ import annotations

import keras
from keras import layers

from fer_keras.models._registry import register
from fer_keras.models.preprocessing import adapt_input, classifier, face_input

BASE_FILTERS = 8
MODULE_FILTERS = (16, 32, 64, 128)


def _conv_bn_relu(x, filters, name):
    x = layers.Conv2D(filters, 3, use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def _separable_module(x, filters, name):
    """Two separable convs and a stride-2 max-pool, plus a strided 1x1 shortcut."""
    # A strided 1x1 conv, written as "keep every other pixel, then 1x1": the
    # same function, but TensorFlow 2.21's oneDNN kernel for the strided form
    # corrupts memory while training at some small shapes (60x60x8 -> 16 and
    # 60x60x4 -> 8 crash the process: the paper's width at 64 px).
    shortcut = layers.MaxPooling2D(1, strides=2, name=f"{name}_shortcut_subsample")(x)
    shortcut = layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_shortcut_conv")(shortcut)
    shortcut = layers.BatchNormalization(name=f"{name}_shortcut_bn")(shortcut)
    x = layers.SeparableConv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_sepconv1")(x)
    x = layers.BatchNormalization(name=f"{name}_bn1")(x)
    x = layers.ReLU(name=f"{name}_relu1")(x)
    x = layers.SeparableConv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_sepconv2")(x)
    x = layers.BatchNormalization(name=f"{name}_bn2")(x)
    x = layers.MaxPooling2D(3, strides=2, padding="same", name=f"{name}_pool")(x)
    return layers.Add(name=f"{name}_add")([x, shortcut])


@register
def mini_xception(*, num_classes, width=1.0, input_size=64, dropout=0.0, crop=None):
    """mini-Xception (the paper's model at width 1.0, 64x64 grey in [-1, 1]);
    ``crop``: the central crop taken before resizing to ``input_size``."""

    def scaled(n):
        return max(4, int(n * width))

    inputs = face_input()
    x = adapt_input(inputs, size=input_size, channels=1, scale="-1-1", crop=crop)
    x = _conv_bn_relu(x, scaled(BASE_FILTERS), "base1")
    x = _conv_bn_relu(x, scaled(BASE_FILTERS), "base2")
    for i, filters in enumerate(MODULE_FILTERS, start=1):
        x = _separable_module(x, scaled(filters), f"module{i}")
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    if dropout:
        x = layers.Dropout(dropout, name="dropout")(x)
    return keras.Model(inputs, classifier(x, num_classes), name="mini_xception")
