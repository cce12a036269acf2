"""FER2013 data: the Kaggle CSV, image-folder datasets, balanced copies.

Everything returns a :class:`FERDataset`: a ``splits`` dict keyed by FER2013
Usage (``Training``, ``PublicTest``, ``PrivateTest``; only those present), each
a :class:`Split` with ``x`` uint8 ``(N, 48, 48, 1)`` and ``y`` int ``(N,)``.

Parsing the CSV is the slow part of every run (74M numbers), so the parsed
arrays are cached as ``.npz`` and reused until the CSV's size or mtime changes.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import logging
import os
import warnings
from pathlib import Path

import numpy as np

from fer_keras import _csv_kernel as kernel
from fer_keras.constants import (
    CLASS_ALIASES,
    CLASS_NAMES,
    IMAGE_SIZE,
    INPUT_SHAPE,
    PIXELS_PER_IMAGE,
    USAGES,
)
from fer_keras.errors import DataError
from fer_keras.io_utils import atomic_path

log = logging.getLogger(__name__)

CACHE_VERSION = "1"
"""Bump when the parser's output changes so old caches are ignored."""

CHUNK_BYTES = 32 << 20
"""Parse this many bytes at a time: bounded memory, early stop on junk."""

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")

# Image-folder split names → FER2013 Usage (the FER2013 image release uses
# train/ and test/, where test is PublicTest).
FOLDER_SPLITS = {
    "train": "Training", "training": "Training",
    "test": "PublicTest", "publictest": "PublicTest",
    "val": "PublicTest", "valid": "PublicTest", "validation": "PublicTest",
    "privatetest": "PrivateTest",
}


@dataclasses.dataclass(frozen=True)
class Split:
    """One split: faces ``x`` (uint8, N x 48 x 48 x 1) and labels ``y`` (int64)."""

    x: np.ndarray
    y: np.ndarray

    def __len__(self):
        return len(self.y)

    def class_counts(self, num_classes=len(CLASS_NAMES)):
        """Number of faces per class, in FER2013 order."""
        return np.bincount(self.y, minlength=num_classes)


@dataclasses.dataclass
class FERDataset:
    """Splits keyed by Usage, plus where they came from."""

    splits: dict
    source: str
    checksum: str = ""
    class_names: tuple = CLASS_NAMES

    def __getitem__(self, usage):
        try:
            return self.splits[usage]
        except KeyError:
            raise DataError(
                f"{self.source}: no {usage!r} split (present: {', '.join(self.splits)})"
            ) from None

    def __contains__(self, usage):
        return usage in self.splits

    def summary(self):
        """One line per split: size and class counts."""
        lines = []
        for usage, split in self.splits.items():
            counts = " ".join(str(c) for c in split.class_counts(len(self.class_names)))
            lines.append(f"{usage:<12} {len(split):>6} faces  per class: {counts}")
        return "\n".join(lines)


# --------------------------------------------------------------------------
# FER2013 CSV
# --------------------------------------------------------------------------


def load_fer2013(
    path,
    *,
    cache=True,
    cache_dir=None,
    on_bad_rows="error",
    num_classes=len(CLASS_NAMES),
    split_seed=1234,
):
    """Read a FER2013-layout CSV (``.csv`` or ``.csv.gz``).

    Args:
      path: the CSV; columns ``emotion`` and ``pixels``, optionally ``Usage``,
        in any order.
      cache: reuse/write a parsed ``.npz`` (next to the CSV when that folder
        is writable, else in ``cache_dir`` or ``~/.cache/fer_keras``).
      on_bad_rows: ``"error"`` stops at the first bad row with its line number;
        ``"skip"`` drops bad rows and warns how many.
      num_classes: labels must lie in ``0..num_classes-1``.
      split_seed: a CSV without ``Usage`` (custom data) is split 80/10/10,
        stratified by class, into Training/PublicTest/PrivateTest with this seed.
    """
    if on_bad_rows not in ("error", "skip"):
        raise ValueError("on_bad_rows must be 'error' or 'skip'")
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    stat = path.stat()
    key = f"{CACHE_VERSION}|{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{on_bad_rows}|{num_classes}|{split_seed}"
    cache_file = _cache_file(path, cache_dir) if cache else None
    if cache_file is not None and cache_file.is_file():
        cached = _read_cache(cache_file, key, str(path))
        if cached is not None:
            return cached

    x, y, usage, checksum = _parse_csv(path, on_bad_rows=on_bad_rows, num_classes=num_classes)
    if usage is None:
        splits = _stratified_splits(x, y, seed=split_seed)
    else:
        splits = {}
        for name in list(USAGES) + sorted(set(usage) - set(USAGES)):
            mask = usage == name
            if mask.any():
                splits[name] = Split(x[mask], y[mask])
    dataset = FERDataset(splits=splits, source=str(path), checksum=checksum)
    if cache_file is not None:
        _write_cache(cache_file, key, dataset)
    return dataset


