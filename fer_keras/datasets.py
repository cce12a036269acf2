"""More datasets: FER+, RAF-DB (basic), AffectNet-7/8 and CK+.

Every reader returns the same structure as :func:`fer_keras.data.load_fer2013`:
a :class:`DatasetInfo` (a :class:`~fer_keras.data.FERDataset`) whose
``splits`` are keyed by FER2013 Usage, each a :class:`~fer_keras.data.Split`
with ``x`` uint8 ``(N, 48, 48, 1)`` and ``y`` int64 in FER2013 label order.
Faces go through :func:`fer_keras.data.read_face` (grey, 48x48), so a model
trained on FER2013 reads them unchanged. On top of that:

- ``dataset.dropped``: ``{reason: count}`` of the rows/images left out on
  purpose (removed images, unknown/NF winners, ties, contempt for 7 classes,
  AffectNet's None/Uncertain/No-Face, ...); ``dataset.summary()`` lists them.
- ``dataset.files``: per split, where each face came from (file name, or FER+
  image name), in the same order as ``x``.
- ``num_classes=8`` keeps contempt as index 7 (``CLASS_NAMES_8``,
  ``dataset.class_names``); with 7 classes it is dropped and counted.
- FER+ in ``mode="probability"`` gives :class:`SoftSplit` s: ``soft`` holds
  one probability row per face (sums to 1) next to the hard ``y``.

Label maps (module-level dicts below), onto FER2013 indices:

===================  =============  ==============  =================  ==========
FER2013 index        FER+ column    RAF-DB label    AffectNet index    CK+ folder
===================  =============  ==============  =================  ==========
0 angry              anger          6 Anger         6 Anger            anger
1 disgust            disgust        3 Disgust       5 Disgust          disgust
2 fear               fear           2 Fear          4 Fear             fear
3 happy              happiness      4 Happiness     1 Happy            happy
4 sad                sadness        5 Sadness       2 Sad              sadness
5 surprise           surprise       1 Surprise      3 Surprise         surprise
6 neutral            neutral        7 Neutral       0 Neutral          neutral
7 contempt (8 cl)    contempt       -               7 Contempt         contempt
dropped              unknown, NF    -               8, 9, 10           -
===================  =============  ==============  =================  ==========

Folder and CSV class *names* (AffectNet, CK+) also accept the spellings of
``CLASS_ALIASES`` (``angry``/``anger``, ``sad``/``sadness`` ...). A label that
is in no map is a :class:`~fer_keras.errors.DataError` naming the file, the
line and the label: nothing is ever remapped silently.

Splits: FER+ keeps FER2013's Usage; RAF-DB ``train_*`` → Training, ``test_*``
→ PublicTest; AffectNet ``train`` → Training, ``val`` → PublicTest, ``test``
→ PrivateTest; CK+ (no official split) puts fold ``fold`` of ``folds``
subject-independent folds into PublicTest and the rest into Training.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import hashlib
import logging
import os
import re
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from fer_keras import data
from fer_keras.constants import CLASS_ALIASES, CLASS_NAMES, CLASS_NAMES_8, INPUT_SHAPE, USAGES
from fer_keras.data import FERDataset, Split
from fer_keras.errors import ConfigError, DataError

log = logging.getLogger(__name__)

CONTEMPT = CLASS_NAMES_8.index("contempt")
"""Index of contempt in the 8-class order (7)."""

DROP = None
"""A label map value meaning "not an expression: leave the face out, count it"."""

# === Label maps ===

FERPLUS_LABEL_MAP = {
    "neutral": 6, "happiness": 3, "surprise": 5, "sadness": 4, "anger": 0,
    "disgust": 1, "fear": 2, "contempt": CONTEMPT, "unknown": DROP, "nf": DROP,
}
"""fer2013new.csv vote column (lower case) → FER2013 index; ``None``: dropped when it wins."""

FERPLUS_COLUMNS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear",
                   "contempt", "unknown", "NF")
"""The vote columns of fer2013new.csv, in the file's order."""

