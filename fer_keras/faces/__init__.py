"""The faces stage: one reader, one detector interface, one crop, for training data and inference alike.

    from fer_keras.faces import build_detector, read_image

    image = read_image("group.jpg")               # BGR uint8, upright (EXIF), alpha on white
    detector = build_detector("mtcnn")            # or "haar"; available_detectors() lists them
    found = detector.detect(image)                # [Detection(x, y, w, h, score, landmarks), ...]
    faces = detector.crop(image, found)           # uint8 (N, 48, 48, 1), FER2013-framed, eyes level

:mod:`~fer_keras.faces.reader` reads every picture; :mod:`~fer_keras.faces.detectors`
holds the detectors by name; :mod:`~fer_keras.faces.align` is the one crop
(framing measured on FER2013); :mod:`~fer_keras.faces.tracking` keeps a
webcam fast. ``data`` (``data_resize``) and ``inference`` (``predict.py``)
both use it; it imports only the shared modules, and TensorFlow (MTCNN) only
when an MTCNN detector first runs.
"""

from fer_keras.faces.align import DEFAULT_FRAMING, Framing, crop_face, crop_faces, eye_angle, whole_image_face
from fer_keras.faces.detectors import (DEFAULT_DETECTOR, LANDMARKS, Detection, Detector, HaarDetector, MTCNNDetector,
                                       available_detectors, build_detector, register)
from fer_keras.faces.image import Box, as_box, as_uint8, expand_box, to_bgr, to_grey
from fer_keras.faces.reader import (IMAGE_SUFFIXES, MAX_IMAGE_PIXELS, MIN_IMAGE_SIDE, decode_image, read_grey,
                                    read_image)
from fer_keras.faces.tracking import Tracker

__all__ = ["DEFAULT_DETECTOR", "DEFAULT_FRAMING", "IMAGE_SUFFIXES", "LANDMARKS", "MAX_IMAGE_PIXELS", "MIN_IMAGE_SIDE", "Box", "Detection", "decode_image",
           "Detector", "Framing", "HaarDetector", "MTCNNDetector", "Tracker", "as_box", "as_uint8",
           "available_detectors", "build_detector", "crop_face", "crop_faces", "expand_box", "eye_angle",
           "read_grey", "read_image", "register", "to_bgr", "to_grey", "whole_image_face"]
