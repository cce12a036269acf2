"""Fixtures of the faces tests: a real face without the dataset (matplotlib's bundled photo), turned."""

import numpy as np
import pytest

from fer_keras.faces import read_image
from fer_keras.inference import demo_image


@pytest.fixture(scope="session")
def grace():
    """matplotlib's bundled photo of Grace Hopper (BGR, 512x600), one frontal face."""
    return read_image(demo_image())


def turned(image, degrees):
    """``image`` turned ``degrees`` counter-clockwise about its centre, on a canvas big enough to keep it."""
    import cv2

    h, w = image.shape[:2]
    side = int(np.ceil(np.hypot(h, w)))
    canvas = cv2.copyMakeBorder(image, (side - h) // 2, (side - h + 1) // 2, (side - w) // 2, (side - w + 1) // 2,
                                cv2.BORDER_CONSTANT, value=(128, 128, 128))
    matrix = cv2.getRotationMatrix2D((side / 2, side / 2), degrees, 1.0)
    return cv2.warpAffine(canvas, matrix, (side, side), borderValue=(128, 128, 128))


@pytest.fixture(scope="session")
def mtcnn():
    """One MTCNN detector for the session (building it loads TensorFlow and the weights: seconds)."""
    from fer_keras.faces import build_detector

    return build_detector("mtcnn")


@pytest.fixture(scope="session")
def fer_sample():
    """The first 64 PublicTest faces (uint8 (64, 48, 48, 1)); skips when the shared dataset is absent."""
    import gzip
    from pathlib import Path

    csv = Path(__file__).resolve().parents[3] / "shared" / "data" / "fer2013" / "fer2013_train_publictest.csv.gz"
    if not csv.is_file():
        pytest.skip("shared FER2013 CSV not present")
    faces = []
    with gzip.open(csv, "rt") as fh:
        next(fh)
        for line in fh:
            label, pixels, usage = line.strip().split(",")
            if usage == "PublicTest":
                faces.append(np.array(pixels.split(), np.uint8).reshape(48, 48, 1))
                if len(faces) == 64:
                    break
    return np.stack(faces)
