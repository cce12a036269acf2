"""FER2013 CSV reader, its cache, image folders and balanced copies."""

import gzip
import os
import re
import stat
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fer_keras import data
from fer_keras.constants import CLASS_NAMES, INPUT_SHAPE, NUM_CLASSES, PIXELS_PER_IMAGE, USAGES
from fer_keras.data import fer2013
from fer_keras.errors import DataError

REAL_CSV = Path(__file__).resolve().parents[3] / "shared" / "data" / "fer2013" / "fer2013_train_publictest.csv.gz"
HEADER = "emotion,pixels,Usage"


def face(i):
    """A face whose pixels encode ``i``, so rows can be told apart after a split."""
    return (np.arange(PIXELS_PER_IMAGE) * 7 + i * 13) % 256


def pixels_text(values):
    return " ".join(str(int(v)) for v in values)


def row(label=0, usage="Training", i=0, pixels=None):
    return f"{label},{pixels_text(face(i) if pixels is None else pixels)},{usage}"


def write_csv(path, lines, *, header=HEADER, newline="\n"):
    text = newline.join([header, *lines]) + newline
    Path(path).write_bytes(text.encode())
    return Path(path)


def raises_at(path, line, problem):
    """pytest.raises for a DataError naming ``path``, the 1-based ``line`` and ``problem``."""
    return pytest.raises(DataError, match=re.escape(f"{path}:{line}: ") + problem)


# --------------------------------------------------------------------------
# Malformed CSVs: DataError naming the file, the line and the problem
# --------------------------------------------------------------------------


def test_empty_file(tmp_path):
    """Check that an empty file is reported as empty, at line 1."""
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    with raises_at(path, 1, "the file is empty"):
        data.load_fer2013(path, cache=False)


def test_header_only(tmp_path):
    """Check that a header without rows is reported at line 2."""
    path = write_csv(tmp_path / "header.csv", [])
    with raises_at(path, 2, "the file has a header but no data rows"):
        data.load_fer2013(path, cache=False)


@pytest.mark.parametrize("header, missing", [
    ("label,image,Usage", "emotion, pixels"),
    ("emotion,Usage", "pixels"),
    ("pixels", "emotion"),
])
def test_missing_or_wrong_columns(tmp_path, header, missing):
    """Check that a header without emotion/pixels names what is missing and what was found."""
    path = write_csv(tmp_path / "cols.csv", ["0,1 2 3,Training"], header=header)
    with raises_at(path, 1, re.escape(f"missing column(s) {missing} (found: ")):
        data.load_fer2013(path, cache=False)


@pytest.mark.parametrize("count", [2303, 2305])
def test_wrong_pixel_count(tmp_path, count):
    """Check that 2303 or 2305 pixels are reported with the count found and the line."""
    path = write_csv(tmp_path / "count.csv", [row(i=1), row(pixels=np.ones(count, int))])
    with raises_at(path, 3, f"field 'pixels' has {count} values; expected 2304 \\(48x48\\)"):
        data.load_fer2013(path, cache=False)


@pytest.mark.parametrize("token, problem", [
    ("-1", "field 'pixels' contains '-'"),
    ("256", "field 'pixels' has value 256; expected 0..255"),
    ("12.5", "field 'pixels' contains '.'"),
])
def test_bad_pixel_values(tmp_path, token, problem):
    """Check that negative, too large and float pixels are reported with the line."""
    values = [str(v) for v in face(0)]
    values[100] = token
    path = write_csv(tmp_path / "pix.csv", [row(), row(i=1), f"3,{' '.join(values)},PublicTest"])
    with raises_at(path, 4, problem):
        data.load_fer2013(path, cache=False)


@pytest.mark.parametrize("label, problem", [
    ("7", "field 'emotion' is 7; expected 0..6"),
    ("", "field 'emotion' is empty"),
    ("x", "field 'emotion' is 'x', which contains 'x'"),
    ("0 3", "field 'emotion' is '0 3', which contains a space"),  # was read as 3
    ("Happy", r"field 'emotion' is 'Happy', a class name \(FER2013 numbers them: 0 angry, 1 disgust, 2 fear, 3 happy"),
    (" 3 ", None),  # spaces around the digits are no error
])
def test_bad_labels(tmp_path, label, problem):
    """Check that label 7, an empty label, a non-number and two numbers are reported with the line."""
    if problem is None:
        path = write_csv(tmp_path / "label.csv", [row(), row(label=label)])
        assert data.load_fer2013(path, cache=False)["Training"].y[-1] == 3
        return
    path = write_csv(tmp_path / "label.csv", [row(), row(label=label)])
    with raises_at(path, 3, problem):
        data.load_fer2013(path, cache=False)


