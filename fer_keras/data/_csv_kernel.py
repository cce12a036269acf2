"""A vectorised reader for FER2013-layout CSV bytes (numpy only: nothing to compile).

Why not pandas + ``str.split``: turning 74 million space-separated numbers
into Python strings costs seconds. Why not a JIT kernel: it compiled on first
use, so the first load after an install paid seconds of compile time (issue
33). Here every well-formed row is parsed with whole-array numpy operations:

- find the spaces; the number before each space is read from the 4 bytes
  ending at it (one unaligned ``uint32`` gather) and decoded by a table of
  every 3-byte ending (value, digit count, or "not a 1-3 digit number <= 255");
- a row is well formed when its pixel field holds exactly 2303 spaces, every
  number decodes, and the digits plus spaces add up to the field's length
  (so no stray byte, no fourth digit hides anywhere).

A row that is not (quotes, tabs, a bad value, a wrong count...) goes through
:func:`_scan_line`, a plain Python reading of one line that reports the first
thing wrong with it, byte for byte the rules below. Work is done in blocks of
about 1 MiB of lines so the temporary arrays stay in the CPU cache.
"""

import re

import numpy as np

from fer_keras.constants import PIXEL_MAX, PIXELS_PER_IMAGE

# Row status codes written by the kernel; fer2013.py turns them into messages.
ROW_OK = 0
ROW_FIELD_COUNT = 1  # detail: number of fields found
ROW_BAD_LABEL = 2  # detail: offending byte (or -1 when the label is empty)
ROW_BAD_PIXEL_CHAR = 3  # detail: offending byte
ROW_PIXEL_COUNT = 4  # detail: number of pixel values found
ROW_PIXEL_RANGE = 5  # detail: the out-of-range value
# Set by fer2013.py after the kernel, not by the kernel itself.
ROW_LABEL_RANGE = 6  # detail: the label
ROW_BAD_USAGE = 7  # detail: unused (fer2013.py keeps the text aside)

MIN_ROW_BYTES = 2 * PIXELS_PER_IMAGE - 1
"""A valid row holds 2304 numbers of at least one digit, each pair separated
by at least one byte, so ``b`` bytes hold at most ``b // MIN_ROW_BYTES`` valid
rows. That bounds the pixel buffer even for junk with a newline every few bytes."""

BLOCK_BYTES = 1 << 20
"""Lines are parsed about this many bytes at a time (temporaries stay in cache)."""

LABEL_CAP = 1000000
"""Labels are read up to this value (anything larger is out of range anyway)."""

PIXEL_CAP = 100000
"""A pixel number stops growing once it reaches this (a 'value' for the message)."""

_SPACES = 2303  # separators in a well-formed pixel field
_INVALID = np.uint16(0x8000)
_COLUMNS = ("status", "detail", "label", "line", "usage start", "usage end")


