"""Finding faces and cutting them out, for the inference stage: the names of :mod:`fer_keras.faces`.

The reader, the detectors and the one crop live in :mod:`fer_keras.faces`,
shared with training-data preparation (``data_resize``), so pictures are read,
faces found and cropped the same way everywhere. This module keeps the names
inference code and fer_keras 0.1 used:

    detector = build_detector("mtcnn")          # FaceDetector is the Haar one
    found = detector.detect(image)              # [Detection(x, y, w, h, score, landmarks), ...]
    faces = detector.crop(image, found)         # uint8 (N, 48, 48, 1)
"""

from __future__ import annotations

from fer_keras.faces import (DEFAULT_DETECTOR, IMAGE_SUFFIXES, MAX_IMAGE_PIXELS, Box, Detection, Detector, HaarDetector, MTCNNDetector,
                             Tracker, as_box, as_uint8, available_detectors, build_detector, crop_face, crop_faces, decode_image,
                             expand_box, read_image, to_bgr, to_grey, whole_image_face)
from fer_keras.faces.detectors.haar import CASCADE_FILE, cascade_path

FaceDetector = HaarDetector
"""The Haar cascade detector under its fer_keras 0.1 name."""

__all__ = ["CASCADE_FILE", "DEFAULT_DETECTOR", "IMAGE_SUFFIXES", "MAX_IMAGE_PIXELS", "Box", "Detection", "Detector", "FaceDetector",
           "HaarDetector", "MTCNNDetector", "Tracker", "as_box", "as_uint8", "available_detectors", "build_detector",
           "cascade_path", "crop_face", "crop_faces", "decode_image", "expand_box", "read_image", "to_bgr", "to_grey",
           "whole_image_face"]