def test_label_range_follows_num_classes(tmp_path):
    """Check that num_classes narrows the accepted labels."""
    path = write_csv(tmp_path / "label.csv", [row(label=2), row(label=5)])
    with raises_at(path, 3, "field 'emotion' is 5; expected 0..2"):
        data.load_fer2013(path, cache=False, num_classes=3)


def test_wrong_field_count_names_the_header(tmp_path):
    """Check that a row with an extra field reports the count and the header's columns."""
    path = write_csv(tmp_path / "fields.csv", [row(), row() + ",extra"])
    with raises_at(path, 3, re.escape("expected 3 comma-separated fields (emotion,pixels,Usage), found 4")):
        data.load_fer2013(path, cache=False)


@pytest.mark.parametrize("usage, problem", [
    ("Trainig", "field 'Usage' is 'Trainig'; expected Training, PublicTest, PrivateTest"),
    ("", "field 'Usage' is empty"),
])
def test_unknown_usage(tmp_path, usage, problem):
    """Check that a misspelt or empty Usage is an error, not a new split."""
    path = write_csv(tmp_path / "usage.csv", [row(), row(usage=usage)])
    with raises_at(path, 3, problem):
        data.load_fer2013(path, cache=False)


def test_usage_aliases_and_case(tmp_path):
    """Check that Usage accepts any case and the image-folder names (val → PublicTest)."""
    path = write_csv(tmp_path / "alias.csv", [row(usage="training"), row(usage="val"), row(usage="PRIVATETEST")])
    ds = data.load_fer2013(path, cache=False)
    assert {u: len(s) for u, s in ds.splits.items()} == {"Training": 1, "PublicTest": 1, "PrivateTest": 1}


@pytest.mark.parametrize("where, raw, problem", [
    ("header", b"emo\xfftion,pixels,Usage\n", r"1: the header is not UTF-8 text"),
    ("pixels", b"0,1 \xff2 3,Training\n", r"2: field 'pixels' contains byte 0xff"),
    ("usage", b"0," + pixels_text(face(0)).encode() + b",Tr\xe9ining\n", r"2: field 'Usage' is not UTF-8 text"),
])
def test_non_utf8_bytes(tmp_path, where, raw, problem):
    """Check that non-UTF-8 bytes in the header, the pixels or Usage are reported with the line."""
    path = tmp_path / f"latin1_{where}.csv"
    path.write_bytes(raw if where == "header" else HEADER.encode() + b"\n" + raw)
    with pytest.raises(DataError, match=re.escape(str(path)) + ":" + problem):
        data.load_fer2013(path, cache=False)


def test_error_line_numbers_count_blank_lines_and_chunks(tmp_path, monkeypatch):
    """Check that line numbers stay exact across blank lines, a stray quote and chunk borders."""
    monkeypatch.setattr(fer2013, "FIRST_CHUNK_BYTES", 20_000)
    monkeypatch.setattr(fer2013, "CHUNK_BYTES", 30_000)
    lines = [row(i=i) for i in range(20)]
    lines[5:5] = ["", "   "]
    lines.append(row(label=9))  # line 1 + 23 = 24
    clean = write_csv(tmp_path / "clean.csv", lines)
    with raises_at(clean, 24, "field 'emotion' is 9"):
        data.load_fer2013(clean, cache=False)
    lines[3] = '0,"' + pixels_text(face(3)) + ",Training"  # unbalanced quote: only line 5 is bad
    quoted = write_csv(tmp_path / "quote.csv", lines)
    with pytest.warns(UserWarning, match=re.escape(f"skipped 2 bad row(s); first: {quoted}:5: expected 3")):
        ds = data.load_fer2013(quoted, cache=False, on_bad_rows="skip")
    assert len(ds["Training"]) == 19


