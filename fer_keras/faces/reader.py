"""The one reader of pictures: training data, evaluation data and inference see the same pixels.

:func:`read_image` (BGR, for detection and drawing) and :func:`read_grey`
(2-D grey, for datasets of faces) decode a file the same way, with Pillow:

* EXIF orientation is applied (a phone photo stored on its side is upright);
* CMYK JPEGs are converted to RGB (Adobe's inverted CMYK included);
* 16-bit pictures are scaled, not clipped (``convert("L")`` clips every value
  above 255 to white);
* transparent pixels are composited onto white;
* a picture whose header declares more than :data:`MAX_IMAGE_PIXELS` pixels is
  refused before anything is decoded (a 400 KB PNG can declare 20000x20000);
* a truncated file is an error, not a picture with a grey bottom half;
* a picture smaller than :data:`MIN_IMAGE_SIDE` on a side holds no face.

Each failure is an :class:`~fer_keras.errors.InputError` whose one-line
message starts with the file's path. Formats Pillow does not know are tried
with OpenCV (which applies its own size limits).
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np

from fer_keras.errors import InputError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pbm", ".gif")
"""File name endings read as images."""

MAX_IMAGE_PIXELS = 178_956_970
"""Pictures with more pixels are refused unread: twice Pillow's default
``Image.MAX_IMAGE_PIXELS``, where Pillow itself calls a file a decompression bomb."""

MIN_IMAGE_SIDE = 8
"""Pictures narrower or lower than this (pixels) are refused: no face fits,
and a 1x1 "picture" is almost always a tracking pixel or a broken export."""


def read_image(path, *, min_side=MIN_IMAGE_SIDE):
    """A picture file → uint8 (H, W, 3) BGR array, upright; raises :class:`InputError` in one line."""
    with _opened(path) as img:
        return _checked(path, _converted(path, _to_bgr, img), min_side)


def decode_image(data, *, name="picture", max_pixels=MAX_IMAGE_PIXELS, min_side=MIN_IMAGE_SIDE):
    """The bytes of a picture file → uint8 (H, W, 3) BGR array, decoded as :func:`read_image` decodes files.

    For pictures that arrive over the network (an upload, a webcam frame):
    nothing touches the disk and no client-given name becomes a path.
    ``name`` starts every error message; ``max_pixels`` can be lower than
    the files' limit (a server caps what one request may decode).
    """
    with _opened(name, data=bytes(data), max_pixels=max_pixels) as img:
        return _checked(name, _converted(name, _to_bgr, img), min_side)


def read_grey(path, *, draft=None, box=None, min_side=MIN_IMAGE_SIDE):
    """A picture file → uint8 (H, W) grey array, upright; raises :class:`InputError` in one line.

    ``draft``: a ``(w, h)`` the picture may be decoded down to (JPEG decodes at
    1/2, 1/4 or 1/8 size, much faster). ``box = (x, y, w, h)``: crop to it
    (clipped to the upright picture) before anything else.
    """
    with _opened(path, draft=None if box is not None else draft) as img:
        if box is not None:
            img = img.crop(_clipped(box, img.size))
            min_side = 1
        return _checked(path, _converted(path, _to_grey, img), min_side)


class _opened:
    """``with _opened(path) as img``: the upright Pillow image, every failure an InputError naming ``path``."""

    def __init__(self, path, draft=None, *, data=None, max_pixels=MAX_IMAGE_PIXELS):
        self.path, self.draft, self.data, self.max_pixels, self._file = path, draft, data, max_pixels, None

    def __enter__(self):
        from PIL import Image, ImageOps, UnidentifiedImageError

        path = self.path
        if self.data is None:
            path = self.path = Path(path)
            if not path.exists():
                raise InputError(f"{path}: no such file or folder")
            if path.is_dir():
                raise InputError(f"{path}: is a folder, not an image")
        try:
            if (path.stat().st_size if self.data is None else len(self.data)) == 0:
                raise InputError(f"{path}: empty file")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                self._file = Image.open(path if self.data is None else io.BytesIO(self.data))
        except Image.DecompressionBombError as exc:
            raise InputError(f"{path}: too large to decode safely ({exc})") from None
        except UnidentifiedImageError:
            return _OpenCVImage(path, self.data)
        except OSError as exc:
            raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
        except Exception as exc:  # a damaged header: plugins raise ValueError, SyntaxError, struct.error ...
            raise InputError(f"{path}: not a readable image ({type(exc).__name__}: {_first_line(exc)})") from None
        width, height = self._file.size
        if width * height > self.max_pixels:
            self._file.close()
            raise InputError(f"{path}: {width}x{height} pixels is too large to decode safely "
                             f"(limit {self.max_pixels:,} pixels; a decompression bomb?)")
        try:
            if self.draft is not None:
                self._file.draft("L", self.draft)
            img = ImageOps.exif_transpose(self._file)
            img.load()  # decode now: a truncated or damaged file fails here, with its name
        except Exception as exc:  # truncated or damaged data: any decoder error means "not readable" here
            self._file.close()
            raise InputError(f"{path}: not a readable image ({type(exc).__name__}: {_first_line(exc)})") from None
        return img

    def __exit__(self, *exc):
        if self._file is not None:
            self._file.close()
        return False


class _OpenCVImage:
    """A picture Pillow does not know, decoded by OpenCV: carries the BGR array to :func:`_to_bgr`."""

    def __init__(self, path, data=None):
        import cv2

        try:
            raw = np.fromfile(path, dtype=np.uint8) if data is None else np.frombuffer(data, dtype=np.uint8)
            image = cv2.imdecode(raw, cv2.IMREAD_COLOR)
        except (cv2.error, OSError):
            image = None
        if image is None:
            raise InputError(f"{path}: not an image, or a format that cannot be decoded")
        self.bgr = image
        self.size = (image.shape[1], image.shape[0])

    def crop(self, box):
        left, top, right, bottom = box
        out = _OpenCVImage.__new__(_OpenCVImage)
        out.bgr = self.bgr[top:bottom, left:right]
        out.size = (out.bgr.shape[1], out.bgr.shape[0])
        return out


def _converted(path, convert, img):
    try:
        return convert(img)
    except Exception as exc:  # a mode Pillow cannot convert
        raise InputError(f"{path}: cannot convert its pixels ({img.mode}: {_first_line(exc)})") from None


def _first_line(exc):
    return (str(exc).strip().splitlines() or [""])[0][:200]


def _clipped(box, size):
    """``(x, y, w, h)`` → a Pillow crop box inside an image of ``size``; the whole image if none is left."""
    x, y, w, h = box
    left, top = max(0, x), max(0, y)
    right, bottom = min(size[0], x + w), min(size[1], y + h)
    return (left, top, right, bottom) if right > left and bottom > top else (0, 0, *size)


def _checked(path, array, min_side):
    if min(array.shape[:2]) < min_side:
        raise InputError(f"{path}: {array.shape[1]}x{array.shape[0]} pixels is too small to hold a face "
                         f"(at least {min_side}x{min_side})")
    return array


def _flattened(img):
    """A Pillow image without transparency (composited onto white) and without 16/32-bit samples."""
    from PIL import Image

    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", img.size, (255, 255, 255, 255)), img)
        return img.convert("RGB")
    if img.mode.startswith("I") or img.mode == "F":  # I;16, I;16B, I;16L, I (32-bit), F (float)
        values = np.asarray(img, dtype=np.float64)
        # 16-bit samples are 16-bit however dark (as image.to_uint8 reads a uint16 array); only
        # 32-bit and float modes, which say nothing of their range, are judged by their values.
        top = 65535.0 if img.mode.startswith("I;16") or np.nanmax(values) > 255 else 255.0
        grey = np.clip(np.round(np.nan_to_num(values) * (255.0 / top)), 0, 255).astype(np.uint8)
        return Image.fromarray(grey)
    return img


def _to_grey(img):
    """Grey as :func:`~fer_keras.faces.image.to_grey` makes it of :func:`_to_bgr`'s colours, to the last bit."""
    import cv2

    if not isinstance(img, _OpenCVImage):
        img = _flattened(img)
        if img.mode == "L":
            return np.asarray(img, dtype=np.uint8).copy()
    return cv2.cvtColor(_to_bgr(img), cv2.COLOR_BGR2GRAY)


def _to_bgr(img):
    if isinstance(img, _OpenCVImage):
        return np.ascontiguousarray(img.bgr)
    img = _flattened(img)
    rgb = np.asarray(img.convert("RGB"), dtype=np.uint8)
    return np.ascontiguousarray(rgb[..., ::-1])
