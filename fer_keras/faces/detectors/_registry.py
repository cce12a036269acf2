"""What every face detector gives and takes, and the registry that builds one by name.

A detector finds :class:`Detection` s (a box, a score, five landmarks or
None) and cuts them out through the one crop of :mod:`fer_keras.faces.align`,
with the framing measured for its boxes. Adding a detector is one module in
``faces/detectors/``: a :class:`Detector` subclass with ``name``,
``has_landmarks``, ``framing`` and ``_find(image)``, decorated ``@register``.

    detector = build_detector("mtcnn")            # or "haar"
    found = detector.detect(image)                # [Detection, ...], left to right
    faces = detector.crop(image, found)           # uint8 (N, 48, 48, 1)
"""

from __future__ import annotations

import dataclasses

from fer_keras.constants import IMAGE_SIZE
from fer_keras.errors import ConfigError
from fer_keras.faces.align import LEVEL_ABOVE, crop_faces
from fer_keras.faces.image import Box, as_uint8, to_bgr, to_grey

LANDMARKS = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
"""The five landmarks a detection may carry, in this order; left and right as
seen in the picture (the person's right eye is the picture's left one)."""


@dataclasses.dataclass(frozen=True)
class Detection(Box):
    """A found face: its box (a :class:`Box`), the detector's ``score`` and its
    ``landmarks``: ``((x, y), ...)`` in :data:`LANDMARKS` order, or None (Haar has none)."""

    score: float = 1.0
    landmarks: tuple | None = None

    @property
    def box(self):
        return Box(self.x, self.y, self.w, self.h)

    def shifted(self, dx, dy):
        """The same face moved by ``(dx, dy)`` pixels (box and landmarks)."""
        marks = None if self.landmarks is None else tuple((x + dx, y + dy) for x, y in self.landmarks)
        return Detection(self.x + dx, self.y + dy, self.w, self.h, self.score, marks)


DEFAULT_DETECTOR = "mtcnn"
"""The detector of pictures and videos: it found the most faces with the fewest
false ones on the synthetic group photos of ``benchmarks/bench_detect.py``
(BENCHMARKS.md, "Finding faces")."""

_DETECTORS = {}


def register(cls):
    """Class decorator: make a :class:`Detector` subclass buildable by its ``name``."""
    if not cls.name or cls.name in _DETECTORS:
        raise ValueError(f"detector name {cls.name!r} is empty or taken")
    _DETECTORS[cls.name] = cls
    return cls


def available_detectors():
    """The names :func:`build_detector` takes, sorted."""
    return sorted(_DETECTORS)


def build_detector(name=None, **options):
    """A new detector by name (``"haar"``, ``"mtcnn"``; None: :data:`DEFAULT_DETECTOR`), with keyword
    ``options`` (each class's own)."""
    if isinstance(name, Detector):
        return name
    name = DEFAULT_DETECTOR if name is None else name
    if name not in _DETECTORS:
        raise ConfigError(f"unknown face detector {name!r}; available: {', '.join(available_detectors())}")
    return _DETECTORS[name](**options)


class Detector:
    """The interface of every face detector.

    Args (every subclass takes them):
      align: with landmarks, rotate each face so its eyes are level before
        the crop (a detector without landmarks cannot align, and says so in
        ``get_config()``).
      margin: None crops with the framing measured on FER2013 for this
        detector's boxes (:mod:`fer_keras.faces.align`); a number crops the
        box grown by that fraction on every side instead.
      detect_side: search a copy whose longer side is at most this many
        pixels (0: full size), then scale the boxes back.
      level_above: with ``align``, a face is turned level only when its eyes
        tilt more than this many degrees (default
        :data:`~fer_keras.faces.align.LEVEL_ABOVE`: FER2013's own faces tilt
        that much).
    """

    name = ""
    has_landmarks = False
    framing = None  # an align.Framing, measured for this detector's boxes

    def __init__(self, *, align=True, margin=None, detect_side=0, level_above=LEVEL_ABOVE):
        if not 0 <= level_above <= 90:
            raise ConfigError(f"level_above must be between 0 and 90 degrees. Received: level_above={level_above}",
                              parameter="level_above")
        self.level_above = float(level_above)
        if margin is not None and not 0 <= margin <= 1:
            raise ConfigError(f"margin must be between 0 and 1 (a fraction of the face box). Received: margin={margin}",
                              parameter="margin")
        if detect_side < 0:
            raise ConfigError("detect_side must be 0 (full size) or a number of pixels. "
                              f"Received: detect_side={detect_side}", parameter="detect_side")
        self.align = bool(align)
        self.margin = None if margin is None else float(margin)
        self.detect_side = int(detect_side)

    def _find(self, image, factor):
        """Detections in ``image`` (BGR or grey uint8, already shrunk by ``factor``), in its pixels."""
        raise NotImplementedError

    def detect(self, image):
        """The faces in ``image`` (grey, BGR or BGRA array) → list of :class:`Detection`, left to right."""
        import cv2

        image = as_uint8(image)
        image = to_bgr(image) if self.has_landmarks else to_grey(image)
        factor = 1.0
        if self.detect_side and max(image.shape[:2]) > self.detect_side:
            factor = max(image.shape[:2]) / self.detect_side
            image = cv2.resize(image, (round(image.shape[1] / factor), round(image.shape[0] / factor)),
                               interpolation=cv2.INTER_AREA)
        found = [_scaled(d, factor) for d in self._find(image, factor)]
        return sorted(found, key=lambda d: (d.x, d.y))

    def crop(self, image, detections, *, size=IMAGE_SIZE):
        """uint8 ``(N, size, size, 1)`` faces for ``detections`` (or plain boxes), the one crop."""
        return crop_faces(image, detections, framing=self.framing, align=self.align, margin=self.margin,
                          level_above=self.level_above, size=size)

    def get_config(self):
        return {"detector": self.name, "align": self.align and self.has_landmarks,
                "level_above": self.level_above if self.align and self.has_landmarks else None,
                "landmarks": self.has_landmarks, "margin": "measured framing" if self.margin is None else self.margin,
                "detect_side": self.detect_side}


def _scaled(d, factor):
    if factor == 1.0:
        return d
    marks = None if d.landmarks is None else tuple((x * factor, y * factor) for x, y in d.landmarks)
    return Detection(*(int(round(v * factor)) for v in (d.x, d.y, d.w, d.h)), d.score, marks)