@pytest.mark.parametrize("first, size", [(1, 1), (100, 997), (9000, 4096), (20_000, 30_011)])
@pytest.mark.parametrize("prefetch", [True, False])
def test_chunk_borders_do_not_change_the_result(tmp_path, monkeypatch, first, size, prefetch):
    """Check that any chunk sizes, with or without the reader thread, give the same arrays."""
    lines = [row(label=i % 7, usage=USAGES[i % 3], i=i) for i in range(12)]
    lines[4:4] = ["", " \r"]
    path = write_csv(tmp_path / "chunks.csv", lines, newline="\r\n")
    expected = data.load_fer2013(path, cache=False)
    monkeypatch.setattr(fer2013, "FIRST_CHUNK_BYTES", first)
    monkeypatch.setattr(fer2013, "CHUNK_BYTES", size)
    monkeypatch.setattr(fer2013, "PREFETCH", prefetch)
    _assert_same(expected, data.load_fer2013(path, cache=False))
    write_csv(path, lines + [row(label=8)])
    with raises_at(path, 16, "field 'emotion' is 8"):
        data.load_fer2013(path, cache=False)


# --------------------------------------------------------------------------
# Variants that must parse
# --------------------------------------------------------------------------


def _two_rows():
    return [row(label=3, i=1), row(label=5, usage="PublicTest", i=2)]


def _assert_two_rows(ds):
    assert list(ds.splits) == ["Training", "PublicTest"]
    assert ds["Training"].x.shape == (1,) + INPUT_SHAPE and ds["Training"].x.dtype == np.uint8
    np.testing.assert_array_equal(ds["Training"].x.ravel(), face(1))
    np.testing.assert_array_equal(ds["PublicTest"].x.ravel(), face(2))
    assert ds["Training"].y.tolist() == [3] and ds["PublicTest"].y.tolist() == [5]


def test_windows_line_endings_parse(tmp_path):
    """Check that CRLF line endings parse like LF."""
    _assert_two_rows(data.load_fer2013(write_csv(tmp_path / "crlf.csv", _two_rows(), newline="\r\n"), cache=False))


def test_utf8_bom_parses(tmp_path):
    """Check that a UTF-8 byte-order mark before the header is accepted."""
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbf" + "\n".join([HEADER, *_two_rows()]).encode() + b"\n")
    _assert_two_rows(data.load_fer2013(path, cache=False))


def test_quoted_fields_parse(tmp_path):
    """Check that quoted fields (as pandas/Excel write them) parse."""
    lines = [f'3,"{pixels_text(face(1))}","Training"', f'"5","{pixels_text(face(2))}",PublicTest']
    _assert_two_rows(data.load_fer2013(write_csv(tmp_path / "quoted.csv", lines, header='"emotion","pixels","Usage"'),
                                       cache=False))


def test_columns_in_another_order(tmp_path):
    """Check that columns are found by name, in any order."""
    lines = [f"Training,{pixels_text(face(1))},3", f"PublicTest,{pixels_text(face(2))},5"]
    _assert_two_rows(data.load_fer2013(write_csv(tmp_path / "order.csv", lines, header="Usage,pixels,emotion"),
                                       cache=False))


def test_no_final_newline_and_blank_lines(tmp_path):
    """Check that blank lines are skipped and a last line without a newline is read."""
    path = tmp_path / "tail.csv"
    path.write_text(HEADER + "\n\n" + _two_rows()[0] + "\n   \n" + _two_rows()[1])
    _assert_two_rows(data.load_fer2013(path, cache=False))


@pytest.mark.parametrize("isal", [True, False])
def test_gzip_csv(tmp_path, monkeypatch, isal):
    """Check that a .csv.gz gives the same arrays and the file's checksum, with or without isal."""
    if not isal:
        monkeypatch.setattr(fer2013, "_igzip", None)
    plain = write_csv(tmp_path / "plain.csv", _two_rows())
    packed = tmp_path / "packed.csv.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    ds = data.load_fer2013(packed, cache=False)
    _assert_two_rows(ds)
    import hashlib

    assert ds.checksum == hashlib.sha256(packed.read_bytes()).hexdigest()


def test_truncated_gzip(tmp_path):
    """Check that a cut-off .csv.gz is a DataError, not an EOFError."""
    path = tmp_path / "cut.csv.gz"
    whole = gzip.compress(("\n".join([HEADER] + [row(i=i) for i in range(30)]) + "\n").encode())
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DataError, match=re.escape(str(path)) + ": corrupt or truncated file"):
        data.load_fer2013(path, cache=False)