RAFDB_LABEL_MAP = {1: 5, 2: 2, 3: 1, 4: 3, 5: 4, 6: 0, 7: 6}
"""RAF-DB basic label (1 Surprise, 2 Fear, 3 Disgust, 4 Happiness, 5 Sadness,
6 Anger, 7 Neutral) → FER2013 index."""

RAFDB_SPLITS = {"train": "Training", "test": "PublicTest"}
"""RAF-DB image name prefix → Usage."""

AFFECTNET_LABEL_MAP = {0: 6, 1: 3, 2: 4, 3: 5, 4: 2, 5: 1, 6: 0, 7: CONTEMPT, 8: DROP, 9: DROP, 10: DROP}
"""AffectNet expression index (0 Neutral, 1 Happy, 2 Sad, 3 Surprise, 4 Fear,
5 Disgust, 6 Anger, 7 Contempt, 8 None, 9 Uncertain, 10 No-Face) → FER2013
index; 8..10 are dropped."""

AFFECTNET_DROPPED = {8: "none", 9: "uncertain", 10: "no_face"}
"""Names under which AffectNet's non-expression labels are counted in ``dropped``."""

NAME_LABEL_MAP = {**CLASS_ALIASES, "contempt": CONTEMPT, "contemptuous": CONTEMPT}
"""Class names (folder names, CSV label names) → FER2013 index; contempt → 7."""

AFFECTNET_DROPPED_NAMES = {"none": "none", "uncertain": "uncertain", "no-face": "no_face",
                           "no_face": "no_face", "noface": "no_face", "non-face": "no_face"}
"""AffectNet class names that mean "no expression label": dropped and counted."""

AFFECTNET_SPLITS = {"train": "Training", "training": "Training",
                    "val": "PublicTest", "valid": "PublicTest", "validation": "PublicTest",
                    "test": "PrivateTest"}
"""AffectNet split folder / CSV file stem → Usage (AffectNet has no public test set:
its validation set is the usual test split)."""

CKPLUS_LABEL_MAP = {"anger": 0, "disgust": 1, "fear": 2, "happy": 3, "sadness": 4, "surprise": 5,
                    "neutral": 6, "contempt": CONTEMPT}
"""CK+ class folder → FER2013 index (other spellings via ``NAME_LABEL_MAP``)."""

SUBJECT_PATTERN = re.compile(r"^(S\d+)_", re.IGNORECASE)
"""CK+ subject id at the start of a file name: ``S005_001_00000011.png`` → ``S005``."""

AFFECTNET_PATH_COLUMNS = ("subdirectory_filepath", "pth", "path", "image", "image_path", "img", "file",
                          "filename", "file_name", "file_path")
AFFECTNET_LABEL_COLUMNS = ("expression", "label", "emotion", "class")
AFFECTNET_SPLIT_COLUMNS = ("usage", "split", "subset", "set")
AFFECTNET_BOX_COLUMNS = ("face_x", "face_y", "face_width", "face_height")
AFFECTNET_IMAGE_FOLDERS = ("", "Manually_Annotated_Images", "Manually_Annotated/Manually_Annotated_Images")
"""Folders (under the root and under the CSV's folder) where CSV image paths are looked up."""

SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
"""Data with no split at all is split Training/PublicTest/PrivateTest like this, per class, seeded."""

READ_THREADS = min(8, os.cpu_count() or 1)
"""PIL releases the GIL while decoding, so a few threads decode JPEGs in parallel."""


