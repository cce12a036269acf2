"""Training-data preparation (data_resize) and inference (predict.py) read, find and crop faces one way."""

import numpy as np
import pytest
from PIL import Image

from fer_keras import data
from fer_keras.cli import preprocess_cli
from fer_keras.faces import build_detector, read_image
from fer_keras.inference import FacePredictor, demo_image


class Recorder:
    """A stand-in ensemble that records the faces it is given and calls them all neutral."""

    members = []
    class_names = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")

    def __init__(self):
        self.faces = []

    def predict_proba(self, faces, tta=False):
        self.faces.append(np.array(faces))
        probs = np.zeros((len(faces), 7))
        probs[:, 6] = 1
        return probs


@pytest.mark.parametrize("name", ["haar", "mtcnn"])
def test_data_resize_writes_the_face_predict_classifies(name, tmp_path):
    """Check that the 48x48 face data_resize writes for a photo is, pixel for pixel, the face FacePredictor
    feeds the models for the same file (same reader, detector and crop)."""
    photo = tmp_path / "src" / "happy" / "grace.jpg"
    photo.parent.mkdir(parents=True)
    Image.open(demo_image()).convert("RGB").save(photo, quality=92)
    code = preprocess_cli.data_resize_main([str(tmp_path / "src"), str(tmp_path / "faces"), "--detect-faces",
                                            "--detector", name, "--quiet"], prog="data_resize.py")
    assert code == 0
    written = np.asarray(Image.open(tmp_path / "faces" / "happy" / "grace.png"))

    recorder = Recorder()
    FacePredictor(recorder, build_detector(name)).predict_file(photo)
    (seen,) = recorder.faces
    assert seen.shape == (1, 48, 48, 1)
    assert np.array_equal(written, seen[0, ..., 0])


def test_no_align_reaches_the_crop(tmp_path):
    """Check that data_resize --no-align gives the unaligned crop (not the same picture as the aligned one)."""
    from tests.faces.conftest import turned

    photo = tmp_path / "src" / "t.png"
    photo.parent.mkdir()
    Image.fromarray(turned(read_image(demo_image()), 20)[..., ::-1]).save(photo)
    out = {}
    for flag in ([], ["--no-align"]):
        dst = tmp_path / f"out{len(flag)}"
        assert preprocess_cli.data_resize_main([str(tmp_path / "src"), str(dst), "--detect-faces", "--quiet", *flag],
                                               prog="data_resize.py") == 0
        out[len(flag)] = np.asarray(Image.open(dst / "t.png"), np.float64)
    assert np.abs(out[0] - out[1]).mean() > 10


def test_face_finder_takes_any_registered_detector():
    """Check that FaceFinder builds the named detector with the crop options it is given."""
    finder = data.FaceFinder(detector="haar", margin=0.2)
    assert finder.detector.name == "haar" and finder.margin == 0.2
    assert data.FaceFinder().detector.name == "mtcnn"
