"""Live video: an accurate detector every k-th frame, cheap box tracking in between.

A webcam must keep up with its frames (30 per second: 33 ms each), and an
accurate detector such as MTCNN takes several times that. :class:`Tracker`
runs its detector on every ``every``-th frame it is given and, in between,
follows each face by matching a small template of it (normalised
cross-correlation, ``cv2.matchTemplate``) in a window around where it was; a
face whose match drops below ``min_match`` is dropped until the next detection
frame (re-detecting at once made the cost that of detecting every frame when
one of many faces kept slipping). Landmarks move with their box. Measured in
BENCHMARKS.md (``benchmarks/bench_detect.py``).
"""

from __future__ import annotations

from fer_keras.constants import IMAGE_SIZE
from fer_keras.errors import ConfigError
from fer_keras.faces.detectors import Detection, build_detector
from fer_keras.faces.image import to_grey

TEMPLATE_SIDE = 32
"""Faces are matched with their longer side at this size (pixels): well under a millisecond a face."""


class Tracker:
    """A detector for live video: ``detector`` every ``every``-th frame, template tracking between.

    Has the detector interface (``detect``, ``crop``, ``get_config``, ``align``,
    ``margin``): :class:`~fer_keras.inference.FacePredictor` takes it as it is.
    Frames must come in order; :meth:`reset` forgets the faces (a new video).
    """

    def __init__(self, detector="haar", *, every=5, min_match=0.5, **options):
        if every < 1:
            raise ConfigError("every must be at least 1 (1: detect on every frame)")
        self.detector = build_detector(detector, **options)
        self.every = int(every)
        self.min_match = float(min_match)
        self.reset()

    name = property(lambda self: f"{self.detector.name}+tracking")
    has_landmarks = property(lambda self: self.detector.has_landmarks)
    align = property(lambda self: self.detector.align)
    margin = property(lambda self: self.detector.margin)
    framing = property(lambda self: self.detector.framing)

    def reset(self):
        self._tracks = []  # (Detection, template)
        self._since = None  # frames since the last detection; None: detect next

    def detect(self, image):
        grey = to_grey(image)
        if self._since is None or self._since + 1 >= self.every:
            return self._detect(image, grey)
        self._since += 1
        # a lost face is dropped until the next detection frame: the cost per frame stays bounded
        self._tracks = [step for step in (self._follow(grey, face, template) for face, template in self._tracks)
                        if step is not None]
        return [face for face, _ in self._tracks]

    def _detect(self, image, grey):
        found = self.detector.detect(image)
        self._tracks = [(face, self._template(grey, face)) for face in found]
        self._since = 0
        return found

    @staticmethod
    def _template(grey, face):
        """``(patch, scale, dx, dy)``: the part of ``face`` inside the picture at ``scale``, offset ``dx, dy``
        from the box's corner; None when nothing of it is inside."""
        import cv2

        x0, y0 = max(face.x, 0), max(face.y, 0)
        x1, y1 = min(face.x + face.w, grey.shape[1]), min(face.y + face.h, grey.shape[0])
        if x1 - x0 < 4 or y1 - y0 < 4:
            return None
        scale = TEMPLATE_SIDE / max(face.w, face.h)  # one scale for both axes: boxes need not be square
        size = (max(4, round((x1 - x0) * scale)), max(4, round((y1 - y0) * scale)))
        return cv2.resize(grey[y0:y1, x0:x1], size, interpolation=cv2.INTER_AREA), scale, x0 - face.x, y0 - face.y

    def _follow(self, grey, face, template):
        """``(moved face, template)``, or None when the face is lost."""
        import cv2

        if template is None:
            return None
        patch, scale, dx, dy = template
        reach_x, reach_y = face.w // 2, face.h // 2  # a face moves less than half its size per frame
        x0, y0 = max(face.x + dx - reach_x, 0), max(face.y + dy - reach_y, 0)
        x1 = min(face.x + face.w + reach_x, grey.shape[1])
        y1 = min(face.y + face.h + reach_y, grey.shape[0])
        window = grey[y0:y1, x0:x1]
        if window.size == 0:
            return None
        small = cv2.resize(window, (max(1, round(window.shape[1] * scale)), max(1, round(window.shape[0] * scale))),
                           interpolation=cv2.INTER_AREA)
        if small.shape[0] < patch.shape[0] or small.shape[1] < patch.shape[1]:
            return None
        scores = cv2.matchTemplate(small, patch, cv2.TM_CCOEFF_NORMED)
        _, best, _, (bx, by) = cv2.minMaxLoc(scores)
        if best < self.min_match:
            return None
        moved = face.shifted(round(x0 + bx / scale - dx) - face.x, round(y0 + by / scale - dy) - face.y)
        return moved, template  # the detection frame's template: matching errors do not add up

    def crop(self, image, detections, *, size=IMAGE_SIZE):
        return self.detector.crop(image, detections, size=size)

    def get_config(self):
        return {**self.detector.get_config(), "tracking": f"detect every {self.every} frame(s), "
                f"template tracking between (min match {self.min_match})"}


__all__ = ["Detection", "Tracker"]
