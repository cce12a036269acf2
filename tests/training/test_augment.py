"""Augmentation levels: what each one changes, and that inference is untouched."""

import numpy as np
import pytest

from fer_keras.training.augment import LEVELS, RandomErasing, build_augmenter


def layer_names(level):
    return [type(layer).__name__ for layer in build_augmenter(level, seed=1).layers]


def test_levels_nest_from_light_to_strong():
    """Check that each level adds to the one below it: light < medium < strong."""
    assert build_augmenter("none") is None
    light, medium, strong = layer_names("light"), layer_names("medium"), layer_names("strong")
    assert light == ["RandomFlip", "RandomTranslation"]
    assert medium == light + ["RandomErasing"]
    assert set(medium) < set(strong)
    assert {"RandomRotation", "RandomZoom", "RandomBrightness", "RandomContrast"} <= set(strong)


def test_medium_erases_boxes_without_moving_the_face():
    """Check that medium only ever changes a rectangle of a flat image (flip and shift keep it flat).

    Rotation, zoom or a tone jitter would change every pixel or none; the
    erased box is the only place medium may differ from the input.
    """
    images = np.full((64, 48, 48, 1), 128.0, "float32")
    out = np.asarray(build_augmenter("medium", seed=3)(images, training=True))
    changed = out[..., 0] != 128.0
    erased = changed.any(axis=(1, 2))
    assert 0.2 < erased.mean() < 0.8  # rate 0.5
    for mask in changed[erased]:
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        box = mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
        assert box.mean() > 0.95  # one filled rectangle (noise may equal 128 by chance)
        assert box.size <= 0.34 * 48 * 48 + 2 * 48  # area ≤ a third, plus rounding at the edges


@pytest.mark.parametrize("level", [level for level in LEVELS if level != "none"])
def test_inference_leaves_images_untouched(level):
    """Check that with training=False every level returns its input (augmentation is training-only)."""
    images = np.random.default_rng(0).uniform(0, 255, (4, 48, 48, 1)).astype("float32")
    augmenter = build_augmenter(level, seed=1, crop_margin=2)
    np.testing.assert_array_equal(np.asarray(augmenter(images, training=False)), images)


def test_crop_level_shows_the_centre_crop_a_random_whole_crop_of_the_face():
    """Check that after --augment crop, the model's 44 px centre crop of every face is one of
    the face's own 44 px crops (or its mirror's), moved by whole pixels, and that the
    positions vary. Erasing is the only other change, so faces it touched are set aside."""
    rng = np.random.default_rng(0)
    faces = rng.uniform(0, 255, (64, 48, 48, 1)).round().astype("float32")
    out = np.asarray(build_augmenter("crop", seed=5, crop_margin=2)(faces, training=True))
    seen = set()
    for face, augmented in zip(faces, out):
        centre = augmented[2:46, 2:46]
        matches = [(dr, dc, flip) for flip in (False, True) for dr in range(5) for dc in range(5)
                   if np.array_equal(centre, (face[:, ::-1] if flip else face)[dr:dr + 44, dc:dc + 44])]
        if matches:  # unerased
            seen.add(matches[0][:2])
    assert len(seen) >= 10  # of the 25 crop positions: random, not one shift per batch


def test_crop_level_needs_a_margin():
    """Check that --augment crop refuses a model that does not crop (nothing to shift within)."""
    with pytest.raises(ValueError, match="crop=44"):
        build_augmenter("crop", seed=1)


def test_unknown_level_and_erasing_config_round_trip():
    """Check that an unknown level names the choices, and RandomErasing survives get_config."""
    with pytest.raises(ValueError, match="none, light, medium, crop, strong"):
        build_augmenter("heavy")
    layer = RandomErasing(rate=0.25, area=(0.1, 0.2), seed=7)
    clone = RandomErasing.from_config(layer.get_config())
    assert (clone.rate, clone.area, clone.seed) == (0.25, (0.1, 0.2), 7)


