"""Bad inputs through the command lines: CSVs, image folders, model files.

Every bad input must end as one ``error:`` line naming the file (and the
line and field for a CSV row) with exit code 2, or be skipped with a one-line
reason, never a traceback; the inputs that only look odd (Windows line
endings, a UTF-8 BOM) must work.
"""

import gzip
import json
import os
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.reliability.conftest import REPO, one_error_line, pickle_payload, png_bomb, png_bytes, random_bytes, wide_bmp

from fer_keras import data
from fer_keras.cli import ensemble_cli, predict_cli, train_cli
from fer_keras.constants import INPUT_SHAPE, PIXELS_PER_IMAGE
from fer_keras.data import fer2013
from fer_keras.errors import DataError, FerError
from fer_keras.inference import read_image
from fer_keras.models import model_io

HEADER = b"emotion,pixels,Usage"


def pixels(n=PIXELS_PER_IMAGE, value=None):
    values = [str((i * 7) % 256) for i in range(n)]
    if value is not None:
        values[100] = value
    return " ".join(values).encode()


def row(label=b"0", pix=None, usage=b"Training"):
    return b",".join([label, pixels() if pix is None else pix, usage])


def good_rows(n=14, usage=b"PrivateTest"):
    return [row(str(i % 7).encode(), usage=usage) for i in range(n)]


# name → (file bytes, what the one error line must say after "<path>")
CSV_CASES = {
    "empty": (b"", ":1: the file is empty"),
    "blank_lines_only": (b"\n\n  \n", ":1: the file is empty"),
    "header_only": (HEADER + b"\n", ":2: the file has a header but no data rows"),
    "wrong_columns": (b"label,image,Usage\n" + row() + b"\n", ":1: missing column(s) emotion, pixels"),
    "pixels_2303": (HEADER + b"\n" + row(pix=pixels(2303)) + b"\n", ":2: field 'pixels' has 2303 values; expected 2304"),
    "pixels_2305": (HEADER + b"\n" + row(pix=pixels(2305)) + b"\n", ":2: field 'pixels' has 2305 values; expected 2304"),
    "pixel_negative": (HEADER + b"\n" + row(pix=pixels(value="-3")) + b"\n", ":2: field 'pixels' contains '-'"),
    "pixel_256": (HEADER + b"\n" + row(pix=pixels(value="256")) + b"\n", ":2: field 'pixels' has value 256; expected 0..255"),
    "pixel_float": (HEADER + b"\n" + row(pix=pixels(value="12.5")) + b"\n", ":2: field 'pixels' contains '.'"),
    "label_7": (HEADER + b"\n" + row() + b"\n" + row(label=b"7") + b"\n", ":3: field 'emotion' is 7; expected 0..6"),
    "label_text": (HEADER + b"\n" + row(label=b"happy") + b"\n", ":2: field 'emotion' is 'happy', a class name"),
    "usage_unknown": (HEADER + b"\n" + row(usage=b"Holdout") + b"\n", ":2: field 'Usage' is 'Holdout'"),
    "field_missing": (HEADER + b"\n" + b"0," + pixels() + b"\n", ":2: expected 3 comma-separated fields"),
    "non_utf8_header": (b"emo\xe9tion,pixels,Usage\n" + row() + b"\n", ":1: the header is not UTF-8 text"),
    "non_utf8_pixels": (HEADER + b"\n" + row(pix=b"1 \xff2 " + pixels(2302)) + b"\n",
                        ":2: field 'pixels' contains byte 0xff"),
    "non_utf8_usage": (HEADER + b"\n" + row(usage=b"Tr\xe9ining") + b"\n", ":2: field 'Usage' is not UTF-8 text"),
    "binary_png": (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8, ":1:"),
    "truncated_gzip": (gzip.compress(HEADER + b"\n" + b"\n".join(good_rows(30)) + b"\n")[:-40],
                       ": corrupt or truncated file"),
}

CLIS = {
    "test_ensemble_model": lambda csv, tmp, models: ensemble_cli.main(
        ["--csv", str(csv), "--models-dir", str(models), "--out", str(tmp / "report"), "--bootstrap", "0"],
        prog="test_ensemble_model.py"),
    "train_vgg": lambda csv, tmp, models: train_cli.main(
        ["--csv", str(csv), "-o", "width=0.125", "--run-dir", str(tmp / "run"), "--models-dir", str(tmp / "m"),
         "--epochs", "1", "--precision", "float32"], prog="train_vgg.py", defaults={"model": "vgg16"}),
}


