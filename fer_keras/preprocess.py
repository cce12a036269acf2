"""Make FER2013-style data from pictures, and convert between its two layouts.

Three jobs, one per script in ``preprocess/``:

* :func:`resize_folder` (``data_resize.py``): any pictures (any size, colour
  or grey; flat, ``<class>/`` or ``<split>/<class>/``) → 48x48 grey faces, as
  an image tree or a FER2013-layout CSV, optionally cropped to the largest face
  found by OpenCV's Haar cascade.
* :func:`csv_to_images` (``csv_to_images.py``): a FER2013 CSV →
  ``<Usage>/<class_name>/<Usage>_<i>.png`` (lossless PNG).
* :func:`images_to_csv` (``images_to_csv.py``): such a tree → a FER2013 CSV.

``pack_dataset.py`` packs a CSV losslessly (:func:`pack_dataset`). Their
command lines are in :mod:`fer_keras.cli.preprocess_cli`.

The two conversions are exact inverses: CSV → images → CSV gives the same
arrays. Every output is written under a temporary name and moved into place
at the end. An existing output is replaced only with ``overwrite=True``, and
then only the files the job writes: never anything else in an output folder,
never one of the job's inputs.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

from fer_keras import data
from fer_keras.constants import CLASS_NAMES, IMAGE_SIZE, PIXELS_PER_IMAGE, USAGES
from fer_keras.errors import DataError
from fer_keras.io_utils import atomic_path, natural_key, record_outputs, refuse_inputs

FITS = ("crop", "pad", "stretch")
"""How a whole (non-square) picture becomes a square: centre crop, pad with
black, or stretch."""

HAAR_CASCADE = "haarcascade_frontalface_default.xml"

DETECT_MAX_SIDE = 640
"""Faces are searched on a copy at most this large: fast, and the cascade's
24-pixel window still finds faces a tenth of the picture wide."""


# --------------------------------------------------------------------------
# Reading pictures
# --------------------------------------------------------------------------


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
    grey = data.read_grey(path)
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


# --------------------------------------------------------------------------
# Finding pictures
# --------------------------------------------------------------------------


def _image_files(folder, *, recursive=True):
    files = folder.rglob("*") if recursive else folder.iterdir()
    return [f for f in files if f.is_file() and f.suffix.lower() in data.IMAGE_EXTENSIONS
            and not any(part.startswith((".", "__")) for part in f.relative_to(folder).parts)]


def find_pictures(root):
    """Pictures under ``root`` as ``[(file, usage, label), ...]`` and the layout.

    Layouts: ``"flat"`` (pictures, no sub-folders: usage and label None),
    ``"class"`` (``<class>/``: usage None) and ``"split"``
    (``<split>/<class>/``). Files are in natural order per class.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder")
    subdirs = data.image_subfolders(root)
    if not subdirs:
        files = sorted(_image_files(root, recursive=False), key=natural_key)
        if not files:
            raise DataError(f"{root}: no pictures found ({', '.join(data.IMAGE_EXTENSIONS)})")
        return [(f, None, None) for f in files], "flat"
    layout = data.folder_layout(root, subdirs)
    class_level = layout[0][1] == root
    found = []
    for usage, folder in layout:
        for class_dir in data.image_subfolders(folder):
            label = data._class_folder_index(class_dir)
            files = sorted(_image_files(class_dir), key=lambda f: natural_key(f.relative_to(class_dir)))
            found.extend((f, None if class_level else usage, label) for f in files)
    if not found:
        raise DataError(f"{root}: no pictures found in its class folders")
    return found, "class" if class_level else "split"


# --------------------------------------------------------------------------
# Writing outputs
# --------------------------------------------------------------------------


def _refuse_existing(path, overwrite):
    path = Path(path)
    exists = path.is_file() or (path.is_dir() and any(path.iterdir()))
    if exists and not overwrite:
        raise DataError(f"{path} already exists; use --overwrite / overwrite=True to replace it")
    if path.exists() and not path.is_dir() and not path.is_file():
        raise DataError(f"{path} exists and is not a file or folder")


