"""Finding faces in pictures and cutting them out as FER2013-style faces.

Detection uses OpenCV's frontal-face Haar cascade, the XML file that ships
inside the ``opencv-python(-headless)`` 4.x wheel (``cv2.data.haarcascades``):
nothing is downloaded. Each detected box is grown by a margin on every side
(clipped to the image), turned grey and resized to 48x48 with
``cv2.INTER_AREA``, which is what every fer_keras model takes (uint8,
``(N, 48, 48, 1)``).

    detector = FaceDetector(min_face=30, margin=0.1)
    boxes = detector.detect(image)              # [Box(x, y, w, h), ...], left to right
    faces = crop_faces(image, boxes, margin=detector.margin)   # uint8 (N, 48, 48, 1)
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from fer_keras.constants import IMAGE_SIZE, PIXEL_MAX
from fer_keras.errors import ConfigError, FerError, InputError

CASCADE_FILE = "haarcascade_frontalface_default.xml"
"""The cascade used: OpenCV's default frontal-face model."""

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pbm", ".gif")
"""File name endings read as images."""


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

    def scaled(self, factor):
        """The same box in an image resized by ``factor``."""
        return Box(*(int(round(v * factor)) for v in self.as_tuple()))


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
        return cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY)
    raise InputError(f"not an image array: shape {image.shape} (expected (H, W), (H, W, 1), (H, W, 3) or (H, W, 4))")


def to_bgr(image):
    """uint8 (H, W, 3) BGR copy of a grey, BGR or BGRA image (for drawing on)."""
    import cv2

    image = as_uint8(image)
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        return cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.ndim == 3 and image.shape[2] == 3:
        return image.copy()
    raise InputError(f"not an image array: shape {image.shape}")


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


def crop_face(image, box, *, margin=0.0, size=IMAGE_SIZE):
    """One FER2013-style face: the (expanded, clipped) box, grey, ``size`` x ``size``, uint8 (size, size)."""
    import cv2

    grey = to_grey(image)
    region = expand_box(box, margin, grey.shape)
    crop = grey[region.y:region.y + region.h, region.x:region.x + region.w]
    if crop.size == 0:
        raise InputError(f"face box {box.as_tuple()} lies outside the {grey.shape[1]}x{grey.shape[0]} image")
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)


def crop_faces(image, boxes, *, margin=0.0, size=IMAGE_SIZE):
    """uint8 ``(N, size, size, 1)`` faces for ``boxes`` (``(0, size, size, 1)`` when there are none)."""
    grey = to_grey(image)
    faces = [crop_face(grey, box, margin=margin, size=size) for box in boxes]
    if not faces:
        return np.zeros((0, size, size, 1), dtype=np.uint8)
    return np.stack(faces)[..., None]


def whole_image_face(image, size=IMAGE_SIZE):
    """``(box, face)`` treating the whole image as one already-cropped face (``--no-detect``)."""
    grey = to_grey(image)
    box = Box(0, 0, grey.shape[1], grey.shape[0])
    return box, crop_face(grey, box, size=size)[None, ..., None]


def cascade_path():
    """Path of the frontal-face Haar cascade inside the installed OpenCV wheel."""
    import cv2

    folder = getattr(getattr(cv2, "data", None), "haarcascades", None)
    if not hasattr(cv2, "CascadeClassifier") or not folder or not (Path(folder) / CASCADE_FILE).is_file():
        raise FerError(f"this OpenCV ({cv2.__version__}) has no Haar cascades; install "
                       "opencv-python-headless 4.x (see requirements.txt), or pass --no-detect for cropped faces")
    return Path(folder) / CASCADE_FILE


