"""Residual Masking Network: ResNet-34 whose stages are reweighted by U-Net masks.

Pham, Vu & Tran, "Facial Expression Recognition using Residual Masking
Network" (ICPR 2020). After each of ResNet-34's four stages a masking block —
a U-Net built from the same basic residual blocks, with depth 4, 3, 2 and
1 as the map shrinks from 56 to 7 px — predicts a mask ``M`` with a
softmax over channels, and the stage's features become ``F * (1 + M)``: the
mask can only emphasise (the ``1 +`` keeps the residual path, so a useless
mask does no harm). Then global average pooling, dropout 0.4 and the
classifier, as in the authors' ``resmasking_dropout1``.

Faithful to the authors' PyTorch code: ResNet-34 ([3, 4, 6, 3] basic blocks,
7x7/2 stem and 3x3/2 max-pool), 224x224 RGB input scaled to 0-1, every mask
block's U-Net with transposed-conv (with bias) + BN + ReLU upsampling, skip
concatenation and 1x1 conv + BN projection shortcuts, and the masks' last
batch norm in each residual branch initialised to zero, so a mask block
starts as its chain of projections. Parameters at 7 classes: 137,796,423
trainable (137,874,247 in all with batch-norm statistics), 116.5M of them in
the masks, whose channels double at every U-Net level. The paper's 142.9M
counts each mask projection shortcut twice: the reference registers it both
on the mask module and inside its residual block, and a count that does not
deduplicate shared tensors adds it again.

What we changed: grey faces are resized and copied to three channels inside
the model; ``input_size`` (default 224) may be smaller for CPU budgets, down
to 32 (at 48 or 64 some U-Net levels see odd sizes: the mask's max-pools
round up and the upsampled map is cropped to its skip connection, which never
happens at 224); ``width`` scales every channel count (0.25 → 8,629,719
trainable parameters, 0.125 → 2,163,247).
"""

from __future__ import annotations

import keras
from keras import layers

from fer_keras.models._registry import register
from fer_keras.models.preprocessing import adapt_input, classifier, face_input

RESNET34_STAGES = ((64, 3), (128, 4), (256, 6), (512, 3))
MASK_DEPTHS = (4, 3, 2, 1)


def _basic_block(x, filters, name, *, stride=1, zero_init_last_bn=False):
    """ResNet basic block; a 1x1 conv + BN shortcut where the shape changes."""
    shortcut = x
    if stride != 1 or x.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=stride, use_bias=False, name=f"{name}_proj_conv")(x)
        shortcut = layers.BatchNormalization(name=f"{name}_proj_bn")(shortcut)
    x = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False, name=f"{name}_conv1")(x)
    x = layers.BatchNormalization(name=f"{name}_bn1")(x)
    x = layers.ReLU(name=f"{name}_relu1")(x)
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv2")(x)
    x = layers.BatchNormalization(gamma_initializer="zeros" if zero_init_last_bn else "ones",
                                  name=f"{name}_bn2")(x)
    x = layers.Add(name=f"{name}_add")([x, shortcut])
    return layers.ReLU(name=f"{name}_relu2")(x)


def _mask(x, depth, name):
    """U-Net of basic blocks → softmax over channels, same shape as ``x``.

    The encoder doubles the channels at every block (``depth`` blocks,
    ``depth - 1`` max-pools); the decoder upsamples with a 2x2/2 transposed
    conv, concatenates the encoder map of that size and halves the channels
    again; a last block returns to the input's channel count.
    """
    channels = x.shape[-1]
    skips = []
    for level in range(depth):
        if level:
            skips.append(x)
            x = layers.MaxPooling2D(2, padding="same", name=f"{name}_pool{level}")(x)
        x = _basic_block(x, channels * 2 ** (level + 1), f"{name}_down{level + 1}", zero_init_last_bn=True)
    for level, skip in enumerate(reversed(skips), start=1):
        x = layers.Conv2DTranspose(skip.shape[-1], 2, strides=2, name=f"{name}_up{level}_tconv")(x)
        x = layers.BatchNormalization(name=f"{name}_up{level}_bn")(x)
        x = layers.ReLU(name=f"{name}_up{level}_relu")(x)
        extra_rows, extra_cols = x.shape[1] - skip.shape[1], x.shape[2] - skip.shape[2]
        if extra_rows or extra_cols:  # the pool rounded an odd size up
            x = layers.Cropping2D(((0, extra_rows), (0, extra_cols)), name=f"{name}_up{level}_crop")(x)
        x = layers.Concatenate(name=f"{name}_up{level}_concat")([x, skip])
        x = _basic_block(x, skip.shape[-1], f"{name}_up{level}", zero_init_last_bn=True)
    x = _basic_block(x, channels, f"{name}_out", zero_init_last_bn=True)
    return layers.Softmax(axis=-1, name=f"{name}_softmax")(x)


@register
def residual_masking_net(*, num_classes, input_size=224, width=1.0, dropout=0.4):
    """Residual Masking Network (ResNet-34 + masking blocks), faithful at width 1.0."""
    inputs = face_input()
    x = adapt_input(inputs, size=input_size, channels=3, scale="0-1")

    x = layers.Conv2D(max(8, int(64 * width)), 7, strides=2, padding="same", use_bias=False,
                      name="stem_conv")(x)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.ReLU(name="stem_relu")(x)
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)

    for s, ((filters, blocks), depth) in enumerate(zip(RESNET34_STAGES, MASK_DEPTHS), start=1):
        filters = max(8, int(filters * width))
        for b in range(1, blocks + 1):
            stride = 2 if s > 1 and b == 1 else 1
            x = _basic_block(x, filters, f"stage{s}_block{b}", stride=stride)
        mask = _mask(x, depth, f"mask{s}")
        # F * (1 + M) = F + F * M: the mask emphasises, the residual path stays.
        x = layers.Add(name=f"mask{s}_apply")([x, layers.Multiply(name=f"mask{s}_weight")([x, mask])])

    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    return keras.Model(inputs, classifier(x, num_classes), name="residual_masking_net")
