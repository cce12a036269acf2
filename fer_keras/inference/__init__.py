"""The inference stage: the emotions of the faces in pictures, folders, videos and webcams.

:func:`detect_emotions` is the one-call form. Underneath, a
:class:`FacePredictor` finds faces (a detector of :mod:`fer_keras.faces`:
``build_detector("mtcnn" | "haar")``), cuts each out as a 48x48 grey face
(the one crop of :mod:`fer_keras.faces.align`),
runs the batch through an ensemble and returns :class:`FaceResult` s; video
files and webcams share one frame loop (:mod:`~fer_keras.inference.stream`).
An :class:`OutputFolder` writes annotated pictures and videos
(:mod:`~fer_keras.inference.annotate`), emotion timelines, Grad-CAM pictures
(:mod:`~fer_keras.inference.gradcam`) and ``predictions.csv`` / ``.json``.

This stage runs models through the ensemble stage and finds faces through
the faces stage (shared with training-data preparation); it imports no data,
training or export code (an exported ``.tflite`` / ``.onnx`` file reaches it
as an ensemble member, duck-typed).
"""

from fer_keras.inference.detect import detect_emotions
from fer_keras.inference.faces import (Box, FaceDetector, available_detectors, build_detector, crop_faces,
                                      read_image)
from fer_keras.inference.gradcam import GradCAM, face_gradcam
from fer_keras.inference.outputs import OutputFolder
from fer_keras.inference.predict import FacePredictor
from fer_keras.inference.results import CSV_FIELDS, FaceResult, FrameResult, Problem, StreamResult
from fer_keras.inference.sources import demo_image, input_kind, list_folder, parse_webcam
from fer_keras.inference.stream import display_available, open_camera

__all__ = ["CSV_FIELDS", "Box", "FaceDetector", "FacePredictor", "FaceResult", "FrameResult", "GradCAM",
           "OutputFolder", "Problem", "StreamResult", "available_detectors", "build_detector", "crop_faces",
           "demo_image", "detect_emotions", "display_available", "face_gradcam", "input_kind", "list_folder",
           "open_camera", "parse_webcam", "read_image"]
