"""The one-line API at the top of the package, and the import paths of fer_keras 0.1."""

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import fer_keras
from fer_keras import plots, tables
from fer_keras.data import write_synthetic_csv
from fer_keras.inference import demo_image
from fer_keras.models import build, model_io

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    """A models folder with one tiny member."""
    import keras

    keras.utils.set_random_seed(0)
    folder = tmp_path_factory.mktemp("models")
    model_io.save_model(build("vgg16", width=0.125, dense_units=32), folder / "model_1.h5")
    return folder


def test_import_fer_keras_loads_no_tensorflow():
    """Check that `import fer_keras` imports neither TensorFlow nor Keras nor a stage package."""
    code = ("import sys, fer_keras; print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('tensorflow', 'keras', 'jax') or m.startswith('fer_keras.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "['fer_keras.constants']"


def test_one_line_names_are_the_stage_objects():
    """Check that the top-level names load their stage on first use and are the stage's own objects."""
    from fer_keras.data import load_fer2013
    from fer_keras.ensemble import Ensemble
    from fer_keras.inference import detect_emotions
    from fer_keras.training import TrainConfig, train

    assert fer_keras.Ensemble is Ensemble and fer_keras.train is train and fer_keras.TrainConfig is TrainConfig
    assert fer_keras.detect_emotions is detect_emotions and fer_keras.load_fer2013 is load_fer2013
    assert {"Ensemble", "detect_emotions", "train", "data", "models"} <= set(dir(fer_keras))
    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        fer_keras.nonsense



def test_every_stage_package_is_an_attribute_of_fer_keras():
    """Check that each stage folder of the package (data, models, ..., serve) is listed by dir(fer_keras) and
    loads on attribute access, so a new stage cannot be left out of the lazy loader."""
    import importlib
    from pathlib import Path

    stages = {p.name for p in Path(fer_keras.__file__).parent.iterdir() if (p / "__init__.py").exists()}
    assert {"data", "models", "serve"} <= stages
    assert stages <= set(dir(fer_keras))
    assert fer_keras.serve is importlib.import_module("fer_keras.serve")

def test_old_import_paths_still_work():
    """Check that the paths of fer_keras 0.1 still import the same objects, with a DeprecationWarning
    for the modules that moved."""
    from fer_keras.data import load_fer2013
    from fer_keras.ensemble import load_members
    from fer_keras.inference.faces import read_image

    assert fer_keras.data.load_fer2013 is load_fer2013 and fer_keras.ensemble.load_members is load_members
    assert fer_keras.models.build is build and callable(fer_keras.export.fuse)
    sys.modules.pop("fer_keras.model_io", None)  # an earlier import would hide the warning
    with pytest.warns(DeprecationWarning, match="fer_keras.model_io moved to fer_keras.models.model_io"):
        from fer_keras.model_io import read_metadata
    assert read_metadata is model_io.read_metadata
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from fer_keras import datasets
        from fer_keras.faces import read_image as old_read_image
        from fer_keras.report import confusion_figure, per_class_table
    assert datasets.load_ferplus is fer_keras.data.load_ferplus and old_read_image is read_image
    assert confusion_figure is plots.confusion_figure and per_class_table is tables.per_class_table


def test_old_module_command_still_runs():
    """Check that `python -m fer_keras.model_card`, the command of fer_keras 0.1, runs the moved module."""
    out = subprocess.run([sys.executable, "-m", "fer_keras.model_card", "--help"], capture_output=True, text=True,
                         cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "--models-dir" in out.stdout


def test_ensemble_from_dir_loads_the_folder_and_warns_for_what_it_skips(models_dir, tmp_path):
    """Check that Ensemble.from_dir takes every member of a folder and warns, naming the file, for one
    that cannot be a member."""
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "model_1.h5").write_bytes((models_dir / "model_1.h5").read_bytes())
    (folder / "model_2.h5").write_bytes(b"not a model")
    with pytest.warns(UserWarning, match="skipped model_2.h5"):
        ensemble = fer_keras.Ensemble.from_dir(folder, method="geometric")
    assert [m.name for m in ensemble.members] == ["model_1.h5"] and ensemble.method == "geometric"
    probs = ensemble.predict_proba(np.zeros((3, 48, 48, 1), np.uint8))
    assert probs.shape == (3, 7)
    np.testing.assert_allclose(probs.sum(axis=1), 1, atol=1e-5)


def test_detect_emotions_gives_each_face_its_box_label_and_probabilities(models_dir):
    """Check that detect_emotions finds the face of the bundled photo, from a path or an array, and
    gives its box, most probable label and the probability of every class; no face gives []."""
    from fer_keras.inference import read_image

    faces = fer_keras.detect_emotions(demo_image(), models=models_dir)
    assert len(faces) >= 1
    face = faces[0]
    assert set(face) == {"box", "label", "confidence", "probabilities"}
    assert len(face["box"]) == 4 and all(isinstance(v, int) for v in face["box"])
    assert list(face["probabilities"]) == list(fer_keras.CLASS_NAMES)
    assert sum(face["probabilities"].values()) == pytest.approx(1, abs=1e-5)
    assert face["label"] == max(face["probabilities"], key=face["probabilities"].get)
    assert face["confidence"] == pytest.approx(face["probabilities"][face["label"]])
    assert fer_keras.detect_emotions(read_image(demo_image()), models=models_dir) == faces
    assert fer_keras.detect_emotions(np.zeros((120, 160, 3), np.uint8), models=models_dir) == []


@pytest.mark.slow
def test_train_in_one_line(tmp_path):
    """Check that fer_keras.train(**options) runs a whole training job and saves a model file."""
    csv = write_synthetic_csv(tmp_path / "faces.csv", sizes=(("Training", 112), ("PublicTest", 28)))
    summary = fer_keras.train(model="vgg16", model_options={"width": 0.125, "dense_units": 32}, csv=str(csv),
                              epochs=1, batch_size=16, augment="none", precision="float32",
                              models_dir=str(tmp_path / "models"), run_dir=str(tmp_path / "run"), verbose=0)
    assert summary["model_file"] == str(tmp_path / "models" / "model_1.h5")
    assert model_io.read_metadata(summary["model_file"])["architecture"] == "vgg16"
