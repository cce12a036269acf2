"""OpenCV's frontal-face Haar cascade: fast, no landmarks (so no alignment), misses turned faces.

The XML file ships inside the ``opencv-python(-headless)`` 4.x wheel
(``cv2.data.haarcascades``): nothing is downloaded. Viola & Jones, "Rapid
object detection using a boosted cascade of simple features", CVPR 2001.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fer_keras.errors import ConfigError, FerError
from fer_keras.faces.align import Framing
from fer_keras.faces.detectors._registry import Detection, Detector, register

CASCADE_FILE = "haarcascade_frontalface_default.xml"
"""The cascade used: OpenCV's default frontal-face model."""

HAAR_FRAMING = Framing(box_side=0.953, box_dx=-0.003, box_dy=-0.003)
"""Where the cascade's box sits in a FER2013 face (fractions of the 48-pixel
side): measured by the framing part of ``benchmarks/bench_detect.py`` on 800
Training faces enlarged 4x onto a grey canvas, medians over the 480 it found
(box side interquartile range 0.14). FER2013's faces were cut close to such a box:
the old margins (0.1 and 0.15 on each side) showed more than the data has."""


def cascade_path():
    """Path of the frontal-face Haar cascade inside the installed OpenCV wheel."""
    import cv2

    folder = getattr(getattr(cv2, "data", None), "haarcascades", None)
    if not hasattr(cv2, "CascadeClassifier") or not folder or not (Path(folder) / CASCADE_FILE).is_file():
        raise FerError(f"this OpenCV ({cv2.__version__}) has no Haar cascades; install "
                       "opencv-python-headless 4.x (see requirements.txt)")
    return Path(folder) / CASCADE_FILE


@register
class HaarDetector(Detector):
    """Frontal faces with OpenCV's Haar cascade.

    Args:
      min_face: smallest face side searched for, in pixels of the picture.
      scale_factor: image pyramid step (> 1); smaller finds more faces, slower.
      min_neighbors: overlapping detections a face needs; higher means fewer
        false faces and more missed ones.
      cascade: another cascade XML file (default: the frontal-face one in the OpenCV wheel).
      align, margin, detect_side: as every :class:`~fer_keras.faces.detectors.Detector`
        (``align`` does nothing here: the cascade gives no landmarks).
    """

    name = "haar"
    has_landmarks = False
    framing = HAAR_FRAMING

    def __init__(self, *, min_face=24, scale_factor=1.1, min_neighbors=5, cascade=None, align=True, margin=None,
                 detect_side=0):
        super().__init__(align=align, margin=margin, detect_side=detect_side)
        if min_face < 1:
            raise ConfigError(f"min_face must be at least 1 pixel. Received: min_face={min_face}", parameter="min_face")
        if scale_factor <= 1.0:
            raise ConfigError(f"scale_factor must be above 1 (e.g. 1.1). Received: scale_factor={scale_factor}",
                              parameter="scale_factor")
        if min_neighbors < 0:
            raise ConfigError(f"min_neighbors must be 0 or more. Received: min_neighbors={min_neighbors}",
                              parameter="min_neighbors")
        self.min_face = int(min_face)
        self.scale_factor = float(scale_factor)
        self.min_neighbors = int(min_neighbors)
        self.cascade = cascade
        self._classifier = None

    @property
    def classifier(self):
        if self._classifier is None:
            import cv2

            path = Path(self.cascade) if self.cascade else cascade_path()
            classifier = cv2.CascadeClassifier(str(path))
            if classifier.empty():
                raise FerError(f"{path}: not a readable OpenCV cascade file")
            self._classifier = classifier
        return self._classifier

    def _find(self, grey, factor):
        import cv2

        grey = cv2.equalizeHist(grey)  # evens out lighting, as OpenCV's face sample does
        min_side = max(1, round(self.min_face / factor))
        found = self.classifier.detectMultiScale(grey, scaleFactor=self.scale_factor,
                                                 minNeighbors=self.min_neighbors, minSize=(min_side, min_side))
        return [Detection(int(x), int(y), int(w), int(h)) for x, y, w, h in np.asarray(found).reshape(-1, 4)]

    def get_config(self):
        return {**super().get_config(), "min_face": self.min_face, "scale_factor": self.scale_factor,
                "min_neighbors": self.min_neighbors,
                "cascade": str(self.cascade) if self.cascade else CASCADE_FILE}
