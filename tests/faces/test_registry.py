"""The detector registry: names, options, a new detector in one module, and no TensorFlow at import."""

import subprocess
import sys

import numpy as np
import pytest

from fer_keras import faces
from fer_keras.errors import ConfigError
from fer_keras.faces import Detection, Detector, available_detectors, build_detector, register


def test_both_detectors_are_registered_by_name():
    """Check that haar and mtcnn are built by name, each with its own class and landmark flag."""
    assert {"haar", "mtcnn"} <= set(available_detectors())
    assert build_detector("haar").has_landmarks is False
    assert build_detector("mtcnn").has_landmarks is True
    assert build_detector("mtcnn", align=False).get_config()["align"] is False


def test_no_name_is_the_picture_default():
    """Check that build_detector() and build_detector(None) give the measured picture default, MTCNN."""
    assert faces.DEFAULT_DETECTOR == "mtcnn"
    assert build_detector().name == build_detector(None).name == "mtcnn"


def test_unknown_detector_names_the_available_ones():
    """Check that an unknown name is a ConfigError listing what exists."""
    with pytest.raises(ConfigError, match="unknown face detector 'yunet'; available: haar, mtcnn"):
        build_detector("yunet")


def test_haar_says_it_does_not_align():
    """Check that the Haar detector reports no landmarks and no alignment, even when asked to align."""
    config = build_detector("haar", align=True).get_config()
    assert config["landmarks"] is False and config["align"] is False


def test_a_new_detector_is_one_registered_class(monkeypatch):
    """Check that a Detector subclass decorated @register is built by name and crops through the one crop."""
    monkeypatch.setattr(faces.detectors._registry, "_DETECTORS", dict(faces.detectors._registry._DETECTORS))

    @register
    class Centre(Detector):
        name = "centre"

        def _find(self, image, factor):
            h, w = image.shape[:2]
            return [Detection(w // 4, h // 4, w // 2, h // 2, 0.5)]

    detector = build_detector("centre")
    image = np.zeros((100, 200, 3), np.uint8)
    found = detector.detect(image)
    assert found == [Detection(50, 25, 100, 50, 0.5)] and "centre" in available_detectors()
    assert detector.crop(image, found).shape == (1, 48, 48, 1)
    with pytest.raises(ValueError, match="taken"):
        register(Centre)


def test_importing_the_faces_stage_loads_no_tensorflow():
    """Check that `import fer_keras.faces` and building an MTCNN detector do not import TensorFlow
    (it loads when the detector first runs)."""
    code = ("import sys, fer_keras.faces as f; f.build_detector('mtcnn'); "
            "print('tensorflow' in sys.modules, 'mtcnn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.split() == ["False", "False"]
