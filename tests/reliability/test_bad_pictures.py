"""Pictures and videos that are broken or merely unusual, through predict.py.

Broken (a 1x1 picture, a truncated JPEG, a PNG declaring 20000x20000 pixels,
a video without frames): one ``error:`` line naming the file, exit 2, no
traceback and no output folder left behind. Unusual but valid (CMYK JPEG,
16-bit PNG, RGBA PNG): read as a person sees them, the face found, exit 0.
A picture without a face: "no face found", exit 0, no rows.
"""

import io
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import Image
from tests.reliability.conftest import REPO, one_error_line

from fer_keras.cli import predict_cli
from fer_keras.inference import demo_image


def _chunk(kind, body):
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def one_pixel(path):
    Image.new("RGB", (1, 1), (200, 10, 10)).save(path)


def truncated_jpeg(path):
    buffer = io.BytesIO()
    Image.open(demo_image()).convert("RGB").save(buffer, format="JPEG", quality=90)
    path.write_bytes(buffer.getvalue()[:len(buffer.getvalue()) // 2])


def huge_png(path):
    header = struct.pack(">IIBBBBB", 20000, 20000, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + _chunk(b"IEND", b""))


def frameless_video(path):
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    writer.release()
    if not path.exists():  # a writer that leaves nothing: an empty file is the same case
        path.write_bytes(b"")


BROKEN = {
    "dot.png": (one_pixel, "1x1 pixels is too small to hold a face"),
    "cut.jpg": (truncated_jpeg, "not a readable image (OSError: image file is truncated"),
    "huge.png": (huge_png, "too large to decode safely"),
    "empty.avi": (frameless_video, "no frame could be read"),
}


def grace(scale=0.5):
    img = Image.open(demo_image()).convert("RGB")
    return img.resize((int(img.width * scale), int(img.height * scale)))


def cmyk_jpeg(path):
    grace().convert("CMYK").save(path, quality=92)


def png_16_bit(path):
    grey = np.asarray(grace().convert("L"), np.uint16) * 257
    Image.fromarray(grey).save(path)


def rgba_png(path):
    rgba = grace().convert("RGBA")
    alpha = np.full((rgba.height, rgba.width), 255, np.uint8)
    alpha[:, : rgba.width // 8] = 0  # a transparent strip on the left
    rgba.putalpha(Image.fromarray(alpha))
    rgba.save(path)


UNUSUAL = {"cmyk.jpg": cmyk_jpeg, "deep.png": png_16_bit, "alpha.png": rgba_png}


def run(argv, capsys):
    code = predict_cli.main([str(a) for a in argv], prog="predict.py")
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_input_is_one_error_line_naming_it_and_exit_2(name, good_models, tmp_path, capsys):
    """Check that each broken picture or video gives exit 2, one error line naming the file and saying
    why, no traceback, and no output folder."""
    make, reason = BROKEN[name]
    path = tmp_path / name
    make(path)
    code, _, err = run(["--input", path, "--models-dir", good_models, "--out", tmp_path / "out", "--quiet"], capsys)
    assert code == 2
    one_error_line(err, path, reason)
    assert len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", sorted(UNUSUAL))
def test_unusual_pictures_are_read_and_their_face_found(name, good_models, tmp_path, capsys):
    """Check that a CMYK JPEG, a 16-bit PNG and an RGBA PNG of the bundled photo each give its face, exit 0."""
    path = tmp_path / name
    UNUSUAL[name](path)
    code, out, err = run(["--input", path, "--models-dir", good_models, "--out", tmp_path / "out", "--quiet"],
                         capsys)
    assert code == 0, err
    rows = (tmp_path / "out" / "predictions.csv").read_text().splitlines()
    assert len(rows) == 2, out  # the header and the one face


def test_picture_without_a_face_is_exit_0_and_no_rows(good_models, tmp_path, capsys):
    """Check that a picture without a face says so and writes an empty row set, exit 0."""
    path = tmp_path / "wall.png"
    Image.fromarray(np.tile(np.linspace(30, 220, 200).astype(np.uint8), (150, 1))).save(path)
    code, out, _ = run(["--input", path, "--models-dir", good_models, "--out", tmp_path / "out", "--quiet"], capsys)
    assert code == 0 and "wall.png: no face found" in out
    assert (tmp_path / "out" / "predictions.csv").read_text().splitlines()[1:] == []


def test_real_script_prints_each_broken_file_once_and_exits_2(good_models, tmp_path):
    """Check through predict.py in a fresh process: every broken input named once on stderr, the last line
    the error, exit 2, no traceback, nothing written."""
    paths = []
    for name, (make, _) in BROKEN.items():
        make(tmp_path / name)
        paths += ["--input", str(tmp_path / name)]
    proc = subprocess.run([sys.executable, str(REPO / "predict.py"), *paths, "--models-dir", str(good_models),
                           "--out", str(tmp_path / "out"), "--quiet"], capture_output=True, text=True,
                          cwd=tmp_path, timeout=300, check=False)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr
    for name, (_, reason) in BROKEN.items():
        assert sum(name in line and reason in line for line in lines) == 1, (name, proc.stderr)
    assert lines[-1] == "error: nothing could be processed" and len(lines) == len(BROKEN) + 1
    assert not (tmp_path / "out").exists()
