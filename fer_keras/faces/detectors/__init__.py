"""Face detectors by name: ``build_detector("haar" | "mtcnn", **options)``.

One module per detector, each a :class:`Detector` subclass decorated
``@register`` (:mod:`~fer_keras.faces.detectors._registry`); import it here.
"""

from fer_keras.faces.detectors._registry import (DEFAULT_DETECTOR, LANDMARKS, Detection, Detector, available_detectors,
                                                 build_detector, register)
from fer_keras.faces.detectors.haar import CASCADE_FILE, HaarDetector, cascade_path
from fer_keras.faces.detectors.mtcnn import MTCNNDetector

__all__ = ["CASCADE_FILE", "DEFAULT_DETECTOR", "LANDMARKS", "Detection", "Detector", "HaarDetector", "MTCNNDetector",
           "available_detectors", "build_detector", "cascade_path", "register"]