def test_csv_without_usage_is_split_80_10_10(tmp_path):
    """Check that a CSV without Usage is split 80/10/10 per class, seeded."""
    lines = [f"{i % 7},{pixels_text(face(i))}" for i in range(140)]
    path = write_csv(tmp_path / "custom.csv", lines, header="emotion,pixels")
    ds = data.load_fer2013(path, cache=False)
    assert list(ds.splits) == list(USAGES)
    assert ds["Training"].class_counts().tolist() == [16] * 7
    assert ds["PublicTest"].class_counts().tolist() == [2] * 7
    assert ds["PrivateTest"].class_counts().tolist() == [2] * 7
    # Every row lands in exactly one split.
    seen = np.concatenate([s.x.reshape(len(s), -1)[:, 0] for s in ds.splits.values()])
    assert sorted(seen.tolist()) == sorted((np.arange(140) * 13 % 256).tolist())
    again = data.load_fer2013(path, cache=False)
    other = data.load_fer2013(path, cache=False, split_seed=7)
    np.testing.assert_array_equal(ds["PublicTest"].x, again["PublicTest"].x)
    assert not np.array_equal(ds["PublicTest"].x, other["PublicTest"].x)


def test_skip_bad_rows_warns_with_count(tmp_path):
    """Check that on_bad_rows='skip' keeps the good rows and warns how many were dropped."""
    lines = [row(label=1, i=1), row(label=9), row(pixels=np.ones(10, int)), row(label=2, i=2, usage="PublicTest")]
    path = write_csv(tmp_path / "skip.csv", lines)
    with pytest.warns(UserWarning, match=re.escape(f"{path}: skipped 2 bad row(s); first: {path}:3: ")):
        ds = data.load_fer2013(path, cache=False, on_bad_rows="skip")
    assert ds["Training"].y.tolist() == [1] and ds["PublicTest"].y.tolist() == [2]
    np.testing.assert_array_equal(ds["PublicTest"].x.ravel(), face(2))


def test_skip_with_only_bad_rows_is_an_error(tmp_path):
    """Check that skipping every row is still an error that names the first bad line."""
    path = write_csv(tmp_path / "allbad.csv", [row(label=8), row(label=9)])
    with pytest.raises(DataError, match=re.escape(f"no valid rows; all 2 data row(s) are bad (first: {path}:2: ")):
        data.load_fer2013(path, cache=False, on_bad_rows="skip")


# --------------------------------------------------------------------------
# Junk
# --------------------------------------------------------------------------


def _junk_file(tmp_path, size=4 << 20):
    path = tmp_path / "junk.csv"
    rng = np.random.default_rng(0)
    path.write_bytes(HEADER.encode() + b"\n" + rng.integers(0, 256, size, dtype=np.uint8).tobytes())
    return path


@pytest.mark.parametrize("on_bad_rows, problem", [
    ("error", r":2: "),
    ("skip", r": none of the first [\d,]+ rows is valid .*not a FER2013 CSV"),
])
def test_random_bytes_stop_early(tmp_path, monkeypatch, on_bad_rows, problem):
    """Check that megabytes of random bytes after a valid header fail after the first chunk."""
    path = _junk_file(tmp_path)
    calls = []
    scan = fer2013._scan_chunk
    monkeypatch.setattr(fer2013, "_scan_chunk", lambda *a, **k: calls.append(len(a[0])) or scan(*a, **k))
    with pytest.raises(DataError, match=re.escape(str(path)) + problem):
        data.load_fer2013(path, cache=False, on_bad_rows=on_bad_rows)
    assert len(calls) == 1 and calls[0] <= fer2013.FIRST_CHUNK_BYTES


def test_no_line_break(tmp_path):
    """Check that a huge line without a newline is refused with its line number."""
    path = tmp_path / "oneline.csv"
    path.write_bytes(HEADER.encode() + b"\n" + b"1" * (2 << 20))
    with raises_at(path, 2, r"no line break in [\d,]+ bytes; not a FER2013 CSV"):
        data.load_fer2013(path, cache=False)


