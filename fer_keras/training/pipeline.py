"""The input pipeline: uint8 faces → augmented float batches the model never waits for.

tf.data under TensorFlow; the same batches from a ``keras.utils.PyDataset``
under another Keras backend (JAX on a GPU machine without TensorFlow).
Augmentation runs on whole batches here (:mod:`~fer_keras.training.augment`),
not in the model, so a saved file holds no augmentation layers.
"""

from __future__ import annotations

import math

import numpy as np

from fer_keras import models
from fer_keras.errors import ConfigError
from fer_keras.machine import tensorflow_backend
from fer_keras.training.augment import build_augmenter, build_mixer

MIXER_SEED_OFFSET = 1000
"""Added to the run's seed for the mixer: past every augmentation layer's seed."""


def make_dataset(x, y, *, batch_size, num_classes, training, augment="none", mixup=0.0, seed=0,
                 crop_margin=0, zoom=0.0):
    """tf.data pipeline: uint8 faces → float batches, one target row per face.

    ``y``: integer labels (N,), one-hot encoded here, or soft targets
    (N, num_classes), e.g. FER+ vote distributions, used as they are.
    Training: cache the arrays, reshuffle every epoch, batch, then augment
    whole batches in parallel (and mix them with ``mixup`` > 0, after the
    targets are rows, so both are blended alike) and prefetch so the model
    never waits. ``crop_margin``: what ``augment="crop"`` shifts by (the
    pixels the model's central crop drops on each side); ``zoom``: random
    zoom on top of the level (see :func:`~fer_keras.training.augment.build_augmenter`).
    Under another Keras backend (JAX on a GPU machine without TensorFlow)
    the same batches come from :func:`array_batches` instead.
    """
    y = np.asarray(y)
    soft = y.ndim == 2
    if soft and y.shape[1] != num_classes:
        raise ConfigError(f"soft targets have {y.shape[1]} columns; the model has {num_classes} classes")
    augmenter = build_augmenter(augment, seed=seed, crop_margin=crop_margin, zoom=zoom) if training else None
    # The mixer draws its own numbers: seeded like the augmenter's first layer, it would pair its
    # weights with the flips (see augment.layer_seeds).
    mixer = build_mixer(mixup, seed=None if seed is None else seed + MIXER_SEED_OFFSET) if training else None
    if not tensorflow_backend():
        return array_batches(x, y, batch_size=batch_size, num_classes=num_classes, training=training,
                            augmenter=augmenter, mixer=mixer, seed=seed)

    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((x, y.astype("float32" if soft else "int32")))
    if training:
        ds = ds.cache().shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=training)

    def to_float(images, labels):
        return tf.cast(images, "float32"), labels if soft else tf.one_hot(labels, num_classes)

    ds = ds.map(to_float, num_parallel_calls=tf.data.AUTOTUNE)
    if augmenter is not None:
        ds = ds.map(lambda im, lab: (augmenter(im, training=True), lab),
                    num_parallel_calls=tf.data.AUTOTUNE)
    if mixer is not None:
        ds = ds.map(lambda im, lab: _mix(mixer, im, lab), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def _mix(mixer, images, labels):
    """Keras' ``MixUp`` takes and returns a dict; both pipelines carry (images, targets) pairs."""
    mixed = mixer({"images": images, "labels": labels}, training=True)
    return mixed["images"], mixed["labels"]


def array_batches(x, y, *, batch_size, num_classes, training, augmenter=None, mixer=None, seed=0):
    """The batches :func:`make_dataset` gives, as a ``keras.utils.PyDataset``
    for backends without tf.data: reshuffled every epoch (seeded), whole
    batches augmented by the same Keras layers, which then run in the
    backend (on the GPU under JAX)."""
    import keras

    class _ArrayBatches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()
            self.rng = np.random.default_rng(seed)
            self.order = self.rng.permutation(len(x)) if training else np.arange(len(x))

        def __len__(self):
            return len(x) // batch_size if training else math.ceil(len(x) / batch_size)

        def __getitem__(self, index):
            rows = self.order[index * batch_size:(index + 1) * batch_size]
            images = x[rows].astype("float32")
            labels = y[rows].astype("float32") if y.ndim == 2 else np.eye(num_classes, dtype="float32")[y[rows]]
            if augmenter is not None:
                images = augmenter(images, training=True)
            if mixer is not None:
                images, labels = _mix(mixer, images, labels)
            return images, labels

        def on_epoch_end(self):
            if training:
                self.order = self.rng.permutation(len(x))

    return _ArrayBatches()


def check_crop_recipe(config, model):
    """``augment="crop"`` shifts faces for the model's central crop: a model without one cannot use it."""
    if config.augment == "crop" and not models.crop_margin(model):
        raise crop_recipe_error(config.model)


def crop_recipe_error(model_name):
    """The error for ``augment="crop"`` on a model built without a central crop (said by the config before
    the data is read, and by :func:`check_crop_recipe` once a model from ``init`` is built)."""
    return ConfigError(f"augment='crop' needs a model that crops its input: add crop=44 (or 40..46) to the "
                       f"model_options of {model_name}", parameter="model_options")
