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
