"""Test-time augmentation: the views are the crops the crop recipe averages over,
and a member averages its predictions on exactly those pixels."""

import numpy as np
import pytest

from fer_keras.ensemble import tta
from fer_keras.errors import ConfigError


def crops_of(face, size):
    """The ten crops of the literature: four corners and the centre, each mirrored."""
    margin = face.shape[0] - size
    starts = [(0, 0), (0, margin), (margin, 0), (margin, margin), (margin // 2, margin // 2)]
    crops = [face[r:r + size, c:c + size] for r, c in starts]
    return crops + [c[:, ::-1] for c in crops]


def as_set(arrays):
    return {a.tobytes() for a in arrays}


@pytest.mark.parametrize("crop", [44, 40])
def test_tencrop_views_centre_cropped_are_the_ten_crops(crop):
    """Check that the model's centre crop of each ten-crop view is one of the ten crops, all ten present."""
    face = np.random.default_rng(crop).integers(0, 256, (48, 48, 1), dtype=np.uint8)
    margin = (48 - crop) // 2
    views = tta.views(face[None], "tencrop", crop_margin=margin)
    centre = [v[0, margin:margin + crop, margin:margin + crop] for v in views]
    assert len(views) == 10
    assert as_set(centre) == as_set(crops_of(face, crop))


def test_modes_without_a_crop():
    """Check the view counts: none 1, flip 2 (face then mirror), tencrop without a crop falls back to flip."""
    faces = np.arange(2 * 48 * 48, dtype=np.uint8).reshape(2, 48, 48, 1)
    assert len(tta.views(faces, "none")) == 1 and len(tta.views(faces, False)) == 1
    flip = tta.views(faces, True)
    np.testing.assert_array_equal(flip[1], faces[:, :, ::-1])
    assert as_set(tta.views(faces, "tencrop", crop_margin=0)) == as_set(flip)
    with pytest.raises(ConfigError, match="none, flip, tencrop"):
        tta.views(faces, "fivecrop")


def test_shift_moves_whole_pixels_and_repeats_the_edge():
    """Check shift by hand on a 1x3x3 ramp."""
    face = np.arange(9).reshape(1, 3, 3)
    np.testing.assert_array_equal(tta.shift(face, 1, 0)[0], [[0, 1, 2], [0, 1, 2], [3, 4, 5]])
    np.testing.assert_array_equal(tta.shift(face, 0, -1)[0], [[1, 2, 2], [4, 5, 5], [7, 8, 8]])


def test_member_tencrop_is_the_mean_over_the_ten_crops(tmp_path):
    """Check that a member with a 44 px centre crop, asked for tencrop, returns the mean of
    its own classifier over the ten explicit 44 px crops; one without a crop gets flip TTA."""
    import keras

    from fer_keras.ensemble import Member
    from fer_keras.models.model_io import save_model
    from fer_keras.models import build, input_crop

    def confident(model):
        """Random weights give near-uniform outputs; sharpen the logits so views differ measurably."""
        logits = model.get_layer("predictions_logits")
        logits.set_weights([w * 50 for w in logits.get_weights()])
        return model

    keras.utils.set_random_seed(0)
    model = confident(build("vgg16", width=0.125, crop=44))
    assert input_crop(model) == 44
    path = tmp_path / "crop.h5"
    save_model(model, path)
    member = Member.from_file(path)
    assert member.crop_margin == 2
    faces = np.random.default_rng(1).integers(0, 256, (3, 48, 48, 1), dtype=np.uint8)

    # The same network on 44 px inputs: the layers after the crop.
    head = keras.Model(model.get_layer("center_crop").output, model.output)
    by_hand = np.mean([head.predict(np.stack(crops), verbose=0)
                       for crops in zip(*(crops_of(f, 44) for f in faces.astype("float32")))], axis=0)
    np.testing.assert_allclose(member.predict_proba(faces, tta="tencrop"), by_hand, atol=1e-5)
    assert not np.allclose(member.predict_proba(faces, tta="flip"), by_hand, atol=1e-5)

    save_model(confident(build("vgg16", width=0.125)), tmp_path / "plain.h5")
    other = Member.from_file(tmp_path / "plain.h5")
    assert other.crop_margin == 0
    np.testing.assert_array_equal(other.predict_proba(faces, tta="tencrop"), other.predict_proba(faces, tta="flip"))
