"""Fixtures of the serving tests: a tiny model folder, the app over it, a picture with one face."""

import cv2
import pytest

from tests.serve.camera import photo_frame


@pytest.fixture(scope="session")
def tiny_models(tiny_models_dir):
    """A models folder holding one tiny Flatten → Dense(7, softmax) member (loads in well under a second)."""
    return tiny_models_dir


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
