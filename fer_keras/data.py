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
import queue
import threading
import warnings
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np

from fer_keras import _csv_kernel as kernel
from fer_keras.constants import (
    CLASS_ALIASES,
    CLASS_NAMES,
    IMAGE_SIZE,
    INPUT_SHAPE,
    PIXEL_MAX,
    PIXELS_PER_IMAGE,
    USAGES,
)
from fer_keras.errors import BadRowError, DataError
from fer_keras.io_utils import atomic_path

log = logging.getLogger(__name__)

try:  # ISA-L's gzip decoder is ~4x faster than zlib's; optional
    from isal import igzip as _igzip
    from isal import isal_zlib as _isal_zlib

    _READ_ERRORS = (OSError, EOFError, zlib.error, _isal_zlib.error)
except ImportError:  # pragma: no cover - depends on the environment
    _igzip = None
    _READ_ERRORS = (OSError, EOFError, zlib.error)

CACHE_VERSION = "2"
"""Bump when the parser's output changes so old caches are ignored."""

CHUNK_BYTES = 32 << 20
"""Parse this many bytes at a time: bounded memory."""

FIRST_CHUNK_BYTES = 1 << 20
"""The first chunk is small, so a file of junk fails after 1 MiB, not 32."""

JUNK_ROWS = 1000
"""With on_bad_rows="skip", give up when this many rows came before any valid one."""

PREFETCH = True
"""Read (gunzip, hash) the next chunk in a thread while this one is parsed."""

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
        in any order. ``Usage`` values are ``Training``, ``PublicTest`` or
        ``PrivateTest`` (any case; the image-folder names ``train``, ``val``,
        ``test`` ... are accepted too).
      cache: reuse/write a parsed ``.npz``: in ``cache_dir`` when given, else
        next to the CSV when that folder is writable, else in
        ``$FER_KERAS_CACHE`` or ``~/.cache/fer_keras``.
      on_bad_rows: ``"error"`` stops at the first bad row with its line number;
        ``"skip"`` drops bad rows and warns how many.
      num_classes: labels must lie in ``0..num_classes-1``.
      split_seed: a CSV without ``Usage`` (custom data) is split 80/10/10,
        stratified by class, into Training/PublicTest/PrivateTest with this seed.
    """
    if on_bad_rows not in ("error", "skip"):
        raise ValueError("on_bad_rows must be 'error' or 'skip'")
    path = require_file(path)
    if path.name.endswith(PACKED_SUFFIX):
        return load_packed(path)
    cache_file = _cache_file(path, cache_dir) if cache else None
    options = (on_bad_rows, num_classes, split_seed)
    if cache_file is not None and cache_file.is_file():
        cached = _read_cache(cache_file, _cache_key(_file_sha256(path), *options), str(path))
        if cached is not None:
            dataset, skipped = cached
            if skipped:
                warnings.warn(skipped, stacklevel=2)
            return dataset

    x, y, usage, checksum, skipped = _parse_csv(path, on_bad_rows=on_bad_rows, num_classes=num_classes)
    if skipped:
        warnings.warn(skipped, stacklevel=2)
    if usage is None:
        splits = _stratified_splits(x, y, seed=split_seed)
    else:
        splits = {}
        for code, name in enumerate(USAGES):
            mask = usage == code
            if mask.any():
                splits[name] = Split(x[mask], y[mask])
    dataset = FERDataset(splits=splits, source=str(path), checksum=checksum)
    if cache_file is not None:
        _write_cache(cache_file, _cache_key(checksum, *options), dataset, skipped)
    return dataset


PACKED_SUFFIX = ".npz.xz"


def save_packed(dataset, path):
    """Write ``dataset`` as a packed file that :func:`load_fer2013` reads.

    Why: a GPU machine that only receives a size-capped copy of the repo
    needs the data small and lossless. Each image row is stored as
    differences between neighbouring pixels, which LZMA squeezes far better
    than raw pixels: FER2013 Training + PublicTest, 85 MB as the gzipped CSV
    and 74 MB as raw pixels, packs into about 54 MB. The source CSV's checksum
    travels along, so models trained from the packed file record the same
    dataset identity.
    """
    import lzma

    arrays = {"checksum": np.array(dataset.checksum), "usages": np.array(list(dataset.splits))}
    for name, split in dataset.splits.items():
        arrays[f"dx_{name}"] = np.diff(split.x, axis=2, prepend=np.uint8(0))  # uint8 wraps around: lossless
        arrays[f"y_{name}"] = split.y
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    with atomic_path(Path(path)) as tmp:
        Path(tmp).write_bytes(lzma.compress(buffer.getvalue(), preset=9 | lzma.PRESET_EXTREME))


def load_packed(path):
    """Read a file written by :func:`save_packed` back into a :class:`FERDataset`."""
    import lzma

    try:
        with np.load(io.BytesIO(lzma.decompress(Path(path).read_bytes())), allow_pickle=False) as npz:
            splits = {str(n): Split(np.cumsum(npz[f"dx_{n}"], axis=2, dtype=np.uint8), npz[f"y_{n}"])
                      for n in npz["usages"]}
            checksum = str(npz["checksum"])
    except (lzma.LZMAError, OSError, KeyError, ValueError) as exc:
        raise DataError(f"{path}: not a packed fer_keras dataset ({exc})") from None
    return FERDataset(splits=splits, source=str(path), checksum=checksum)


def require_file(path):
    """``path`` as a Path; DataError saying what is there instead when it is not a file."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path}: is a folder; expected a CSV file (.csv or .csv.gz)")
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    return path


