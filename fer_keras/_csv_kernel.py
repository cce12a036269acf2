"""A compiled one-pass reader for FER2013-layout CSV bytes.

Why not pandas + ``str.split``: turning 74 million space-separated numbers
into Python strings costs seconds; this kernel walks the raw bytes once,
writes pixels straight into a uint8 array and records, per row, the first
thing wrong with it, so validation costs nothing extra. It is compiled by
numba (cached on disk after the first call).
"""

import numba
import numpy as np

from fer_keras.constants import PIXEL_MAX, PIXELS_PER_IMAGE

# Row status codes written by the kernel; data.py turns them into messages.
ROW_OK = 0
ROW_FIELD_COUNT = 1  # detail: number of fields found
ROW_BAD_LABEL = 2  # detail: offending byte (or -1 when the label is empty)
ROW_BAD_PIXEL_CHAR = 3  # detail: offending byte
ROW_PIXEL_COUNT = 4  # detail: number of pixel values found
ROW_PIXEL_RANGE = 5  # detail: the out-of-range value
# Set by data.py after the kernel, not by the kernel itself.
ROW_LABEL_RANGE = 6  # detail: the label
ROW_BAD_USAGE = 7  # detail: unused (data.py keeps the text aside)

MIN_ROW_BYTES = 2 * PIXELS_PER_IMAGE - 1
"""A valid row holds 2304 numbers of at least one digit, each pair separated
by at least one byte, so ``b`` bytes hold at most ``b // MIN_ROW_BYTES`` valid
rows. That bounds the pixel buffer even for junk with a newline every few bytes."""