def test_zoom_scales_faces_about_their_centre_on_any_level():
    """Check that --zoom rescales each face by its own random factor about the centre (a disc's area
    varies, its centre stays), that strong keeps its 0.1 unless told, and that a zoom out of range is refused."""
    from keras import layers

    from fer_keras.training import TrainConfig, make_dataset
    from fer_keras.errors import ConfigError

    yy, xx = np.mgrid[0:48, 0:48]
    disc = ((yy - 23.5) ** 2 + (xx - 23.5) ** 2 < 10 ** 2).astype("float32") * 255
    batch = np.repeat(disc[None, ..., None], 64, axis=0)
    assert build_augmenter("none") is None
    ds = make_dataset(batch.astype("uint8"), np.zeros(64, int), batch_size=64, num_classes=7, training=True,
                      augment="none", zoom=0.3, seed=1)
    out = np.asarray(next(iter(ds))[0])
    area = (out > 127).sum(axis=(1, 2, 3))
    assert area.std() > 0.1 * area.mean() and area.min() < (disc > 127).sum() < area.max()
    lit = out[..., 0] > 127
    height, width = lit.any(axis=2).sum(axis=1), lit.any(axis=1).sum(axis=1)
    assert np.abs(height - width).max() <= 1  # both ways alike: a disc stays a disc
    np.testing.assert_allclose(out[:, 23:25, 23:25], 255, atol=1)  # about the centre: the middle stays lit

    def zoom_of(augmenter):
        return [layer.height_factor for layer in augmenter.layers if isinstance(layer, layers.RandomZoom)]

    assert zoom_of(build_augmenter("strong")) == [0.1] and zoom_of(build_augmenter("strong", zoom=0.2)) == [0.2]
    assert zoom_of(build_augmenter("crop", crop_margin=2, zoom=0.1)) == [0.1]
    assert zoom_of(build_augmenter("light")) == []
    with pytest.raises(ConfigError, match="zoom must be in.*Received: zoom=0.6"):
        TrainConfig(zoom=0.6).validate()


@pytest.mark.parametrize("level", ["light", "strong"])
def test_random_layers_draw_independently(level):
    """Check that a flip, a vertical shift and a zoom seeded by one run seed are independent: layers given
    the same seed draw the same numbers, which tied every flipped face to an upward shift."""
    block = np.zeros((48, 48), "float32")
    block[20:28, 4:12] = 255  # a bright square left of centre: flipped, it lies right of centre
    batch = np.repeat(block[None, ..., None], 1024, axis=0)
    out = np.asarray(build_augmenter(level, seed=1, zoom=0.2)(batch, training=True))[..., 0]
    mass = out.sum(axis=(1, 2)) + 1e-6
    columns, rows = np.arange(48), np.arange(48)[:, None]
    centre_x = (out.sum(axis=1) * columns).sum(axis=1) / mass
    centre_y = (out * rows).sum(axis=(1, 2)) / mass
    size = (out > 127).sum(axis=(1, 2))
    flipped = centre_x > 24
    assert 0.3 < flipped.mean() < 0.7
    assert abs(np.corrcoef(flipped, centre_y)[0, 1]) < 0.15
    assert abs(np.corrcoef(size, centre_y)[0, 1]) < 0.15


def test_crop_level_draws_every_whole_shift_equally_often():
    """Check that the crop recipe's shifts are uniform over -m..m and never beyond: rounding a shift drawn
    from [-m, m] made the corner crops, eight of ten-crop's ten views, half as likely as the others."""
    columns = np.tile(np.arange(48, dtype="float32") * 5, (48, 1))
    batch = np.repeat(columns[None, ..., None], 4000, axis=0)
    out = np.asarray(build_augmenter("crop", seed=5, crop_margin=2).layers[1](batch, training=True))
    shifts = (24 - out[:, 24, 24, 0] / 5).round().astype(int)
    values, counts = np.unique(shifts, return_counts=True)
    assert values.tolist() == [-2, -1, 0, 1, 2]
    assert counts.min() > 0.85 * counts.max()  # about 800 each; the old draw gave about 480 at +-2


@pytest.mark.parametrize("level", ["light", "crop", "strong"])
def test_augmenter_computes_in_float32_under_mixed_bfloat16(level):
    """Check that under mixed_bfloat16 each level gives exactly the float32 faces: a bf16 augmenter
    rounded resampled pixels to 8 bits of mantissa (strong moved some by 26 grey levels)."""
    import keras

    faces = np.random.default_rng(0).uniform(0, 255, (16, 48, 48, 1)).round().astype("float32")
    expected = np.asarray(build_augmenter(level, seed=3, crop_margin=2)(faces, training=True))
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        out = build_augmenter(level, seed=3, crop_margin=2)(faces, training=True)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    assert keras.backend.standardize_dtype(out.dtype) == "float32"
    np.testing.assert_array_equal(np.asarray(out), expected)
