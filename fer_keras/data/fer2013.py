"""The FER2013 CSV (Kaggle's ``emotion,pixels,Usage`` layout): read, validated, cached.

:func:`load_fer2013` returns a :class:`~fer_keras.data.dataset.FERDataset`
keyed by Usage. Every row is checked and a bad one is named by file, line and
field. Parsing is the slow part of every run (74M numbers), so the parsed
arrays are cached as ``.npz`` and reused until the CSV's size or mtime changes.
"""

from __future__ import annotations

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

from fer_keras.constants import CLASS_NAMES, IMAGE_SIZE, INPUT_SHAPE, PIXEL_MAX, PIXELS_PER_IMAGE, USAGES
from fer_keras.data import _csv_kernel as kernel
from fer_keras.data.dataset import FERDataset, Split, stratified_split
from fer_keras.data.folders import FOLDER_SPLITS
from fer_keras.data.packed import PACKED_SUFFIX, load_packed
from fer_keras.errors import BadRowError, DataError
from fer_keras.io_utils import atomic_path, file_sha256

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
        in ``$FER_KERAS_CACHE`` when set, else next to the CSV when that
        folder is writable, else in ``~/.cache/fer_keras``.
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

    x, y, usage, checksum, skipped = parse_csv(path, on_bad_rows=on_bad_rows, num_classes=num_classes)
    if skipped:
        warnings.warn(skipped, stacklevel=2)
    if usage is None:
        splits = {name: Split(x[idx], y[idx]) for name, idx in stratified_split(y, seed=split_seed).items()
                  if len(idx)}
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


def require_file(path):
    """``path`` as a Path; DataError saying what is there instead when it is not a file (blaming the
    ``csv`` parameter, so a command names its flag: a user who ran with the default learns which one)."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path}: is a folder; expected a CSV file (.csv or .csv.gz)", parameter="csv")
    if not path.is_file():
        raise DataError(f"{path}: no such file", parameter="csv")
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
    try:
        return file_sha256(path)
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _cache_file(path, cache_dir):
    if cache_dir is None and not os.environ.get("FER_KERAS_CACHE") and _folder_writable(path.parent):
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


def parse_csv(path, *, on_bad_rows, num_classes):
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
    if value in (9, 32):
        return "a tab" if value == 9 else "a space"
    return repr(chr(value)) if 32 < value < 127 else f"byte 0x{value:02x}"


def _field_bytes(path, line, column):
    """Field ``column`` of line ``line`` (1-based) of the CSV at ``path``, or None where it cannot be read.

    Why re-read: the parser reports only the first byte it refused; the whole field ("happy") tells
    the user what went wrong. Only an error's one line is re-read, so the cost does not matter.
    """
    import csv

    try:
        stream, raw = _open_bytes(path, hashlib.sha1())
        with raw, stream:
            for number, text in enumerate(stream, start=1):
                if number == line:
                    fields = next(csv.reader([text.decode("utf-8")]), [])
                    return fields[column].strip() if column < len(fields) else None
    except (OSError, EOFError, UnicodeDecodeError, csv.Error, gzip.BadGzipFile):
        return None
    return None


def _label_problem(info, field):
    """What is wrong with an emotion field: empty, a class's name, or a quoted non-number."""
    if info < 0:
        return "is empty"
    if field is None:
        return f"contains {_shown_byte(info)}"
    shown = repr(field[:40])
    if field.lower() in CLASS_NAMES:
        numbers = ", ".join(f"{i} {name}" for i, name in enumerate(CLASS_NAMES))
        return f"is {shown}, a class name (FER2013 numbers them: {numbers})"
    return f"is {shown}, which contains {_shown_byte(info)}"


def _row_message(piece, i, path, header, num_classes):
    code, info, line = int(piece["status"][i]), int(piece["detail"][i]), int(piece["line"][i])
    where = f"{path}:{line}"
    if code == kernel.ROW_FIELD_COUNT:
        return (f"{where}: expected {len(header.names)} comma-separated fields "
                f"({','.join(header.names)}), found {info}")
    if code == kernel.ROW_BAD_LABEL:
        field = _field_bytes(path, line, header.label) if info >= 0 else None
        return f"{where}: field 'emotion' {_label_problem(info, field)}; expected an integer 0..{num_classes - 1}"
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

