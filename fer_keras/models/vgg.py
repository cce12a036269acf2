"""VGG-16 for 48x48 faces: from scratch, and on ImageNet weights.

Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image
Recognition" (ICLR 2015). ``vgg16`` keeps the 13-conv pattern
(64,64 | 128,128 | 256x3 | 512x3 | 512x3, max-pool after each block) and adds
batch normalisation after every conv, which VGG predates but which lets it
train from scratch without the original's staged initialisation. Five pools
take 48 px to 1 px, so the head sees a 512-vector: two Dense 512 layers
(instead of 4096: there are 28k training faces, not 1.2M). Parameters at
width 1.0 and 7 classes: 15,258,183 (15,247,687 trainable); the slimmed public
Keras version (9.4M) had fewer conv channels. ``width`` scales every conv and
dense layer for CPU budgets (0.5 → ~3.8M parameters, ~4x less compute).

``vgg16_imagenet`` is ``keras.applications.VGG16(include_top=False)`` at
``input_size`` (default 48; the base accepts >= 32) with grey→RGB and the
caffe preprocessing inside the model, plus a new head. Phase 1 of transfer
learning trains only the head (``trainable_blocks=0``); phase 2 unfreezes the
top block(s) at a lower learning rate. Phase 1 trains 199,431 of 14,915,143
parameters: global average pooling and two Dense 256 + BN layers. The earlier
public Keras version trained 2,773,095 there, with a Flatten → Dense 4096-wide
head; at 48 px the base ends at 1x1x512, so pooling and flattening see the
same 512 values and the difference is the head's width.
"""

from __future__ import annotations

import keras
from keras import layers

from fer_keras.errors import ConfigError
from fer_keras.models._registry import register
from fer_keras.models.preprocessing import adapt_input, classifier, face_input

VGG16_BLOCKS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


def _conv_bn_relu(x, filters, name):
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def _dense_head(x, units, dropout, name="head"):
    for i in range(2):
        x = layers.Dense(units, use_bias=False, name=f"{name}_dense{i + 1}")(x)
        x = layers.BatchNormalization(name=f"{name}_bn{i + 1}")(x)
        x = layers.ReLU(name=f"{name}_relu{i + 1}")(x)
        x = layers.Dropout(dropout, name=f"{name}_dropout{i + 1}")(x)
    return x


@register
def vgg16(*, num_classes, width=1.0, dense_units=512, dropout=0.5, crop=None):
    """VGG-16 with batch norm, from scratch, for 48x48 grey faces
    (``crop``: the central crop it runs on, for the crop recipe)."""
    inputs = face_input()
    x = adapt_input(inputs, scale="0-1", crop=crop)
    for b, block in enumerate(VGG16_BLOCKS, start=1):
        for c, filters in enumerate(block, start=1):
            x = _conv_bn_relu(x, max(8, int(filters * width)), f"block{b}_{c}")
        x = layers.MaxPooling2D(2, name=f"block{b}_pool")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = _dense_head(x, max(16, int(dense_units * width)), dropout)
    return keras.Model(inputs, classifier(x, num_classes), name="vgg16")


@register
def vgg16_imagenet(*, num_classes, weights="imagenet", input_size=48, trainable_blocks=0,
                   dense_units=256, dropout=0.5):
    """VGG-16 base from ``keras.applications`` (ImageNet weights) + a new head.

    ``weights``: ``"imagenet"`` (downloads; fails offline), a path to a local
    ``vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5``, or ``None``.
    ``trainable_blocks``: how many of the base's five conv blocks train, counted
    from the top (0: frozen base, phase 1; 1-2: fine-tuning, phase 2; 5: all).
    """
    if not 0 <= trainable_blocks <= len(VGG16_BLOCKS):
        raise ConfigError(f"trainable_blocks must be 0..{len(VGG16_BLOCKS)} (the base's conv blocks). "
                          f"Received: trainable_blocks={trainable_blocks}", parameter="trainable_blocks")
    inputs = face_input()
    x = adapt_input(inputs, size=input_size, channels=3, scale="caffe")
    base = keras.applications.VGG16(include_top=False, weights=weights,
                                    input_shape=(input_size, input_size, 3))
    for layer in base.layers:
        block = int(layer.name[5]) if layer.name.startswith("block") else 0
        layer.trainable = block > len(VGG16_BLOCKS) - trainable_blocks
    x = base(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = _dense_head(x, dense_units, dropout)
    return keras.Model(inputs, classifier(x, num_classes), name="vgg16_imagenet")
