"""MTCNN (the ``mtcnn`` package): a three-stage CNN cascade that gives each face five landmarks.

Zhang et al., "Joint Face Detection and Alignment using Multi-task Cascaded
Convolutional Networks", IEEE SPL 2016. The package (PyPI ``mtcnn``, MIT) runs
in TensorFlow and carries its weights inside the wheel (lz4-compressed, hence
``lz4``): nothing is downloaded at run time. It finds more faces than the Haar
cascade, turned and tilted ones too, at ~4x its cost (BENCHMARKS.md).
TensorFlow is imported on first use only.
"""

from __future__ import annotations

import functools

from fer_keras.errors import ConfigError, MissingPackageError
from fer_keras.faces.align import Framing
from fer_keras.faces.detectors._registry import LANDMARKS, Detection, Detector, register

MTCNN_FRAMING = Framing(box_side=0.922, box_dx=-0.005, box_dy=0.01, eyes_x=0.497, eyes_y=0.385, eye_scale=0.381)
"""Where MTCNN's box and landmarks sit in a FER2013 face (fractions of the
48-pixel side): measured by ``benchmarks/bench_detect.py`` (its framing part) on 150
PublicTest faces enlarged 4x onto a grey canvas, medians over the 133 it
found. The crop is placed by the landmarks: the eyes' midpoint at
(0.497, 0.385) of the side, and the mean of the eye distance and the
eyes-to-mouth distance 0.381 of it (interquartile ranges 0.039, 0.049, 0.084)."""


PACKAGE_MIN_FACE_LIMIT = 20
"""The largest ``min_face_size`` the package's image pyramid is right for (see ``_find``)."""


@register
class MTCNNDetector(Detector):
    """Faces and five landmarks with MTCNN.

    Args:
      min_face: smallest face reported (the shorter side of its box), in pixels of the picture given.
      min_score: faces the last stage scores below this are dropped (0..1);
        higher means fewer false faces.
      proposal_scores: the thresholds of the first two stages (proposals,
        refinement); lower finds more hard faces, slower.
      device: the TensorFlow device it runs on (``"CPU:0"``, ``"GPU:0"``).
      align, margin, detect_side: as every :class:`~fer_keras.faces.detectors.Detector`.

    The defaults were chosen on the group photos of another seed (7) than the
    benchmark's (0), faces 56-150 px (``benchmarks/bench_detect_thresholds.py``):
    proposal thresholds 0.3, 0.4 (the package's 0.6, 0.7) and a last-stage
    0.5 found 93.8% of upright and 87.0% of turned faces at 0.05 false ones
    per photo, where 0.5, 0.6 and 0.8 found 88.1% and 78.2%. Their crops
    lose a little more accuracy, but they give more correct labels per face
    present (62.9 vs 60.3 in 100 upright, 61.8 vs 55.9 turned). Lower
    thresholds found more with more false faces than the picture default
    may give (0.1 per photo). The low thresholds also let through tiny
    "faces" (19 px in the bundled photo's jacket): boxes under ``min_face``
    (32 px; a face that small carries little expression for a 48-px
    classifier) are dropped.
    """

    name = "mtcnn"
    has_landmarks = True
    framing = MTCNN_FRAMING

    def __init__(self, *, min_face=32, min_score=0.5, proposal_scores=(0.3, 0.4), device="CPU:0", align=True,
                 margin=None, detect_side=0):
        super().__init__(align=align, margin=margin, detect_side=detect_side)
        self.proposal_scores = tuple(float(v) for v in proposal_scores)
        if min_face < 12:
            raise ConfigError(f"min_face must be at least 12 pixels (MTCNN's smallest window). Received: min_face={min_face}",
                              parameter="min_face")
        if not 0 <= min_score <= 1:
            raise ConfigError(f"min_score must be between 0 and 1. Received: min_score={min_score}", parameter="min_score")
        self.min_face = int(min_face)
        self.min_score = float(min_score)
        self.device = device

    @property
    def model(self):
        """The package's ``MTCNN``, its networks traced: one per device, shared by every detector."""
        return _networks(self.device)

    def _find(self, bgr, factor):
        import numpy as np

        rgb = np.ascontiguousarray(bgr[..., ::-1])
        if min(rgb.shape[:2]) < 12:
            return []
        # The pyramid searches from 20 px at most: the package's pyramid has a fixed number of levels,
        # and with a larger min_face_size its smallest ones fall under PNet's 12-pixel window and it
        # finds nothing at all (measured). Smaller boxes are dropped afterwards instead, which also
        # drops the tiny false "faces" that low proposal thresholds let through.
        min_face = self.min_face / factor
        found = self.model.detect_faces(rgb, min_face_size=round(min(max(min_face, 12), PACKAGE_MIN_FACE_LIMIT)),
                                        threshold_pnet=self.proposal_scores[0],
                                        threshold_rnet=self.proposal_scores[1],
                                        threshold_onet=min(self.min_score, 0.8))
        faces = []
        for face in found:
            x, y, w, h = (int(round(float(v))) for v in face["box"])
            if float(face["confidence"]) < self.min_score or min(w, h) < min_face:
                continue
            marks = face.get("keypoints") or {}
            landmarks = tuple((float(marks[k][0]), float(marks[k][1])) for k in LANDMARKS) if marks else None
            if landmarks and landmarks[0][0] > landmarks[1][0]:  # picture-left eye first
                landmarks = (landmarks[1], landmarks[0], landmarks[2], landmarks[4], landmarks[3])
            faces.append(Detection(x, y, max(w, 1), max(h, 1), float(face["confidence"]), landmarks))
        return faces

    def get_config(self):
        return {**super().get_config(), "min_face": self.min_face, "min_score": self.min_score,
                "proposal_scores": list(self.proposal_scores)}


@functools.lru_cache(maxsize=None)
def _networks(device):
    """``mtcnn.MTCNN(device)`` with each stage's network traced once into a TensorFlow graph.

    The package calls its Keras networks eagerly: the proposal network runs on
    every level of the image pyramid (ten levels for a 640x480 picture) and
    eager mode dispatches each of its ops from Python, which cost ~4x the
    graph's time there (BENCHMARKS.md, "Finding faces"). One shape-free
    signature per network keeps it to one trace each; the outputs are the
    same numbers (tests/faces/test_detectors.py). Shared, because the
    package's detection holds no state between calls and a traced function
    may be called from several threads at once (serve.py's request threads
    each build a detector).
    """
    try:
        import lz4  # noqa: F401  (the weights are lz4 files: a clear message when it is missing)
        from mtcnn import MTCNN
    except ImportError as exc:
        raise MissingPackageError(f"the mtcnn detector needs the mtcnn and lz4 packages ({exc}); "
                                  "pip install -r requirements.txt") from None
    import tensorflow as tf

    mtcnn = MTCNN(device=device)
    for stage, side in zip(mtcnn.stages, (None, 24, 48)):  # PNet: any size; RNet, ONet: fixed patches
        stage._model = tf.function(stage._model, input_signature=[tf.TensorSpec([None, side, side, 3], tf.float32)])
    return mtcnn
