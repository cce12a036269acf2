"""ResEmoteNet: a CNN stem, one squeeze-excitation block and residual blocks.

Roy et al., "ResEmoteNet: Bridging Accuracy and Loss Reduction in Facial
Emotion Recognition" (arXiv 2409.10545, 2024). The authors' PyTorch code
takes 64x64 RGB faces normalised with the ImageNet mean/std:

- three conv 3x3 → BN → ReLU → max-pool 2 stages (64, 128, 256 channels),
  dropout 0.2 after the first two (64 px → 8 px);
- one squeeze-excitation block on the 256-channel map (reduction 16, FCs
  without bias), which reweights channels by the global context;
- three residual blocks 256 → 512 → 1024 → 2048, each stride 2: conv 3x3 →
  BN → ReLU → conv 3x3 → BN plus a 1x1 conv → BN shortcut, then ReLU;
- global average pooling, FC 1024 → 512 → 256 (ReLU, dropout 0.5 after each)
  and the classifier.

We keep all of it, including the biases of every conv (the reference keeps
PyTorch's default ``bias=True`` even before batch norm), so the faithful
model has the reference's exact count: 80,238,599 trainable parameters at 7
classes (80,260,999 in all with batch-norm statistics). Grey FER2013 faces
are resized to ``input_size`` and copied to three channels inside the model.

``width`` scales every channel count and FC width, for CPU budgets: 0.25 →
5,022,215 trainable parameters, 0.125 → 1,257,991. Three quarters of the
parameters sit in the last residual block, whose output map is 1x1 at 64 px:
the paper's 80M are capacity, not resolution.

``head_dropout`` is the rate of the three dropouts in the FC head (0.5 in the
reference). Three stacked 0.5 dropouts on a narrow head stall learning: at
width 0.25 on 6,400 FER2013 faces, 300 AdamW steps reached 23% training
accuracy (the majority class) with 0.5, 30% with 0.3, 38% with 0.1 and 40%
with 0 — the failure a public re-implementation described as "keeps
predicting almost the same values". Lower it for narrow variants (the
shipped one uses 0.1); the faithful default stays 0.5.

``stem_pools`` is how many of the three stem stages end in a 2x2 max-pool (3
in the reference). With all three, a 48 px face leaves the stem at 6x6 and
the residual blocks, which hold almost all the parameters, run at 3x3, 2x2
and 1x1: the last one sees a single pixel. With 2 they run at 6x6, 3x3 and
2x2, for about 2.4x the multiply-adds (38M instead of 16M at width 0.25 and
48 px) and the same parameters.
"""

from __future__ import annotations

import keras
from keras import layers

from fer_keras.errors import ConfigError
from fer_keras.models._registry import register
from fer_keras.models.preprocessing import adapt_input, classifier, face_input

STEM_FILTERS = (64, 128, 256)
RESIDUAL_FILTERS = (512, 1024, 2048)
HEAD_UNITS = (1024, 512, 256)
SE_REDUCTION = 16


def _squeeze_excitation(x, reduction, name):
    """Scale each channel by a gate computed from the whole map's averages."""
    channels = x.shape[-1]
    gate = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_squeeze")(x)
    gate = layers.Dense(max(1, channels // reduction), use_bias=False, activation="relu",
                        name=f"{name}_reduce")(gate)
    gate = layers.Dense(channels, use_bias=False, activation="sigmoid", name=f"{name}_expand")(gate)
    return layers.Multiply(name=f"{name}_scale")([x, gate])


def _residual_block(x, filters, name):
    """Stride-2 basic block whose shortcut is a strided 1x1 conv + BN."""
    shortcut = layers.Conv2D(filters, 1, strides=2, name=f"{name}_shortcut_conv")(x)
    shortcut = layers.BatchNormalization(name=f"{name}_shortcut_bn")(shortcut)
    x = layers.Conv2D(filters, 3, strides=2, padding="same", name=f"{name}_conv1")(x)
    x = layers.BatchNormalization(name=f"{name}_bn1")(x)
    x = layers.ReLU(name=f"{name}_relu1")(x)
    x = layers.Conv2D(filters, 3, padding="same", name=f"{name}_conv2")(x)
    x = layers.BatchNormalization(name=f"{name}_bn2")(x)
    x = layers.Add(name=f"{name}_add")([x, shortcut])
    return layers.ReLU(name=f"{name}_relu2")(x)


@register
def resemotenet(*, num_classes, width=1.0, input_size=64, head_dropout=0.5, stem_pools=3, crop=None):
    """ResEmoteNet (faithful at width 1.0, 64x64 RGB with ImageNet normalisation);
    ``crop``: the central crop taken before resizing to ``input_size``."""

    def scaled(n):
        return max(8, int(n * width))

    if stem_pools not in range(len(STEM_FILTERS) + 1):
        raise ConfigError(f"stem_pools must be a whole number from 0 to {len(STEM_FILTERS)}, not {stem_pools!r}")
    inputs = face_input()
    x = adapt_input(inputs, size=input_size, channels=3, scale="imagenet", crop=crop)

    for i, filters in enumerate(STEM_FILTERS, start=1):
        x = layers.Conv2D(scaled(filters), 3, padding="same", name=f"stem{i}_conv")(x)
        x = layers.BatchNormalization(name=f"stem{i}_bn")(x)
        x = layers.ReLU(name=f"stem{i}_relu")(x)
        if i <= stem_pools:
            x = layers.MaxPooling2D(2, name=f"stem{i}_pool")(x)
        if i < len(STEM_FILTERS):
            x = layers.Dropout(0.2, name=f"stem{i}_dropout")(x)
    x = _squeeze_excitation(x, SE_REDUCTION, "se")

    for i, filters in enumerate(RESIDUAL_FILTERS, start=1):
        x = _residual_block(x, scaled(filters), f"res{i}")

    x = layers.GlobalAveragePooling2D(name="gap")(x)
    for i, units in enumerate(HEAD_UNITS, start=1):
        x = layers.Dense(scaled(units), activation="relu", name=f"fc{i}")(x)
        x = layers.Dropout(head_dropout, name=f"fc{i}_dropout")(x)
    return keras.Model(inputs, classifier(x, num_classes), name="resemotenet")
