"""Face boxes and the pixel conversions every detector and crop share.

:class:`Box` is a face rectangle in image pixels; :func:`to_grey`,
:func:`to_bgr` and :func:`as_uint8` turn any array OpenCV or Pillow gives
(grey, BGR, BGRA; uint8, uint16 or float) into the one form the next step takes.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from fer_keras.constants import PIXEL_MAX
from fer_keras.errors import InputError


@dataclasses.dataclass(frozen=True)
class Box:
    """A face rectangle in image pixels: top-left corner, width, height."""

    x: int
    y: int
    w: int
    h: int

    def as_tuple(self):
        return (self.x, self.y, self.w, self.h)

    @property
    def area(self):
        return self.w * self.h

    @property
    def centre(self):
        return (self.x + self.w / 2, self.y + self.h / 2)

    def scaled(self, factor):
        """The same box in an image resized by ``factor``."""
        return Box(*(int(round(v * factor)) for v in self.as_tuple()))

    def iou(self, other):
        """Intersection over union with another box (0: apart, 1: the same box)."""
        w = min(self.x + self.w, other.x + other.w) - max(self.x, other.x)
        h = min(self.y + self.h, other.y + other.h) - max(self.y, other.y)
        inter = max(w, 0) * max(h, 0)
        return inter / (self.area + other.area - inter) if inter else 0.0


def as_box(item):
    """A plain :class:`Box` of a box, a detection or an ``(x, y, w, h)`` sequence."""
    if type(item) is Box:
        return item
    if isinstance(item, Box):
        return Box(item.x, item.y, item.w, item.h)
    x, y, w, h = (int(round(v)) for v in item)
    return Box(x, y, w, h)


def to_grey(image):
    """uint8 (H, W) grey copy of a grey, BGR or BGRA image (any of the shapes OpenCV uses)."""
    import cv2

    image = as_uint8(image)
    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[2] == 1:
        return image[..., 0]
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(_on_white(image), cv2.COLOR_BGR2GRAY)
    raise InputError(f"not an image array: shape {image.shape} (expected (H, W), (H, W, 1), (H, W, 3) or (H, W, 4))")


def to_bgr(image):
    """uint8 (H, W, 3) BGR copy of a grey, BGR or BGRA image (for drawing on)."""
    import cv2

    image = as_uint8(image)
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        return cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 4:
        return _on_white(image)
    if image.ndim == 3 and image.shape[2] == 3:
        return image.copy()
    raise InputError(f"not an image array: shape {image.shape}")


def _on_white(bgra):
    """uint8 BGR of a BGRA picture laid on white, as the reader lays a transparent file: dropping
    the alpha instead showed a transparent background as whatever colour its pixels hold (often black)."""
    alpha = bgra[..., 3:].astype(np.float32) / PIXEL_MAX
    return np.rint(bgra[..., :3] * alpha + PIXEL_MAX * (1 - alpha)).astype(np.uint8)


def as_uint8(image):
    """uint8 view of an image: floats in 0..1 are scaled by 255, 16-bit images divided by 257."""
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image
    if image.size == 0:
        raise InputError("empty image")
    if image.dtype == np.uint16:
        return (image // 257).astype(np.uint8)
    was_float = np.issubdtype(image.dtype, np.floating)
    image = image.astype(np.float32)
    if was_float and np.nanmax(image) <= 1.0:
        image = image * PIXEL_MAX
    image = np.nan_to_num(image)
    return np.clip(np.rint(image), 0, PIXEL_MAX).astype(np.uint8)


def expand_box(box, margin, image_shape):
    """``box`` grown by ``margin`` x its width/height on every side, clipped to the image."""
    height, width = image_shape[:2]
    dx, dy = int(round(box.w * margin)), int(round(box.h * margin))
    x0, y0 = max(box.x - dx, 0), max(box.y - dy, 0)
    x1, y1 = min(box.x + box.w + dx, width), min(box.y + box.h + dy, height)
    return Box(x0, y0, max(x1 - x0, 1), max(y1 - y0, 1))