def _cache_key(sha256, *options):
    """What a cached parse must match: the file's content (its SHA-256) and the parse options.

    Why content, not size + mtime: a same-size edit that keeps the mtime
    (``cp -p``, ``rsync -t``, a restored backup) would be served stale. The
    parse hashes the file as it reads it, so writing a cache costs nothing
    more; looking one up hashes the file first (about 1 GB/s with the CPU's
    SHA extensions, a small part of parsing it), and only when a cache exists,
    so a file of junk still fails after reading a small part of it.
    """
    return "|".join([CACHE_VERSION, sha256, *map(str, options)])


def _file_sha256(path):
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return digest.hexdigest()


def _cache_file(path, cache_dir):
    if cache_dir is None and _folder_writable(path.parent):
        return path.with_name(path.name + ".fer_keras.npz")
    root = Path(cache_dir or os.environ.get("FER_KERAS_CACHE") or Path.home() / ".cache" / "fer_keras")
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:16]
    return root / f"{path.name}.{digest}.npz"


def _folder_writable(folder):
    """Writable, and not marked read-only (root ignores the mode bits, we don't:
    a shared ``r-x`` data folder must not collect caches)."""
    try:
        return os.access(folder, os.W_OK) and bool(folder.stat().st_mode & 0o222)
    except OSError:
        return False


def _read_cache(cache_file, key, source):
    try:
        with np.load(cache_file, allow_pickle=False) as npz:
            if str(npz["key"]) != key:
                return None
            names = [str(n) for n in npz["usages"]]
            splits = {n: Split(npz[f"x_{n}"], npz[f"y_{n}"]) for n in names}
            skipped = str(npz["skipped"]) if "skipped" in npz else ""
            return FERDataset(splits=splits, source=source, checksum=str(npz["checksum"])), skipped
    except Exception as exc:  # a damaged cache is only a missed shortcut
        log.warning("ignoring unreadable cache %s (%s)", cache_file, exc)
        return None


