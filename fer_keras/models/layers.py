"""fer_keras' own Keras layers, registered so that any file holding one loads by name.

Registered under the package name ``fer_keras`` (``fer_keras>RandomErasing``),
the name a saved file records; :func:`fer_keras.models.model_io.load_model`
imports this module before it loads a file. Augmentation runs in the input
pipeline (:mod:`fer_keras.training.augment`), not in shipped models, but a
file written while it was part of a model must still load.
"""

from __future__ import annotations

import keras
from keras import layers

from fer_keras.constants import PIXEL_MAX


@keras.saving.register_keras_serializable(package="fer_keras")
class RandomErasing(layers.Layer):
    """Erase one random rectangle per image with probability ``rate``.

    Zhong et al., "Random Erasing Data Augmentation" (AAAI 2020). The box has
    an area of ``area`` (fraction range) of the image and aspect ratio in
    [0.3, 3.3]; it is filled with uniform noise in 0..``fill_max``.
    """

    def __init__(self, rate=0.5, area=(0.02, 0.33), fill_max=PIXEL_MAX, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rate = rate
        self.area = tuple(area)
        self.fill_max = fill_max
        self.seed = seed
        self._rng = keras.random.SeedGenerator(seed)

    def call(self, images, training=True):
        if not training:
            return images
        ops = keras.ops
        shape = ops.shape(images)
        batch, height, width = shape[0], shape[1], shape[2]
        h_f = ops.cast(height, "float32")
        w_f = ops.cast(width, "float32")
        area = keras.random.uniform((batch,), self.area[0], self.area[1], seed=self._rng) * h_f * w_f
        log_ratio = keras.random.uniform((batch,), -1.2, 1.2, seed=self._rng)  # ln(0.3)..ln(3.3)
        ratio = ops.exp(log_ratio)
        box_h = ops.minimum(ops.sqrt(area * ratio), h_f)
        box_w = ops.minimum(ops.sqrt(area / ratio), w_f)
        top = keras.random.uniform((batch,), 0, 1, seed=self._rng) * (h_f - box_h)
        left = keras.random.uniform((batch,), 0, 1, seed=self._rng) * (w_f - box_w)
        rows = ops.reshape(ops.arange(height, dtype="float32"), (1, -1, 1, 1))
        cols = ops.reshape(ops.arange(width, dtype="float32"), (1, 1, -1, 1))
        top, left = ops.reshape(top, (-1, 1, 1, 1)), ops.reshape(left, (-1, 1, 1, 1))
        box_h, box_w = ops.reshape(box_h, (-1, 1, 1, 1)), ops.reshape(box_w, (-1, 1, 1, 1))
        inside = (rows >= top) & (rows < top + box_h) & (cols >= left) & (cols < left + box_w)
        apply = keras.random.uniform((batch, 1, 1, 1), seed=self._rng) < self.rate
        noise = keras.random.uniform(shape, 0, self.fill_max, seed=self._rng, dtype=images.dtype)
        return ops.where(inside & apply, noise, images)

    def get_config(self):
        config = super().get_config()
        config.update(rate=self.rate, area=list(self.area), fill_max=self.fill_max, seed=self.seed)
        return config