def label_map_table():
    """The label-map table of this module's docstring, rebuilt from the dicts."""
    rows = [("FER2013 index", "FER+ column", "RAF-DB label", "AffectNet index", "CK+ folder")]
    raf_names = {1: "Surprise", 2: "Fear", 3: "Disgust", 4: "Happiness", 5: "Sadness", 6: "Anger", 7: "Neutral"}
    aff_names = {0: "Neutral", 1: "Happy", 2: "Sad", 3: "Surprise", 4: "Fear", 5: "Disgust", 6: "Anger",
                 7: "Contempt"}

    def find(mapping, index):
        return [k for k, v in mapping.items() if v == index]

    for index, name in enumerate(CLASS_NAMES_8):
        label = f"{index} {name}" + (" (8 cl)" if index == CONTEMPT else "")
        raf = " ".join(f"{k} {raf_names[k]}" for k in find(RAFDB_LABEL_MAP, index)) or "-"
        aff = " ".join(f"{k} {aff_names[k]}" for k in find(AFFECTNET_LABEL_MAP, index)) or "-"
        rows.append((label, ", ".join(find(FERPLUS_LABEL_MAP, index)), raf, aff,
                     ", ".join(find(CKPLUS_LABEL_MAP, index)) or "-"))
    dropped_ferplus = ", ".join(c for c in FERPLUS_COLUMNS if FERPLUS_LABEL_MAP[c.lower()] is DROP)
    rows.append(("dropped", dropped_ferplus, "-", ", ".join(str(k) for k in find(AFFECTNET_LABEL_MAP, DROP)), "-"))
    widths = [max(len(r[i]) for r in rows) + 2 for i in range(len(rows[0]))]
    widths[-1] = max(len(r[-1]) for r in rows)
    rule = "  ".join("=" * w for w in widths)

    def line(row):
        return "  ".join(f"{cell:<{w}}" for cell, w in zip(row, widths)).rstrip()

    return "\n".join([rule, line(rows[0]), rule, *(line(r) for r in rows[1:]), rule])


# === Structures ===


@dataclasses.dataclass(frozen=True)
class SoftSplit(Split):
    """A split with soft targets: ``soft`` float32 ``(N, num_classes)``, rows sum to 1.

    ``y`` is the hard label (the most probable class, lowest index on a tie),
    so code that reads only ``x`` and ``y`` keeps working.
    """

    soft: np.ndarray = None


@dataclasses.dataclass
class DatasetInfo(FERDataset):
    """A :class:`FERDataset` that also says what was left out and where faces came from."""

    dropped: dict = dataclasses.field(default_factory=dict)
    """``{reason: count}`` of rows or images left out on purpose."""
    files: dict = dataclasses.field(default_factory=dict)
    """Per Usage, the source of each face (same order as ``x``)."""

    def summary(self):
        lines = [super().summary()]
        if self.dropped:
            lines.append("dropped      " + ", ".join(f"{reason} {n}" for reason, n in self.dropped.items()))
        return "\n".join(lines)


def soft_targets(split, num_classes=len(CLASS_NAMES)):
    """``split.soft`` for a :class:`SoftSplit`, else one-hot rows of ``split.y`` (float32)."""
    soft = getattr(split, "soft", None)
    if soft is not None:
        return soft
    return np.eye(num_classes, dtype=np.float32)[split.y]


# === FER+ ===


