"""The model zoo: one harness over every registered model, then each family's own checks.

The harness builds every model with small options (narrow, small inputs,
no downloads) so the whole file runs in about a minute on two CPU cores; the
faithful sizes are only built and their parameters counted.
"""

import functools

import keras
import numpy as np
import pytest

from fer_keras import models
from fer_keras.constants import INPUT_SHAPE, NUM_CLASSES
from fer_keras.errors import ConfigError
from fer_keras.models import model_io

SMALL_OPTIONS = {
    "vgg16": {"width": 0.125},
    "vgg16_imagenet": {"weights": None, "input_size": 32, "dense_units": 16},
    "inception_v1": {"width": 0.125},
    "resemotenet": {"width": 0.125, "input_size": 48},
    "patt_lite": {"weights": None, "input_size": 224},
    "residual_masking_net": {"width": 0.125, "input_size": 48},
    "mini_xception": {"width": 0.5},
}

MODELS = models.available()


def faces(n, seed=0):
    """``n`` random raw faces, as a model receives them (0..255 floats)."""
    return np.random.default_rng(seed).integers(0, 256, (n, *INPUT_SHAPE)).astype("float32")


@functools.cache
def small_model(name):
    """One small build per model, shared by the tests that do not change it."""
    return models.build(name, **SMALL_OPTIONS[name])


def all_layers(model):
    """Every layer of ``model``, including those of nested models."""
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from all_layers(layer)


@pytest.fixture
def mixed_bfloat16():
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    yield
    keras.mixed_precision.set_global_policy(previous)


# === The shared harness ===


def test_every_registered_model_has_small_test_options():
    """Check that the harness covers every registered model."""
    assert sorted(SMALL_OPTIONS) == MODELS