def _write_cache(cache_file, key, dataset, skipped=""):
    arrays = {"key": np.array(key), "checksum": np.array(dataset.checksum),
              "usages": np.array(list(dataset.splits)), "skipped": np.array(skipped)}
    for name, split in dataset.splits.items():
        arrays[f"x_{name}"] = split.x
        arrays[f"y_{name}"] = split.y
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(cache_file) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)
            os.chmod(tmp, 0o644)  # mkstemp makes it 0600; a cache is no secret
    except OSError as exc:
        log.warning("could not write cache %s (%s)", cache_file, exc)


class _Header(NamedTuple):
    names: tuple
    label: int
    pixels: int
    usage: int  # -1 when there is no Usage column


class _HashingRaw(io.RawIOBase):
    """A raw file that feeds every byte it reads to ``hasher``: the checksum
    costs no second pass over the file."""

    def __init__(self, fh, hasher):
        self._fh = fh
        self._hasher = hasher

    def readable(self):
        return True

    def readinto(self, buffer):
        n = self._fh.readinto(buffer)
        if n:
            self._hasher.update(memoryview(buffer)[:n])
        return n

    def close(self):
        self._fh.close()
        super().close()


def _open_bytes(path, hasher):
    """A binary stream of the CSV's text (gunzipped when it is gzip) and the
    raw stream under it; every raw byte read goes through ``hasher``."""
    raw = io.BufferedReader(_HashingRaw(open(path, "rb", buffering=0), hasher), buffer_size=1 << 20)
    if raw.peek(2)[:2] == b"\x1f\x8b":
        return (_igzip.IGzipFile if _igzip else gzip.GzipFile)(fileobj=raw, mode="rb"), raw
    return raw, raw


def _parse_header(stream, path):
    first = stream.readline(1 << 16)
    if not first.strip():
        raise DataError(f"{path}:1: the file is empty (expected a header 'emotion,pixels,Usage')")
    try:
        text = first.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DataError(f"{path}:1: the header is not UTF-8 text; is this a CSV file?") from None
    if not first.endswith(b"\n") and len(first) >= 1 << 16:
        raise DataError(f"{path}:1: no line break in the first 64 KiB; is this a CSV file?")
    names = tuple(n.strip().strip('"').strip() for n in text.strip().split(","))
    lower = [n.lower() for n in names]
    missing = [c for c in ("emotion", "pixels") if c not in lower]
    if missing:
        shown = ", ".join(repr(n[:40]) for n in names[:8]) or "nothing"
        raise DataError(
            f"{path}:1: missing column(s) {', '.join(missing)} "
            f"(found: {shown}; expected emotion,pixels[,Usage])"
        )
    usage_field = lower.index("usage") if "usage" in lower else -1
    return _Header(names, lower.index("emotion"), lower.index("pixels"), usage_field)


class _NoLineBreak(Exception):
    """Raised by the reader thread; the parser adds the line number."""


def _chunks(stream, first_size, size):
    """Yield the text in pieces that end at a line break (``first_size`` bytes,
    then ``size``; a last line without one gets it added), then ``None``.

    A background thread reads (gunzips, hashes, cuts) the next piece while the
    caller parses this one: isal/zlib, hashlib and numpy's array operations
    release the GIL, so reading and parsing overlap on a second core.
    """

    def pieces():
        want, carry = first_size, b""
        while True:
            block = stream.read(want)
            want = size
            if not block:
                if carry.strip():
                    yield memoryview(carry + b"\n")
                return
            start = 0
            if carry:  # the line cut at the end of the last block, completed
                first = block.find(b"\n")
                if first < 0:
                    carry += block
                    if len(carry) > 64 * PIXELS_PER_IMAGE:
                        raise _NoLineBreak(len(carry))
                    continue
                start = first + 1
                yield memoryview(carry + block[:start])
            end = block.rfind(b"\n") + 1
            if end > start:
                yield memoryview(block)[start:end]  # no copy of the (32 MiB) block
                carry = block[end:]
            else:
                carry = block[start:]
            if len(carry) > 64 * PIXELS_PER_IMAGE:
                raise _NoLineBreak(len(carry))

    if not PREFETCH:
        yield from pieces()
        yield None
        return
    results = queue.Queue(maxsize=1)
    stop = threading.Event()

    def produce():
        try:
            for piece in pieces():
                results.put((piece, None))
                if stop.is_set():
                    return
            results.put((None, None))
        except BaseException as exc:  # handed to the consumer, raised there
            results.put((None, exc))

    worker = threading.Thread(target=produce, name="fer_keras-csv-reader", daemon=True)
    worker.start()
    try:
        while True:
            piece, exc = results.get()
            if exc is not None:
                raise exc
            yield piece
            if piece is None:
                return
    finally:
        stop.set()
        while worker.is_alive():  # unblock a producer waiting on a full queue
            try:
                results.get(timeout=0.05)
            except queue.Empty:
                pass
        worker.join()