def load_ferplus(ferplus_csv, fer2013_csv, *, mode="majority", num_classes=7, cache=True):
    """FER+ labels (``fer2013new.csv``) on the FER2013 faces (``fer2013.csv``).

    Row ``i`` of fer2013new.csv labels row ``i`` of fer2013.csv (as the FER+
    authors' ``generate_training_data.py`` joins them); both must have the same
    number of rows and agree on every row's Usage. The faces are read with
    :func:`fer_keras.data.load_fer2013` (``cache`` is passed on), whose splits
    keep file order, and the official file lists Training, then PublicTest,
    then PrivateTest.

    Left out, and counted in ``dataset.dropped``:

    - ``removed``: rows with an empty ``Image name`` (FER+ removed the image);
    - ``no_votes``: no vote at all (majority), or none in the kept classes
      (probability);
    - majority mode only: ``tie`` (two or more columns share the most votes),
      ``unknown`` and ``not_face`` (the ``unknown`` / ``NF`` column wins);
    - ``contempt`` with ``num_classes=7``: majority winner contempt; in
      probability mode the contempt, unknown and NF votes are simply not
      counted and only rows left with no votes are dropped.

    Args:
      mode: ``"majority"``: ``y`` is the column with the most votes (a
        plurality: ties are dropped, unlike the FER+ code's stricter
        ">half the votes" rule). ``"probability"``: :class:`SoftSplit` s whose
        ``soft`` is each row's votes over the kept classes, normalised (no
        votes are discarded as outliers).
      num_classes: 7 (FER2013 classes) or 8 (plus contempt as index 7).
    """
    if mode not in ("majority", "probability"):
        raise ConfigError(f"mode must be 'majority' or 'probability', not {mode!r}")
    _check_num_classes(num_classes)
    ferplus_csv, fer2013_csv = Path(ferplus_csv), Path(fer2013_csv)
    usage, names, votes = _read_ferplus_csv(ferplus_csv)
    faces = data.load_fer2013(fer2013_csv, cache=cache)
    n_fer = sum(len(s) for s in faces.splits.values())
    if n_fer != len(usage):
        raise DataError(
            f"{ferplus_csv} has {len(usage)} data rows but {fer2013_csv} has {n_fer}: FER+ labels are "
            "joined to the FER2013 faces by row order, so both must list the same images "
            "(the full 35,887-row fer2013.csv)")
    fer_usage = np.concatenate([np.full(len(s), USAGES.index(u), np.int8) for u, s in faces.splits.items()])
    wrong = np.flatnonzero(fer_usage != usage)
    if len(wrong):
        i = int(wrong[0])
        raise DataError(
            f"{ferplus_csv}:{i + 2}: Usage is {USAGES[usage[i]]!r} but row {i + 1} of {fer2013_csv} is "
            f"{USAGES[fer_usage[i]]!r} ({len(wrong)} row(s) disagree); the files are joined by row order, "
            "so they must list the same images in the same order")
    x_all = np.concatenate([s.x for s in faces.splits.values()])

    dropped = collections.Counter()
    keep = np.array([bool(n) for n in names])
    dropped["removed"] = int((~keep).sum())
    fer_index = [FERPLUS_LABEL_MAP[c.lower()] for c in FERPLUS_COLUMNS]
    if mode == "majority":
        top = votes.max(axis=1)
        winner = votes.argmax(axis=1)
        tie = (votes == top[:, None]).sum(axis=1) > 1
        reasons = [("no_votes", top == 0), ("tie", tie),
                   ("unknown", winner == FERPLUS_COLUMNS.index("unknown")),
                   ("not_face", winner == FERPLUS_COLUMNS.index("NF"))]
        if num_classes == 7:
            reasons.append(("contempt", winner == FERPLUS_COLUMNS.index("contempt")))
        for reason, mask in reasons:
            hit = keep & mask
            dropped[reason] = int(hit.sum())
            keep &= ~mask
        lookup = np.array([-1 if v is None else v for v in fer_index])
        y_all = lookup[winner].astype(np.int64)
        soft_all = None
    else:
        soft_all = np.zeros((len(votes), num_classes), np.float32)
        for column, index in enumerate(fer_index):
            if index is not None and index < num_classes:
                soft_all[:, index] = votes[:, column]
        total = soft_all.sum(axis=1)
        no_votes = keep & (total == 0)
        dropped["no_votes"] = int(no_votes.sum())
        keep &= ~no_votes
        soft_all[keep] /= total[keep, None]
        y_all = soft_all.argmax(axis=1).astype(np.int64)

    splits, files = {}, {}
    for code, name in enumerate(USAGES):
        idx = np.flatnonzero(keep & (usage == code))
        if not len(idx):
            continue
        if soft_all is None:
            splits[name] = Split(x_all[idx], y_all[idx])
        else:
            splits[name] = SoftSplit(x_all[idx], y_all[idx], soft_all[idx])
        files[name] = [names[i] for i in idx]
    dropped = {reason: n for reason, n in dropped.items() if n}
    if not splits:
        raise DataError(f"{ferplus_csv}: no usable rows (dropped: {_dropped_text(dropped)})")
    _log_dropped(ferplus_csv, dropped)
    return _dataset(splits, f"{ferplus_csv} + {fer2013_csv}", num_classes, dropped, files)