def _cache_file(path, cache_dir):
    if cache_dir is None and os.access(path.parent, os.W_OK):
        return path.with_name(path.name + ".fer_keras.npz")
    root = Path(cache_dir or os.environ.get("FER_KERAS_CACHE", Path.home() / ".cache" / "fer_keras"))
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:16]
    return root / f"{path.name}.{digest}.npz"


def _read_cache(cache_file, key, source):
    try:
        with np.load(cache_file, allow_pickle=False) as npz:
            if str(npz["key"]) != key:
                return None
            names = [str(n) for n in npz["usages"]]
            splits = {n: Split(npz[f"x_{n}"], npz[f"y_{n}"]) for n in names}
            return FERDataset(splits=splits, source=source, checksum=str(npz["checksum"]))
    except Exception as exc:  # a damaged cache is only a missed shortcut
        log.warning("ignoring unreadable cache %s (%s)", cache_file, exc)
        return None


def _write_cache(cache_file, key, dataset):
    arrays = {"key": np.array(key), "checksum": np.array(dataset.checksum),
              "usages": np.array(list(dataset.splits))}
    for name, split in dataset.splits.items():
        arrays[f"x_{name}"] = split.x
        arrays[f"y_{name}"] = split.y
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(cache_file) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)
    except OSError as exc:
        log.warning("could not write cache %s (%s)", cache_file, exc)


def _open_bytes(path):
    """A binary stream of the CSV's text, gunzipped when it is gzip."""
    raw = open(path, "rb")
    magic = raw.read(2)
    raw.seek(0)
    if magic == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=raw)
    return raw


def _parse_header(stream, path):
    first = stream.readline(1 << 16)
    if not first.strip():
        raise DataError(f"{path}: the file is empty (expected a header 'emotion,pixels,Usage')")
    try:
        text = first.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DataError(f"{path}:1: the header is not UTF-8 text; is this a CSV file?") from None
    names = [n.strip().strip('"').strip() for n in text.strip().split(",")]
    missing = [c for c in ("emotion", "pixels") if c not in names]
    if missing:
        raise DataError(
            f"{path}:1: missing column(s) {', '.join(missing)} "
            f"(found: {', '.join(names) or 'nothing'}; expected emotion,pixels[,Usage])"
        )
    usage_field = names.index("Usage") if "Usage" in names else -1
    return len(names), names.index("emotion"), names.index("pixels"), usage_field


def _parse_csv(path, *, on_bad_rows, num_classes):
    """Parse the whole file in chunks; returns x, y, usage (or None), sha256."""
    hasher = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            hasher.update(block)
    with _open_bytes(path) as stream:
        try:
            fields = _parse_header(stream, path)
        except (OSError, EOFError) as exc:
            raise DataError(f"{path}: cannot read ({exc})") from None
        pieces = []
        n_bad = 0
        first_bad = None
        line = 2
        carry = b""
        while True:
            try:
                block = stream.read(CHUNK_BYTES)
            except (OSError, EOFError) as exc:
                raise DataError(f"{path}: corrupt or truncated file ({exc})") from None
            data = carry + block
            if not block:
                if not data.strip():
                    break
                data += b"\n"
                carry = b""
            else:
                cut = data.rfind(b"\n") + 1
                if cut == 0 and len(data) > 64 * PIXELS_PER_IMAGE:
                    raise DataError(f"{path}:{line}: no line break in {len(data):,} bytes; not a FER2013 CSV")
                data, carry = data[:cut], data[cut:]
            if data:
                piece, line = _scan_chunk(data, line, fields, path, num_classes)
                bad = piece["status"] != kernel.ROW_OK
                if bad.any():
                    if on_bad_rows == "error":
                        _raise_row_error(piece, np.flatnonzero(bad)[0], path, num_classes)
                    n_bad += int(bad.sum())
                    if first_bad is None:
                        first_bad = _row_message(piece, np.flatnonzero(bad)[0], path, num_classes)
                    piece = {k: v[~bad] for k, v in piece.items()}
                pieces.append(piece)
            if not block:
                break
    n_rows = sum(len(p["y"]) for p in pieces)
    if n_bad:
        warnings.warn(f"{path}: skipped {n_bad} bad row(s); first: {first_bad}", stacklevel=3)
    if n_rows == 0:
        raise DataError(f"{path}: the file has a header but no valid rows")
    x = np.concatenate([p["x"] for p in pieces]).reshape((-1,) + INPUT_SHAPE)
    y = np.concatenate([p["y"] for p in pieces])
    usage = np.concatenate([p["usage"] for p in pieces]) if fields[3] >= 0 else None
    return x, y, usage, hasher.hexdigest()


