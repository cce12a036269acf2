"""Fixtures of the serving tests: a tiny model folder, the app over it, a picture with one face."""

import cv2
import pytest

from tests.serve.camera import photo_frame


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """A models folder holding one tiny Flatten → Dense(7, softmax) member (loads in well under a second)."""
    import keras
    from keras import layers

    from fer_keras.models import model_io

    root = tmp_path_factory.mktemp("serve_models")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((48, 48, 1)), layers.Rescaling(1 / 255), layers.Flatten(),
                              layers.Dense(7, activation="softmax")])
    model_io.save_model(model, root / "model_1.h5")
    return root


@pytest.fixture(scope="session")
def tiny_ensemble(tiny_models):
    from fer_keras.ensemble import Ensemble

    return Ensemble.from_dir(tiny_models)


@pytest.fixture(scope="session")
def frame():
    """A 640x480 BGR frame with one face (the bundled photo)."""
    return photo_frame()


@pytest.fixture(scope="session")
def face_jpeg(frame):
    return cv2.imencode(".jpg", frame)[1].tobytes()