def test_binary_file(tmp_path):
    """Check that a binary file (a PNG renamed .csv) is a DataError at line 1."""
    path = tmp_path / "image.csv"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 10)
    with raises_at(path, 1, ""):
        data.load_fer2013(path, cache=False)


_TOKENS = [b"0", b"7", b"255", b"256", b"1000", b" ", b"  ", b",", b"\n", b"\r\n", b'"', b"\t", b"-", b".",
           b"Training", b"PublicTest", b"\xff", b"\xef\xbb\xbf", b"\x00"]


@st.composite
def _csv_bodies(draw):
    """Raw bytes, token soup, or valid rows with a few bytes overwritten."""
    kind = draw(st.integers(0, 2))
    if kind == 0:
        return draw(st.binary(max_size=4000))
    if kind == 1:
        return b"".join(draw(st.lists(st.sampled_from(_TOKENS), max_size=400)))
    body = bytearray(("\n".join(row(label=i % 7, i=i) for i in range(draw(st.integers(1, 3)))) + "\n").encode())
    for _ in range(draw(st.integers(0, 3))):
        body[draw(st.integers(0, len(body) - 1))] = draw(st.integers(0, 255))
    return bytes(body)


@settings(max_examples=300, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=_csv_bodies())
def test_any_bytes_parse_or_raise_data_error(tmp_path, body):
    """Check that any bytes after a valid header give valid arrays or a DataError, nothing else."""
    path = tmp_path / "fuzz.csv"
    path.write_bytes(HEADER.encode() + b"\n" + body)
    try:
        ds = data.load_fer2013(path, cache=False)
    except DataError as exc:
        assert str(path) in str(exc)
        return
    assert ds.splits and set(ds.splits) <= set(USAGES)
    for split in ds.splits.values():
        assert split.x.dtype == np.uint8 and split.x.shape == (len(split),) + INPUT_SHAPE
        assert split.y.min() >= 0 and split.y.max() < NUM_CLASSES


def _one_row_each_way(line):
    """The kernel's answer for ``line`` (meta row, face) from the array path and from the per-line reader."""
    from fer_keras.data import _csv_kernel as kernel

    body = b"0," + pixels_text(face(1)).encode() + b",Training\n" + line + b"\n"  # line 2: not the file's first
    pixels = kernel.pixel_buffer(len(body))
    _, ok_rows, _, meta = kernel.scan_rows(np.frombuffer(body, np.uint8), 1, 3, 0, 1, 2, pixels)
    array_path = meta[1, :3].tolist(), (pixels[PIXELS_PER_IMAGE:2 * PIXELS_PER_IMAGE].tolist() if ok_rows == 2
                                        else None)
    offset = body.index(line)
    code, detail, label, *_, one_face = kernel._scan_line(line, offset, (3, 0, 1, 2))
    return array_path, ([code, detail, label], None if one_face is None else one_face.tolist())


@pytest.mark.parametrize("pixels", [
    b"1234",  # a fourth digit the 3-byte table cannot see
    b"0012",  # leading zeros: valid, 12
    b"256",  # one above the range
    b"12  7",  # two spaces (a separator, not a number)
    b"1x2",  # a stray byte inside a number
    b"7\t8",  # a tab separator
    b'"9"',  # quotes inside the field
])
def test_array_path_and_line_reader_agree_on_odd_numbers(pixels):
    """Check that a row with one odd number gives the same status, detail, label and face whether the
    array path or the per-line reader reads it (the array path must hand over what it cannot read)."""
    values = pixels_text(face(2)[:PIXELS_PER_IMAGE - 2]).encode()
    line = b"3," + values + b" " + pixels + b" 5,PublicTest"
    array_path, line_reader = _one_row_each_way(line)
    assert array_path == line_reader


# --------------------------------------------------------------------------
# Cache
# --------------------------------------------------------------------------


def _assert_same(a, b):
    assert list(a.splits) == list(b.splits) and a.checksum == b.checksum
    for usage in a.splits:
        np.testing.assert_array_equal(a[usage].x, b[usage].x)
        np.testing.assert_array_equal(a[usage].y, b[usage].y)


@pytest.fixture(autouse=True)
def no_cache_env(monkeypatch):
    """The cache tests choose $FER_KERAS_CACHE themselves; a user's own setting must not move their files."""
    monkeypatch.delenv("FER_KERAS_CACHE", raising=False)