@pytest.mark.parametrize("cli", sorted(CLIS))
@pytest.mark.parametrize("case", sorted(CSV_CASES))
def test_bad_csv_is_one_line_naming_file_row_and_field_with_exit_2(case, cli, tmp_path, good_models, capsys):
    """Check that each malformed CSV ends the script with exit code 2 and one error line naming the
    file, the line and the field, and that nothing is written where models or reports go."""
    content, expected = CSV_CASES[case]
    path = tmp_path / (f"{case}.csv.gz" if case == "truncated_gzip" else f"{case}.csv")
    path.write_bytes(content)
    code = CLIS[cli](path, tmp_path, good_models)
    _, err = capsys.readouterr()
    assert code == 2
    one_error_line(err, f"{path}{expected}")
    assert not (tmp_path / "m").exists() and not (tmp_path / "report" / "report.json").exists()


def test_missing_csv_and_folder_as_csv(tmp_path, good_models, capsys):
    """Check that a CSV path that does not exist, or is a folder, is one line with exit code 2 saying which,
    and naming the flag (a user who relied on the default --csv learns where to point it)."""
    for cli in sorted(CLIS):
        for path, what in ((tmp_path / "nope.csv", "no such file"), (tmp_path, "is a folder; expected a CSV file")):
            assert CLIS[cli](path, tmp_path, good_models) == 2
            one_error_line(capsys.readouterr().err, f"error: --csv: {path}: {what}")


@pytest.mark.parametrize("script, argv", [
    ("test_ensemble_model.py", ["--bootstrap", "0"]),
    ("train_vgg.py", ["-o", "width=0.125", "--epochs", "1"]),
])
def test_real_scripts_exit_2_with_exactly_one_stderr_line(script, argv, tmp_path, good_models):
    """Check, through the real scripts in a fresh process, that a bad CSV gives exit status 2 and
    stderr is exactly the one error line (no TensorFlow chatter, no traceback)."""
    path = tmp_path / "short.csv"
    path.write_bytes(HEADER + b"\n" + row(pix=pixels(2303)) + b"\n")
    extra = (["--models-dir", str(good_models), "--out", str(tmp_path / "r")] if script.startswith("test_")
             else ["--run-dir", str(tmp_path / "run"), "--models-dir", str(tmp_path / "m")])
    proc = subprocess.run([sys.executable, str(REPO / script), "--csv", str(path), *argv, *extra],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120, check=False)
    assert proc.returncode == 2, proc.stderr
    expected = f"error: {path}:2: field 'pixels' has 2303 values; expected 2304 (48x48)"
    if script.startswith("train"):  # the one of the two that has --skip-bad-rows says so
        expected += " (pass --skip-bad-rows to drop such rows)"
    assert proc.stderr.splitlines() == [expected]


@pytest.mark.parametrize("variant", ["crlf", "bom", "bom_crlf", "crlf_gzip"])
def test_windows_line_endings_and_bom_work(variant, tmp_path, good_models, capsys):
    """Check that CRLF line endings, a UTF-8 BOM, both, and a gzipped CRLF file parse exactly like the
    plain file and evaluate end to end (exit code 0)."""
    rows = good_rows(14, b"PublicTest") + good_rows(21, b"PrivateTest")
    plain = tmp_path / "plain.csv"
    plain.write_bytes(b"\n".join([HEADER, *rows]) + b"\n")
    newline = b"\r\n" if "crlf" in variant else b"\n"
    body = (b"\xef\xbb\xbf" if "bom" in variant else b"") + newline.join([HEADER, *rows]) + newline
    path = tmp_path / (f"{variant}.csv.gz" if "gzip" in variant else f"{variant}.csv")
    path.write_bytes(gzip.compress(body) if "gzip" in variant else body)
    expected, got = data.load_fer2013(plain, cache=False), data.load_fer2013(path, cache=False)
    assert list(got.splits) == ["PublicTest", "PrivateTest"]
    for usage in expected.splits:
        np.testing.assert_array_equal(got[usage].x, expected[usage].x)
        np.testing.assert_array_equal(got[usage].y, expected[usage].y)
    code = CLIS["test_ensemble_model"](path, tmp_path, good_models)
    assert code == 0, capsys.readouterr().err
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["n_samples"] == 21


