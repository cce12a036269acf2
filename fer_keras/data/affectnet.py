"""AffectNet-7/8 (Mollahosseini et al. 2017), from image folders or from label CSVs.

Both the official layout (``training.csv`` with face boxes, expression
indices 0..10) and the common Kaggle re-packs (``pth,label`` CSVs, class
folders) are read; the non-expression labels (None, Uncertain, No-Face) are
dropped and counted.
"""

from __future__ import annotations

import collections
import os
from pathlib import Path

from fer_keras.constants import CLASS_NAMES_8, USAGES
from fer_keras.data._items import (Item, check_num_classes, check_on_bad, csv_rows, dropped_text, final_label,
                                   image_files, pick_column, read_items, unique_dirs)
from fer_keras.data.folders import image_subfolders
from fer_keras.data.labels import AFFECTNET_DROPPED, AFFECTNET_DROPPED_NAMES, AFFECTNET_LABEL_MAP, DROP, NAME_LABEL_MAP
from fer_keras.errors import DataError
from fer_keras.io_utils import not_a_folder

AFFECTNET_SPLITS = {"train": "Training", "training": "Training",
                    "val": "PublicTest", "valid": "PublicTest", "validation": "PublicTest",
                    "test": "PrivateTest"}
"""AffectNet split folder / CSV file stem → Usage (AffectNet has no public test set:
its validation set is the usual test split)."""

AFFECTNET_PATH_COLUMNS = ("subdirectory_filepath", "pth", "path", "image", "image_path", "img", "file",
                          "filename", "file_name", "file_path")

AFFECTNET_LABEL_COLUMNS = ("expression", "label", "emotion", "class")

AFFECTNET_SPLIT_COLUMNS = ("usage", "split", "subset", "set")

AFFECTNET_BOX_COLUMNS = ("face_x", "face_y", "face_width", "face_height")

AFFECTNET_IMAGE_FOLDERS = ("", "Manually_Annotated_Images", "Manually_Annotated/Manually_Annotated_Images")
"""Folders (under the root and under the CSV's folder) where CSV image paths are looked up."""


def load_affectnet(root, *, num_classes=7, csv_files=None, split_seed=1234, on_bad_images="error"):
    """AffectNet-7 or -8, from image folders or from label CSVs.

    Layouts, tried in this order:

    - ``csv_files`` given (a path or a list), or ``root`` is a ``.csv``: the
      CSV layout below.
    - Image folders: ``root/<split>/<class>/*.jpg`` with split folders
      ``train``, ``val`` (→ PublicTest), ``test`` (→ PrivateTest), or class
      folders directly under ``root``. Class folders are named by class
      (``anger``, ``happy``, ``contempt`` ... any ``NAME_LABEL_MAP``
      spelling) or by AffectNet index ``0``..``7`` (``AFFECTNET_LABEL_MAP``:
      ``0`` is Neutral, not FER2013's angry).
    - Every ``*.csv`` directly in ``root`` (e.g. the official
      ``training.csv`` and ``validation.csv``).

    CSV layout: one row per image; an image-path column (``pth``,
    ``subDirectory_filePath``, ``image``, ``path`` ...) relative to the CSV's
    folder or ``root`` (or ``Manually_Annotated_Images/`` under them) and a
    label column (``label``, ``expression``, ``emotion``): a class name
    (Kaggle ``pth,label``) or an AffectNet index 0..10 (official
    ``subDirectory_filePath,...,expression``). Official ``face_x, face_y,
    face_width, face_height`` columns crop the face. The split comes from a
    ``usage``/``split`` column, else the CSV's name (``training.csv``,
    ``validation.csv``, ``train.csv``, ``val.csv``, ``test.csv``), else the
    image path's first folder (``train/anger/x.jpg``); data with no split at
    all is split 80/10/10 per class with ``split_seed``.

    Dropped and counted: contempt with ``num_classes=7`` (``contempt``);
    AffectNet 8 None, 9 Uncertain, 10 No-Face (``none``, ``uncertain``,
    ``no_face``).
    """
    check_num_classes(num_classes)
    check_on_bad(on_bad_images)
    root = Path(root)
    if csv_files is None and root.suffix.lower() == ".csv" and root.is_file():
        csv_files, root = [root], root.parent
    if not root.is_dir():
        raise DataError(not_a_folder(root))
    dropped = collections.Counter()
    if csv_files is not None:
        csv_files = [Path(csv_files)] if isinstance(csv_files, (str, os.PathLike)) else [Path(c) for c in csv_files]
        items = _affectnet_csv_items(root, csv_files, num_classes, dropped)
    else:
        items = _affectnet_folder_items(root, num_classes, dropped)
        if items is None:
            found = sorted(root.glob("*.csv"))
            if not found:
                raise DataError(f"{root}: neither image folders (train/<class>/, val/<class>/ or <class>/) "
                                "nor label CSVs (training.csv, validation.csv, labels.csv)")
            items = _affectnet_csv_items(root, found, num_classes, dropped)
    if not items:
        raise DataError(f"{root}: no usable images (dropped: {dropped_text(dropped)})")
    return read_items(items, str(root), num_classes, dropped, on_bad_images, split_seed=split_seed)