def _read_ferplus_csv(path):
    """Usage codes, image names and the (N, 10) votes of fer2013new.csv."""
    rows = _csv_rows(path)
    header_line, header = next(rows, (1, None))
    if not header:
        raise DataError(f"{path}:1: the file is empty (expected the fer2013new.csv header "
                        f"'Usage,Image name,{','.join(FERPLUS_COLUMNS)}')")
    lower = [h.strip().lower() for h in header]
    known = {"usage", "image name", *FERPLUS_LABEL_MAP}
    unknown = [h for h in header if h.strip().lower() not in known]
    if unknown:
        raise DataError(f"{path}:{header_line}: unknown column(s) {', '.join(map(repr, unknown))}; "
                        f"expected Usage, Image name, {', '.join(FERPLUS_COLUMNS)}")
    missing = [c for c in ("Usage", "Image name", *FERPLUS_COLUMNS) if c.lower() not in lower]
    if missing:
        raise DataError(f"{path}:{header_line}: missing column(s) {', '.join(missing)} "
                        f"(found: {', '.join(header)})")
    usage_col, name_col = lower.index("usage"), lower.index("image name")
    vote_cols = [lower.index(c.lower()) for c in FERPLUS_COLUMNS]
    usage_codes = {u.lower(): i for i, u in enumerate(USAGES)}
    usage, names, votes = [], [], []
    for line, row in rows:
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise DataError(f"{path}:{line}: expected {len(header)} comma-separated fields, found {len(row)}")
        code = usage_codes.get(row[usage_col].strip().lower())
        if code is None:
            raise DataError(f"{path}:{line}: Usage is {row[usage_col]!r}; expected {', '.join(USAGES)}")
        counts = []
        for column, c in zip(FERPLUS_COLUMNS, vote_cols):
            try:
                value = float(row[c])
            except ValueError:
                value = -1.0
            if not value >= 0:
                raise DataError(f"{path}:{line}: vote count {column!r} is {row[c]!r}; expected a number >= 0")
            counts.append(value)
        usage.append(code)
        names.append(row[name_col].strip())
        votes.append(counts)
    if not usage:
        raise DataError(f"{path}:{header_line + 1}: the file has a header but no data rows")
    return np.array(usage, np.int8), names, np.array(votes, np.float64).reshape(-1, len(FERPLUS_COLUMNS))


# === RAF-DB ===