def _read_bytes_so_far():
    """Bytes this process has read so far (Linux); None where the kernel does not say."""
    try:
        with open("/proc/self/io") as fh:
            return int(next(line for line in fh if line.startswith("rchar:")).split()[1])
    except (OSError, StopIteration, ValueError):
        return None


@pytest.mark.parametrize("skip_bad_rows", [False, True])
def test_200_mb_of_junk_after_a_valid_header_stops_early(skip_bad_rows, tmp_path, good_models, capsys, monkeypatch):
    """Check RELIABILITY.md's bounded work on junk: 200 MB of random bytes behind a valid header fail after the
    parser was handed only the first 1 MiB chunk, with at most that chunk and the reader's two 32 MiB read-ahead
    blocks read from the file (well under half of it), both when bad rows stop the run and when they are skipped.
    No clock: the work done is counted, not timed."""
    path = tmp_path / "junk.csv"
    rng = np.random.default_rng(0)
    with open(path, "wb") as fh:  # stream-generated: never 200 MB in memory
        fh.write(HEADER + b"\n")
        block = rng.integers(0, 256, 8 << 20, dtype=np.uint8).tobytes()
        fh.writelines(block for _ in range(25))
    size = path.stat().st_size
    scanned, read = [], []
    scan_chunk, readinto = fer2013._scan_chunk, fer2013._HashingRaw.readinto

    def counting_scan(chunk, *args, **kwargs):
        scanned.append(len(chunk))
        return scan_chunk(chunk, *args, **kwargs)

    def counting_readinto(self, buffer):
        n = readinto(self, buffer)
        read.append(n or 0)
        return n

    monkeypatch.setattr(fer2013, "_scan_chunk", counting_scan)
    monkeypatch.setattr(fer2013._HashingRaw, "readinto", counting_readinto)
    try:
        before = _read_bytes_so_far()
        if skip_bad_rows:
            code = train_cli.main(["--csv", str(path), "--skip-bad-rows", "--run-dir", str(tmp_path / "run"),
                                   "--models-dir", str(tmp_path / "m"), "-o", "width=0.125", "--precision", "float32"],
                                  prog="train_vgg.py", defaults={"model": "vgg16"})
        else:
            code = CLIS["test_ensemble_model"](path, tmp_path, good_models)
        after = _read_bytes_so_far()
    finally:
        path.unlink()
    assert code == 2
    expected = "none of the first" if skip_bad_rows else f"{path}:2: "
    one_error_line(capsys.readouterr().err, str(path), expected)
    assert len(scanned) == 1 and scanned[0] <= 1 << 20, scanned  # the documented first 1 MiB, no more
    limit = fer2013.FIRST_CHUNK_BYTES + 2 * fer2013.CHUNK_BYTES + (1 << 20)  # + the reader's read-ahead and its buffer
    assert 0 < sum(read) <= limit < size // 2, f"read {sum(read):,} of {size:,} bytes"
    if before is not None and after is not None:
        assert after - before < size // 2, f"read {after - before:,} of {size:,} bytes"


# --------------------------------------------------------------------------
# Image folders
# --------------------------------------------------------------------------