def _scan_chunk(data, first_line, fields, path, num_classes):
    n_fields, label_field, pixel_field, usage_field = fields
    buf = np.frombuffer(data, np.uint8)
    max_rows = int(np.count_nonzero(buf == 10)) + 1
    pixels, labels, span, status, detail, line_of = kernel.empty_outputs(max_rows)
    n = kernel.scan_rows(buf, first_line, n_fields, label_field, pixel_field, usage_field,
                         pixels, labels, span, status, detail, line_of)
    status, detail, labels = status[:n], detail[:n], labels[:n]
    out_of_range = (status == kernel.ROW_OK) & (labels >= num_classes)
    status[out_of_range] = -1  # label outside 0..num_classes-1
    detail[out_of_range] = labels[out_of_range]
    usage = np.empty(n, dtype=object)
    if usage_field >= 0:
        for i, (start, end) in enumerate(span[:n]):
            text = data[start:end].decode("utf-8", errors="replace") if start >= 0 else ""
            usage[i] = text.strip('"')
    piece = {
        "x": pixels[: n * PIXELS_PER_IMAGE].reshape(n, PIXELS_PER_IMAGE),
        "y": labels.astype(np.int64),
        "usage": usage,
        "status": status,
        "detail": detail,
        "line": line_of[:n],
    }
    next_line = first_line + int(np.count_nonzero(buf == 10))
    return piece, next_line


def _row_message(piece, i, path, num_classes):
    code, info, line = int(piece["status"][i]), int(piece["detail"][i]), int(piece["line"][i])
    where = f"{path}:{line}"
    if code == kernel.ROW_FIELD_COUNT:
        return f"{where}: expected 3 comma-separated fields (emotion,pixels,Usage), found {info}"
    if code == kernel.ROW_BAD_LABEL:
        what = "is empty" if info < 0 else f"contains {chr(info)!r}"
        return f"{where}: field 'emotion' {what}; expected an integer 0..{num_classes - 1}"
    if code == -1:
        return f"{where}: field 'emotion' is {info}; expected 0..{num_classes - 1}"
    if code == kernel.ROW_BAD_PIXEL_CHAR:
        shown = chr(info) if 32 < info < 127 else f"byte 0x{info:02x}"
        return f"{where}: field 'pixels' contains {shown!r}; expected integers 0..255 separated by spaces"
    if code == kernel.ROW_PIXEL_COUNT:
        return f"{where}: field 'pixels' has {info} values; expected {PIXELS_PER_IMAGE} (48x48)"
    if code == kernel.ROW_PIXEL_RANGE:
        return f"{where}: field 'pixels' has value {info}; expected 0..255"
    return f"{where}: malformed row"


def _raise_row_error(piece, i, path, num_classes):
    raise DataError(_row_message(piece, i, path, num_classes) + " (use on_bad_rows='skip' / --skip-bad-rows to drop such rows)")


