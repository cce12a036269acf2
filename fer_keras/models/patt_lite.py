"""PAtt-Lite: a truncated MobileNet, patch extraction and self-attention.

Ngwe et al., "PAtt-Lite: Lightweight Patch and Attention MobileNet for
Challenging Facial Expression Recognition" (IEEE Access, 2024). The authors'
Keras notebook resizes faces to 224x224, scales them to [-1, 1] and runs:

- ImageNet MobileNet v1 cut after block 9's depthwise ReLU
  (``conv_dw_9_relu``, 14x14x512), frozen at first;
- patch extraction: SeparableConv2D 256 4x4/4 → SeparableConv2D 256 2x2/2 →
  Conv2D 256 1x1, all ReLU (14 → 4 → 2 px: a 2x2 grid of face patches);
- global average pooling, dropout, Dense 32 (ReLU) + batch norm,
  ``keras.layers.Attention`` self-attention and the classifier.

The notebook applies the attention to the pooled (B, 32) matrix, so each
face's query scores the *other faces in its batch*: a prediction depends on
its batch-mates, and a face alone in its batch attends only to itself. We
keep the 2x2 patches as a sequence of four tokens, (B, 4, C), apply dropout,
Dense 32 and batch norm to each token, let the four patches of one face
attend to each other and average the tokens afterwards: what "patch
attention" describes. The attention is the notebook's parameter-free dot
product (tokens are their own queries, keys and values), written with
``Dot``/``Softmax`` layers and scaled by 1/sqrt(32) instead of
``keras.layers.Attention``'s learnt scalar (initialised at 1): that layer
fails to reload from ``.h5`` files (the legacy loader turns its
``score_mode="dot"`` into the function ``keras.layers.dot``), and the fixed
Transformer scale keeps the softmax soft at the start. Every other layer
keeps its size: 1,102,663 parameters at 7 classes (821,952 in the backbone,
the notebook's count less the scalar); 280,647 trainable with the backbone
frozen, 1,083,399 when fine-tuning.

Other choices: the backbone's batch norms stay frozen even when
``freeze_backbone=False``, as in the notebook's fine-tuning phase (their
ImageNet statistics beat those of small face batches); ``input_size`` may go
down to 208, the smallest size that still gives a 2x2 patch grid.
``weights``: ``"imagenet"`` (downloads; fails offline), a path to a local
MobileNet weights file (``mobilenet_1_0_224_tf_no_top.h5`` or a
``.weights.h5`` saved from ``keras.applications.MobileNet(include_top=False)``),
or ``None`` (for tests: with its batch norms frozen at their initial
statistics, a random MobileNet's activations fade to ~1e-14 by block 9).
"""

from __future__ import annotations

import keras
from keras import layers

from fer_keras.errors import ConfigError
from fer_keras.models._registry import register
from fer_keras.models.preprocessing import adapt_input, classifier, face_input

BACKBONE_CUT = "conv_dw_9_relu"
PATCH_FILTERS = 256
ATTENTION_UNITS = 32


def _truncated_mobilenet(weights, input_size, freeze_backbone):
    """MobileNet up to block 9, with the weights loaded before the cut."""
    mobilenet = keras.applications.MobileNet(include_top=False, weights=weights,
                                             input_shape=(input_size, input_size, 3))
    backbone = keras.Model(mobilenet.input, mobilenet.get_layer(BACKBONE_CUT).output,
                           name="mobilenet_block9")
    backbone.trainable = not freeze_backbone
    for layer in backbone.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.trainable = False
    return backbone


@register
def patt_lite(*, num_classes, weights="imagenet", input_size=224, freeze_backbone=True, dropout=0.1):
    """PAtt-Lite with attention over each face's patches (not over the batch)."""
    inputs = face_input()
    x = adapt_input(inputs, size=input_size, channels=3, scale="-1-1")
    backbone = _truncated_mobilenet(weights, input_size, freeze_backbone)
    if backbone.output.shape[1] < 13:
        raise ConfigError(f"patt_lite needs input_size >= 208 for a 2x2 patch grid, got {input_size}")
    x = backbone(x)

    x = layers.SeparableConv2D(PATCH_FILTERS, 4, strides=4, padding="same", activation="relu",
                               name="patch_sepconv1")(x)
    x = layers.SeparableConv2D(PATCH_FILTERS, 2, strides=2, activation="relu", name="patch_sepconv2")(x)
    x = layers.Conv2D(PATCH_FILTERS, 1, activation="relu", name="patch_conv")(x)

    # One token per patch: (B, 2, 2, C) → (B, 4, C) at 224 px.
    tokens = layers.Reshape((-1, PATCH_FILTERS), name="patch_tokens")(x)
    tokens = layers.Dropout(dropout, name="dropout")(tokens)
    tokens = layers.Dense(ATTENTION_UNITS, activation="relu", name="pre_attention_dense")(tokens)
    tokens = layers.BatchNormalization(name="pre_attention_bn")(tokens)
    # Self-attention within one face: (B, 4, 4) patch-to-patch weights.
    scores = layers.Dot(axes=2, name="attention_scores")([tokens, tokens])
    scores = layers.Rescaling(ATTENTION_UNITS ** -0.5, name="attention_scale")(scores)
    attention = layers.Softmax(axis=-1, name="attention_weights")(scores)
    tokens = layers.Dot(axes=(2, 1), name="patch_attention")([attention, tokens])
    x = layers.GlobalAveragePooling1D(name="token_pool")(tokens)
    return keras.Model(inputs, classifier(x, num_classes), name="patt_lite")
