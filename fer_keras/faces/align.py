"""The one crop: a found face → a 48x48 grey face framed as FER2013's are, eyes level.

Every path that makes a face of a picture (``predict.py``, ``detect_emotions``,
``data_resize``'s training data, the benchmarks) goes through
:func:`crop_face`, so a model sees at inference the framing it was trained on.

The framing is measured, not guessed (the framing part of
``benchmarks/bench_detect.py``): PublicTest faces are enlarged 4x onto a grey canvas, each
detector runs on them, and the medians of where its box and landmarks fall
inside the original 48x48 frame become that detector's :class:`Framing`.

With landmarks the crop is centred by the eyes and sized by the box, and with
``align`` the picture is first rotated about the eyes' midpoint so the eyes
are level; without landmarks (Haar) the box's measured place is used and
nothing is rotated. The size comes from the box, not from the landmarks,
because the eyes-to-mouth distance changes with the expression: sized by it,
smiling faces came out about 5% too tight and surprised ones too loose
(BENCHMARKS.md, "Finding faces"). Rotation, crop and resize are
one affine warp (after an area-averaging shrink of large faces, so small crops
do not alias); pixels outside the picture repeat its edge.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from fer_keras.constants import IMAGE_SIZE
from fer_keras.errors import InputError
from fer_keras.faces.image import Box, as_box, to_grey


@dataclasses.dataclass(frozen=True)
class Framing:
    """Where a detector's face sits in a FER2013 crop, as fractions of the crop's side.

    ``box_side``: the box's size, the geometric mean of its width and height;
    ``box_dx``, ``box_dy``: its centre minus the crop's centre (used without
    landmarks). With landmarks: ``eyes_x``, ``eyes_y``: the eyes' midpoint
    from the crop's top-left corner, in the face's own (turned) axes.
    """

    box_side: float
    box_dx: float = 0.0
    box_dy: float = 0.0
    eyes_x: float | None = None
    eyes_y: float | None = None


LEVEL_ABOVE = 6.0
"""Degrees of eye tilt up to which an aligned face is left unturned (see :func:`levelling`).

