"""Reading one picture: the one reader of pictures for training and evaluation data.

:func:`read_grey` gives any picture as a person sees it (EXIF orientation
applied, 16-bit scaled, transparency on white); :func:`read_face` makes it
one 48x48 FER2013-style face. Image folders, the other datasets' readers, the
converters and ``data_resize`` all read through them, so every entry point
sees the same pixels.
"""

from __future__ import annotations

import numpy as np

from fer_keras.constants import IMAGE_SIZE
from fer_keras.errors import DataError


def read_grey(path, *, draft=None, box=None):
    """Any picture → 2-D uint8 grey array, as a person sees it. Raises DataError.

    The one reader of pictures for training and evaluation data, so every
    entry point sees the same pixels:

    * EXIF orientation is applied (a phone photo stored on its side is upright);
    * 16-bit pictures are scaled, not clipped: ``convert("L")`` clips every
      value above 255 to white;
    * transparent pixels are composited onto white.

    ``draft``: a ``(w, h)`` the picture may be decoded down to (JPEG decodes
    at 1/2, 1/4 or 1/8 size, much faster). ``box = (x, y, w, h)``: crop to it
    (clipped to the upright picture) before anything else.
    """
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as img:
            if draft is not None and box is None:
                img.draft("L", draft)
            img = ImageOps.exif_transpose(img)
            if box is not None:
                img = img.crop(_clipped(box, img.size))
            return _to_grey(img)
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
        raise DataError(f"{path}: not a readable image ({type(exc).__name__}: {exc})") from None


def _clipped(box, size):
    """``(x, y, w, h)`` → a Pillow crop box inside an image of ``size``; the whole image if none is left."""
    x, y, w, h = box
    left, top = max(0, x), max(0, y)
    right, bottom = min(size[0], x + w), min(size[1], y + h)
    return (left, top, right, bottom) if right > left and bottom > top else (0, 0, *size)


def _to_grey(img):
    """A Pillow image as 2-D uint8 grey: alpha on white, 16-bit scaled, everything else through ``L``."""
    from PIL import Image

    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", img.size, (255, 255, 255, 255)), img)
    if img.mode.startswith("I"):  # I;16, I;16B, I;16L, I (32-bit integer)
        values = np.asarray(img, dtype=np.float64)
        top = 65535.0 if values.max() > 255 else 255.0
        return np.clip(np.round(values * (255.0 / top)), 0, 255).astype(np.uint8)
    return np.asarray(img.convert("L"), dtype=np.uint8).copy()


def read_face(path, size=IMAGE_SIZE, *, box=None):
    """One image file → uint8 (size, size, 1) grey array (stretched to a square). Raises DataError.

    Reads through :func:`read_grey`; ``box`` crops to a face first.
    """
    from PIL import Image

    grey = read_grey(path, draft=(size, size), box=box)
    if grey.shape != (size, size):
        img = Image.fromarray(grey).resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
        grey = np.asarray(img, dtype=np.uint8)
    return grey[..., None]