def load_rafdb(root, *, on_bad_images="error"):
    """RAF-DB basic: ``EmoLabel/list_patition_label.txt`` + ``Image/aligned/``.

    Each label line is ``train_00001.jpg 5`` (RAF labels 1..7, see
    ``RAFDB_LABEL_MAP``); the face is ``Image/aligned/train_00001_aligned.jpg``
    (or the plain name ``train_00001.jpg``; an ``aligned/`` folder directly
    under ``root`` works too). ``train_*`` → Training, ``test_*`` → PublicTest.

    Args:
      on_bad_images: ``"error"``: a missing or unreadable image is a
        DataError naming the label line; ``"skip"``: leave it out, count it
        (``dropped["bad_image"]``) and warn.
    """
    _check_on_bad(on_bad_images)
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder")
    label_file = next((p for p in (root / "EmoLabel" / "list_patition_label.txt",
                                   root / "EmoLabel" / "list_partition_label.txt") if p.is_file()), None)
    if label_file is None:
        raise DataError(f"{root}: no EmoLabel/list_patition_label.txt (expected the RAF-DB basic layout: "
                        "EmoLabel/list_patition_label.txt and Image/aligned/*_aligned.jpg)")
    image_dir = next((p for p in (root / "Image" / "aligned", root / "aligned") if p.is_dir()), None)
    if image_dir is None:
        raise DataError(f"{root}: no Image/aligned/ folder (expected the aligned RAF-DB faces "
                        "Image/aligned/train_00001_aligned.jpg ...)")
    present = {p.name for p in image_dir.iterdir()}
    items = []
    for line, text in _text_lines(label_file):
        fields = text.split()
        if len(fields) != 2:
            raise DataError(f"{label_file}:{line}: expected '<image name> <label 1..7>' "
                            f"(e.g. 'train_00001.jpg 5'), found {text.strip()!r}")
        name, raw = fields
        label = RAFDB_LABEL_MAP.get(int(raw)) if raw.isdigit() else None
        if label is None:
            raise DataError(f"{label_file}:{line}: label {raw!r} of {name} is not a RAF-DB basic label "
                            "(1 Surprise, 2 Fear, 3 Disgust, 4 Happiness, 5 Sadness, 6 Anger, 7 Neutral)")
        usage = RAFDB_SPLITS.get(name.split("_", 1)[0].lower())
        if usage is None:
            raise DataError(f"{label_file}:{line}: image name {name!r} starts with neither 'train_' nor 'test_'")
        stem, suffix = os.path.splitext(name)
        candidates = [f"{stem}_aligned{suffix}", name]
        found = next((c for c in candidates if c in present), None)
        where = f"{label_file}:{line}"
        if found is None:
            items.append(_Item(None, label, usage, where,
                               f"{where}: no image for {name} in {image_dir} (looked for {', '.join(candidates)})"))
        else:
            items.append(_Item(image_dir / found, label, usage, where))
    if not items:
        raise DataError(f"{label_file}: no label lines")
    return _from_items(items, str(root), 7, {}, on_bad_images)


# === AffectNet ===


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
    _check_num_classes(num_classes)
    _check_on_bad(on_bad_images)
    root = Path(root)
    if csv_files is None and root.suffix.lower() == ".csv" and root.is_file():
        csv_files, root = [root], root.parent
    if not root.is_dir():
        raise DataError(f"{root}: no such folder")
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
        raise DataError(f"{root}: no usable images (dropped: {_dropped_text(dropped)})")
    return _from_items(items, str(root), num_classes, dropped, on_bad_images, split_seed=split_seed)


def _affectnet_folder_items(root, num_classes, dropped):
    """Items of an image-folder tree, or None when ``root`` holds no class/split folders."""
    subdirs = data.image_subfolders(root)
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
        for class_dir in data.image_subfolders(folder):
            label = _affectnet_folder_label(class_dir)
            for file in _image_files(class_dir):
                final = _final_label(label, num_classes, dropped)
                if final is not None:
                    items.append(_Item(file, final, usage, str(file)))
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
        rows = _csv_rows(csv_file)
        header_line, header = next(rows, (1, None))
        if not header:
            raise DataError(f"{csv_file}:1: the file is empty (expected a header such as 'pth,label' or "
                            "'subDirectory_filePath,...,expression')")
        lower = [h.strip().lower() for h in header]
        path_col = _pick_column(lower, AFFECTNET_PATH_COLUMNS)
        label_col = _pick_column(lower, AFFECTNET_LABEL_COLUMNS)
        if path_col is None or label_col is None:
            what = "image-path" if path_col is None else "label"
            wanted = AFFECTNET_PATH_COLUMNS if path_col is None else AFFECTNET_LABEL_COLUMNS
            raise DataError(f"{csv_file}:{header_line}: no {what} column (found: {', '.join(header)}; "
                            f"expected one of {', '.join(wanted)})")
        split_col = _pick_column(lower, AFFECTNET_SPLIT_COLUMNS)
        box_cols = [lower.index(c) for c in AFFECTNET_BOX_COLUMNS] if all(
            c in lower for c in AFFECTNET_BOX_COLUMNS) else None
        file_usage = AFFECTNET_SPLITS.get(csv_file.stem.lower())
        folders = _unique_dirs([base / sub for base in (csv_file.parent, root) for sub in AFFECTNET_IMAGE_FOLDERS])
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
            final = _final_label(label, num_classes, dropped)
            if final is None:
                continue
            path = next((f / rel for f in folders if (f / rel).is_file()), None)
            box = _face_box(row, box_cols, where) if box_cols else None
            if path is None:
                tried = ", ".join(str(f / rel) for f in folders[:3])
                items.append(_Item(None, final, usage, where, f"{where}: image {rel!r} not found (looked in {tried})"))
            else:
                items.append(_Item(path, final, usage, where, box=box))
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