def _bad_pictures(folder):
    """A folder of pictures that cannot be faces, each a different way; returns {name: why}."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "zero_bytes.jpg").write_bytes(b"")
    (folder / "text.jpg").write_text("this is not a picture\n")
    (folder / "truncated.png").write_bytes(png_bytes(np.full((64, 64, 3), 90, np.uint8))[:60])
    random_bytes(folder / "noise.png", 3000)
    png_bomb(folder / "bomb.png")
    wide_bmp(folder / "wide.bmp")
    return sorted(p.name for p in folder.iterdir())


def test_load_image_folder_skips_each_bad_picture_with_a_counted_warning(tmp_path):
    """Check that load_image_folder keeps the good pictures and skips zero-byte, non-image, truncated,
    noise, decompression-bomb and impossible-header files with one warning that counts them."""
    happy = tmp_path / "faces" / "happy"
    bad = _bad_pictures(happy)
    (happy / "good.png").write_bytes(png_bytes(np.full((48, 48), 128, np.uint8)))
    started = time.monotonic()
    with pytest.warns(UserWarning, match=rf"skipped {len(bad)} unreadable file\(s\); first: .*not a readable image"):
        ds = data.load_image_folder(tmp_path / "faces")
    assert time.monotonic() - started < 10
    assert list(ds.splits) == ["PrivateTest"] and ds["PrivateTest"].y.tolist() == [3]
    with pytest.raises(DataError, match="decompression bomb"):
        data.read_face(happy / "bomb.png")


def test_predict_folder_reports_each_bad_picture_and_goes_on(tmp_path, good_models, capsys):
    """Check that predict.py on a folder of bad pictures and one good one writes the good one (exit 0)
    and prints one line per bad picture naming it, then counts them in its summary; and exit 2 when nothing
    could be read."""
    folder = tmp_path / "pictures"
    bad = _bad_pictures(folder)
    (folder / "good.png").write_bytes(png_bytes(np.full((48, 48), 128, np.uint8)))
    started = time.monotonic()
    code = predict_cli.main(["--input", str(folder), "--no-detect", "--models-dir", str(good_models),
                             "--out", str(tmp_path / "out"), "--quiet"], prog="predict.py")
    assert time.monotonic() - started < 30
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "Traceback" not in err
    assert f"1 face row(s) from 1 input(s), {len(bad)} skipped (said above)" in out
    for name in bad:
        assert sum(name in line for line in err.splitlines()) == 1, (name, err)
    assert "too large to decode safely" in err
    rows = (tmp_path / "out" / "predictions.csv").read_text().splitlines()
    assert len(rows) == 2 and "good.png" in rows[1]

    (folder / "good.png").unlink()
    code = predict_cli.main(["--input", str(folder), "--no-detect", "--models-dir", str(good_models),
                             "--out", str(tmp_path / "out2"), "--quiet"], prog="predict.py")
    assert code == 2
    assert "nothing could be processed" in capsys.readouterr().err


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    """Check that a 400 KB PNG declaring 20000x20000 pixels is refused from its header in well under a
    second (decoding it would take 1.2 GB)."""
    bomb = png_bomb(tmp_path / "bomb.png")
    assert bomb.stat().st_size < 1 << 20
    started = time.monotonic()
    with pytest.raises(FerError, match=r"bomb.png: too large to decode safely"):
        read_image(bomb)
    assert time.monotonic() - started < 1


_SEEDS = {}


def _seed_images():
    """Small valid pictures in every format Pillow writes here: the fuzzer's starting points."""
    if not _SEEDS:
        import io

        from PIL import Image

        image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8))
        for fmt in ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP", "PPM", "TGA", "ICO"):
            buffer = io.BytesIO()
            try:
                image.save(buffer, format=fmt)
            except (OSError, KeyError, ValueError):  # a codec this Pillow lacks
                continue
            _SEEDS[fmt] = buffer.getvalue()
    return _SEEDS


@st.composite
def _picture_bytes(draw):
    """Random bytes, or a valid picture truncated and/or with a few bytes overwritten."""
    if draw(st.integers(0, 4)) == 0:
        return draw(st.binary(max_size=2000))
    seeds = _seed_images()
    body = bytearray(seeds[draw(st.sampled_from(sorted(seeds)))])
    if draw(st.booleans()):
        body = body[:draw(st.integers(0, len(body)))]
    for _ in range(draw(st.integers(0, 6))):
        if body:
            body[draw(st.integers(0, len(body) - 1))] = draw(st.integers(0, 255))
    return bytes(body)


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=_picture_bytes())
def test_any_bytes_are_a_face_or_a_clear_error(tmp_path, content):
    """Check that any file content given to read_face / read_image (the readers of load_image_folder and
    predict.py) gives a valid picture or the toolkit's own one-line error, nothing else."""
    path = tmp_path / "fuzz.jpg"
    path.write_bytes(content)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            face = data.read_face(path)
            assert face.dtype == np.uint8 and face.shape == INPUT_SHAPE
        except DataError as exc:
            assert str(path) in str(exc) and "\n" not in str(exc)
        try:
            image = read_image(path)
            assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        except FerError as exc:
            assert str(path) in str(exc) and "\n" not in str(exc)