def test_cache_written_then_reused_without_parsing(tmp_path, monkeypatch):
    """Check that the first load writes <csv>.fer_keras.npz and the second reads it without parsing."""
    path = write_csv(tmp_path / "c.csv", _two_rows())
    first = data.load_fer2013(path)
    assert (tmp_path / "c.csv.fer_keras.npz").is_file()

    def no_parse(*args, **kwargs):
        raise AssertionError("the CSV was parsed again")

    monkeypatch.setattr(fer2013, "parse_csv", no_parse)
    second = data.load_fer2013(path)
    _assert_same(first, second)
    _assert_two_rows(second)


def test_cache_invalidated_when_csv_changes(tmp_path):
    """Check that rewriting the CSV (new content, new mtime) makes the cache stale."""
    path = write_csv(tmp_path / "c.csv", _two_rows())
    data.load_fer2013(path)
    before = path.stat().st_mtime_ns
    write_csv(path, [row(label=6, i=9)])
    os.utime(path, ns=(before + 2_000_000_000, before + 2_000_000_000))
    ds = data.load_fer2013(path)
    assert list(ds.splits) == ["Training"] and ds["Training"].y.tolist() == [6]


def test_cache_keeps_skip_warning(tmp_path):
    """Check that a cached load with skipped rows warns again."""
    path = write_csv(tmp_path / "c.csv", [row(), row(label=9)])
    for _ in range(2):
        with pytest.warns(UserWarning, match="skipped 1 bad row"):
            data.load_fer2013(path, on_bad_rows="skip")


def test_damaged_cache_is_ignored(tmp_path):
    """Check that a corrupt cache file only costs a re-parse."""
    path = write_csv(tmp_path / "c.csv", _two_rows())
    (tmp_path / "c.csv.fer_keras.npz").write_bytes(b"not a zip")
    _assert_two_rows(data.load_fer2013(path))


@pytest.fixture
def read_only_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    path = write_csv(folder / "c.csv", _two_rows())
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP)
    yield path
    folder.chmod(stat.S_IRWXU)


def test_cache_goes_to_cache_dir_when_csv_folder_is_read_only(read_only_folder, tmp_path, monkeypatch):
    """Check that a read-only CSV folder gets no cache; $FER_KERAS_CACHE or cache_dir gets it."""
    monkeypatch.setenv("FER_KERAS_CACHE", str(tmp_path / "env_cache"))
    data.load_fer2013(read_only_folder)
    assert sorted(os.listdir(read_only_folder.parent)) == ["c.csv"]
    assert [p.name for p in (tmp_path / "env_cache").iterdir()][0].startswith("c.csv.")
    ds = data.load_fer2013(read_only_folder, cache_dir=tmp_path / "mine")
    assert len(list((tmp_path / "mine").glob("c.csv.*.npz"))) == 1
    _assert_two_rows(ds)


def test_cache_env_is_used_before_the_csv_folder(tmp_path, monkeypatch):
    """Check that $FER_KERAS_CACHE, when set, holds the cache even where the CSV's folder is writable: a user
    who names a cache folder does not want files beside their data."""
    (tmp_path / "data").mkdir()
    path = write_csv(tmp_path / "data" / "c.csv", _two_rows())
    monkeypatch.setenv("FER_KERAS_CACHE", str(tmp_path / "env_cache"))
    _assert_two_rows(data.load_fer2013(path))
    assert os.listdir(path.parent) == ["c.csv"]
    assert len(list((tmp_path / "env_cache").glob("c.csv.*.npz"))) == 1


def test_cache_false_writes_nothing(tmp_path):
    """Check that cache=False leaves the folder as it was."""
    path = write_csv(tmp_path / "c.csv", _two_rows())
    data.load_fer2013(path, cache=False)
    assert os.listdir(tmp_path) == ["c.csv"]


# --------------------------------------------------------------------------
# The real FER2013 file (skipped when absent)
# --------------------------------------------------------------------------