@contextlib.contextmanager
def atomic_dir(final, *, command, overwrite=False, inputs=()):
    """Yield a temporary folder next to ``final``; move what was written there into ``final``.

    A new or empty ``final`` is the temporary folder renamed into place. A
    non-empty one is refused unless ``overwrite``; with it each written file
    replaces only its namesake, files an earlier run of ``command`` wrote and
    this one did not are deleted (:func:`fer_keras.io_utils.record_outputs`),
    and everything else in ``final`` stays: a user's notes, photos, or the
    CSV being converted. A written file that would land on one of ``inputs``
    is refused before anything moves. On failure the temporary folder is
    removed and ``final`` is untouched.
    """
    final = Path(final)
    _refuse_existing(final, overwrite)
    if final.is_file():
        raise DataError(f"{final} is a file; expected a folder")
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", suffix=f"-{final.name}", dir=final.parent))
    except OSError as exc:
        raise DataError(f"cannot create output folder next to {final}: {exc.strerror or exc}") from None
    try:
        yield tmp
        names = sorted(f.relative_to(tmp).as_posix() for f in tmp.rglob("*") if f.is_file())
        refuse_inputs([final / name for name in names], inputs)
        try:
            os.chmod(tmp, 0o755)  # mkdtemp makes it 0700
            if final.is_dir() and any(final.iterdir()):
                _move_files(tmp, final, names)
            else:
                os.replace(tmp, final)  # a rename onto an empty folder replaces it
            record_outputs(final, command, names, inputs=inputs)
        except OSError as exc:
            raise DataError(f"cannot write into {final}: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # already gone after the rename


def _move_files(tmp, final, names):
    """Move ``tmp/<name>`` to ``final/<name>`` one file at a time (each move atomic)."""
    for name in names:
        target = final / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_dir():
            raise DataError(f"{target} is a folder; it is in the way of a file this run writes")
        os.replace(tmp / name, target)


def save_png(face, path):
    """A uint8 ``(48, 48)`` or ``(48, 48, 1)`` face → lossless 8-bit grey PNG."""
    from PIL import Image

    grey = np.ascontiguousarray(face.reshape(face.shape[0], face.shape[1]), dtype=np.uint8)
    Image.fromarray(grey).save(path, format="PNG")  # uint8 2-D → mode "L"


def csv_lines(x, y, usage=None, *, rows_per_block=2048):
    """Yield FER2013 CSV lines (bytes, many rows at a time) for faces ``x``.

    ``usage``: None (no Usage column), one Usage name for every row, or a
    sequence with one name per row. Formatted by a compiled kernel, ~10x
    faster than ``" ".join(map(str, row))``.
    """
    from fer_keras import _csv_kernel as kernel

    flat = np.ascontiguousarray(np.asarray(x, np.uint8).reshape(len(x), PIXELS_PER_IMAGE))
    labels = np.asarray(y).astype(np.int64)
    if usage is None or isinstance(usage, str):
        usage = [usage] * len(flat)
    names = sorted({u for u in usage if u is not None})
    encoded = [n.encode() for n in names]
    width = max([len(e) for e in encoded] + [1])
    table = np.zeros((max(len(names), 1), width), np.uint8)
    for i, e in enumerate(encoded):
        table[i, : len(e)] = np.frombuffer(e, np.uint8)
    lengths = np.array([len(e) for e in encoded] or [0], np.int64)
    index = {n: i for i, n in enumerate(names)}
    name_of_row = np.array([index[u] if u is not None else -1 for u in usage], np.int64)
    for start in range(0, len(flat), rows_per_block):
        stop = start + rows_per_block
        block = flat[start:stop]
        out = np.empty(len(block) * (4 * PIXELS_PER_IMAGE + 24 + width), np.uint8)
        n = kernel.format_rows(block, labels[start:stop], table, lengths, name_of_row[start:stop], out)
        yield out[:n].tobytes()


def write_csv(path, x, y, usage=None, *, overwrite=False, inputs=()):
    """Write faces as a FER2013-layout CSV (gzip when ``path`` ends in ``.gz``).

    ``usage`` as for :func:`csv_lines`; without it the CSV has no Usage column
    and :func:`fer_keras.data.load_fer2013` splits it 80/10/10. A ``path``
    that is one of ``inputs`` is refused, even with ``overwrite``.
    """
    path = Path(path)
    _refuse_existing(path, overwrite)
    refuse_inputs([path], inputs)
    if path.is_dir():
        raise DataError(f"{path} is a folder; expected a CSV file name")
    header = b"emotion,pixels,Usage\n" if usage is not None else b"emotion,pixels\n"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as raw:
                if path.suffix == ".gz":
                    with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as packed:
                        _write_lines(packed, header, x, y, usage)
                else:
                    _write_lines(raw, header, x, y, usage)
            os.chmod(tmp, 0o644)
    except OSError as exc:
        raise DataError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


def _write_lines(out, header, x, y, usage):
    out.write(header)
    for chunk in csv_lines(x, y, usage):
        out.write(chunk)


def _progress(items, desc, progress):
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, unit="img", disable=not progress, file=sys.stderr, leave=False)