FER2013's own faces tilt by a median of about 5 degrees, 59% of them by 6 or
less (MTCNN's landmarks on 3,440 PublicTest faces). Chosen among 0-12 degrees
on ``bench_crop.py``-style single faces of seeds 7 and 11 (1,800 each):
upright faces lose 0.5-0.6 points less than levelled fully, turned ones the
same (BENCHMARKS.md, "Finding faces")."""

DEFAULT_FRAMING = Framing(box_side=1.0)
"""The box itself, stretched to a square: for boxes of no known detector."""


def eye_angle(landmarks):
    """Degrees the line from the picture-left eye to the right one turns clockwise (0: level)."""
    (lx, ly), (rx, ry) = landmarks[0], landmarks[1]
    return math.degrees(math.atan2(ry - ly, rx - lx))


def levelling(landmarks, level_above=LEVEL_ABOVE):
    """Degrees to turn a face by: its eye angle when that tilts more than ``level_above`` degrees, else 0.

    Why a threshold: FER2013's own faces were never levelled (median eye tilt
    about 5 degrees), so the members learnt faces with that much tilt; turning
    such a face level moves it away from what they saw. A face tilted further
    is turned fully level (keeping part of its tilt costs turned faces:
    BENCHMARKS.md, "Finding faces").
    """
    angle = eye_angle(landmarks)
    return angle if abs(angle) > level_above else 0.0


def face_geometry(detection, framing, *, align=True, margin=None, level_above=LEVEL_ABOVE):
    """``(centre_x, centre_y, side, angle)`` of the square to cut, in picture pixels and degrees."""
    box = as_box(detection)
    landmarks = getattr(detection, "landmarks", None)
    angle = levelling(landmarks, level_above) if align and landmarks is not None else 0.0
    framing = framing or DEFAULT_FRAMING
    if margin is not None:  # the box grown by `margin` on every side, as fer_keras 0.1 cropped
        cx, cy = box.centre
        return cx, cy, max(box.w, box.h) * (1 + 2 * margin), angle
    side = max(math.sqrt(box.w * box.h) / framing.box_side, 1.0)
    if landmarks is not None and framing.eyes_x is not None:
        (lx, ly), (rx, ry) = landmarks[0], landmarks[1]
        ex, ey = (lx + rx) / 2, (ly + ry) / 2
        # the crop's centre sits at a fixed offset from the eyes, in the face's own (rotated) axes
        ox, oy = (0.5 - framing.eyes_x) * side, (0.5 - framing.eyes_y) * side
        theta = math.radians(eye_angle(landmarks))  # the face's own axes, however far it is turned
        cx = ex + ox * math.cos(theta) - oy * math.sin(theta)
        cy = ey + ox * math.sin(theta) + oy * math.cos(theta)
        return cx, cy, side, angle
    cx, cy = box.centre
    return cx - framing.box_dx * side, cy - framing.box_dy * side, side, angle


def crop_face(image, detection, *, framing=None, align=True, margin=None, level_above=LEVEL_ABOVE, size=IMAGE_SIZE):
    """One FER2013-style face: uint8 ``(size, size)`` grey, framed by ``framing``, eyes level with ``align``.

    ``detection``: a :class:`~fer_keras.faces.detectors.Detection` (landmarks
    used when it has them) or a plain :class:`Box`. ``margin``: None frames by
    the measurement; a number grows the box by that fraction on every side.
    ``level_above``: with ``align``, only faces whose eyes tilt more than this
    many degrees are turned (fully) level; see :func:`levelling`.
    """
    import cv2

    grey = to_grey(image)
    box = as_box(detection)
    height, width = grey.shape
    if box.w < 1 or box.h < 1 or box.x >= width or box.y >= height or box.x + box.w <= 0 or box.y + box.h <= 0:
        raise InputError(f"face box {box.as_tuple()} lies outside the {width}x{height} image")
    cx, cy, side, angle = face_geometry(detection, framing, align=align, margin=margin, level_above=level_above)
    shrink = min(1.0, 2.0 * size / side)  # warp at most 2:1; area-average first for big faces
    if shrink < 1.0:
        reach = side * 0.75 + 2  # half the diagonal of the rotated square, and a little
        x0, y0 = max(int(cx - reach), 0), max(int(cy - reach), 0)
        x1, y1 = min(int(math.ceil(cx + reach)), width), min(int(math.ceil(cy + reach)), height)
        region = grey[y0:y1, x0:x1]
        new_w, new_h = max(1, round(region.shape[1] * shrink)), max(1, round(region.shape[0] * shrink))
        grey = cv2.resize(region, (new_w, new_h), interpolation=cv2.INTER_AREA)
        sx, sy = new_w / region.shape[1], new_h / region.shape[0]
        cx, cy, side = (cx - x0) * sx, (cy - y0) * sy, side * (sx + sy) / 2
    # pixel centres: the continuous point (cx, cy) is pixel (cx - 0.5, cy - 0.5)
    matrix = cv2.getRotationMatrix2D((cx - 0.5, cy - 0.5), angle, size / side)
    matrix[0, 2] += size / 2 - cx
    matrix[1, 2] += size / 2 - cy
    return cv2.warpAffine(grey, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def crop_faces(image, detections, *, framing=None, align=True, margin=None, level_above=LEVEL_ABOVE, size=IMAGE_SIZE):
    """uint8 ``(N, size, size, 1)`` faces for ``detections`` (``(0, size, size, 1)`` when there are none)."""
    grey = to_grey(image)
    faces = [crop_face(grey, d, framing=framing, align=align, margin=margin, level_above=level_above, size=size)
             for d in detections]
    if not faces:
        return np.zeros((0, size, size, 1), dtype=np.uint8)
    return np.stack(faces)[..., None]


def whole_image_face(image, size=IMAGE_SIZE):
    """``(box, face)`` treating the whole image as one already-cropped face (stretched to a square)."""
    import cv2

    grey = to_grey(image)
    box = Box(0, 0, grey.shape[1], grey.shape[0])
    return box, cv2.resize(grey, (size, size), interpolation=cv2.INTER_AREA)[None, ..., None]