@pytest.mark.skipif(not REAL_CSV.is_file(), reason="shared FER2013 CSV not present")
def test_real_fer2013_split_sizes_and_class_counts(tmp_path):
    """Check the shared CSV against its README: 28709/3589 faces and the per-class counts."""
    ds = data.load_fer2013(REAL_CSV, cache_dir=tmp_path)
    assert list(ds.splits) == ["Training", "PublicTest"]
    assert len(ds["Training"]) == 28709 and len(ds["PublicTest"]) == 3589
    assert ds["Training"].class_counts().tolist() == [3995, 436, 4097, 7215, 4830, 3171, 4965]
    assert ds["PublicTest"].class_counts().tolist() == [467, 56, 496, 895, 653, 415, 607]
    assert ds["Training"].x.dtype == np.uint8 and ds["Training"].x.shape[1:] == INPUT_SHAPE
    assert len(ds.checksum) == 64


# --------------------------------------------------------------------------
# Image folders
# --------------------------------------------------------------------------


def _save(path, value=128, size=(48, 48), mode="L", fmt=None):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    colour = value if mode == "L" else (value, value // 2, 255 - value)
    Image.new(mode, size, colour).save(path, format=fmt)


def test_image_folder_split_class_layout(tmp_path):
    """Check that <split>/<class>/ trees map split names to Usage and classes to indices: test/ is
    PublicTest (FER2013's image release), but beside val/ it is the held-out PrivateTest, not merged
    into the split that picks the best epoch; two folders for one split are refused."""
    _save(tmp_path / "train" / "happy" / "a.png", 10)
    _save(tmp_path / "train" / "angry" / "b.jpg", 20, size=(100, 80), mode="RGB")
    _save(tmp_path / "test" / "surprise" / "c.png", 30)
    ds = data.load_image_folder(tmp_path)
    assert list(ds.splits) == ["Training", "PublicTest"]
    assert ds["Training"].x.shape == (2,) + INPUT_SHAPE and ds["Training"].x.dtype == np.uint8
    assert ds["Training"].y.tolist() == [0, 3]  # angry/ sorts before happy/
    assert ds["PublicTest"].y.tolist() == [5]
    _save(tmp_path / "val" / "sad" / "d.png", 40)
    ds = data.load_image_folder(tmp_path)
    assert sorted(ds.splits) == ["PrivateTest", "PublicTest", "Training"]
    assert ds["PublicTest"].y.tolist() == [4] and ds["PrivateTest"].y.tolist() == [5]
    _save(tmp_path / "validation" / "sad" / "e.png", 50)
    with pytest.raises(DataError, match="would both be the PublicTest split"):
        data.load_image_folder(tmp_path)


def test_image_folder_class_only_layout_and_aliases(tmp_path):
    """Check that a tree of class folders (with alias spellings) becomes PrivateTest."""
    _save(tmp_path / "anger" / "a.png", 10)
    _save(tmp_path / "happiness" / "b.png", 20)
    _save(tmp_path / "Neutral" / "c.png", 30)
    (tmp_path / ".ipynb_checkpoints").mkdir()
    ds = data.load_image_folder(tmp_path)
    assert list(ds.splits) == ["PrivateTest"]
    split = ds["PrivateTest"]
    assert sorted(zip(split.y.tolist(), split.x[:, 0, 0, 0].tolist())) == [(0, 10), (3, 20), (6, 30)]


def test_image_folder_skips_unreadable_files_with_warning(tmp_path):
    """Check that a zero-byte .jpg and a text file named .jpg are skipped with a warning."""
    _save(tmp_path / "happy" / "good.png", 50)
    (tmp_path / "happy" / "empty.jpg").write_bytes(b"")
    (tmp_path / "fear" / "notes.jpg").parent.mkdir()
    (tmp_path / "fear" / "notes.jpg").write_text("this is not an image")
    (tmp_path / "fear" / "readme.txt").write_text("ignored: not an image extension")
    with pytest.warns(UserWarning, match=r"skipped 2 unreadable file\(s\); first: .*not a readable image"):
        ds = data.load_image_folder(tmp_path)
    assert ds["PrivateTest"].y.tolist() == [3]


def test_image_folder_unknown_class_folder(tmp_path):
    """Check that an unknown class folder is a DataError naming it."""
    _save(tmp_path / "happy" / "a.png")
    _save(tmp_path / "bored" / "b.png")
    with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'bored'}: unknown class folder 'bored'")):
        data.load_image_folder(tmp_path)


