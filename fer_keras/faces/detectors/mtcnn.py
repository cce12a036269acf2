"""MTCNN (the ``mtcnn`` package): a three-stage CNN cascade that gives each face five landmarks.

Zhang et al., "Joint Face Detection and Alignment using Multi-task Cascaded
Convolutional Networks", IEEE SPL 2016. The package (PyPI ``mtcnn``, MIT) runs
in TensorFlow and carries its weights inside the wheel (lz4-compressed, hence
``lz4``): nothing is downloaded at run time. It finds more faces than the Haar
cascade, turned and tilted ones too (BENCHMARKS.md, "Finding faces").
TensorFlow is imported on first use only.

MTCNN's first stage (PNet, a 12-pixel window) proposes the boxes its last
stage (ONet) judges, and it misses faces ONet would accept. So a second,
independent proposer runs beside it: dlib's HOG face detector (Dalal & Triggs
features, a linear SVM; ``dlib-bin``, its model inside the library), whose
boxes MTCNN did not find are scored, refined and given landmarks by ONet
itself. A proposal becomes a face only if ONet passes it at ``min_score``, so
the faces added carry MTCNN's landmarks and framing like the others.
"""

from __future__ import annotations

import concurrent.futures
import functools
import queue

from fer_keras.errors import ConfigError, MissingPackageError
from fer_keras.faces.align import LEVEL_ABOVE, Framing
from fer_keras.faces.detectors._registry import LANDMARKS, Detection, Detector, register

MTCNN_FRAMING = Framing(box_side=0.906, box_dx=-0.008, box_dy=0.005, eyes_x=0.503, eyes_y=0.388)
"""Where MTCNN's box and landmarks sit in a FER2013 face (fractions of the
48-pixel side): measured by the framing part of ``benchmarks/bench_detect.py`` on
800 Training faces enlarged 4x onto a grey canvas, medians over the 769 it
found. The crop is centred by the landmarks, the eyes' midpoint at
(0.503, 0.388) of the side, and sized by the box, whose geometric-mean side
is 0.906 of it (interquartile ranges 0.044, 0.057, 0.178)."""


PACKAGE_MIN_FACE_LIMIT = 20
"""The largest ``min_face_size`` the package's image pyramid is right for (see ``_find``)."""

HOG_UPSAMPLE = 1
"""dlib's HOG window is 80 px; searched on a copy enlarged this many times 2x, it finds faces from 40 px."""

HOG_SCORE = -0.5
"""HOG detections down to this SVM score are proposed (dlib's own cut is 0): ONet, not HOG, decides."""

HOG_GROW = 1.1
"""A HOG box is cut tight (brows to chin); grown by this and squared it is the kind of box ONet refines."""

