"""Make FER2013-style faces from any pictures: grey, square, 48x48, optionally cropped to a face.

:func:`resize_folder` (``preprocess/data_resize.py``) turns a folder of
pictures (any size, colour or grey; flat, ``<class>/`` or ``<split>/<class>/``)
into 48x48 grey faces, as an image tree or a FER2013-layout CSV, optionally
cropped to the largest face (:class:`FaceFinder`: a detector and the one crop
of :mod:`fer_keras.faces`, the same as ``predict.py``'s).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from fer_keras import faces
from fer_keras.constants import CLASS_NAMES, IMAGE_SIZE, USAGES
from fer_keras.data.convert import atomic_dir, progress_bar, refuse_existing, save_png, write_csv
from fer_keras.data.folders import class_index, find_pictures
from fer_keras.data.images import read_colour, read_grey
from fer_keras.errors import DataError

FITS = ("crop", "pad", "stretch")
"""How a whole (non-square) picture becomes a square: centre crop, pad with
black, or stretch."""

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
    """Finds the largest face in a grey picture and cuts it out: the detector and the one crop
    of :mod:`fer_keras.faces`, the same as ``predict.py``'s.

    Args:
      detector: a detector's name (:func:`fer_keras.faces.available_detectors`)
        or a built detector; default :data:`fer_keras.faces.DEFAULT_DETECTOR`.
      align: rotate each face so its eyes are level (detectors with landmarks).
      margin: None frames the face as FER2013's are (measured); a number
        grows the box by that fraction on every side instead.
      detect: a function ``grey -> [(x, y, w, h), ...]`` to use instead of a
        detector (tests); its boxes have no landmarks.
    """

    def __init__(self, *, detector=None, align=True, margin=None, detect=None):
        self._detect = detect
        self.detector = faces.build_detector(detector or faces.DEFAULT_DETECTOR, align=align, margin=margin) \
            if detector is None or isinstance(detector, str) else detector

    @property
    def margin(self):
        return self.detector.margin

    def find(self, image):
        """The faces in ``image`` (grey or BGR): :class:`fer_keras.faces.Detection` s."""
        if self._detect is not None:
            return [faces.Detection(*(int(round(v)) for v in box)) for box in self._detect(faces.to_grey(image))]
        return self.detector.detect(image)

    def boxes(self, grey):
        """Face boxes ``(x, y, w, h)`` in ``grey``'s pixel coordinates."""
        return [face.as_tuple() for face in self.find(grey)]

    def crop(self, image, size=IMAGE_SIZE):
        """The largest face of ``image`` (grey or BGR), ``size`` x ``size`` uint8 grey, cut by the one crop;
        None without a face."""
        found = self.find(image)
        if not found:
            return None
        largest = max(found, key=lambda face: face.area)
        return self.detector.crop(image, [largest], size=size)[0, ..., 0]


def prepare_face(path, *, finder=None, fit="crop", no_face="keep", size=IMAGE_SIZE):
    """One picture → ``(face, found)``: a ``size`` x ``size`` uint8 face and
    whether a face was detected (None without a ``finder``).

    Without a face: ``no_face="keep"`` uses the whole picture (``fit``);
    ``"skip"`` returns ``(None, False)``. Raises :class:`DataError` for an
    unreadable file.
    """
    if finder is None:
        return to_face(fit_square(read_grey(path), fit), size), None
    image = read_colour(path)  # in colour, as predict.py reads it: MTCNN looks at colour
    face = finder.crop(image, size)
    if face is not None:
        return face, True
    if no_face == "skip":
        return None, False
    return to_face(fit_square(faces.to_grey(image), fit), size), False


def resize_folder(src, dst, *, fmt="folder", detect_faces=False, detector=None, align=True, margin=None,
                  no_face="keep", fit="crop", label=None, usage=None, overwrite=False, progress=True, finder=None):
    """Pictures under ``src`` → 48x48 grey faces at ``dst``. Returns a summary dict.

    Args:
      fmt: ``"folder"`` mirrors ``src``'s tree under ``dst`` (every file a
        ``.png``); ``"csv"`` writes one FER2013-layout CSV ``dst``.
      detect_faces: crop to the largest face, found by ``detector`` (a name of
        :func:`fer_keras.faces.available_detectors`; default the picture
        default) and cut by the one crop of :mod:`fer_keras.faces.align`, as
        ``predict.py`` cuts faces: FER2013's framing, eyes levelled with
        ``align``; ``margin`` (a fraction of the face's size on each side)
        replaces the measured framing.
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
    if margin is not None and not margin >= 0:
        raise DataError(f"margin {margin}: must be 0 or more (the border added on each side of a face, "
                        "as a fraction of its size)", parameter="margin")
    pictures, layout = find_pictures(src)
    if fmt == "folder" and (dst.resolve() == src.resolve() or src.resolve() in dst.resolve().parents):
        raise DataError(f"{dst}: the output folder must not be {src} or inside it")
    label_index = None
    if label is not None:
        label_index = class_index(str(label))
    if fmt == "csv" and layout == "flat" and label_index is None:
        raise DataError(f"{src} has no class folders, so its pictures have no labels for a CSV: give one label "
                        "for them all, or write a folder of faces instead of a CSV", parameter="label")
    sources = [file for file, _, _ in pictures]
    refuse_existing(dst, overwrite)
    if detect_faces and finder is None:
        finder = FaceFinder(detector=detector, align=align, margin=margin)

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