# --------------------------------------------------------------------------
# The three jobs
# --------------------------------------------------------------------------


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
        label_index = data.class_index(str(label))
    if fmt == "csv" and layout == "flat" and label_index is None:
        raise DataError(f"{src} has no class folders, so its pictures have no labels; pass --label CLASS "
                        "(one class for all) or use --format folder")
    sources = [file for file, _, _ in pictures]
    _refuse_existing(dst, overwrite)
    if detect_faces and finder is None:
        finder = FaceFinder(margin=margin)

    summary = {"source": str(src), "output": str(dst), "format": fmt, "layout": layout,
               "pictures": len(pictures), "written": 0, "per_class": {}, "faces_found": 0,
               "no_face_kept": 0, "no_face_skipped": 0, "unreadable": 0, "problems": []}
    faces, labels, usages, names = [], [], [], []
    for file, split, klass in _progress(pictures, "faces", progress):
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
            for face, name in zip(_progress(faces, "writing", progress), names):
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


def csv_to_images(csv, out, *, overwrite=False, on_bad_rows="error", progress=True):
    """A FER2013 CSV → ``out/<Usage>/<class_name>/<Usage>_<i>.png``.

    ``i`` counts the rows of each Usage in file order, so
    :func:`images_to_csv` restores that order. A CSV without a Usage column
    gives ``out/<class_name>/<i>.png``. PNG is lossless: the files hold the
    CSV's exact pixel values. Returns a summary dict.
    """
    csv, out = data.require_file(csv), Path(out)
    _refuse_existing(out, overwrite)
    x, y, usage, checksum, skipped = data._parse_csv(csv, on_bad_rows=on_bad_rows, num_classes=len(CLASS_NAMES))
    if skipped:
        warnings.warn(skipped, stacklevel=2)
    summary = {"source": str(csv), "output": str(out), "sha256": checksum, "written": len(y),
               "per_usage": {}, "skipped_rows": skipped}
    counters = {}
    with atomic_dir(out, command="csv_to_images", overwrite=overwrite, inputs=[csv]) as tmp:
        made = set()
        for row in _progress(range(len(y)), "images", progress):
            name = CLASS_NAMES[int(y[row])]
            if usage is None:
                i = counters[None] = counters.get(None, -1) + 1
                folder, file = tmp / name, f"{i}.png"
            else:
                split = USAGES[int(usage[row])]
                i = counters[split] = counters.get(split, -1) + 1
                folder, file = tmp / split / name, f"{split}_{i}.png"
            if folder not in made:
                folder.mkdir(parents=True, exist_ok=True)
                made.add(folder)
            save_png(x[row], folder / file)
    summary["per_usage"] = {("(no Usage)" if k is None else k): v + 1 for k, v in counters.items()}
    return summary


