"""Image-folder datasets: ``<split>/<class>/*.jpg`` trees, and finding pictures in them.

Class folders are mapped to FER2013 indices (common spellings accepted:
``angry``/``anger``, ``happy``/``happiness`` ...) and split folders to Usage
names (``train`` → Training, ``test``/``val`` → PublicTest). The same layout
rules serve :func:`load_image_folder` and the converters (``find_pictures``).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from fer_keras.constants import CLASS_ALIASES, CLASS_NAMES, USAGES
from fer_keras.data.dataset import FERDataset, Split
from fer_keras.data.images import read_face
from fer_keras.errors import DataError
from fer_keras.io_utils import natural_key, not_a_folder

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")

# Image-folder split names → FER2013 Usage (the FER2013 image release uses
# train/ and test/, where test is PublicTest; beside a val/ folder, test/ is
# the held-out PrivateTest, see folder_layout).
FOLDER_SPLITS = {
    "train": "Training", "training": "Training",
    "test": "PublicTest", "publictest": "PublicTest",
    "val": "PublicTest", "valid": "PublicTest", "validation": "PublicTest",
    "privatetest": "PrivateTest",
}

VALIDATION_FOLDERS = ("val", "valid", "validation")


def class_index(name):
    """FER2013 index of a class folder name, accepting common spellings."""
    key = name.strip().lower()
    if key.isdigit() and int(key) < len(CLASS_NAMES):
        return int(key)
    if key not in CLASS_ALIASES:
        raise DataError(
            f"unknown class folder {name!r}; expected one of {', '.join(CLASS_NAMES)} (or a common spelling)"
        )
    return CLASS_ALIASES[key]


def load_image_folder(root):
    """Read a ``<split>/<class_name>/*.jpg|png`` tree (or ``<class_name>/*`` alone).

    Faces are converted to 48x48 grey; class folders are mapped to FER2013
    indices (``angry``/``anger``, ``happy``/``happiness`` ...). Split folders
    map to Usage names (``train`` → Training, ``test``/``val`` → PublicTest);
    a tree of class folders only becomes one ``PrivateTest`` split (the split
    an evaluation reads by default). Unreadable files are skipped with a
    warning that counts them; a folder that is neither a known class nor a
    known split is an error. Hidden folders (``.git``, ``__MACOSX``) are ignored.
    """
    root = Path(root)
    subdirs = required_subfolders(root, "<split>/<class>/*.jpg or <class>/*.jpg")
    splits, skipped = {}, []
    for usage, folder in folder_layout(root, subdirs):
        xs, ys = [], []
        for class_dir in image_subfolders(folder):
            label = class_folder_index(class_dir)
            for file in sorted(class_dir.rglob("*")):
                if not file.is_file() or file.suffix.lower() not in IMAGE_EXTENSIONS:
                    continue
                try:
                    xs.append(read_face(file))
                    ys.append(label)
                except DataError as exc:
                    skipped.append(str(exc))
        if xs:
            split = Split(np.stack(xs), np.array(ys, np.int64))
            if usage in splits:  # e.g. both val/ and test/ → PublicTest
                prev = splits[usage]
                split = Split(np.concatenate([prev.x, split.x]), np.concatenate([prev.y, split.y]))
            splits[usage] = split
    if skipped:
        warnings.warn(f"{root}: skipped {len(skipped)} unreadable file(s); first: {skipped[0]}", stacklevel=2)
    if not splits:
        raise DataError(f"{root}: no readable images found")
    ordered = {u: splits[u] for u in USAGES if u in splits}
    return FERDataset(splits=ordered, source=str(root))


def image_subfolders(folder):
    """Sub-folders of ``folder``, sorted, without hidden ones (``.x``, ``__x``)."""
    return sorted(p for p in Path(folder).iterdir()
                  if p.is_dir() and not p.name.startswith((".", "__")))


def required_subfolders(root, expected):
    """:func:`image_subfolders` of ``root``; a :class:`DataError` naming the folder and the
    ``expected`` layout when it is missing or has none (every image-tree reader starts here)."""
    if not Path(root).is_dir():
        raise DataError(not_a_folder(root))
    subdirs = image_subfolders(root)
    if not subdirs:
        raise DataError(f"{root}: no class folders inside (expected {expected})")
    return subdirs


def folder_layout(root, subdirs=None):
    """``[(usage, folder), ...]`` for an image tree: ``[("PrivateTest", root)]``
    when ``root`` holds class folders, else one entry per split folder."""
    subdirs = image_subfolders(root) if subdirs is None else subdirs
    if any(_is_class_name(p.name) for p in subdirs):
        return [("PrivateTest", root)]
    # train/val/test: test/ is the held-out split, not more PublicTest faces to pick epochs on.
    names = {folder.name.lower() for folder in subdirs}
    test_held_out = "test" in names and bool(names & set(VALIDATION_FOLDERS))
    layout, seen = [], {}
    for folder in subdirs:
        name = folder.name.lower()
        usage = "PrivateTest" if test_held_out and name == "test" else FOLDER_SPLITS.get(name)
        if usage is None:
            raise DataError(
                f"{folder}: unknown folder {folder.name!r}; expected class folders "
                f"({', '.join(CLASS_NAMES)}) or split folders ({', '.join(sorted(FOLDER_SPLITS))}) "
                "holding class folders"
            )
        if usage in seen:
            raise DataError(f"{folder}: {folder.name}/ and {seen[usage].name}/ would both be the {usage} split; "
                            "rename or remove one")
        seen[usage] = folder
        layout.append((usage, folder))
    return layout


def class_folder_index(folder):
    try:
        return class_index(folder.name)
    except DataError as exc:
        raise DataError(f"{folder}: {exc}") from None


def _is_class_name(name):
    try:
        class_index(name)
        return True
    except DataError:
        return False


def picture_files(folder, *, recursive=True):
    """Image files in ``folder`` (and below, with ``recursive``); hidden files and folders are passed over."""
    files = folder.rglob("*") if recursive else folder.iterdir()
    return [f for f in files if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS
            and not any(part.startswith((".", "__")) for part in f.relative_to(folder).parts)]


def find_pictures(root):
    """Pictures under ``root`` as ``[(file, usage, label), ...]`` and the layout.

    Layouts: ``"flat"`` (pictures, no sub-folders: usage and label None),
    ``"class"`` (``<class>/``: usage None) and ``"split"``
    (``<split>/<class>/``). Files are in natural order per class.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(not_a_folder(root))
    subdirs = image_subfolders(root)
    if not subdirs:
        files = sorted(picture_files(root, recursive=False), key=natural_key)
        if not files:
            raise DataError(f"{root}: no pictures found ({', '.join(IMAGE_EXTENSIONS)})")
        return [(f, None, None) for f in files], "flat"
    layout = folder_layout(root, subdirs)
    class_level = layout[0][1] == root
    found = []
    for usage, folder in layout:
        for class_dir in image_subfolders(folder):
            label = class_folder_index(class_dir)
            files = sorted(picture_files(class_dir), key=lambda f: natural_key(f.relative_to(class_dir)))
            found.extend((f, None if class_level else usage, label) for f in files)
    if not found:
        raise DataError(f"{root}: no pictures found in its class folders")
    return found, "class" if class_level else "split"