@pytest.mark.parametrize("name", MODELS)
def test_model_outputs_float32_probabilities(name):
    """Check that a model maps raw 48x48 grey faces to float32 softmax rows over the classes."""
    model = small_model(name)
    assert tuple(model.input.shape) == (None, *INPUT_SHAPE)
    probs = model.predict(faces(2), verbose=0)
    assert probs.shape == (2, NUM_CLASSES) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1, atol=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_model_outputs_float32_under_mixed_bfloat16(name, mixed_bfloat16):
    """Check that a model built under mixed_bfloat16 still returns float32 probabilities."""
    model = models.build(name, **SMALL_OPTIONS[name])
    probs = model(faces(2), training=False)
    assert keras.backend.standardize_dtype(probs.dtype) == "float32"
    np.testing.assert_allclose(keras.ops.convert_to_numpy(probs).sum(axis=1), 1, atol=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_model_trains_one_step(name):
    """Check that one fit step on a batch of 4 gives a finite loss and moves the trainable weights."""
    model = models.build(name, **SMALL_OPTIONS[name])
    # Eagerly: tracing the training graph of the 350-layer masking net takes ~45 s on 2 cores.
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy", run_eagerly=True)
    before = [w.numpy() for w in model.trainable_weights]
    history = model.fit(faces(4), np.array([0, 3, 4, 6]), batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert any(not np.array_equal(b, w.numpy()) for b, w in zip(before, model.trainable_weights))


@pytest.mark.parametrize("suffix", [".h5", ".keras"])
@pytest.mark.parametrize("name", MODELS)
def test_model_file_round_trip(name, suffix, tmp_path):
    """Check that a saved model reloads in safe mode with equal outputs and readable metadata."""
    model = small_model(name)
    path = model_io.save_model(model, tmp_path / f"{name}{suffix}")

    meta = model_io.read_metadata(path)
    assert meta["architecture"] == name
    defaults = {k: v for k, v in models.options_of(name).items() if k != "num_classes"}
    assert meta["options"] == {**defaults, **SMALL_OPTIONS[name]}
    assert meta["num_classes"] == NUM_CLASSES and meta["parameters"] == model.count_params()

    loaded = model_io.load_model(path)
    x = faces(3, seed=1)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


@pytest.mark.parametrize("name", MODELS)
def test_model_has_no_lambda_layers(name):
    """Check that no layer, nested ones included, is a Lambda (refused by safe-mode loading)."""
    assert not [layer.name for layer in all_layers(small_model(name)) if isinstance(layer, keras.layers.Lambda)]


@pytest.mark.parametrize("name", MODELS)
def test_unknown_option_is_a_config_error(name):
    """Check that a misspelt option is refused rather than silently ignored."""
    with pytest.raises(ConfigError, match="no_such_option"):
        models.build(name, no_such_option=1)


def test_class_names_follow_the_number_of_classes():
    """Check that 7 outputs are named in FER2013 order, 8 with contempt last, other counts left unnamed."""
    from fer_keras.constants import CLASS_NAMES, CLASS_NAMES_8

    options = SMALL_OPTIONS["vgg16"]
    assert models.build("vgg16", **options).fer_metadata["class_names"] == list(CLASS_NAMES)
    assert models.build("vgg16", num_classes=8, **options).fer_metadata["class_names"] == list(CLASS_NAMES_8)
    assert models.build("vgg16", num_classes=3, **options).fer_metadata["class_names"] is None


def test_resemotenet_head_dropout_sets_all_three_head_dropouts():
    """Check that head_dropout reaches every FC dropout and is recorded, the faithful 0.5 by default."""
    model = models.build("resemotenet", head_dropout=0.2, **SMALL_OPTIONS["resemotenet"])
    rates = [layer.rate for layer in model.layers if layer.name.startswith("fc") and layer.name.endswith("dropout")]
    assert rates == [0.2, 0.2, 0.2] and model.fer_metadata["options"]["head_dropout"] == 0.2
    assert models.options_of("resemotenet")["head_dropout"] == 0.5


def test_resemotenet_stem_pools_keeps_the_parameters_and_doubles_the_residual_maps():
    """Check that one pool fewer in the stem leaves the weights alone and runs the residual blocks on 2x the map."""
    def res1_input_size(model):
        return model.get_layer("res1_conv1").input.shape[1]

    reference = models.build("resemotenet", **SMALL_OPTIONS["resemotenet"])
    variant = models.build("resemotenet", stem_pools=2, **SMALL_OPTIONS["resemotenet"])
    assert variant.count_params() == reference.count_params()
    assert (res1_input_size(reference), res1_input_size(variant)) == (6, 12)
    assert "stem3_pool" not in [layer.name for layer in variant.layers]
    with pytest.raises(ConfigError, match="stem_pools"):
        models.build("resemotenet", stem_pools=4, **SMALL_OPTIONS["resemotenet"])


# === Parameter counts stated in the module docstrings ===


@pytest.mark.parametrize(("name", "options", "trainable"), [
    ("vgg16", {}, 15_247_687),
    ("inception_v1", {}, 2_010_311),
    ("resemotenet", {}, 80_238_599),
    ("resemotenet", {"width": 0.25}, 5_022_215),
    ("residual_masking_net", {}, 137_796_423),
    ("patt_lite", {"weights": None}, 280_647),
    ("vgg16_imagenet", {"weights": None}, 199_431),
    ("patt_lite", {"weights": None, "freeze_backbone": False}, 1_083_399),
    ("mini_xception", {}, 49_783),
    ("mini_xception", {"width": 4}, 728_263),
])
def test_trainable_parameter_count(name, options, trainable):
    """Check that models have the exact trainable parameter counts their docstrings give."""
    model = models.build(name, **options)
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == trainable
    del model
    keras.backend.clear_session()


# === mini-Xception ===


def test_mini_xception_shortcut_equals_a_strided_1x1_conv():
    """Check that subsample-then-1x1 (the crash workaround) computes what a strided 1x1 conv does."""
    x = np.random.default_rng(0).normal(size=(2, 15, 15, 8)).astype("float32")  # odd: the edge pixel counts
    strided = keras.layers.Conv2D(16, 1, strides=2, padding="same", use_bias=False)
    expected = strided(x)
    conv = keras.layers.Conv2D(16, 1, use_bias=False)
    conv.build(x.shape)
    conv.set_weights(strided.get_weights())
    model = models.build("mini_xception", width=1)
    subsample = model.get_layer("module1_shortcut_subsample")
    np.testing.assert_allclose(conv(subsample(x)), expected, rtol=1e-5, atol=1e-6)


# === Local ImageNet weight files ===


def _reference_base(name, input_size):
    """A fresh random ``keras.applications`` base, standing in for an ImageNet file."""
    application = {"vgg16_imagenet": keras.applications.VGG16, "patt_lite": keras.applications.MobileNet}[name]
    return application(include_top=False, weights=None, input_shape=(input_size, input_size, 3))


@pytest.mark.parametrize("suffix", [".h5", ".weights.h5"])
@pytest.mark.parametrize(("name", "base_name"), [("vgg16_imagenet", "vgg16"), ("patt_lite", "mobilenet_block9")])
def test_local_weights_file_is_loaded(name, base_name, suffix, tmp_path):
    """Check that ``weights=<path>`` loads a local base weights file (legacy .h5 or Keras 3 .weights.h5)."""
    input_size = SMALL_OPTIONS[name]["input_size"]
    reference = _reference_base(name, input_size)
    path = tmp_path / f"base{suffix}"
    # A whole-model .h5 has the same weight layout as the downloadable *_notop.h5 files.
    reference.save_weights(path) if suffix == ".weights.h5" else reference.save(path)

    model = models.build(name, **{**SMALL_OPTIONS[name], "weights": str(path)})
    base = model.get_layer(base_name)
    for layer in base.layers:
        if layer.weights:
            for got, want in zip(layer.get_weights(), reference.get_layer(layer.name).get_weights(), strict=True):
                np.testing.assert_array_equal(got, want)


# === PAtt-Lite ===


def test_patt_lite_sample_output_is_independent_of_batch_mates():
    """Check that PAtt-Lite attends over a face's four patches, not over the other faces in the batch."""
    model = models.build("patt_lite", weights=None)
    assert tuple(model.get_layer("patch_tokens").output.shape) == (None, 4, 256)
    # Start after the backbone: a random-weight MobileNet shrinks its activations to ~1e-14 by
    # block 9, which would make every output the same and this test vacuous.
    head = keras.Model(model.get_layer("patch_sepconv1").input, model.get_layer("predictions_logits").output)
    rng = np.random.default_rng(0)
    features = rng.uniform(0, 6, (7, 14, 14, 512)).astype("float32")  # ReLU6 range
    alone = head.predict(features[:1], verbose=0)
    in_batch = head.predict(features[:4], verbose=0)
    with_other_mates = head.predict(features[[0, 4, 5, 6]], verbose=0)
    assert np.abs(in_batch[0] - in_batch[1]).max() > 1e-4  # different faces, different logits
    np.testing.assert_allclose(in_batch[:1], alone, atol=1e-6)
    np.testing.assert_allclose(with_other_mates[:1], alone, atol=1e-6)


def test_patt_lite_backbone_freezing_keeps_batch_norms_frozen():
    """Check that freeze_backbone=False trains the MobileNet convs but never its batch norms."""
    for freeze in (True, False):
        backbone = models.build("patt_lite", weights=None, freeze_backbone=freeze).get_layer("mobilenet_block9")
        for layer in backbone.layers:
            if layer.weights:
                is_bn = isinstance(layer, keras.layers.BatchNormalization)
                assert bool(layer.trainable_weights) == (not freeze and not is_bn), layer.name


def test_patt_lite_refuses_inputs_too_small_for_patches():
    """Check that an input size that leaves no 2x2 patch grid is a ConfigError."""
    with pytest.raises(ConfigError, match="input_size >= 208"):
        models.build("patt_lite", weights=None, input_size=192)
