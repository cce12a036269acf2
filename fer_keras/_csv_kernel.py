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
ROW_BAD_USAGE = 7  # detail: unused (the text is kept aside)

MIN_ROW_BYTES = 2 * PIXELS_PER_IMAGE - 1
"""A valid row holds 2304 numbers of at least one digit, each pair separated
by at least one byte, so a buffer of ``b`` bytes holds at most
``b // MIN_ROW_BYTES`` valid rows. That bounds the pixel buffer even for junk
with a newline every few bytes."""


@numba.njit(cache=True, nogil=True)
def scan_rows(
    buf,
    first_line,
    n_fields,
    label_field,
    pixel_field,
    usage_field,
    pixels,
    labels,
    usage_span,
    status,
    detail,
    line_of,
):
    """Parse every complete line in ``buf`` (bytes ending at a newline).

    Returns ``(rows, ok_rows)``: every non-blank line gets a row in
    ``labels``/``usage_span``/``status``/``detail``/``line_of``, but only rows
    the kernel found valid keep their pixels: they are packed one after the
    other at the front of ``pixels`` (a bad row's pixels are overwritten by the
    next row), so ``pixels`` needs room for ``ok_rows + 1`` faces only.

    Blank lines are skipped; ``\\r`` is ignored, so Windows line endings parse
    like Unix ones. Double quotes around a field are accepted and dropped; a
    newline always ends a row (a FER2013 field never spans lines), so one stray
    quote costs one row, not the rest of the file, and line numbers stay right.
    """
    n = buf.shape[0]
    capacity = pixels.shape[0]
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
        labels[row] = label
        usage_span[row, 0] = u_start
        usage_span[row, 1] = u_end
        status[row] = code
        detail[row] = info
        line_of[row] = line
        if code == ROW_OK:
            ok_rows += 1
        row += 1
        line += 1
    return row, ok_rows


def empty_outputs(max_rows, n_bytes=None):
    """Arrays the kernel fills, sized for at most ``max_rows`` rows.

    With ``n_bytes`` (the buffer's length) the pixel array is sized for the
    valid rows that many bytes can hold (plus one scratch face), not for
    ``max_rows`` faces.
    """
    faces = max_rows if n_bytes is None else min(max_rows, n_bytes // MIN_ROW_BYTES + 1)
    return (
        np.zeros((faces + 1) * PIXELS_PER_IMAGE, np.uint8),
        np.zeros(max_rows, np.int64),
        np.full((max_rows, 2), -1, np.int64),
        np.zeros(max_rows, np.int8),
        np.zeros(max_rows, np.int64),
        np.zeros(max_rows, np.int64),
    )
