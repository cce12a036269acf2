"""FER2013's two layouts, CSV and image tree, converted both ways and written safely.

* :func:`csv_to_images` (``preprocess/csv_to_images.py``): a FER2013 CSV →
  ``<Usage>/<class_name>/<Usage>_<i>.png`` (lossless PNG).
* :func:`images_to_csv` (``preprocess/images_to_csv.py``): such a tree → a
  FER2013 CSV.
* :func:`pack_dataset` (``preprocess/pack_dataset.py``): a CSV → the lossless
  packed file (:func:`~fer_keras.data.packed.save_packed`).

The two conversions are exact inverses: CSV → images → CSV gives the same
arrays. Every output is written under a temporary name and moved into place
at the end (:func:`atomic_dir`, :func:`write_csv`). An existing output is
replaced only with ``overwrite=True``, and then only the files the job
writes: never anything else in an output folder, never one of the job's inputs.
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

from fer_keras.constants import CLASS_NAMES, PIXELS_PER_IMAGE, USAGES
from fer_keras.data import _csv_kernel as kernel
from fer_keras.data.fer2013 import load_fer2013, parse_csv, require_file
from fer_keras.data.folders import find_pictures
from fer_keras.data.images import read_face
from fer_keras.data.packed import PACKED_SUFFIX, save_packed
from fer_keras.errors import DataError
from fer_keras.io_utils import atomic_path, natural_key, record_outputs, refuse_inputs


def refuse_existing(path, overwrite):
    """Raise DataError when ``path`` is a file or a non-empty folder and not ``overwrite``."""
    path = Path(path)
    exists = path.is_file() or (path.is_dir() and any(path.iterdir()))
    if exists and not overwrite:
        raise DataError(f"{path} already exists; pass overwrite=True to replace it", parameter="overwrite")
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
    refuse_existing(final, overwrite)
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
    sequence with one name per row. Formatted by the vectorised kernel of
    ``_csv_kernel``, ~10x faster than ``" ".join(map(str, row))``.
    """
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
    refuse_existing(path, overwrite)
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


def progress_bar(items, desc, progress):
    """``items`` with a tqdm bar on stderr (none when ``progress`` is false)."""
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, unit="img", disable=not progress, file=sys.stderr, leave=False)


def csv_to_images(csv, out, *, overwrite=False, on_bad_rows="error", progress=True):
    """A FER2013 CSV → ``out/<Usage>/<class_name>/<Usage>_<i>.png``.

    ``i`` counts the rows of each Usage in file order, so
    :func:`images_to_csv` restores that order. A CSV without a Usage column
    gives ``out/<class_name>/<i>.png``. PNG is lossless: the files hold the
    CSV's exact pixel values. Returns a summary dict.
    """
    csv, out = require_file(csv), Path(out)
    refuse_existing(out, overwrite)
    x, y, usage, checksum, skipped = parse_csv(csv, on_bad_rows=on_bad_rows, num_classes=len(CLASS_NAMES))
    if skipped:
        warnings.warn(skipped, stacklevel=2)
    summary = {"source": str(csv), "output": str(out), "sha256": checksum, "written": len(y),
               "per_usage": {}, "skipped_rows": skipped}
    counters = {}
    with atomic_dir(out, command="csv_to_images", overwrite=overwrite, inputs=[csv]) as tmp:
        made = set()
        for row in progress_bar(range(len(y)), "images", progress):
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

    Split folders map to Usage as in :data:`fer_keras.data.FOLDER_SPLITS`
    (``test/`` beside ``val/`` is PrivateTest, :func:`~fer_keras.data.folder_layout`);
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
    refuse_existing(csv, overwrite)
    pictures, layout = find_pictures(root)
    if layout == "flat":
        raise DataError(f"{root} has no class folders; expected <split>/<class>/*.png or <class>/*.png")
    order = {u: i for i, u in enumerate(USAGES)}
    pictures.sort(key=lambda p: (order.get(p[1], -1), natural_key(p[0].name), p[2]))
    faces, labels, usages, problems = [], [], [], []
    for file, split, klass in progress_bar(pictures, "reading", progress):
        try:
            faces.append(read_face(file))
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


def pack_dataset(csv, out, *, overwrite=False):
    """A FER2013 CSV → the lossless packed file ``out`` (:func:`fer_keras.data.save_packed`).

    Refuses a name that does not end in :data:`fer_keras.data.PACKED_SUFFIX`
    (every reader picks the format from it) and an ``out`` that is ``csv``
    itself, before anything is read. Returns the dataset.
    """
    out = Path(out)
    if not out.name.endswith(PACKED_SUFFIX):
        raise DataError(f"{out}: the packed file's name must end in {PACKED_SUFFIX}")
    refuse_existing(out, overwrite)
    refuse_inputs([out], [csv])
    dataset = load_fer2013(csv)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_packed(dataset, out)
    return dataset