# === CK+ ===


def load_ckplus(root, *, folds=10, fold=0, seed=0, num_classes=7, on_bad_images="error"):
    """CK+ from class folders ``root/<class>/*.png`` (anger, contempt, disgust,
    fear, happy, sadness, surprise, and neutral when present).

    CK+ has no official split. When every file name starts with a subject id
    (``S005_001_00000011.png`` → ``S005``), subjects are shuffled with ``seed``
    and dealt into ``folds`` folds (each to the fold holding the fewest images
    so far), so all faces of a subject land in the same fold: fold ``fold`` →
    PublicTest, the others → Training, and no subject is in both. Without
    subject ids, folds are stratified by class (seeded) and a warning says
    they are not subject-independent. Contempt is dropped (``dropped
    ["contempt"]``) with 7 classes, index 7 with 8.
    """
    _check_num_classes(num_classes)
    _check_on_bad(on_bad_images)
    if not isinstance(folds, int) or folds < 2:
        raise ConfigError(f"folds must be an integer >= 2, not {folds!r}")
    if not isinstance(fold, int) or not 0 <= fold < folds:
        raise ConfigError(f"fold must be 0..{folds - 1}, not {fold!r}")
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder")
    class_dirs = data.image_subfolders(root)
    if not class_dirs:
        raise DataError(f"{root}: no class folders inside (expected anger/, disgust/, ... holding *.png)")
    dropped = collections.Counter()
    items = []
    for class_dir in class_dirs:
        key = class_dir.name.strip().lower()
        label = CKPLUS_LABEL_MAP.get(key, NAME_LABEL_MAP.get(key))
        if label is None:
            raise DataError(f"{class_dir}: unknown class folder {class_dir.name!r}; expected "
                            f"{', '.join(CKPLUS_LABEL_MAP)}")
        for file in _image_files(class_dir):
            final = _final_label(label, num_classes, dropped)
            if final is not None:
                items.append(_Item(file, final, None, str(file)))
    if not items:
        raise DataError(f"{root}: no usable images (dropped: {_dropped_text(dropped)})")
    subjects = [SUBJECT_PATTERN.match(item.path.name) for item in items]
    if all(subjects):
        fold_of = _subject_folds([m.group(1).upper() for m in subjects], folds, seed, root)
    else:
        missing = sum(1 for m in subjects if not m)
        warnings.warn(f"{root}: {missing} of {len(items)} file names carry no subject id (S005_...); the "
                      f"{folds} folds are stratified by class but NOT subject-independent", stacklevel=2)
        fold_of = _stratified_folds(np.array([it.label for it in items]), folds, seed)
    items = [dataclasses.replace(it, usage="PublicTest" if f == fold else "Training")
             for it, f in zip(items, fold_of)]
    return _from_items(items, str(root), num_classes, dropped, on_bad_images)


