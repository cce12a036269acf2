"""Make FER2013-style faces from any pictures: grey, square, 48x48, optionally cropped to a face.

:func:`resize_folder` (``preprocess/data_resize.py``) turns a folder of
pictures (any size, colour or grey; flat, ``<class>/`` or ``<split>/<class>/``)
into 48x48 grey faces, as an image tree or a FER2013-layout CSV, optionally
cropped to the largest face found by OpenCV's Haar cascade (:class:`FaceFinder`).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from fer_keras.constants import CLASS_NAMES, IMAGE_SIZE, USAGES
from fer_keras.data.convert import atomic_dir, progress_bar, refuse_existing, save_png, write_csv
from fer_keras.data.folders import class_index, find_pictures
from fer_keras.data.images import read_grey
from fer_keras.errors import DataError

FITS = ("crop", "pad", "stretch")
"""How a whole (non-square) picture becomes a square: centre crop, pad with
black, or stretch."""

HAAR_CASCADE = "haarcascade_frontalface_default.xml"

DETECT_MAX_SIDE = 640
"""Faces are searched on a copy at most this large: fast, and the cascade's
24-pixel window still finds faces a tenth of the picture wide."""


def square_box(height, width, box=None, *, margin=0.0):
    """A square ``(top, left, side)`` inside an image of ``height`` x ``width``.

    Without ``box``: the centred square. With ``box = (x, y, w, h)``: a square
    around it grown by ``margin`` (a fraction of the box's size) on every side,
    shifted to stay inside the image and shrunk only when it cannot fit.
    """
    if box is None:
        side = min(height, width)
        return (height - side) // 2, (width - side) // 2, side
    x, y, w, h = box
    side = int(round(max(w, h) * (1 + 2 * margin)))
    side = max(1, min(side, height, width))
    cx, cy = x + w / 2, y + h / 2
    top = int(round(cy - side / 2))
    left = int(round(cx - side / 2))
    top = min(max(top, 0), height - side)
    left = min(max(left, 0), width - side)
    return top, left, side


def fit_square(grey, fit="crop"):
    """A 2-D picture → a square one: centre ``crop``, ``pad`` (black) or ``stretch``."""
    h, w = grey.shape
    if h == w or fit == "stretch":
        return grey
    if fit == "crop":
        top, left, side = square_box(h, w)
        return grey[top: top + side, left: left + side]
    if fit == "pad":
        side = max(h, w)
        out = np.zeros((side, side), np.uint8)
        top, left = (side - h) // 2, (side - w) // 2
        out[top: top + h, left: left + w] = grey
        return out
    raise ValueError(f"fit must be one of {', '.join(FITS)}")


def to_face(grey, size=IMAGE_SIZE):
    """A 2-D grey picture → ``size`` x ``size`` uint8 (area-averaged when shrinking)."""
    from PIL import Image

    if grey.shape == (size, size):
        return grey
    img = Image.fromarray(np.ascontiguousarray(grey))  # uint8 2-D → mode "L"
    resample = Image.Resampling.LANCZOS if min(grey.shape) > size else Image.Resampling.BICUBIC
    return np.asarray(img.resize((size, size), resample, reducing_gap=3.0), dtype=np.uint8)


class FaceFinder:
    """Finds the largest face in a grey picture with OpenCV's bundled Haar cascade.

    ``detect``: a function ``grey -> [(x, y, w, h), ...]`` to use instead of
    the cascade (tests, or a better detector).
    """

    def __init__(self, *, margin=0.15, detect=None):
        self.margin = margin
        self._detect = detect
        if detect is None:
            import cv2

            path = os.path.join(cv2.data.haarcascades, HAAR_CASCADE)
            self._cascade = cv2.CascadeClassifier(path)
            if self._cascade.empty():
                raise DataError(f"{path}: cannot load OpenCV's face cascade (opencv-python-headless 4.x ships it)")

    def boxes(self, grey):
        """Face boxes ``(x, y, w, h)`` in ``grey``'s pixel coordinates."""
        if self._detect is not None:
            return list(self._detect(grey))
        import cv2

        scale = min(1.0, DETECT_MAX_SIDE / max(grey.shape))
        small = grey if scale == 1.0 else cv2.resize(grey, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        small = cv2.equalizeHist(small)
        found = self._cascade.detectMultiScale(small, scaleFactor=1.1, minNeighbors=5, minSize=(24, 24))
        return [tuple(int(round(v / scale)) for v in box) for box in found]

    def crop(self, grey):
        """The square around the largest face (with margin), or None without a face."""
        boxes = self.boxes(grey)
        if not len(boxes):
            return None
        largest = max(boxes, key=lambda b: b[2] * b[3])
        top, left, side = square_box(*grey.shape, largest, margin=self.margin)
        return grey[top: top + side, left: left + side]


def prepare_face(path, *, finder=None, fit="crop", no_face="keep", size=IMAGE_SIZE):
    """One picture → ``(face, found)``: a ``size`` x ``size`` uint8 face and
    whether a face was detected (None without a ``finder``).

    Without a face: ``no_face="keep"`` uses the whole picture (``fit``);
    ``"skip"`` returns ``(None, False)``. Raises :class:`DataError` for an
    unreadable file.
    """
    grey = read_grey(path)
    found = None
    region = None
    if finder is not None:
        region = finder.crop(grey)
        found = region is not None
        if region is None and no_face == "skip":
            return None, False
    if region is None:
        region = fit_square(grey, fit)
    return to_face(region, size), found


def resize_folder(src, dst, *, fmt="folder", detect_faces=False, margin=0.15, no_face="keep", fit="crop",
                  label=None, usage=None, overwrite=False, progress=True, finder=None):
    """Pictures under ``src`` → 48x48 grey faces at ``dst``. Returns a summary dict.

    Args:
      fmt: ``"folder"`` mirrors ``src``'s tree under ``dst`` (every file a
        ``.png``); ``"csv"`` writes one FER2013-layout CSV ``dst``.
      detect_faces: crop to the largest face (Haar cascade) with ``margin``
        (fraction of the face's size) on each side.
      no_face: without a detected face, ``"keep"`` the whole picture or
        ``"skip"`` it.
      fit: how a whole picture is squared (:data:`FITS`).
      label: class of every picture of a flat folder (needed for a CSV; with
        ``fmt="folder"`` the faces go into ``dst/<class_name>/``).
      usage: Usage for every row of a CSV made from a flat or class-only
        folder; default none (the CSV is then split 80/10/10 when loaded).
      finder: a :class:`FaceFinder` to use instead of a new one.
    """
    src, dst = Path(src), Path(dst)
    if fmt not in ("folder", "csv"):
        raise ValueError("fmt must be 'folder' or 'csv'")
    if no_face not in ("keep", "skip"):
        raise ValueError("no_face must be 'keep' or 'skip'")
    if fit not in FITS:
        raise ValueError(f"fit must be one of {', '.join(FITS)}")
    if usage is not None and usage not in USAGES:
        raise DataError(f"unknown usage {usage!r}; expected {', '.join(USAGES)}")
    if not margin >= 0:
        raise DataError(f"margin {margin}: must be 0 or more (the border added on each side of a face, "
                        "as a fraction of its size)")
    pictures, layout = find_pictures(src)
    if fmt == "folder" and (dst.resolve() == src.resolve() or src.resolve() in dst.resolve().parents):
        raise DataError(f"{dst}: the output folder must not be {src} or inside it")
    label_index = None
    if label is not None:
        label_index = class_index(str(label))
    if fmt == "csv" and layout == "flat" and label_index is None:
        raise DataError(f"{src} has no class folders, so its pictures have no labels; pass --label CLASS "
                        "(one class for all) or use --format folder")
    sources = [file for file, _, _ in pictures]
    refuse_existing(dst, overwrite)
    if detect_faces and finder is None:
        finder = FaceFinder(margin=margin)

    summary = {"source": str(src), "output": str(dst), "format": fmt, "layout": layout,
               "pictures": len(pictures), "written": 0, "per_class": {}, "faces_found": 0,
               "no_face_kept": 0, "no_face_skipped": 0, "unreadable": 0, "problems": []}
    faces, labels, usages, names = [], [], [], []
    for file, split, klass in progress_bar(pictures, "faces", progress):
        try:
            face, found = prepare_face(file, finder=finder if detect_faces else None, fit=fit, no_face=no_face)
        except DataError as exc:
            summary["unreadable"] += 1
            summary["problems"].append(str(exc))
            continue
        if found:
            summary["faces_found"] += 1
        elif found is False:
            summary["no_face_skipped" if face is None else "no_face_kept"] += 1
            if face is None:
                continue
        faces.append(face)
        labels.append(klass if klass is not None else label_index)
        usages.append(split)
        names.append(file.relative_to(src))
    if not faces:
        raise DataError(f"{src}: no picture could be used ({summary['unreadable']} unreadable, "
                        f"{summary['no_face_skipped']} without a face)")

    if fmt == "folder":
        with atomic_dir(dst, command="data_resize", overwrite=overwrite, inputs=sources) as tmp:
            taken = set()
            prefix = Path(CLASS_NAMES[label_index]) if layout == "flat" and label_index is not None else Path()
            for face, name in zip(progress_bar(faces, "writing", progress), names):
                target = _unique_png(tmp / prefix / name, taken)
                target.parent.mkdir(parents=True, exist_ok=True)
                save_png(face, target)
    else:
        has_usage = layout == "split" or usage is not None
        row_usage = [u or usage for u in usages] if has_usage else None
        write_csv(dst, np.stack(faces), np.array(labels), row_usage, overwrite=overwrite, inputs=sources)
    summary["written"] = len(faces)
    for klass in labels:
        name = CLASS_NAMES[klass] if klass is not None else "(unlabelled)"
        summary["per_class"][name] = summary["per_class"].get(name, 0) + 1
    if summary["problems"]:
        warnings.warn(f"{src}: skipped {summary['unreadable']} unreadable file(s); first: {summary['problems'][0]}",
                      stacklevel=2)
    return summary


def _unique_png(path, taken):
    """``a.jpg`` → ``a.png``; a second ``a.*`` in that folder (``a.png``) → ``a_png.png``."""
    target = path.with_suffix(".png")
    if target in taken:
        target = path.with_name(f"{path.stem}_{path.suffix.lstrip('.').lower()}.png")
        n = 2
        while target in taken:
            target = path.with_name(f"{path.stem}_{n}.png")
            n += 1
    taken.add(target)
    return target
