"""GoogLeNet-style Inception (v1) network for 48x48 faces.

Szegedy et al., "Going Deeper with Convolutions" (CVPR 2015). An inception
module runs four branches side by side on the same map — 1x1; 1x1 reduce →
3x3; 1x1 reduce → 5x5; 3x3 max-pool → 1x1 projection — and concatenates them,
so each layer sees the face at several receptive-field sizes for the cost of
the cheap 1x1 reductions.

What we changed for 48x48 grey faces:

- The 224 px stem (7x7/2 conv, two pools, 1x1 + 3x3 conv) becomes a 3x3 conv
  at 48 px, one pool, then GoogLeNet's 1x1 64 + 3x3 192 at 24 px. Modules 3a,
  3b run at 12 px and 4a-4c at 6 px (GoogLeNet: 28 and 14 px): one
  downsampling less, since the face starts 4.7x smaller.
- Modules 4d, 4e, 5a and 5b (4M of GoogLeNet's 6.6M parameters) are dropped:
  at 6 px and 3 px there is little left to see, and 28k training faces do not
  need them. There are no auxiliary classifiers; batch norm (not in v1)
  follows every conv, which therefore has no bias.
- Global average pooling, dropout 0.4 (as in GoogLeNet) and the classifier.

The branch widths are GoogLeNet's own. Parameters at width 1.0 and 7
classes: 2,010,311 trainable (2,016,839 in all, with batch-norm statistics),
6.5% under the 2,149,159 of the public Keras version we replace. ``width``
scales every conv (0.5 → ~0.5M parameters).
"""

from __future__ import annotations

import keras
from keras import layers

from fer_keras.models._registry import register
from fer_keras.models.preprocessing import adapt_input, classifier, face_input

# (1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool projection), from GoogLeNet's table 1.
INCEPTION_MODULES = {
    "3a": (64, 96, 128, 16, 32, 32),
    "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64),
    "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64),
}


def _conv_bn_relu(x, filters, kernel_size, name):
    x = layers.Conv2D(filters, kernel_size, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def _inception_module(x, filters, width, name):
    b1, b3_reduce, b3, b5_reduce, b5, pool_proj = (max(8, int(f * width)) for f in filters)
    branch1 = _conv_bn_relu(x, b1, 1, f"{name}_1x1")
    branch3 = _conv_bn_relu(x, b3_reduce, 1, f"{name}_3x3_reduce")
    branch3 = _conv_bn_relu(branch3, b3, 3, f"{name}_3x3")
    branch5 = _conv_bn_relu(x, b5_reduce, 1, f"{name}_5x5_reduce")
    branch5 = _conv_bn_relu(branch5, b5, 5, f"{name}_5x5")
    branch_pool = layers.MaxPooling2D(3, strides=1, padding="same", name=f"{name}_pool")(x)
    branch_pool = _conv_bn_relu(branch_pool, pool_proj, 1, f"{name}_pool_proj")
    return layers.Concatenate(name=f"{name}_concat")([branch1, branch3, branch5, branch_pool])


@register
def inception_v1(*, num_classes, width=1.0, dropout=0.4, crop=None):
    """GoogLeNet-style inception network (modules 3a-4c) for 48x48 grey faces
    (``crop``: the central crop it runs on, for the crop recipe)."""
    inputs = face_input()
    x = adapt_input(inputs, scale="0-1", crop=crop)

    # Stem: 48 → 24 → 12 px.
    x = _conv_bn_relu(x, max(8, int(64 * width)), 3, "stem1")
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="stem1_pool")(x)
    x = _conv_bn_relu(x, max(8, int(64 * width)), 1, "stem2")
    x = _conv_bn_relu(x, max(8, int(192 * width)), 3, "stem3")
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="stem3_pool")(x)

    for name in ("3a", "3b"):
        x = _inception_module(x, INCEPTION_MODULES[name], width, f"inception_{name}")
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="inception_3_pool")(x)
    for name in ("4a", "4b", "4c"):
        x = _inception_module(x, INCEPTION_MODULES[name], width, f"inception_{name}")

    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    return keras.Model(inputs, classifier(x, num_classes), name="inception_v1")