def images_to_csv(root, csv, *, usage=None, overwrite=False, progress=True):
    """An image tree (``<split>/<class>/`` or ``<class>/``) → a FER2013 CSV.

    Split folders map to Usage as in :data:`fer_keras.data.FOLDER_SPLITS`;
    a tree of class folders gives a CSV without Usage (split 80/10/10 when
    loaded) unless ``usage`` names one for every row. Within a split, rows
    follow the files' names in natural order (``Training_2`` before
    ``Training_10``), so a tree from :func:`csv_to_images` gives back its CSV.
    Pictures that are not 48x48 grey are converted; unreadable ones are skipped
    with a warning. Returns a summary dict.
    """
    root, csv = Path(root), Path(csv)
    if usage is not None and usage not in USAGES:
        raise DataError(f"unknown usage {usage!r}; expected {', '.join(USAGES)}")
    _refuse_existing(csv, overwrite)
    pictures, layout = find_pictures(root)
    if layout == "flat":
        raise DataError(f"{root} has no class folders; expected <split>/<class>/*.png or <class>/*.png")
    order = {u: i for i, u in enumerate(USAGES)}
    pictures.sort(key=lambda p: (order.get(p[1], -1), natural_key(p[0].name), p[2]))
    faces, labels, usages, problems = [], [], [], []
    for file, split, klass in _progress(pictures, "reading", progress):
        try:
            faces.append(data.read_face(file))
        except DataError as exc:
            problems.append(str(exc))
            continue
        labels.append(klass)
        usages.append(split or usage)
    if problems:
        warnings.warn(f"{root}: skipped {len(problems)} unreadable file(s); first: {problems[0]}", stacklevel=2)
    if not faces:
        raise DataError(f"{root}: no readable images found")
    has_usage = layout == "split" or usage is not None
    write_csv(csv, np.stack(faces), np.array(labels), usages if has_usage else None, overwrite=overwrite,
              inputs=[file for file, _, _ in pictures])
    per_usage = {}
    for u in usages:
        key = u if has_usage else "(no Usage)"
        per_usage[key] = per_usage.get(key, 0) + 1
    return {"source": str(root), "output": str(csv), "written": len(faces), "per_usage": per_usage,
            "unreadable": len(problems), "problems": problems}


def format_summary(summary):
    """A short human report of a summary dict."""
    lines = [f"wrote {summary['written']} face(s) to {summary['output']}"]
    for key in ("per_class", "per_usage"):
        if summary.get(key):
            lines.append("  " + ", ".join(f"{k}: {v}" for k, v in summary[key].items()))
    if summary.get("faces_found") or summary.get("no_face_kept") or summary.get("no_face_skipped"):
        lines.append(f"  faces found: {summary['faces_found']}, no face (whole picture kept): "
                     f"{summary['no_face_kept']}, no face (skipped): {summary['no_face_skipped']}")
    if summary.get("unreadable"):
        lines.append(f"  skipped {summary['unreadable']} unreadable file(s), e.g. {summary['problems'][0]}")
    if summary.get("skipped_rows"):
        lines.append(f"  {summary['skipped_rows']}")
    return "\n".join(lines)


def pack_dataset(csv, out, *, overwrite=False):
    """A FER2013 CSV → the lossless packed file ``out`` (:func:`fer_keras.data.save_packed`).

    Refuses a name that does not end in :data:`fer_keras.data.PACKED_SUFFIX`
    (every reader picks the format from it) and an ``out`` that is ``csv``
    itself, before anything is read. Returns the dataset.
    """
    out = Path(out)
    if not out.name.endswith(data.PACKED_SUFFIX):
        raise DataError(f"{out}: the packed file's name must end in {data.PACKED_SUFFIX}")
    _refuse_existing(out, overwrite)
    refuse_inputs([out], [csv])
    dataset = data.load_fer2013(csv)
    out.parent.mkdir(parents=True, exist_ok=True)
    data.save_packed(dataset, out)
    return dataset