def test_image_folder_unknown_split_folder(tmp_path):
    """Check that a split folder with an unknown name is a DataError naming it."""
    _save(tmp_path / "train" / "happy" / "a.png")
    _save(tmp_path / "holdout" / "happy" / "b.png")
    with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'holdout'}: unknown folder 'holdout'")):
        data.load_image_folder(tmp_path)


def test_image_folder_missing_or_empty(tmp_path):
    """Check that a missing folder, or one without images, is a DataError."""
    with pytest.raises(DataError, match="no such folder"):
        data.load_image_folder(tmp_path / "nope")
    (tmp_path / "happy").mkdir()
    with pytest.raises(DataError, match="no readable images found"):
        data.load_image_folder(tmp_path)


# --------------------------------------------------------------------------
# Balanced copies
# --------------------------------------------------------------------------


@pytest.fixture
def skewed_split():
    y = np.repeat(np.arange(NUM_CLASSES), [50, 5, 20, 90, 30, 10, 40])
    x = np.arange(len(y), dtype=np.uint8)[:, None, None, None] * np.ones((1,) + INPUT_SHAPE, np.uint8)
    return data.Split(x, y)


@pytest.mark.parametrize("mode, size", [("undersample", 5), ("oversample", 90), ("mean", 35)])
def test_balanced_gives_equal_class_counts(skewed_split, mode, size):
    """Check that every mode gives every class the same count (min, max or mean)."""
    out = data.balanced(skewed_split, mode=mode, seed=3)
    assert out.class_counts().tolist() == [size] * NUM_CLASSES
    # Faces keep their labels.
    labels_of_face = dict(zip(skewed_split.x[:, 0, 0, 0].tolist(), skewed_split.y.tolist()))
    assert all(labels_of_face[f] == label for f, label in zip(out.x[:, 0, 0, 0].tolist(), out.y.tolist()))


@pytest.mark.parametrize("mode", ["undersample", "oversample", "mean"])
def test_balanced_is_seeded(skewed_split, mode):
    """Check that the same seed gives the same copy and another seed a different one."""
    a = data.balanced(skewed_split, mode=mode, seed=1)
    b = data.balanced(skewed_split, mode=mode, seed=1)
    c = data.balanced(skewed_split, mode=mode, seed=2)
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.y, b.y)
    assert not np.array_equal(a.x, c.x)


def test_balanced_rejects_unknown_mode(skewed_split):
    """Check that an unknown mode is refused."""
    with pytest.raises(ValueError, match="mode must be"):
        data.balanced(skewed_split, mode="median")


def test_class_index_aliases():
    """Check the folder-name spellings, digits, and the error for an unknown name."""
    assert [data.class_index(n) for n in ("Angry", "anger", "happiness", "scared", "6")] == [0, 0, 3, 2, 6]
    assert data.class_index(CLASS_NAMES[5]) == 5
    with pytest.raises(DataError, match="unknown class folder 'contempt'"):
        data.class_index("contempt")


def test_packed_dataset_round_trips_exactly(tmp_path):
    """The packed file (for carrying data to a size-capped GPU machine) loses nothing:
    same pixels, labels, splits and source checksum as the CSV it came from."""
    rng = np.random.default_rng(3)
    lines = [row(label=int(rng.integers(NUM_CLASSES)), usage=usage, pixels=rng.integers(0, 256, PIXELS_PER_IMAGE))
             for usage in ("Training",) * 6 + ("PublicTest",) * 3]
    csv = tmp_path / "faces.csv"
    write_csv(csv, lines)
    original = data.load_fer2013(csv, cache=False)
    packed = tmp_path / f"faces{data.PACKED_SUFFIX}"
    data.save_packed(original, packed)
    loaded = data.load_fer2013(packed)
    assert list(loaded.splits) == list(original.splits)
    for name, split in original.splits.items():
        np.testing.assert_array_equal(loaded[name].x, split.x)
        np.testing.assert_array_equal(loaded[name].y, split.y)
    assert loaded.checksum == original.checksum
    assert packed.stat().st_size < csv.stat().st_size


def test_damaged_packed_file_is_a_clear_error(tmp_path):
    bad = tmp_path / f"bad{data.PACKED_SUFFIX}"
    bad.write_bytes(b"not lzma at all")
    with pytest.raises(DataError, match="not a packed fer_keras dataset"):
        data.load_fer2013(bad)
