"""Reading one picture of a dataset: the one reader of pictures (:mod:`fer_keras.faces.reader`), as DataErrors.

:func:`read_grey` gives any picture as a person sees it (EXIF orientation
applied, 16-bit scaled, transparency on white); :func:`read_face` makes it
one 48x48 FER2013-style face. Image folders, the other datasets' readers, the
converters and ``data_resize`` all read through them, so every entry point
sees the same pixels.
"""

from __future__ import annotations

import numpy as np

from fer_keras import faces
from fer_keras.constants import IMAGE_SIZE
from fer_keras.errors import DataError, InputError


def read_grey(path, *, draft=None, box=None):
    """Any picture → 2-D uint8 grey array, as a person sees it. Raises DataError.

    :func:`fer_keras.faces.read_grey`, the one reader of pictures for training
    data, evaluation data and inference alike (EXIF orientation applied, CMYK
    converted, 16-bit scaled, transparency on white, bombs refused unread),
    with its errors as :class:`DataError` (a dataset's bad file).

    ``draft``: a ``(w, h)`` the picture may be decoded down to (JPEG decodes
    at 1/2, 1/4 or 1/8 size, much faster). ``box = (x, y, w, h)``: crop to it
    (clipped to the upright picture) before anything else.
    """
    try:
        return faces.read_grey(path, draft=draft, box=box, min_side=1)
    except InputError as exc:
        message = str(exc)
        if "not a readable image" not in message:
            message = f"{message} (not a readable image)"
        raise DataError(message) from None


def read_colour(path):
    """Any picture → uint8 (H, W, 3) BGR array: :func:`fer_keras.faces.read_image`, errors as DataError."""
    try:
        return faces.read_image(path, min_side=1)
    except InputError as exc:
        message = str(exc)
        if "not a readable image" not in message:
            message = f"{message} (not a readable image)"
        raise DataError(message) from None


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