NEW_FACE_IOU = 0.3
"""A HOG proposal, or ONet's refinement of it, overlapping an MTCNN face by this much is that face."""


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
      hog_proposals: also judge, with MTCNN's last stage, the boxes dlib's HOG
        detector finds (module docstring). Chosen on the group photos of seed 7:
        94.9% of upright faces found instead of 93.0%, 92.9% of turned ones
        instead of 87.6%, 0.09 and 0.07 false faces per photo instead of 0.07
        and 0.06. On the benchmark's own photos (seed 0): 96.0% and 93.4%
        instead of 93.9% and 88.9%, 0.07 and 0.09 false faces per photo. It
        costs ~90 ms more CPU per 640x480 picture, run beside MTCNN in a
        thread (BENCHMARKS.md, "Finding faces"). False: MTCNN alone.
      align, margin, detect_side, level_above: as every :class:`~fer_keras.faces.detectors.Detector`.

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

    def __init__(self, *, min_face=32, min_score=0.5, proposal_scores=(0.3, 0.4), device="CPU:0",
                 hog_proposals=True, align=True, margin=None, detect_side=0, level_above=LEVEL_ABOVE):
        super().__init__(align=align, margin=margin, detect_side=detect_side, level_above=level_above)
        self.proposal_scores = tuple(float(v) for v in proposal_scores)
        if min_face < 12:
            raise ConfigError(f"min_face must be at least 12 pixels (MTCNN's smallest window). Received: min_face={min_face}",
                              parameter="min_face")
        if not 0 <= min_score <= 1:
            raise ConfigError(f"min_score must be between 0 and 1. Received: min_score={min_score}", parameter="min_score")
        self.min_face = int(min_face)
        self.min_score = float(min_score)
        self.device = device
        self.hog_proposals = bool(hog_proposals)
        self._hog = _hog_pool() if self.hog_proposals else None  # a missing dlib fails here, not mid-run

    @property
    def model(self):
        """The package's ``MTCNN``, its networks traced: one per device, shared by every detector."""
        return _networks(self.device)

    def _find(self, bgr, factor):
        import numpy as np

        rgb = np.ascontiguousarray(bgr[..., ::-1])
        if min(rgb.shape[:2]) < 12:
            return []
        min_face = self.min_face / factor
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            # dlib releases the GIL: HOG searches on the second core while MTCNN runs on this one
            hog = pool.submit(self._hog.boxes, bgr) if self._hog is not None else None
            faces = self._mtcnn_faces(rgb, min_face)
            proposals = hog.result() if hog is not None else []
        return faces + self._judged_by_onet(rgb, proposals, faces, min_face)

    def _mtcnn_faces(self, rgb, min_face):
        # The pyramid searches from 20 px at most: the package's pyramid has a fixed number of levels,
        # and with a larger min_face_size its smallest ones fall under PNet's 12-pixel window and it
        # finds nothing at all (measured). Smaller boxes are dropped afterwards instead, which also
        # drops the tiny false "faces" that low proposal thresholds let through.
        found = self.model.detect_faces(rgb, min_face_size=round(min(max(min_face, 12), PACKAGE_MIN_FACE_LIMIT)),
                                        threshold_pnet=self.proposal_scores[0],
                                        threshold_rnet=self.proposal_scores[1],
                                        threshold_onet=min(self.min_score, 0.8))
        faces = []
        for face in found:
            marks = face.get("keypoints") or {}
            landmarks = tuple((float(marks[k][0]), float(marks[k][1])) for k in LANDMARKS) if marks else None
            faces.append(_detection(face["box"], face["confidence"], landmarks))
        return [f for f in faces if f.score >= self.min_score and min(f.w, f.h) >= min_face]

    def _judged_by_onet(self, rgb, proposals, faces, min_face):
        """The HOG ``proposals`` no MTCNN face covers, kept where ONet scores them ``min_score`` or more,
        with ONet's refined box and landmarks."""
        import numpy as np
        import tensorflow as tf

        proposals = [p for p in proposals if all(p.iou(f) < NEW_FACE_IOU for f in faces)]
        if not proposals:
            return []
        rows = []
        for p in proposals:
            (cx, cy), side = p.centre, max(p.w, p.h) * HOG_GROW
            rows.append([0, cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2, 1.0])
        normalised = (rgb[None].astype(np.float32) - 127.5) / 128  # as the package feeds its networks
        with tf.device(self.device):
            judged = self.model.stages[2](images_normalized=normalised, bboxes_batch=np.asarray(rows, np.float32),
                                          threshold_onet=self.min_score, nms_onet=0.7)
        height, width = rgb.shape[:2]
        added = []
        for row in np.asarray(judged).reshape(-1, 16):
            x1, y1 = max(float(row[1]), 0.0), max(float(row[2]), 0.0)
            x2, y2 = min(float(row[3]), width - 1.0), min(float(row[4]), height - 1.0)
            landmarks = tuple(zip(map(float, row[6:11]), map(float, row[11:16])))  # ONet gives x1..x5, y1..y5
            face = _detection((x1, y1, x2 - x1, y2 - y1), row[5], landmarks)
            if min(face.w, face.h) >= min_face and all(face.iou(f) < NEW_FACE_IOU for f in faces + added):
                added.append(face)
        return added

    def get_config(self):
        return {**super().get_config(), "min_face": self.min_face, "min_score": self.min_score,
                "proposal_scores": list(self.proposal_scores), "hog_proposals": self.hog_proposals}


def _detection(box, score, landmarks):
    """A :class:`Detection` of an ``(x, y, w, h)`` box in float pixels, landmarks picture-left eye first."""
    x, y, w, h = (int(round(float(v))) for v in box)
    if landmarks and landmarks[0][0] > landmarks[1][0]:
        landmarks = (landmarks[1], landmarks[0], landmarks[2], landmarks[4], landmarks[3])
    return Detection(x, y, max(w, 1), max(h, 1), float(score), landmarks)


class _HogPool:
    """dlib's frontal-face HOG detectors, lent one per concurrent search.

    Building one costs 0.3-0.5 s (its model is deserialised) and dlib does not
    promise that one may search in two threads at once, so detectors are kept after use
    and a new one is built only when every kept one is busy (serve.py's
    request threads search at once).
    """

    def __init__(self):
        try:
            import dlib
        except ImportError as exc:
            raise MissingPackageError(f"the mtcnn detector's HOG proposals need dlib ({exc}); pip install -r "
                                      "requirements.txt (dlib-bin), or build the detector with hog_proposals=False"
                                      ) from None
        self._build = dlib.get_frontal_face_detector
        self._idle = queue.SimpleQueue()
        self._idle.put(self._build())

    def boxes(self, bgr):
        try:
            hog = self._idle.get_nowait()
        except queue.Empty:
            hog = self._build()
        try:
            return _hog_boxes(hog, bgr)
        finally:
            self._idle.put(hog)


@functools.lru_cache(maxsize=None)
def _hog_pool():
    """The process's one :class:`_HogPool` (built on first use; a missing dlib fails here)."""
    return _HogPool()


def _hog_boxes(hog, bgr):
    """The boxes ``hog`` finds in ``bgr`` (:data:`HOG_UPSAMPLE`, scores from :data:`HOG_SCORE`)."""
    import cv2

    from fer_keras.faces.image import Box

    rects, _, _ = hog.run(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), HOG_UPSAMPLE, HOG_SCORE)
    return [Box(r.left(), r.top(), r.width(), r.height()) for r in rects]


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