def _stratified_splits(x, y, *, seed, fractions=(0.8, 0.1, 0.1)):
    """Split custom data (no Usage column) 80/10/10 per class, seeded."""
    rng = np.random.default_rng(seed)
    parts = {name: [] for name in USAGES}
    for label in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == label))
        n_val = int(round(len(idx) * fractions[1]))
        n_test = int(round(len(idx) * fractions[2]))
        parts[USAGES[1]].append(idx[:n_val])
        parts[USAGES[2]].append(idx[n_val: n_val + n_test])
        parts[USAGES[0]].append(idx[n_val + n_test:])
    splits = {}
    for name, chunks in parts.items():
        idx = np.sort(np.concatenate(chunks))
        if len(idx):
            splits[name] = Split(x[idx], y[idx])
    return splits


# --------------------------------------------------------------------------
# Image folders
# --------------------------------------------------------------------------


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


def read_face(path, size=IMAGE_SIZE):
    """One image file → uint8 (size, size, 1) grey array. Raises DataError."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.draft("L", (size, size))  # JPEG: decode at reduced size, much faster
            grey = img.convert("L")
            if grey.size != (size, size):
                grey = grey.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
            return np.asarray(grey, dtype=np.uint8)[..., None]
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"{path}: not a readable image ({type(exc).__name__}: {exc})") from None


def load_image_folder(root):
    """Read a ``<split>/<class_name>/*.jpg|png`` tree (or ``<class_name>/*`` alone).

    Faces are converted to 48x48 grey; class folders are mapped to FER2013
    indices (``angry``/``anger``, ``happy``/``happiness`` ...). Split folders
    map to Usage names (``train`` → Training, ``test``/``val`` → PublicTest);
    a tree of class folders only becomes one ``PrivateTest`` split (the split
    an evaluation reads by default). Unreadable files are skipped with a
    warning that counts them.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder")
    subdirs = sorted(p for p in root.iterdir() if p.is_dir())
    if not subdirs:
        raise DataError(f"{root}: no class folders inside (expected <split>/<class>/*.jpg)")
    class_level = all(_is_class_name(p.name) for p in subdirs)
    layout = [("PrivateTest", root)] if class_level else [
        (FOLDER_SPLITS.get(p.name.lower(), p.name), p) for p in subdirs
    ]
    splits, skipped = {}, []
    for usage, folder in layout:
        xs, ys = [], []
        for class_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
            label = class_index(class_dir.name)
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
    ordered = {u: splits[u] for u in list(USAGES) + sorted(set(splits) - set(USAGES)) if u in splits}
    return FERDataset(splits=ordered, source=str(root))


def _is_class_name(name):
    try:
        class_index(name)
        return True
    except DataError:
        return False


# --------------------------------------------------------------------------
# Balanced copies
# --------------------------------------------------------------------------


def balanced(split, *, mode="mean", seed=0, num_classes=len(CLASS_NAMES)):
    """A class-balanced copy of ``split`` (the balanced FER2013 variant).

    ``mode``: ``"undersample"`` cuts every class to the smallest class's size,
    ``"oversample"`` repeats faces (drawn with replacement) up to the largest,
    ``"mean"`` brings every class to the mean class size (undersampling large
    classes and oversampling small ones). Seeded; faces are shuffled.
    """
    counts = split.class_counts(num_classes)
    present = counts[counts > 0]
    target = {"undersample": present.min(), "oversample": present.max(),
              "mean": int(round(present.mean()))}.get(mode)
    if target is None:
        raise ValueError("mode must be 'undersample', 'oversample' or 'mean'")
    rng = np.random.default_rng(seed)
    chosen = []
    for label in np.flatnonzero(counts):
        idx = np.flatnonzero(split.y == label)
        take = rng.permutation(idx)[:target]
        if len(take) < target:
            take = np.concatenate([take, rng.choice(idx, target - len(take), replace=True)])
        chosen.append(take)
    order = rng.permutation(np.concatenate(chosen))
    return Split(split.x[order], split.y[order])


def to_csv_bytes(dataset):
    """FER2013-layout CSV text for a dataset (used by the preprocess tools)."""
    out = io.StringIO()
    out.write("emotion,pixels,Usage\n")
    for usage, split in dataset.splits.items():
        flat = split.x.reshape(len(split), -1)
        for label, row in zip(split.y, flat):
            out.write(f"{int(label)},{' '.join(map(str, row.tolist()))},{usage}\n")
    return out.getvalue().encode()
