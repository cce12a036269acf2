"""The crop recipe end to end: train on random crops, save a file that crops by itself,
score it with the ten-crop average; and the refusal when the model does not crop."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fer_keras.ensemble import Member
from fer_keras.models import input_crop, model_io
from fer_keras.training import TrainConfig, train

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def band_csv(tmp_path_factory):
    """7 classes, each a bright band at its own rows, inside the central 44 px."""
    path = tmp_path_factory.mktemp("csv") / "bands.csv"
    rng = np.random.default_rng(0)
    lines = ["emotion,pixels,Usage"]
    for usage, n in (("Training", 140), ("PublicTest", 35)):
        for i in range(n):
            label = i % 7
            img = rng.integers(0, 60, (48, 48))
            img[3 + label * 6: 3 + label * 6 + 5] = 250
            lines.append(f"{label},{' '.join(map(str, img.ravel()))},{usage}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.slow
def test_crop_recipe_trains_a_self_cropping_file(band_csv, tmp_path):
    """Check that -o crop=44 --augment crop saves a file that takes 48x48 faces, keeps its
    centre crop (so it needs no fer_keras to be used) and scores with ten-crop TTA."""
    config = TrainConfig(model="vgg16", model_options={"width": 0.125, "dense_units": 64, "crop": 44},
                         csv=str(band_csv), epochs=2, batch_size=16, lr=0.01, warmup_steps=2, augment="crop",
                         precision="float32", models_dir=str(tmp_path / "models"), run_dir=str(tmp_path / "run"))
    summary = train(config, verbose=0)
    path = Path(summary["model_file"])
    assert model_io.read_metadata(path)["recipe"]["augment"] == "crop"
    model = model_io.load_model(path)
    assert model.input_shape == (None, 48, 48, 1) and input_crop(model) == 44
    member = Member.from_file(path)
    faces = np.random.default_rng(2).integers(0, 256, (5, 48, 48, 1), dtype=np.uint8)
    probs = member.predict_proba(faces, tta="tencrop")
    np.testing.assert_allclose(probs.sum(axis=1), 1, atol=1e-5)
    # Without fer_keras: plain Keras, safe mode, raw 0..255 faces, the same centre-crop answer.
    import keras

    plain = keras.models.load_model(path, compile=False, safe_mode=True)
    np.testing.assert_allclose(plain.predict(faces.astype("float32"), verbose=0), member.predict_proba(faces),
                               atol=1e-5)


def test_augment_crop_without_a_cropping_model_is_a_one_line_error(band_csv, tmp_path):
    """Check that --augment crop on a model without -o crop exits 2 naming the fix, before any epoch."""
    proc = subprocess.run(
        [sys.executable, str(REPO / "train.py"), "--model", "vgg16", "-o", "width=0.125", "--csv", str(band_csv),
         "--augment", "crop", "--epochs", "1", "--precision", "float32", "--models-dir", str(tmp_path / "m"),
         "--run-dir", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "error: --model-option: augment='crop' needs a model that crops its input" in proc.stderr
    assert "add crop=44" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "m").exists() or not any((tmp_path / "m").iterdir())


@pytest.mark.parametrize("crop", [47, 49, 4])
def test_crop_option_is_checked(crop):
    """Check that a crop off-centre by half a pixel (odd), larger than the face or tiny is refused."""
    from fer_keras.errors import ConfigError
    from fer_keras.models import build

    with pytest.raises(ConfigError, match="crop must be an even number"):
        build("vgg16", width=0.125, crop=crop)