def pixel_buffer(n_bytes):
    """A buffer for the valid rows ``n_bytes`` can hold, plus one scratch face."""
    return np.empty((n_bytes // MIN_ROW_BYTES + 2) * PIXELS_PER_IMAGE, np.uint8)


_table = None


def _ending_table():
    """``uint16[b1 | b2 << 8 | b3 << 16]`` for the three bytes ending a number:
    ``value | digits << 10``, or ``_INVALID`` when ``b3`` is not a digit or the
    value is above ``PIXEL_MAX``. Built once per process (32 MiB; only the
    entries whose last byte is a digit are computed)."""
    global _table
    if _table is None:
        byte = np.arange(256)
        digit = (byte >= 48) & (byte <= 57)
        value = np.where(digit, byte - 48, 0).astype(np.uint16)
        d3 = np.arange(10, dtype=np.uint16)[:, None, None]  # index order: b3 (a digit), b2, b1
        g2 = digit[None, :, None]
        g1 = g2 & digit[None, None, :]
        number = d3 + g2 * (value[None, :, None] * np.uint16(10)) + g1 * (value[None, None, :] * np.uint16(100))
        codes = number | ((1 + g2.astype(np.uint16) + g1) << np.uint16(10))
        codes[number > PIXEL_MAX] = _INVALID
        table = np.full(1 << 24, _INVALID, np.uint16)
        table[48 << 16: 58 << 16] = codes.reshape(-1)
        _table = table
    return _table


def _windows(buf):
    """Every 4-byte window of ``buf`` as a little-endian ``uint32`` (a view)."""
    return np.ndarray((max(buf.shape[0] - 3, 0),), dtype="<u4", buffer=buf, strides=(1,))


def scan_rows(buf, first_line, n_fields, label_field, pixel_field, usage_field, pixels):
    """Parse every line in ``buf`` (a uint8 array of bytes ending at a newline).

    Returns ``(rows, ok_rows, next_line, meta)``. ``meta`` has one row per
    non-blank line, columns ``status, detail, label, line, usage start, usage
    end`` (usage offsets -1 when the field is empty). Only rows found valid
    keep their pixels: they are packed at the front of ``pixels``, which needs
    room for ``ok_rows`` faces (see :func:`pixel_buffer`).

    Blank lines are skipped; ``\\r`` is ignored, so Windows line endings parse
    like Unix ones. Double quotes around a field are accepted and dropped; a
    newline always ends a row (a FER2013 field never spans lines), so one stray
    quote costs one row, not the rest of the file, and line numbers stay right.
    """
    n = buf.shape[0]
    metas = []
    ok_rows = 0
    line = first_line
    lo = 0
    windows = _windows(buf)
    fields = (n_fields, label_field, pixel_field, usage_field)
    while lo < n:
        hi = _line_end_after(buf, min(lo + BLOCK_BYTES, n) - 1)
        meta, ok_rows, lines = _scan_block(buf, windows, lo, hi, line, fields, pixels, ok_rows)
        metas.append(meta)
        line += lines
        lo = hi
    meta = np.concatenate(metas) if metas else np.empty((0, len(_COLUMNS)), np.int64)
    return meta.shape[0], ok_rows, line, meta


def _line_end_after(buf, pos):
    """The offset just past the first newline at or after ``pos`` (or the end)."""
    step = 1 << 16
    while pos < buf.shape[0]:
        hits = np.flatnonzero(buf[pos:pos + step] == 10)
        if hits.size:
            return pos + int(hits[0]) + 1
        pos += step
        step *= 2
    return buf.shape[0]


def _scan_block(buf, windows, lo, hi, first_line, fields, pixels, ok_rows):
    """Parse the whole lines in ``buf[lo:hi]``; see :func:`scan_rows`."""
    n_fields, label_field, pixel_field, usage_field = fields
    b = buf[lo:hi]
    # Every byte that is neither a digit nor a space is "special": newlines,
    # commas, and anything that sends a row to the slow path.
    special = np.flatnonzero((b < 48) ^ (b == 32))
    special_bytes = b[special]
    ends = special[special_bytes == 10]
    if not ends.size or ends[-1] != b.shape[0] - 1:  # no final newline: the end ends the line
        ends = np.append(ends, b.shape[0])
    starts = np.concatenate(([0], ends[:-1] + 1))
    n_lines = ends.shape[0]
    # A well-formed row: its only special bytes are n_fields - 1 commas (and a
    # \r just before the newline).
    last = b[np.maximum(ends - 1, 0)] if b.shape[0] else np.zeros(0, np.uint8)
    content_end = ends - ((ends > starts) & (last == 13))
    first_special = np.searchsorted(special, starts)
    n_special = np.searchsorted(special, content_end) - first_special
    commas = np.concatenate(([0], np.cumsum(special_bytes == 44)))
    n_commas = commas[first_special + n_special] - commas[first_special]
    fast = np.flatnonzero((n_special == n_fields - 1) & (n_commas == n_fields - 1))

    status = np.full(n_lines, -1, np.int64)  # -1: not decided yet (slow path)
    meta = np.zeros((n_lines, len(_COLUMNS)), np.int64)
    meta[:, 3] = first_line + np.arange(n_lines)
    values = None
    if fast.size:
        cut = special[first_special[fast][:, None] + np.arange(n_fields - 1)]
        field_start = np.concatenate((starts[fast][:, None], cut + 1), axis=1)
        field_end = np.concatenate((cut, content_end[fast][:, None]), axis=1)
        spaces = np.flatnonzero(b == 32)
        label, label_ok = _fast_labels(b, field_start[:, label_field], field_end[:, label_field])
        p_start, p_end = field_start[:, pixel_field], field_end[:, pixel_field]
        first_space = np.searchsorted(spaces, p_start)
        in_pixels = np.searchsorted(spaces, p_end) - first_space
        in_row = np.searchsorted(spaces, content_end[fast]) - np.searchsorted(spaces, starts[fast])
        keep = label_ok & (in_pixels == _SPACES) & (in_row == _SPACES)
        keep[keep] = lo + spaces[first_space[keep]] >= 4  # the first number's 4-byte window fits in buf
        fast, p_start, p_end, first_space = fast[keep], p_start[keep], p_end[keep], first_space[keep]
        label, field_start, field_end = label[keep], field_start[keep], field_end[keep]
        if fast.size:
            codes = _fast_pixels(windows, spaces, first_space, lo, p_end)
            good = (codes.max(axis=1) < _INVALID) & (
                (codes >> np.uint16(10)).sum(axis=1, dtype=np.int64) + _SPACES == p_end - p_start)
            fast = fast[good]
            values = codes[good]
            status[fast] = ROW_OK
            meta[fast, 2] = label[good]
            if usage_field >= 0:
                u_start, u_end = field_start[good, usage_field], field_end[good, usage_field]
                empty = u_end <= u_start
                meta[fast, 4] = np.where(empty, -1, lo + u_start)
                meta[fast, 5] = np.where(empty, -1, lo + u_end)
            else:
                meta[fast, 4:6] = -1

    slow_pixels = {}
    blank = np.zeros(n_lines, bool)
    for i in np.flatnonzero(status < 0).tolist():
        start, end = int(starts[i]), int(ends[i])
        result = _scan_line(bytes(b[start:end]), lo + start, fields)
        if result is None:
            blank[i] = True
            continue
        code, detail, label, u_start, u_end, face = result
        status[i] = code
        meta[i, :3] = code, detail, label
        meta[i, 4:6] = u_start, u_end
        if face is not None:
            slow_pixels[i] = face
    meta[:, 0] = status
    if blank.any():
        keep_rows = ~blank
        meta, status = meta[keep_rows], status[keep_rows]
        row_of_line = np.cumsum(keep_rows) - 1
        fast = row_of_line[fast]
        slow_pixels = {int(row_of_line[i]): face for i, face in slow_pixels.items()}

    # Pack the valid rows' faces, in file order, after those already written.
    ok = status == ROW_OK
    slot = ok_rows + np.cumsum(ok) - 1
    room = pixels.shape[0] // PIXELS_PER_IMAGE
    full = ok & (slot >= room)
    if full.any():  # cannot happen with pixel_buffer(); never write past the end
        meta[full, 0], meta[full, 1] = ROW_PIXEL_COUNT, -1
        ok &= ~full
        values = values[~full[fast]] if values is not None else None
        fast = fast[~full[fast]]
        slow_pixels = {i: f for i, f in slow_pixels.items() if not full[i]}
    faces = pixels[: room * PIXELS_PER_IMAGE].reshape(room, PIXELS_PER_IMAGE)
    if values is not None and fast.size:
        where = slot[fast]
        if where[-1] - where[0] + 1 == where.shape[0]:  # contiguous: no copy through an index
            np.copyto(faces[where[0]: where[-1] + 1], values, casting="unsafe")
        else:
            faces[where] = values.astype(np.uint8)  # low byte: the value
    for i, face in slow_pixels.items():
        faces[slot[i]] = face
    return meta, ok_rows + int(ok.sum()), n_lines


def _fast_labels(b, start, end):
    """Labels of 1-6 ASCII digits, read with array operations; ``ok`` marks them."""
    length = end - start
    ok = (length >= 1) & (length <= 6)
    label = np.zeros(start.shape[0], np.int64)
    for k in range(6):
        inside = ok & (k < length)
        digit = b[np.where(inside, start + k, 0)].astype(np.int64) - 48
        ok &= ~inside | ((digit >= 0) & (digit <= 9))
        label = np.where(inside, label * 10 + digit, label)
    return label, ok


def _fast_pixels(windows, spaces, first_space, lo, p_end):
    """Decode every row's 2304 numbers: ``codes[row, k] = value | digits << 10``
    (``_INVALID`` where the number is not 1-3 digits <= 255)."""
    n = first_space.shape[0]
    at = np.empty((n, PIXELS_PER_IMAGE), np.int64)
    if n == 1 or np.all(np.diff(first_space) == _SPACES):  # rows back to back: a view
        row_spaces = spaces[first_space[0]: first_space[0] + n * _SPACES].reshape(n, _SPACES)
    else:
        row_spaces = spaces[first_space[:, None] + np.arange(_SPACES)]
    # The 4 bytes ending just before a separator; the table wants the last 3.
    np.add(row_spaces, lo - 4, out=at[:, :_SPACES])
    at[:, _SPACES] = lo + p_end - 4
    endings = windows[at]
    np.right_shift(endings, 8, out=endings)
    return _ending_table()[endings]


# --------------------------------------------------------------------------
# One line at a time: every row the array path does not take
# --------------------------------------------------------------------------

_QUOTE_OR_COMMA = re.compile(rb'[",]')
_PLAIN_PIXELS = re.compile(rb"[0-9]{1,3}(?: [0-9]{1,3})*")
_NOT_DIGIT = re.compile(rb"[^0-9]")
_SEPARATORS = re.compile(rb"[ \t]+")


def _scan_line(line, offset, fields):
    """Parse one line (no newline) at ``offset`` in the chunk.

    Returns None for a blank line, else ``(status, detail, label, usage
    start, usage end, face or None)``. The rules: quotes toggle quoting and
    are dropped, ``\\r`` is dropped, a comma outside quotes ends a field. In
    the label, spaces/tabs around the digits are ignored (a space between
    them is an error: ``0 3`` is no label); in the pixels,
    spaces/tabs end a number and any other non-digit is an error (it does
    not end the number). The first error in byte order is reported; a wrong
    field count overrides it; then an empty label; then a wrong pixel count.
    """
    n_fields, label_field, pixel_field, usage_field = fields
    if not line.strip(b" \r\t"):
        return None
    if b'"' in line:
        cuts, quoted = [], False
        for match in _QUOTE_OR_COMMA.finditer(line):
            if match.group() == b'"':
                quoted = not quoted
            elif not quoted:
                cuts.append(match.start())
    else:
        cuts = [i for i, c in enumerate(line) if c == 44] if line.count(b",") else []
    if len(cuts) + 1 != n_fields:
        return ROW_FIELD_COUNT, len(cuts) + 1, 0, -1, -1, None
    bounds = list(zip([0] + [c + 1 for c in cuts], cuts + [len(line)]))

    def content(field):
        start, end = bounds[field]
        return line[start:end].replace(b'"', b"").replace(b"\r", b"")

    label, label_error = _read_label(content(label_field))
    face, n_pix, pixel_error = _read_pixels(content(pixel_field))
    errors = [(label_field, label_error), (pixel_field, pixel_error)]
    u_start = u_end = -1
    if usage_field >= 0:
        start, end = bounds[usage_field]
        marks = [i for i in range(start, end) if line[i] not in b' \t"\r']
        if marks:
            u_start, u_end = offset + marks[0], offset + marks[-1] + 1
    for _, error in sorted(errors, key=lambda e: e[0]):
        if error is not None:
            return (*error, label or 0, u_start, u_end, None)
    if label is None:
        return ROW_BAD_LABEL, -1, 0, u_start, u_end, None
    if n_pix != PIXELS_PER_IMAGE:
        return ROW_PIXEL_COUNT, n_pix, label, u_start, u_end, None
    return ROW_OK, 0, label, u_start, u_end, face


def _read_label(text):
    """``(label or None when it has no digit, first error or None)``."""
    digits = bytearray()
    for c in text.strip(b" \t"):
        if 48 <= c <= 57:
            digits.append(c)
        else:
            return (min(int(digits), LABEL_CAP) if digits else 0), (ROW_BAD_LABEL, c)
    return (min(int(digits), LABEL_CAP) if digits else None), None


def _read_pixels(text):
    """``(face uint8 or None, number of values, first error or None)``."""
    if _PLAIN_PIXELS.fullmatch(text):  # the common shape, read without a Python loop
        values = np.array(text.split(), np.int64)
        high = np.flatnonzero(values > PIXEL_MAX)
        if high.size:
            return None, values.shape[0], (ROW_PIXEL_RANGE, int(values[high[0]]))
        return values.astype(np.uint8), values.shape[0], None
    values = []
    for token in _SEPARATORS.split(text):
        digits = _NOT_DIGIT.sub(b"", token)
        if len(digits) != len(token):  # a byte that is neither digit nor separator
            bad = _NOT_DIGIT.search(token).group()[0]
            return None, len(values), (ROW_BAD_PIXEL_CHAR, bad)
        if not digits:
            continue
        stripped = digits.lstrip(b"0")
        value = int(stripped[:6]) if stripped else 0  # stops growing at PIXEL_CAP
        if value > PIXEL_MAX:
            return None, len(values), (ROW_PIXEL_RANGE, value)
        values.append(value)
    face = np.array(values, np.uint8) if len(values) == PIXELS_PER_IMAGE else None
    return face, len(values), None


# --------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------

_TEXT = np.zeros((256, 4), np.uint8)
_TEXT_LENGTH = np.zeros(256, np.int64)
for _v in range(256):
    _t = f"{_v} ".encode()
    _TEXT[_v, : len(_t)] = np.frombuffer(_t, np.uint8)
    _TEXT_LENGTH[_v] = len(_t)
del _v, _t


def format_rows(flat, labels, names, name_lengths, name_of_row, out):
    """Write FER2013 CSV lines for faces ``flat`` (N x 2304 uint8) into ``out``.

    Each line is ``label,p p p ... p`` then ``,<name>`` when ``name_of_row``
    is >= 0 (an index into the padded byte rows ``names``), then ``\\n``.
    ``out`` needs ``N * (4 * 2304 + 24 + names.shape[1])`` bytes. Returns the
    number of bytes written.
    """
    flat = np.asarray(flat, np.uint8)
    lengths = _TEXT_LENGTH[flat]
    text = _TEXT[flat][np.arange(4) < lengths[..., None]]  # "v " for every value, rows back to back
    row_end = np.cumsum(lengths.sum(axis=1))
    pos = 0
    row_start = 0
    for r in range(flat.shape[0]):
        head = f"{max(int(labels[r]), 0)},".encode()
        out[pos: pos + len(head)] = np.frombuffer(head, np.uint8)
        pos += len(head)
        body = text[row_start: row_end[r] - 1]  # no space after the last value
        out[pos: pos + body.shape[0]] = body
        pos += body.shape[0]
        row_start = row_end[r]
        k = name_of_row[r]
        if k >= 0:
            out[pos] = 44
            length = int(name_lengths[k])
            out[pos + 1: pos + 1 + length] = names[k, :length]
            pos += 1 + length
        out[pos] = 10
        pos += 1
    return pos
