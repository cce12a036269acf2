"""Training-time augmentation, as Keras preprocessing layers run in tf.data.

Levels (what the FER2013 literature found to matter, cheapest first):

- ``none``: nothing.
- ``light``: horizontal flip + shift up to 10% (faces are roughly centred).
- ``medium``: light + random erasing. The one regulariser from ``strong``
  that fights memorising a region without distorting the face's geometry or
  tone: light over-fits small, fast nets within a 100-minute budget
  (ResEmoteNet w0.25: 83% training vs 64% validation accuracy) while strong
  under-fits them.
- ``crop``: the crop recipe of the strongest from-scratch FER2013 results:
  horizontal flip, a random whole-pixel shift of up to ``crop_margin``
  pixels each way, and random erasing. For a model that keeps the central
  ``48 - 2 * crop_margin`` pixels (a ``crop`` option, Keras' ``CenterCrop``
  in the file), that shift *is* a random crop of the face, and inference
  needs nothing but the file: it sees the central crop.
- ``strong``: flip, shift, rotation ±10°, zoom ±10%, brightness/contrast
  jitter and random erasing (a box of noise over up to a third of the face,
  which stops the model relying on one region, e.g. the mouth).

Independently of the level, ``zoom`` (a fraction) scales each face by a
random factor of about 1 +- zoom about its centre, after the shifts (with
``crop``, the zoom resamples, so the crop is no longer whole pixels).
FER2013's own crops frame faces of the same geometry at sizes about 9%
apart, and a face detector's crop (``fer_keras.faces``) lands with the same
spread: ``benchmarks/bench_crop.py`` measures what that costs each member
(0.9-4.7 points; the one shipped member trained with ``strong``'s zoom is
among those that lose least, which one member cannot show zoom caused).
``strong`` zooms by 0.1 unless ``zoom`` says otherwise.

Also independently of the level, ``mixup`` (an alpha) blends each face with another
face of the batch and their targets in the same proportion (Zhang et al.,
"mixup: Beyond Empirical Risk Minimization", ICLR 2018): a regulariser that
leaves every face's geometry intact, for nets that memorise the training set.

They run on batches inside the input pipeline (not in the model), so a saved
model has no augmentation layers and the pipeline overlaps with training.
Every layer computes in float32 whatever the global policy: under
mixed_bfloat16 (the default on CPUs with AMX) a bf16 augmenter would resample
and round faces with 8 bits of mantissa (``strong`` moved pixels by up to 26
grey levels against float32).
"""

from __future__ import annotations

import itertools

import keras
from keras import layers

from fer_keras.constants import IMAGE_SIZE, PIXEL_MAX
from fer_keras.models.layers import RandomErasing

LEVELS = ("none", "light", "medium", "crop", "strong")

CROP_SHIFT_ROUNDING = 0.499
"""Pixels added to the crop recipe's largest shift before rounding: just under
half a pixel, so every whole shift -m..m is equally likely and none exceeds m."""


def layer_seeds(seed):
    """One seed per random layer: ``seed``, ``seed + 1``, ... (all None when ``seed`` is None).

    Why: Keras layers given the same seed draw the same random numbers, so
    a flip, a shift and a zoom seeded alike would move together (a flipped
    face always shifted up, say) instead of independently.
    """
    return itertools.repeat(None) if seed is None else itertools.count(seed)


def build_augmenter(level="light", *, seed=None, crop_margin=0, zoom=0.0):
    """A ``keras.Sequential`` of random layers for ``level`` (None for ``none`` without zoom).

    Works on float batches of raw 0..255 faces, (B, 48, 48, 1).
    ``crop_margin``: for ``crop``, the pixels the model's central crop drops
    on each side (``(48 - crop) / 2``); it must be at least 1. ``zoom``: a
    random zoom after the shifts, the face scaled by about 1 +- zoom (Keras draws
    1 / (1 + u), u in [-zoom, zoom]); 0: none, or ``strong``'s 0.1.
    """
    if level not in LEVELS:
        raise ValueError(f"augment must be one of {', '.join(LEVELS)}")
    if not 0 <= zoom < 0.5:
        raise ValueError(f"zoom must be in [0, 0.5). Received: zoom={zoom}")
    zoom = zoom or (0.1 if level == "strong" else 0.0)
    seeds = layer_seeds(seed)

    def random(layer_class, *args, **kwargs):
        return layer_class(*args, **kwargs, seed=next(seeds), dtype="float32")

    zooming = [random(layers.RandomZoom, zoom, fill_mode="reflect")] if zoom else []
    if level == "none":
        return keras.Sequential(zooming, name="augment_zoom") if zooming else None
    if level == "crop":
        if crop_margin < 1:
            raise ValueError(f"level 'crop' needs crop_margin >= 1: a model that crops its input (model option "
                             f"crop=44). Received: crop_margin={crop_margin}")
        # Nearest-neighbour shifts move whole pixels, as a crop does; the
        # reflected border is cut off by the model's centre crop. A shift drawn
        # from [-m - 1/2, m + 1/2] rounds to each of -m..m equally often (drawn
        # from [-m, m], the corner crops ten-crop averages over came half as
        # often as the others).
        shift = (crop_margin + CROP_SHIFT_ROUNDING) / IMAGE_SIZE
        steps = [
            random(layers.RandomFlip, "horizontal"),
            random(layers.RandomTranslation, shift, shift, fill_mode="reflect", interpolation="nearest"),
            *zooming,
            random(RandomErasing, rate=0.5),
        ]
        return keras.Sequential(steps, name="augment_crop")
    steps = [
        random(layers.RandomFlip, "horizontal"),
        random(layers.RandomTranslation, 0.1, 0.1, fill_mode="reflect"),
        *zooming,
    ]
    if level == "strong":
        steps += [
            random(layers.RandomRotation, 10 / 360, fill_mode="reflect"),
            random(layers.RandomBrightness, 0.15, value_range=(0, PIXEL_MAX)),
            random(layers.RandomContrast, 0.2, value_range=(0, PIXEL_MAX)),
        ]
    if level in ("medium", "strong"):
        steps.append(random(RandomErasing, rate=0.5))
    return keras.Sequential(steps, name=f"augment_{level}")


def build_mixer(alpha, *, seed=None):
    """Keras' ``MixUp`` for ``alpha`` > 0 (None for 0): called on
    ``{"images": ..., "labels": ...}`` batches after the augmenter, it mixes
    each face with a shuffled partner by a weight drawn from Beta(alpha, alpha),
    and the one-hot or soft targets by the same weight.

    float32 whatever the global policy: under mixed_bfloat16 a bf16 face would
    lose the low bits of its 0..255 pixels before the model sees them.
    """
    if alpha < 0:
        raise ValueError("mixup alpha must be >= 0")
    if not alpha:
        return None
    return layers.MixUp(alpha=alpha, seed=seed, dtype="float32", name="mixup")