class FaceDetector:
    """Frontal faces with OpenCV's Haar cascade.

    Args:
      min_face: smallest face side searched for, in pixels.
      scale_factor: image pyramid step (> 1); smaller finds more faces, slower.
      min_neighbors: overlapping detections a face needs; higher means fewer
        false faces and more missed ones.
      margin: fraction of the box's width/height added on each side when the
        face is cropped (FER2013 faces show a little forehead and chin).
      cascade: another cascade XML file (default: the frontal-face one in
        the OpenCV wheel).
      detect_side: search for faces on a copy whose longer side is at most
        this many pixels (0: full size), then scale the boxes back. The
        cascade's cost grows with the pixel count: 320 px makes a 640x480
        webcam frame ~4x cheaper, at the price of faces smaller than
        ``min_face`` at that scale.
    """

    def __init__(self, *, min_face=30, scale_factor=1.1, min_neighbors=5, margin=0.1, cascade=None,
                 detect_side=0):
        if min_face < 1:
            raise ConfigError("--min-face must be at least 1 pixel")
        if scale_factor <= 1.0:
            raise ConfigError("--scale-factor must be above 1 (e.g. 1.1)")
        if min_neighbors < 0:
            raise ConfigError("--min-neighbors must be 0 or more")
        if not 0 <= margin <= 1:
            raise ConfigError("--margin must be between 0 and 1 (a fraction of the face box)")
        if detect_side < 0:
            raise ConfigError("--detect-side must be 0 (full size) or a number of pixels")
        self.detect_side = int(detect_side)
        self.min_face = int(min_face)
        self.scale_factor = float(scale_factor)
        self.min_neighbors = int(min_neighbors)
        self.margin = float(margin)
        self.cascade = cascade
        self._classifier = None

    @property
    def classifier(self):
        if self._classifier is None:
            import cv2

            path = Path(self.cascade) if self.cascade else cascade_path()
            classifier = cv2.CascadeClassifier(str(path))
            if classifier.empty():
                raise FerError(f"{path}: not a readable OpenCV cascade file")
            self._classifier = classifier
        return self._classifier

    def detect(self, image):
        """Face boxes in ``image`` (grey, BGR or BGRA), left to right."""
        import cv2

        grey = to_grey(image)
        factor = 1.0
        if self.detect_side and max(grey.shape) > self.detect_side:
            factor = max(grey.shape) / self.detect_side
            grey = cv2.resize(grey, (round(grey.shape[1] / factor), round(grey.shape[0] / factor)),
                              interpolation=cv2.INTER_AREA)
        grey = cv2.equalizeHist(grey)  # evens out lighting, as OpenCV's face sample does
        min_side = max(1, round(self.min_face / factor))
        found = self.classifier.detectMultiScale(grey, scaleFactor=self.scale_factor,
                                                 minNeighbors=self.min_neighbors, minSize=(min_side, min_side))
        boxes = [Box(round(x * factor), round(y * factor), round(w * factor), round(h * factor))
                 for x, y, w, h in np.asarray(found).reshape(-1, 4)]
        return sorted(boxes, key=lambda b: (b.x, b.y))

    def crop(self, image, boxes):
        """uint8 ``(N, 48, 48, 1)`` faces for ``boxes``, with this detector's margin."""
        return crop_faces(image, boxes, margin=self.margin)

    def get_config(self):
        return {"min_face": self.min_face, "scale_factor": self.scale_factor,
                "min_neighbors": self.min_neighbors, "margin": self.margin, "detect_side": self.detect_side,
                "cascade": str(self.cascade) if self.cascade else CASCADE_FILE}


MAX_IMAGE_PIXELS = 178_956_970
"""Pictures with more pixels are refused unread: twice Pillow's default
``Image.MAX_IMAGE_PIXELS``, where Pillow itself calls a file a decompression
bomb. A 400 KB PNG can declare 20000x20000 pixels (1.2 GB decoded)."""


def read_image(path):
    """BGR uint8 image from a file; raises :class:`InputError` with a one-line reason.

    OpenCV reads it (non-ASCII paths too); Pillow is the fallback for what
    OpenCV cannot decode (GIF, some TIFFs). A picture declaring more than
    :data:`MAX_IMAGE_PIXELS` pixels is refused before anything is decoded.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not an image")
    try:
        raw = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return decode_image(raw, name=str(path))


def decode_image(data, *, name="picture", max_pixels=MAX_IMAGE_PIXELS):
    """BGR uint8 image from the bytes of a picture file (``bytes`` or a uint8 array), in memory.

    The header is read first: a picture declaring more than ``max_pixels``
    pixels is refused before anything is decoded. Raises :class:`InputError`
    (its message starts with ``name``) for an empty, undecodable or too large
    picture.
    """
    import io

    import cv2

    raw = np.frombuffer(data, dtype=np.uint8) if isinstance(data, (bytes, bytearray, memoryview)) else data
    if raw.size == 0:
        raise InputError(f"{name}: empty file")
    _check_size(io.BytesIO(raw.tobytes()), name, max_pixels)
    try:
        image = cv2.imdecode(raw, cv2.IMREAD_COLOR)
    except cv2.error:  # e.g. a damaged header declaring an impossible size
        image = None
    if image is None:
        image = _read_with_pillow(io.BytesIO(raw.tobytes()))
    if image is None:
        raise InputError(f"{name}: not an image, or a format that cannot be decoded")
    return image


def _check_size(source, name, max_pixels=MAX_IMAGE_PIXELS):
    """Refuse a picture whose header declares too many pixels (read from the header only)."""
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(source) as img:
                width, height = img.size
    except Image.DecompressionBombError as exc:
        raise InputError(f"{name}: too large to decode safely ({exc})") from None
    except Exception:  # not a format Pillow knows: OpenCV applies its own limits
        return
    if width * height > max_pixels:
        raise InputError(f"{name}: {width}x{height} pixels is too large to decode safely "
                         f"(limit {max_pixels:,} pixels; a decompression bomb?)")


def _read_with_pillow(source):
    try:
        from PIL import Image, ImageOps

        with Image.open(source) as img:
            rgb = np.asarray(ImageOps.exif_transpose(img).convert("RGB"))
        return np.ascontiguousarray(rgb[..., ::-1])
    except Exception:  # any decoding failure means "not an image" here
        return None