def _parse_csv(path, *, on_bad_rows, num_classes):
    """Parse the whole file in chunks.

    Returns x, y, usage codes (index into USAGES; None without a Usage
    column), the file's sha256 and the skipped-rows warning ("" if none).
    """
    hasher = hashlib.sha256()
    try:
        stream, raw = _open_bytes(path, hasher)
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    with stream, raw:
        try:
            header = _parse_header(stream, path)
        except _READ_ERRORS as exc:
            raise DataError(f"{path}: cannot read ({type(exc).__name__}: {exc})") from None
        pieces = []
        n_good = n_bad = 0
        first_bad = None
        line = 2
        chunks = _chunks(stream, FIRST_CHUNK_BYTES, CHUNK_BYTES)
        try:
            while True:
                try:
                    data = next(chunks)
                except _NoLineBreak as exc:
                    raise DataError(f"{path}:{line}: no line break in {exc.args[0]:,} bytes; "
                                    "not a FER2013 CSV") from None
                except _READ_ERRORS as exc:
                    raise DataError(f"{path}: corrupt or truncated file after line {line - 1} "
                                    f"({type(exc).__name__}: {exc})") from None
                if data is None:
                    break
                piece, line = _scan_chunk(data, line, header, num_classes)
                bad = piece["status"] != kernel.ROW_OK
                if bad.any():
                    if on_bad_rows == "error":
                        _raise_row_error(piece, np.flatnonzero(bad)[0], path, header, num_classes)
                    n_bad += int(bad.sum())
                    if first_bad is None:
                        first_bad = _row_message(piece, np.flatnonzero(bad)[0], path, header, num_classes)
                n_good += len(piece["y"])
                pieces.append(piece)
                if n_good == 0 and n_bad >= JUNK_ROWS:
                    raise DataError(f"{path}: none of the first {n_bad:,} rows is valid "
                                    f"(first: {first_bad}); not a FER2013 CSV")
        finally:
            chunks.close()
        try:
            while raw.read(1 << 20):  # hash any bytes the gzip reader left unread
                pass
        except OSError as exc:
            raise DataError(f"{path}: cannot read ({exc})") from None
    skipped = f"{path}: skipped {n_bad} bad row(s); first: {first_bad}" if n_bad else ""
    if n_good == 0:
        if n_bad:
            raise DataError(f"{path}: no valid rows; all {n_bad} data row(s) are bad (first: {first_bad})")
        raise DataError(f"{path}:2: the file has a header but no data rows")
    x = np.concatenate([p["x"] for p in pieces]).reshape((-1,) + INPUT_SHAPE)
    y = np.concatenate([p["y"] for p in pieces])
    usage = np.concatenate([p["usage"] for p in pieces]) if header.usage >= 0 else None
    return x, y, usage, hasher.hexdigest(), skipped


