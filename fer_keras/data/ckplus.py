"""CK+ (Lucey et al. 2010): peak-expression frames in class folders, split by subject.

CK+ has no official split; :func:`load_ckplus` deals subjects into folds so
no person is in both Training and the held-out fold.
"""

from __future__ import annotations

import collections
import dataclasses
import re
import warnings
from pathlib import Path

import numpy as np

from fer_keras.data._items import (Item, check_num_classes, check_on_bad, dropped_text, final_label, image_files,
                                   read_items)
from fer_keras.data.folders import required_subfolders
from fer_keras.data.labels import CKPLUS_LABEL_MAP, NAME_LABEL_MAP
from fer_keras.errors import ConfigError, DataError

SUBJECT_PATTERN = re.compile(r"^(S\d+)_", re.IGNORECASE)
"""CK+ subject id at the start of a file name: ``S005_001_00000011.png`` → ``S005``."""


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
    check_num_classes(num_classes)
    check_on_bad(on_bad_images)
    if not isinstance(folds, int) or folds < 2:
        raise ConfigError(f"folds must be an integer >= 2, not {folds!r}")
    if not isinstance(fold, int) or not 0 <= fold < folds:
        raise ConfigError(f"fold must be 0..{folds - 1}, not {fold!r}")
    root = Path(root)
    class_dirs = required_subfolders(root, "anger/, disgust/, ... holding *.png")
    dropped = collections.Counter()
    items = []
    for class_dir in class_dirs:
        key = class_dir.name.strip().lower()
        label = CKPLUS_LABEL_MAP.get(key, NAME_LABEL_MAP.get(key))
        if label is None:
            raise DataError(f"{class_dir}: unknown class folder {class_dir.name!r}; expected "
                            f"{', '.join(CKPLUS_LABEL_MAP)}")
        for file in image_files(class_dir):
            final = final_label(label, num_classes, dropped)
            if final is not None:
                items.append(Item(file, final, None, str(file)))
    if not items:
        raise DataError(f"{root}: no usable images (dropped: {dropped_text(dropped)})")
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
    return read_items(items, str(root), num_classes, dropped, on_bad_images)


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
