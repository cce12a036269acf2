"""What a prediction found: a face, a picture or frame, a stream, an input that could not be used.

Plain dataclasses; :class:`FrameResult` gives the rows of ``predictions.csv``
(:data:`CSV_FIELDS`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from fer_keras.constants import CLASS_NAMES
from fer_keras.inference.faces import Box


@dataclasses.dataclass
class FaceResult:
    """One face: where it is and what the models think of it."""

    box: Box
    """Face rectangle in the picture's pixels (as detected, before the crop margin)."""
    probs: np.ndarray
    """(7,) ensemble probabilities, FER2013 class order."""
    label: str
    """The most probable class."""
    confidence: float
    """Its probability."""
    face: np.ndarray | None = dataclasses.field(default=None, repr=False)
    """The uint8 (48, 48) face the models saw."""

    def top(self, k=2, class_names=CLASS_NAMES):
        """The ``k`` most probable ``(class name, probability)`` pairs."""
        order = np.argsort(self.probs)[::-1][:k]
        return [(class_names[i], float(self.probs[i])) for i in order]


@dataclasses.dataclass
class FrameResult:
    """The faces of one picture or one analysed video/webcam frame."""

    source: str
    faces: list
    frame: int = 0
    time_s: float | None = None

    def rows(self, class_names=CLASS_NAMES):
        """One dict per face, keys :data:`CSV_FIELDS`."""
        out = []
        for i, face in enumerate(self.faces):
            row = {"source": self.source, "frame": self.frame,
                   "time_s": None if self.time_s is None else round(float(self.time_s), 3), "face": i + 1,
                   "x": face.box.x, "y": face.box.y, "w": face.box.w, "h": face.box.h}
            row.update({f"p_{name}": round(float(p), 6) for name, p in zip(class_names, face.probs)})
            row.update(label=face.label, confidence=round(float(face.confidence), 6))
            out.append(row)
        return out

    def largest_face(self):
        return max(self.faces, key=lambda f: f.box.area) if self.faces else None


CSV_FIELDS = ("source", "frame", "time_s", "face", "x", "y", "w", "h", *(f"p_{c}" for c in CLASS_NAMES),
              "label", "confidence")
"""Columns of ``predictions.csv`` (and keys of each row in ``predictions.json``)."""


@dataclasses.dataclass(frozen=True)
class Problem:
    """An input that could not be used, and why (one line)."""

    source: str
    reason: str

    def __str__(self):
        return self.reason if self.reason.startswith(self.source) else f"{self.source}: {self.reason}"


@dataclasses.dataclass
class StreamResult:
    """What :meth:`FacePredictor.predict_video` / :meth:`FacePredictor.run_webcam` saw."""

    source: str
    frames: list
    """A :class:`FrameResult` per analysed frame (with or without faces)."""
    frames_read: int
    fps: float
    stopped_by: str = "end"
    """``end``, ``max-frames``, ``duration``, ``user`` (Enter, q, Esc) or ``interrupt`` (Ctrl+C)."""
    files: list = dataclasses.field(default_factory=list)
