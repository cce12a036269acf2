"""One call from a picture to its faces' emotions: :func:`detect_emotions`.

The shortest way in, the way users of ``fer`` and ``deepface`` expect::

    import fer_keras
    for face in fer_keras.detect_emotions("photo.jpg"):
        print(face["box"], face["label"], face["probabilities"]["happy"])

It is :class:`~fer_keras.inference.predict.FacePredictor` with its defaults:
MTCNN finds the faces (``detector="haar"`` for OpenCV's cascade), each is
levelled and cropped as FER2013's faces are, and the ensemble of a models
folder classifies them. For folders, videos, webcams or output files, use the
predictor itself (or ``predict.py``).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from fer_keras.ensemble import Ensemble
from fer_keras.errors import InputError
from fer_keras.inference.faces import DEFAULT_DETECTOR, build_detector, read_image
from fer_keras.inference.predict import FacePredictor


def detect_emotions(image, *, models="models", tta=False, detector=None, align=True):
    """The faces in ``image`` and their emotions, left to right.

    ``image``: a path, or an image array (grey, BGR or BGRA, as OpenCV reads
    it). ``models``: a folder of members (every ``*.h5`` / ``*.keras``), one
    model file, or an :class:`~fer_keras.ensemble.Ensemble`; a folder or file
    is loaded once per process. ``tta``: a test-time augmentation mode
    (``True`` = mirror images). ``detector``: a detector's name
    (:func:`fer_keras.faces.available_detectors`; default
    :data:`~fer_keras.faces.DEFAULT_DETECTOR`) or a built detector; ``align``:
    level the eyes of each face before it is classified (detectors with landmarks).

    Returns one dict per face: ``box`` ``(x, y, w, h)`` in the picture's
    pixels, ``label`` (the most probable class), ``confidence`` (its
    probability) and ``probabilities`` (``{class name: probability}``).
    An image without faces gives ``[]``.
    """
    if isinstance(image, (str, Path)):
        image = read_image(image)
    elif not isinstance(image, np.ndarray):
        raise InputError(f"expected a picture's path or an image array, got {type(image).__name__}")
    ensemble = models if isinstance(models, Ensemble) else _ensemble(str(models))
    if detector is None or isinstance(detector, str):
        detector = build_detector(detector or DEFAULT_DETECTOR, align=align)
    predictor = FacePredictor(ensemble, detector, tta=tta, class_names=ensemble.class_names)
    return [{"box": face.box.as_tuple(), "label": face.label, "confidence": face.confidence,
             "probabilities": {name: float(p) for name, p in zip(predictor.class_names, face.probs)}}
            for face in predictor.predict_image(image)]


@functools.lru_cache(maxsize=4)
def _ensemble(models):
    """The ensemble of a models folder or file, loaded on first use: loading is the slow part."""
    return Ensemble.from_dir(models)
