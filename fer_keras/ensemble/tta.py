"""Test-time augmentation: the views of each face a member averages over.

Modes (the ``tta`` argument):

- ``none``: the face as it is.
- ``flip``: the face and its mirror image (2 views).
- ``tencrop``: the ten-crop average of the crop recipe — the four corner
  crops and the centre crop, each also mirrored (10 views). A member that
  keeps the central ``crop`` pixels of its 48x48 input (Keras' ``CenterCrop``
  in the file; see :func:`fer_keras.models.input_crop`) is given the whole
  face shifted by its crop margin towards each corner, so its own centre crop
  *is* the corner crop: the file contract (48x48 in) holds and nothing about
  its training needs to be known. A member without a crop was never trained
  on crops; it gets the ``flip`` views.

Views are whole-pixel shifts and mirrors of uint8 faces, made here with
NumPy, so the Keras members, the TFLite/ONNX runtimes and the exports all
average over exactly the same pixels.
"""

from __future__ import annotations

import numpy as np

from fer_keras.constants import TTA_MODES
from fer_keras.errors import ConfigError

_CORNERS = ((0, 0), (-1, -1), (-1, 1), (1, -1), (1, 1))
"""Shift directions (rows, columns): the centre, then the four corners."""


def tta_mode(tta):
    """Normalise a ``tta`` argument: False/None → ``none``, True → ``flip``, or a mode name."""
    if tta is None or tta is False:
        return "none"
    if tta is True:
        return "flip"
    if tta not in TTA_MODES:
        raise ConfigError(f"tta must be one of {', '.join(TTA_MODES)}, not {tta!r}")
    return tta


def shift(faces, rows, cols):
    """Faces (N, H, W[, C]) moved by whole pixels; the uncovered border repeats the edge.

    Moving a face ``m`` pixels down and right puts its top-left ``H - 2m``
    square where a centre crop of that size looks.
    """
    if not rows and not cols:
        return faces
    pad = [(0, 0), (max(rows, 0), max(-rows, 0)), (max(cols, 0), max(-cols, 0))]
    pad += [(0, 0)] * (faces.ndim - 3)
    padded = np.pad(faces, pad, mode="edge")
    height, width = faces.shape[1], faces.shape[2]
    top, left = max(-rows, 0), max(-cols, 0)
    return padded[:, top:top + height, left:left + width]


def views(faces, mode, *, crop_margin=0):
    """The list of arrays a member predicts for ``faces`` under ``mode``; their
    probabilities are averaged.

    ``crop_margin``: pixels the member's centre crop drops on each side
    (0: it does not crop, and ``tencrop`` falls back to ``flip``).
    """
    mode = tta_mode(mode)
    faces = np.asarray(faces)
    if mode == "none":
        return [faces]
    if mode == "tencrop" and crop_margin > 0:
        shifted = [shift(faces, dr * crop_margin, dc * crop_margin) for dr, dc in _CORNERS]
    else:
        shifted = [faces]
    return [v for face_view in shifted for v in (face_view, face_view[:, :, ::-1])]


def describe(mode):
    """Words for reports: e.g. ``horizontal flip``."""
    return {"none": "none", "flip": "horizontal flip",
            "tencrop": "ten-crop (4 corners + centre, each mirrored; flip for members without a crop)"}[
        tta_mode(mode)]