def pixel_buffer(n_bytes):
    """A buffer for the valid rows ``n_bytes`` can hold, plus one scratch face."""
    return np.empty((n_bytes // MIN_ROW_BYTES + 2) * PIXELS_PER_IMAGE, np.uint8)


@numba.njit(cache=True, nogil=True)
def _grow(rows, meta):
    bigger = np.empty((2 * meta.shape[0] + 16, meta.shape[1]), meta.dtype)
    bigger[:rows] = meta[:rows]
    return bigger


@numba.njit(cache=True, nogil=True)
def scan_rows(buf, first_line, n_fields, label_field, pixel_field, usage_field, pixels):
    """Parse every line in ``buf`` (bytes ending at a newline).

    Returns ``(rows, ok_rows, next_line, meta)``. ``meta`` has one row per
    non-blank line, columns ``status, detail, label, line, usage start, usage
    end`` (usage offsets -1 when the field is empty). Only rows the kernel
    found valid keep their pixels: they are packed at the front of ``pixels``
    (a bad row's pixels are overwritten by the next row), so ``pixels`` needs
    room for ``ok_rows + 1`` faces (see :func:`pixel_buffer`).

    Blank lines are skipped; ``\\r`` is ignored, so Windows line endings parse
    like Unix ones. Double quotes around a field are accepted and dropped; a
    newline always ends a row (a FER2013 field never spans lines), so one stray
    quote costs one row, not the rest of the file, and line numbers stay right.
    """
    n = buf.shape[0]
    capacity = pixels.shape[0]
    meta = np.empty((n // MIN_ROW_BYTES + 16, 6), np.int64)
    row = 0
    ok_rows = 0
    line = first_line
    pos = 0
    while pos < n:
        # Skip blank lines (only whitespace before the newline).
        probe = pos
        while probe < n and (buf[probe] == 32 or buf[probe] == 13 or buf[probe] == 9):
            probe += 1
        if probe < n and buf[probe] == 10:
            pos = probe + 1
            line += 1
            continue
        if probe >= n:
            break

        field = 0
        in_quotes = False
        code = ROW_OK
        info = 0
        label = 0
        label_digits = 0
        n_pix = 0
        cur = 0
        in_token = False
        u_start = -1
        u_end = -1
        base = ok_rows * PIXELS_PER_IMAGE
        while pos < n:
            if field == pixel_field and not in_token:
                # Fast path for the bulk of the file: a number of 1-3 digits and
                # a space, decoded from 4 bytes without data-dependent branches
                # (1-3 digit lengths defeat the branch predictor byte by byte).
                # Anything else (last value of the row, quotes, tabs, junk) falls
                # through to the byte-by-byte loop below.
                while pos + 4 <= n:
                    d0 = np.int64(buf[pos]) - 48
                    d1 = np.int64(buf[pos + 1]) - 48
                    d2 = np.int64(buf[pos + 2]) - 48
                    g0 = np.int64((d0 >= 0) & (d0 <= 9))
                    g1 = g0 * np.int64((d1 >= 0) & (d1 <= 9))
                    g2 = g1 * np.int64((d2 >= 0) & (d2 <= 9))
                    digits = g0 + g1 + g2
                    if digits == 0 or buf[pos + digits] != 32:
                        break
                    value = d0
                    value += g1 * (value * 9 + d1)
                    value += g2 * (value * 9 + d2)
                    pixels[base + min(n_pix, PIXELS_PER_IMAGE)] = value
                    if value > PIXEL_MAX and code == ROW_OK:
                        code = ROW_PIXEL_RANGE
                        info = value
                    n_pix += 1
                    pos += digits + 1
                if pos >= n:
                    break
            c = buf[pos]
            pos += 1
            if c == 10:
                break
            if c == 13:
                continue
            if c == 34:  # '"'
                in_quotes = not in_quotes
                continue
            if c == 44 and not in_quotes:  # ','
                if field == pixel_field and in_token:
                    if cur > PIXEL_MAX and code == ROW_OK:
                        code = ROW_PIXEL_RANGE
                        info = cur
                    if n_pix < PIXELS_PER_IMAGE and base + n_pix < capacity:
                        pixels[base + n_pix] = cur
                    n_pix += 1
                    in_token = False
                    cur = 0
                field += 1
                continue
            if field == label_field:
                if 48 <= c <= 57:
                    label = label * 10 + (c - 48)
                    label_digits += 1
                    if label > 1000000:
                        label = 1000000
                elif c != 32 and c != 9 and code == ROW_OK:
                    code = ROW_BAD_LABEL
                    info = c
            elif field == pixel_field:
                if 48 <= c <= 57:
                    if cur < 100000:
                        cur = cur * 10 + (c - 48)
                    in_token = True
                elif c == 32 or c == 9:
                    if in_token:
                        if cur > PIXEL_MAX and code == ROW_OK:
                            code = ROW_PIXEL_RANGE
                            info = cur
                        if n_pix < PIXELS_PER_IMAGE and base + n_pix < capacity:
                            pixels[base + n_pix] = cur
                        n_pix += 1
                        in_token = False
                        cur = 0
                elif code == ROW_OK:
                    code = ROW_BAD_PIXEL_CHAR
                    info = c
            elif field == usage_field:
                if c != 32 and c != 9:
                    if u_start < 0:
                        u_start = pos - 1
                    u_end = pos
        # End of line: close a token left open by a line ending inside pixels.
        if field == pixel_field and in_token:
            if cur > PIXEL_MAX and code == ROW_OK:
                code = ROW_PIXEL_RANGE
                info = cur
            if n_pix < PIXELS_PER_IMAGE and base + n_pix < capacity:
                pixels[base + n_pix] = cur
            n_pix += 1
        if field + 1 != n_fields:
            code = ROW_FIELD_COUNT
            info = field + 1
        elif label_digits == 0 and code == ROW_OK:
            code = ROW_BAD_LABEL
            info = -1
        elif n_pix != PIXELS_PER_IMAGE and code == ROW_OK:
            code = ROW_PIXEL_COUNT
            info = n_pix
        if code == ROW_OK and base + PIXELS_PER_IMAGE > capacity:
            code = ROW_PIXEL_COUNT  # cannot happen with pixel_buffer(); never write past the end
            info = -1
        if row == meta.shape[0]:
            meta = _grow(row, meta)
        meta[row, 0] = code
        meta[row, 1] = info
        meta[row, 2] = label
        meta[row, 3] = line
        meta[row, 4] = u_start
        meta[row, 5] = u_end
        if code == ROW_OK:
            ok_rows += 1
        row += 1
        line += 1
    return row, ok_rows, line, meta[:row]


@numba.njit(cache=True, nogil=True)
def format_rows(flat, labels, names, name_lengths, name_of_row, out):
    """Write FER2013 CSV lines for faces ``flat`` (N x 2304 uint8) into ``out``.

    Each line is ``label,p p p ... p`` then ``,<name>`` when ``name_of_row``
    is >= 0 (an index into the padded byte rows ``names``), then ``\\n``.
    ``out`` needs ``N * (4 * 2304 + 24 + names.shape[1])`` bytes. Returns the
    number of bytes written.
    """
    pos = 0
    for r in range(flat.shape[0]):
        label = labels[r]
        if label < 0:
            label = 0
        digits = 1
        scale = 1
        while label // scale >= 10 and digits < 19:
            scale *= 10
            digits += 1
        while scale > 0:
            out[pos] = 48 + (label // scale) % 10
            pos += 1
            scale //= 10
        out[pos] = 44
        pos += 1
        for j in range(flat.shape[1]):
            v = flat[r, j]
            if v >= 100:
                out[pos] = 48 + v // 100
                pos += 1
            if v >= 10:
                out[pos] = 48 + (v // 10) % 10
                pos += 1
            out[pos] = 48 + v % 10
            out[pos + 1] = 32
            pos += 2
        pos -= 1  # no space after the last value
        k = name_of_row[r]
        if k >= 0:
            out[pos] = 44
            pos += 1
            for i in range(name_lengths[k]):
                out[pos] = names[k, i]
                pos += 1
        out[pos] = 10
        pos += 1
    return pos