def _scan_chunk(data, first_line, header, num_classes):
    """Run the kernel on whole lines (a memoryview ending at a line break);
    check labels and Usage; keep the good rows' faces."""
    pixels = kernel.pixel_buffer(len(data))
    n, n_ok, next_line, meta = kernel.scan_rows(
        np.frombuffer(data, np.uint8), first_line, len(header.names),
        header.label, header.pixels, header.usage, pixels)
    status = meta[:, 0].astype(np.int8)
    detail, labels = meta[:, 1].copy(), meta[:, 2]
    kernel_ok = status == kernel.ROW_OK
    out_of_range = kernel_ok & (labels >= num_classes)
    status[out_of_range] = kernel.ROW_LABEL_RANGE
    detail[out_of_range] = labels[out_of_range]
    usage = np.zeros(n, np.int8)
    bad_usage = {}
    if header.usage >= 0:
        known = {}
        for i, (start, end) in enumerate(meta[:, 4:6].tolist()):
            text = bytes(data[start:end]) if start >= 0 else b""
            code = known.get(text)
            if code is None:
                code = known[text] = _usage_code(text)
            usage[i] = code
            if code < 0 and status[i] == kernel.ROW_OK:
                status[i] = kernel.ROW_BAD_USAGE
                bad_usage[i] = text
    keep = status == kernel.ROW_OK
    x = pixels[: n_ok * PIXELS_PER_IMAGE].reshape(n_ok, PIXELS_PER_IMAGE)
    piece = {
        "x": x if keep.all() else x[keep[kernel_ok]],
        "y": labels[keep],
        "usage": usage[keep],
        "status": status,
        "detail": detail,
        "line": meta[:, 3],
        "bad_usage": bad_usage,
    }
    return piece, next_line


_USAGE_NAMES = {**{u.lower(): i for i, u in enumerate(USAGES)},
                **{k: USAGES.index(v) for k, v in FOLDER_SPLITS.items()}}


def _usage_code(raw):
    try:
        return _USAGE_NAMES.get(raw.decode("utf-8").strip().strip('"').strip().lower(), -1)
    except UnicodeDecodeError:
        return -1


def _shown_byte(value):
    return repr(chr(value)) if 32 < value < 127 else f"byte 0x{value:02x}"


def _row_message(piece, i, path, header, num_classes):
    code, info, line = int(piece["status"][i]), int(piece["detail"][i]), int(piece["line"][i])
    where = f"{path}:{line}"
    if code == kernel.ROW_FIELD_COUNT:
        return (f"{where}: expected {len(header.names)} comma-separated fields "
                f"({','.join(header.names)}), found {info}")
    if code == kernel.ROW_BAD_LABEL:
        what = "is empty" if info < 0 else f"contains {_shown_byte(info)}"
        return f"{where}: field 'emotion' {what}; expected an integer 0..{num_classes - 1}"
    if code == kernel.ROW_LABEL_RANGE:
        return f"{where}: field 'emotion' is {info}; expected 0..{num_classes - 1}"
    if code == kernel.ROW_BAD_PIXEL_CHAR:
        return f"{where}: field 'pixels' contains {_shown_byte(info)}; expected integers 0..255 separated by spaces"
    if code == kernel.ROW_PIXEL_COUNT:
        return f"{where}: field 'pixels' has {info} values; expected {PIXELS_PER_IMAGE} ({IMAGE_SIZE}x{IMAGE_SIZE})"
    if code == kernel.ROW_PIXEL_RANGE:
        return f"{where}: field 'pixels' has value {info}; expected 0..{PIXEL_MAX}"
    if code == kernel.ROW_BAD_USAGE:
        raw = piece["bad_usage"].get(i, b"")
        try:
            text = repr(raw.decode("utf-8")[:40]) if raw else "empty"
        except UnicodeDecodeError:
            text = f"not UTF-8 text ({raw[:20]!r})"
        return f"{where}: field 'Usage' is {text}; expected {', '.join(USAGES)}"
    return f"{where}: malformed row"


def _raise_row_error(piece, i, path, header, num_classes):
    raise BadRowError(_row_message(piece, i, path, header, num_classes))


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