def _affectnet_folder_items(root, num_classes, dropped):
    """Items of an image-folder tree, or None when ``root`` holds no class/split folders."""
    subdirs = image_subfolders(root)
    if not subdirs:
        return None
    if any(_affectnet_folder_label(p, strict=False) is not False for p in subdirs):
        layout = [(None, root)]
    elif all(p.name.lower() in AFFECTNET_SPLITS for p in subdirs):
        layout = [(AFFECTNET_SPLITS[p.name.lower()], p) for p in subdirs]
    elif any(p.name.lower() in AFFECTNET_SPLITS for p in subdirs):
        odd = [p.name for p in subdirs if p.name.lower() not in AFFECTNET_SPLITS]
        raise DataError(f"{root}: unknown folder(s) {', '.join(map(repr, odd))} next to split folders; "
                        f"expected {', '.join(sorted(AFFECTNET_SPLITS))}")
    else:
        return None
    items = []
    for usage, folder in layout:
        for class_dir in image_subfolders(folder):
            label = _affectnet_folder_label(class_dir)
            for file in image_files(class_dir):
                final = final_label(label, num_classes, dropped)
                if final is not None:
                    items.append(Item(file, final, usage, str(file)))
    return items


def _affectnet_folder_label(folder, strict=True):
    """FER index (or a drop reason string) of an AffectNet class folder; False if
    unknown and not ``strict``."""
    key = folder.name.strip().lower()
    try:
        return _affectnet_label(key)
    except KeyError:
        if not strict:
            return False
        raise DataError(f"{folder}: unknown class folder {folder.name!r}; expected an AffectNet index 0..7 "
                        f"or a class name ({', '.join(CLASS_NAMES_8)})") from None


def _affectnet_label(key):
    """FER index, or a drop reason (str) for None/Uncertain/No-Face; KeyError if unknown."""
    key = key.strip().lower()
    if key.isdigit():
        code = int(key)
        if code not in AFFECTNET_LABEL_MAP:
            raise KeyError(key)
        label = AFFECTNET_LABEL_MAP[code]
        return AFFECTNET_DROPPED[code] if label is DROP else label
    if key in AFFECTNET_DROPPED_NAMES:
        return AFFECTNET_DROPPED_NAMES[key]
    return NAME_LABEL_MAP[key]


def _affectnet_csv_items(root, csv_files, num_classes, dropped):
    items = []
    for csv_file in csv_files:
        if not csv_file.is_file():
            raise DataError(f"{csv_file}: no such file")
        rows = csv_rows(csv_file)
        header_line, header = next(rows, (1, None))
        if not header:
            raise DataError(f"{csv_file}:1: the file is empty (expected a header such as 'pth,label' or "
                            "'subDirectory_filePath,...,expression')")
        lower = [h.strip().lower() for h in header]
        path_col = pick_column(lower, AFFECTNET_PATH_COLUMNS)
        label_col = pick_column(lower, AFFECTNET_LABEL_COLUMNS)
        if path_col is None or label_col is None:
            what = "image-path" if path_col is None else "label"
            wanted = AFFECTNET_PATH_COLUMNS if path_col is None else AFFECTNET_LABEL_COLUMNS
            raise DataError(f"{csv_file}:{header_line}: no {what} column (found: {', '.join(header)}; "
                            f"expected one of {', '.join(wanted)})")
        split_col = pick_column(lower, AFFECTNET_SPLIT_COLUMNS)
        box_cols = [lower.index(c) for c in AFFECTNET_BOX_COLUMNS] if all(
            c in lower for c in AFFECTNET_BOX_COLUMNS) else None
        file_usage = AFFECTNET_SPLITS.get(csv_file.stem.lower())
        folders = unique_dirs([base / sub for base in (csv_file.parent, root) for sub in AFFECTNET_IMAGE_FOLDERS])
        for line, row in rows:
            if not any(cell.strip() for cell in row):
                continue
            where = f"{csv_file}:{line}"
            if len(row) < len(header):
                raise DataError(f"{where}: expected {len(header)} comma-separated fields, found {len(row)}")
            raw = row[label_col].strip()
            try:
                label = _affectnet_label(raw)
            except KeyError:
                raise DataError(f"{where}: label {raw!r} is not an AffectNet label (an index 0..10 or a "
                                f"class name: {', '.join(CLASS_NAMES_8)})") from None
            rel = row[path_col].strip().replace("\\", "/")
            if not rel:
                raise DataError(f"{where}: the image path ({header[path_col]!r}) is empty")
            usage = _affectnet_row_usage(row[split_col] if split_col is not None else None, file_usage, rel, where)
            final = final_label(label, num_classes, dropped)
            if final is None:
                continue
            path = next((f / rel for f in folders if (f / rel).is_file()), None)
            box = _face_box(row, box_cols, where) if box_cols else None
            if path is None:
                tried = ", ".join(str(f / rel) for f in folders[:3])
                items.append(Item(None, final, usage, where, f"{where}: image {rel!r} not found (looked in {tried})"))
            else:
                items.append(Item(path, final, usage, where, box=box))
    return items


def _affectnet_row_usage(value, file_usage, rel, where):
    if value is not None and value.strip():
        key = value.strip().lower()
        usage = AFFECTNET_SPLITS.get(key) or {u.lower(): u for u in USAGES}.get(key)
        if usage is None:
            raise DataError(f"{where}: split {value!r} is not one of {', '.join(sorted(AFFECTNET_SPLITS))}, "
                            f"{', '.join(USAGES)}")
        return usage
    if file_usage is not None:
        return file_usage
    first = rel.split("/", 1)[0].lower()
    return AFFECTNET_SPLITS.get(first) if "/" in rel else None


def _face_box(row, cols, where):
    try:
        x, y, w, h = (int(float(row[c])) for c in cols)
    except ValueError:
        raise DataError(f"{where}: face box {[row[c] for c in cols]} is not four numbers") from None
    return (x, y, w, h) if w > 0 and h > 0 else None