def _subject_folds(subjects, folds, seed, root):
    names = sorted(set(subjects))
    if len(names) < folds:
        raise DataError(f"{root}: only {len(names)} subject(s); cannot make {folds} subject-independent folds")
    sizes = collections.Counter(subjects)
    rng = np.random.default_rng(seed)
    load = np.zeros(folds, np.int64)
    fold_of_subject = {}
    for i in rng.permutation(len(names)):
        target = int(np.argmin(load))
        fold_of_subject[names[i]] = target
        load[target] += sizes[names[i]]
    return [fold_of_subject[s] for s in subjects]


def _stratified_folds(labels, folds, seed):
    rng = np.random.default_rng(seed)
    fold_of = np.zeros(len(labels), np.int64)
    offset = 0
    for label in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == label))
        fold_of[idx] = (offset + np.arange(len(idx))) % folds
        offset += len(idx)
    return fold_of.tolist()


# === Shared machinery ===


@dataclasses.dataclass(frozen=True)
class _Item:
    path: Path | None
    label: int
    usage: str | None
    where: str
    missing: str = ""
    box: tuple | None = None


def _check_num_classes(num_classes):
    if num_classes not in (7, 8):
        raise ConfigError(f"num_classes must be 7 (FER2013 classes) or 8 (plus contempt), not {num_classes!r}")


def _check_on_bad(on_bad_images):
    if on_bad_images not in ("error", "skip"):
        raise ConfigError(f"on_bad_images must be 'error' or 'skip', not {on_bad_images!r}")


def _final_label(label, num_classes, dropped):
    """The label to keep, or None after counting why it is dropped."""
    if isinstance(label, str):
        dropped[label] += 1
        return None
    if label == CONTEMPT and num_classes == 7:
        dropped["contempt"] += 1
        return None
    return label


def _image_files(folder):
    return [f for f in sorted(folder.rglob("*"))
            if f.is_file() and f.suffix.lower() in data.IMAGE_EXTENSIONS]


def _csv_rows(path):
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


def _text_lines(path):
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    return [(i, line) for i, line in enumerate(text.splitlines(), 1) if line.strip()]


def _pick_column(lower, candidates):
    return next((lower.index(c) for c in candidates if c in lower), None)


def _unique_dirs(paths):
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
        face = data.read_face(item.path, box=item.box)
        return face, ""
    except DataError as exc:
        return None, f"{item.where}: {exc}" if item.where != str(item.path) else str(exc)


def _from_items(items, source, num_classes, dropped, on_bad_images, *, split_seed=1234):
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
        for name, idx in _stratified_split(y[unsplit], split_seed).items():
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
    _log_dropped(source, dropped)
    return _dataset(splits, source, num_classes, dropped, files)


def _stratified_split(y, seed):
    """``{usage: indices}``: 80/10/10 per class, seeded (as load_fer2013 does for a CSV without Usage)."""
    rng = np.random.default_rng(seed)
    parts = {name: [] for name in USAGES}
    for label in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == label))
        n_val = int(round(len(idx) * SPLIT_FRACTIONS[1]))
        n_test = int(round(len(idx) * SPLIT_FRACTIONS[2]))
        parts[USAGES[1]].append(idx[:n_val])
        parts[USAGES[2]].append(idx[n_val: n_val + n_test])
        parts[USAGES[0]].append(idx[n_val + n_test:])
    return {name: np.sort(np.concatenate(chunks)) for name, chunks in parts.items()}


def _dataset(splits, source, num_classes, dropped, files):
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


def _dropped_text(dropped):
    return ", ".join(f"{reason} {n}" for reason, n in dropped.items() if n) or "nothing"


def _log_dropped(source, dropped):
    if dropped:
        log.info("%s: dropped %s", source, _dropped_text(dropped))


__all__ = ["AFFECTNET_LABEL_MAP", "CKPLUS_LABEL_MAP", "CLASS_NAMES_8", "CONTEMPT", "DatasetInfo",
           "FERPLUS_LABEL_MAP", "NAME_LABEL_MAP", "RAFDB_LABEL_MAP", "SoftSplit", "label_map_table",
           "load_affectnet", "load_ckplus", "load_ferplus", "load_rafdb", "soft_targets"]