def read_grey(path, *, draft=None, box=None):
    """Any picture → 2-D uint8 grey array, as a person sees it. Raises DataError.

    The one reader of pictures for training and evaluation data, so every
    entry point sees the same pixels:

    * EXIF orientation is applied (a phone photo stored on its side is upright);
    * 16-bit pictures are scaled, not clipped: ``convert("L")`` clips every
      value above 255 to white;
    * transparent pixels are composited onto white.

    ``draft``: a ``(w, h)`` the picture may be decoded down to (JPEG decodes
    at 1/2, 1/4 or 1/8 size, much faster). ``box = (x, y, w, h)``: crop to it
    (clipped to the upright picture) before anything else.
    """
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as img:
            if draft is not None and box is None:
                img.draft("L", draft)
            img = ImageOps.exif_transpose(img)
            if box is not None:
                img = img.crop(_clipped(box, img.size))
            return _to_grey(img)
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
        raise DataError(f"{path}: not a readable image ({type(exc).__name__}: {exc})") from None


def _clipped(box, size):
    """``(x, y, w, h)`` → a Pillow crop box inside an image of ``size``; the whole image if none is left."""
    x, y, w, h = box
    left, top = max(0, x), max(0, y)
    right, bottom = min(size[0], x + w), min(size[1], y + h)
    return (left, top, right, bottom) if right > left and bottom > top else (0, 0, *size)


def _to_grey(img):
    from PIL import Image

    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", img.size, (255, 255, 255, 255)), img)
    if img.mode.startswith("I"):  # I;16, I;16B, I;16L, I (32-bit integer)
        values = np.asarray(img, dtype=np.float64)
        top = 65535.0 if values.max() > 255 else 255.0
        return np.clip(np.round(values * (255.0 / top)), 0, 255).astype(np.uint8)
    return np.asarray(img.convert("L"), dtype=np.uint8).copy()


def read_face(path, size=IMAGE_SIZE, *, box=None):
    """One image file → uint8 (size, size, 1) grey array (stretched to a square). Raises DataError.

    Reads through :func:`read_grey`; ``box`` crops to a face first.
    """
    from PIL import Image

    grey = read_grey(path, draft=(size, size), box=box)
    if grey.shape != (size, size):
        img = Image.fromarray(grey).resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
        grey = np.asarray(img, dtype=np.uint8)
    return grey[..., None]


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
    if not root.is_dir():
        raise DataError(f"{root}: no such folder")
    subdirs = image_subfolders(root)
    if not subdirs:
        raise DataError(f"{root}: no class folders inside (expected <split>/<class>/*.jpg or <class>/*.jpg)")
    splits, skipped = {}, []
    for usage, folder in folder_layout(root, subdirs):
        xs, ys = [], []
        for class_dir in image_subfolders(folder):
            label = _class_folder_index(class_dir)
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


def folder_layout(root, subdirs=None):
    """``[(usage, folder), ...]`` for an image tree: ``[("PrivateTest", root)]``
    when ``root`` holds class folders, else one entry per split folder."""
    subdirs = image_subfolders(root) if subdirs is None else subdirs
    if any(_is_class_name(p.name) for p in subdirs):
        return [("PrivateTest", root)]
    layout = []
    for folder in subdirs:
        usage = FOLDER_SPLITS.get(folder.name.lower())
        if usage is None:
            raise DataError(
                f"{folder}: unknown folder {folder.name!r}; expected class folders "
                f"({', '.join(CLASS_NAMES)}) or split folders ({', '.join(sorted(FOLDER_SPLITS))}) "
                "holding class folders"
            )
        layout.append((usage, folder))
    return layout


def _class_folder_index(folder):
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
    """FER2013-layout CSV text for a dataset (see :mod:`fer_keras.preprocess`)."""
    from fer_keras.preprocess import csv_lines

    parts = [b"emotion,pixels,Usage\n"]
    for usage, split in dataset.splits.items():
        parts.extend(csv_lines(split.x, split.y, usage))
    return b"".join(parts)