# --------------------------------------------------------------------------
# Model files
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bad_models(tmp_path_factory, good_models):
    """A members folder: one good model and one file for each way a model file can be unusable."""
    import h5py
    import keras
    from keras import layers

    folder = tmp_path_factory.mktemp("bad_models")
    good = (good_models / "model_1.h5").read_bytes()
    (folder / "model_1.h5").write_bytes(good)
    (folder / "truncated.h5").write_bytes(good[: len(good) // 2])
    (folder / "zero_bytes.h5").write_bytes(b"")
    random_bytes(folder / "random.h5")
    random_bytes(folder / "random.keras", seed=1)
    pickle_payload(folder / "pickle.h5", tmp_path_factory.mktemp("marker") / "never")
    with h5py.File(folder / "plain_hdf5.h5", "w") as fh:
        fh["numbers"] = np.arange(10)
    five = keras.Sequential([keras.Input((48, 48, 1)), layers.Flatten(), layers.Dense(5, activation="softmax")])
    model_io.save_model(five, folder / "five_classes.h5")
    lam = keras.Sequential([keras.Input((48, 48, 1)), layers.Lambda(lambda v: v / 255.0), layers.Flatten(),
                            layers.Dense(7, activation="softmax")])
    model_io.save_model(lam, folder / "lambda.h5")
    model_io.save_model(lam, folder / "lambda.keras")
    return folder


BAD_MODEL_REASONS = {
    "truncated.h5": "corrupt, truncated or not a Keras model file",
    "zero_bytes.h5": "corrupt, truncated or not a Keras model file",
    "random.h5": "corrupt, truncated or not a Keras model file",
    "random.keras": "corrupt, truncated or not a Keras model file",
    "pickle.h5": "corrupt, truncated or not a Keras model file",
    "plain_hdf5.h5": "no Keras model in it",
    "five_classes.h5": "output shape (5,)",
    "lambda.h5": "Lambda",
    "lambda.keras": "Lambda",
}


def test_ensemble_cli_skips_each_bad_model_with_a_one_line_reason(bad_models, synthetic_csv, tmp_path, capsys):
    """Check that test_ensemble_model.py evaluates the good member, prints one line per skipped file
    with its reason, and records the reasons in report.json (exit code 0)."""
    code = ensemble_cli.main(["--csv", str(synthetic_csv), "--models-dir", str(bad_models), "--out", str(tmp_path / "r"),
                              "--bootstrap", "0", "--quiet"], prog="test_ensemble_model.py")
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "Traceback" not in err
    lines = {line.split()[1].rstrip(":"): line for line in out.splitlines() if line.startswith("  skipped ")}
    assert set(lines) == set(BAD_MODEL_REASONS), out
    for name, reason in BAD_MODEL_REASONS.items():
        assert reason in lines[name], (name, reason, lines[name])
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    skipped = {os.path.basename(m["file"]): m["skipped"] for m in report["members"] if m.get("skipped")}
    assert set(skipped) == set(BAD_MODEL_REASONS)
    assert all(reason and "\n" not in reason for reason in skipped.values())
    assert "Lambda" in skipped["lambda.h5"] and "safe_mode=False" in skipped["lambda.h5"]


@pytest.mark.parametrize("name", sorted(BAD_MODEL_REASONS))
def test_strict_makes_each_bad_model_fatal(name, bad_models, synthetic_csv, tmp_path, capsys):
    """Check that with --strict each kind of unusable file alone stops the script: exit 2, one line, and
    nothing written (not even the output folder)."""
    code = ensemble_cli.main(["--csv", str(synthetic_csv), "--model", str(bad_models / "model_1.h5"),
                              "--model", str(bad_models / name), "--strict", "--out", str(tmp_path / "r"),
                              "--bootstrap", "0", "--quiet"], prog="test_ensemble_model.py")
    assert code == 2
    one_error_line(capsys.readouterr().err, f"{bad_models / name}: ", "--strict")
    assert not (tmp_path / "r").exists()  # no report, and no empty folder left behind
