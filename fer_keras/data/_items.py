"""What the image-dataset readers share: labelled files → a :class:`DatasetInfo`.

RAF-DB, AffectNet and CK+ list :class:`Item` s (file, label, usage, where it
was named); :func:`read_items` reads the faces in a few threads, leaves out
(and counts) what cannot be used, splits data that has no split, and builds
the dataset with its checksum. CSV and text helpers name file and line in
their errors.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import hashlib
import logging
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from fer_keras.constants import CLASS_NAMES, CLASS_NAMES_8, INPUT_SHAPE, USAGES
from fer_keras.data.dataset import DatasetInfo, Split, stratified_split
from fer_keras.data.folders import IMAGE_EXTENSIONS
from fer_keras.data.images import read_face
from fer_keras.data.labels import CONTEMPT
from fer_keras.errors import ConfigError, DataError

log = logging.getLogger(__name__)

READ_THREADS = min(8, os.cpu_count() or 1)
"""PIL releases the GIL while decoding, so a few threads decode JPEGs in parallel."""


@dataclasses.dataclass(frozen=True)
class Item:
    """One labelled face file of a dataset, before it is read (``path`` None: named but missing)."""

    path: Path | None
    label: int
    usage: str | None
    where: str
    missing: str = ""
    box: tuple | None = None


def check_num_classes(num_classes):
    if num_classes not in (7, 8):
        raise ConfigError(f"num_classes must be 7 (FER2013 classes) or 8 (plus contempt), not {num_classes!r}")


def check_on_bad(on_bad_images):
    if on_bad_images not in ("error", "skip"):
        raise ConfigError(f"on_bad_images must be 'error' or 'skip', not {on_bad_images!r}")


def final_label(label, num_classes, dropped):
    """The label to keep, or None after counting why it is dropped."""
    if isinstance(label, str):
        dropped[label] += 1
        return None
    if label == CONTEMPT and num_classes == 7:
        dropped["contempt"] += 1
        return None
    return label


def image_files(folder):
    return [f for f in sorted(folder.rglob("*"))
            if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS]


def csv_rows(path):
    """``(line number, fields)`` of a CSV file, header included; DataError if unreadable."""
    try:
        fh = open(path, newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    with fh:
        reader = csv.reader(fh)
        try:
            line = 1
            for row in reader:
                yield line, row
                line = reader.line_num + 1
        except (csv.Error, UnicodeDecodeError) as exc:
            raise DataError(f"{path}:{reader.line_num + 1}: not a readable CSV line ({exc})") from None


def text_lines(path):
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    return [(i, line) for i, line in enumerate(text.splitlines(), 1) if line.strip()]


def pick_column(lower, candidates):
    return next((lower.index(c) for c in candidates if c in lower), None)


def unique_dirs(paths):
    seen, out = set(), []
    for p in paths:
        key = os.path.normpath(p)
        if key not in seen and Path(p).is_dir():
            seen.add(key)
            out.append(Path(p))
    return out


def _read_one(item):
    if item.path is None:
        return None, item.missing
    try:
        face = read_face(item.path, box=item.box)
        return face, ""
    except DataError as exc:
        return None, f"{item.where}: {exc}" if item.where != str(item.path) else str(exc)


def read_items(items, source, num_classes, dropped, on_bad_images, *, split_seed=1234):
    """Read the faces (in parallel), group them by Usage, build the dataset."""
    if len(items) > 64 and READ_THREADS > 1:
        with ThreadPoolExecutor(READ_THREADS) as pool:
            results = list(pool.map(_read_one, items, chunksize=32))
    else:
        results = [_read_one(item) for item in items]
    bad = [msg for _, msg in results if msg]
    if bad and on_bad_images == "error":
        raise DataError(bad[0] + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else "")
                        + "; pass on_bad_images='skip' to leave such images out")
    dropped = collections.Counter(dropped)
    if bad:
        dropped["bad_image"] += len(bad)
        warnings.warn(f"{source}: skipped {len(bad)} missing or unreadable image(s); first: {bad[0]}", stacklevel=3)
    kept = [(item, face) for item, (face, _) in zip(items, results) if face is not None]
    if not kept:
        raise DataError(f"{source}: no readable images")
    x = np.stack([face for _, face in kept]).reshape((-1,) + INPUT_SHAPE)
    y = np.array([item.label for item, _ in kept], np.int64)
    sources = [str(item.path) for item, _ in kept]
    usage = [item.usage for item, _ in kept]
    if any(u is None for u in usage):
        unsplit = np.flatnonzero([u is None for u in usage])
        for name, idx in stratified_split(y[unsplit], seed=split_seed).items():
            for i in unsplit[idx]:
                usage[i] = name
    splits, files = {}, {}
    usage = np.array(usage)
    for name in USAGES:
        idx = np.flatnonzero(usage == name)
        if len(idx):
            splits[name] = Split(x[idx], y[idx])
            files[name] = [sources[i] for i in idx]
    dropped = {reason: n for reason, n in dropped.items() if n}
    log_dropped(source, dropped)
    return dataset_info(splits, source, num_classes, dropped, files)


def dataset_info(splits, source, num_classes, dropped, files):
    hasher = hashlib.sha256()
    for name, split in splits.items():
        hasher.update(name.encode())
        hasher.update(np.ascontiguousarray(split.x).data)
        hasher.update(np.ascontiguousarray(split.y).data)
        soft = getattr(split, "soft", None)
        if soft is not None:
            hasher.update(np.ascontiguousarray(soft).data)
    names = CLASS_NAMES_8 if num_classes == 8 else CLASS_NAMES
    return DatasetInfo(splits=splits, source=source, checksum=hasher.hexdigest(), class_names=names,
                       dropped=dict(dropped), files=files)


def dropped_text(dropped):
    return ", ".join(f"{reason} {n}" for reason, n in dropped.items() if n) or "nothing"


def log_dropped(source, dropped):
    if dropped:
        log.info("%s: dropped %s", source, dropped_text(dropped))
