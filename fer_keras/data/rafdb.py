"""RAF-DB basic (Li et al. 2017): the aligned faces and their seven basic-emotion labels.
"""

from __future__ import annotations

import os
from pathlib import Path

from fer_keras.data._items import Item, check_on_bad, read_items, text_lines
from fer_keras.data.labels import RAFDB_LABEL_MAP
from fer_keras.errors import DataError
from fer_keras.io_utils import not_a_folder

RAFDB_SPLITS = {"train": "Training", "test": "PublicTest"}
"""RAF-DB image name prefix → Usage."""


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
    check_on_bad(on_bad_images)
    root = Path(root)
    if not root.is_dir():
        raise DataError(not_a_folder(root))
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
    for line, text in text_lines(label_file):
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
            items.append(Item(None, label, usage, where,
                               f"{where}: no image for {name} in {image_dir} (looked for {', '.join(candidates)})"))
        else:
            items.append(Item(image_dir / found, label, usage, where))
    if not items:
        raise DataError(f"{label_file}: no label lines")
    return read_items(items, str(root), 7, {}, on_bad_images)
