"""FER+ (Barsoum et al. 2016): ten annotators' votes for every FER2013 face.

``fer2013new.csv`` labels the rows of the original ``fer2013.csv`` by row
order; :func:`load_ferplus` joins them and turns the votes into majority
labels or, in probability mode, soft targets.
"""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np

from fer_keras.constants import USAGES
from fer_keras.data._items import check_num_classes, csv_rows, dataset_info, dropped_text, log_dropped
from fer_keras.data.dataset import SoftSplit, Split
from fer_keras.data.fer2013 import load_fer2013
from fer_keras.data.labels import FERPLUS_COLUMNS, FERPLUS_LABEL_MAP
from fer_keras.errors import ConfigError, DataError


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
    check_num_classes(num_classes)
    ferplus_csv, fer2013_csv = Path(ferplus_csv), Path(fer2013_csv)
    usage, names, votes = _read_ferplus_csv(ferplus_csv)
    faces = load_fer2013(fer2013_csv, cache=cache)
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
        raise DataError(f"{ferplus_csv}: no usable rows (dropped: {dropped_text(dropped)})")
    log_dropped(ferplus_csv, dropped)
    return dataset_info(splits, f"{ferplus_csv} + {fer2013_csv}", num_classes, dropped, files)


def _read_ferplus_csv(path):
    """Usage codes, image names and the (N, 10) votes of fer2013new.csv."""
    rows = csv_rows(path)
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
