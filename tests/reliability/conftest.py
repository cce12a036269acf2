"""Shared fixtures of the reliability tests: a tiny CSV, a tiny model, hostile files."""

import io
import pickle
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from fer_keras.data import write_synthetic_csv

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _float32_policy():
    """Give every test the float32 policy back: a training run sets the global one (and a failed
    run does not restore it)."""
    yield
    import keras

    keras.mixed_precision.set_global_policy("float32")


@pytest.fixture(scope="session")
def synthetic_csv(tmp_path_factory):
    """The synthetic FER2013-layout CSV: 280 Training, 70 PublicTest, 70 PrivateTest faces."""
    return write_synthetic_csv(tmp_path_factory.mktemp("csv") / "tiny.csv")


@pytest.fixture(scope="session")
def good_models(tmp_path_factory):
    """A models folder holding one valid member: a tiny VGG-16 saved by fer_keras."""
    import keras

    from fer_keras import models
    from fer_keras.models import model_io

    keras.utils.set_random_seed(0)
    folder = tmp_path_factory.mktemp("good_models")
    model_io.save_model(models.build("vgg16", width=0.125, dense_units=32), folder / "model_1.h5")
    return folder


def one_error_line(err, *fragments):
    """Assert that stderr holds exactly one ``error:`` line, no traceback, and each fragment in it."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    for fragment in fragments:
        assert str(fragment) in lines[0], (fragment, lines[0])
    return lines[0]


# --------------------------------------------------------------------------
# Hostile files
# --------------------------------------------------------------------------


def _png_chunk(kind, body):
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def png_bomb(path, side=20000):
    """A ~400 KB grey PNG that really decodes to ``side`` x ``side`` pixels (1.2 GB as BGR)."""
    packer = zlib.compressobj(9)
    row = bytes(side + 1)  # filter byte + a row of zeros
    body = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    Path(path).write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", body)
                           + _png_chunk(b"IEND", b""))
    return path


def wide_bmp(path, width=1 << 21):
    """A BMP header declaring a row wider than OpenCV accepts (its decoder asserts, raising cv2.error)."""
    row = ((width * 3 + 3) // 4) * 4
    pixels = bytes(64)
    head = struct.pack("<2sIHHI", b"BM", 54 + len(pixels), 0, 0, 54)
    dib = struct.pack("<IiiHHIIiiII", 40, width, 1, 1, 24, 0, row, 2835, 2835, 0, 0)
    Path(path).write_bytes(head + dib + pixels)
    return path


def png_bytes(image):
    """PNG file bytes of a uint8 grey or RGB array."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


class _WriteMarker:
    """Unpickling this calls ``pathlib.Path(marker).write_text(...)``: a stand-in for any code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path(self.marker).write_text, ("pickle payload ran",))


def pickle_payload(path, marker):
    """A pickle that writes ``marker`` when unpickled, saved under ``path`` (e.g. ``x.h5``)."""
    Path(path).write_bytes(pickle.dumps(_WriteMarker(marker)))
    return path


def lambda_payload_model(marker):
    """A 7-way model whose Lambda layer writes ``marker`` whenever the layer is called
    (which Keras does while rebuilding the model from its file)."""
    import keras
    from keras import layers

    # A Python lambda: Keras stores its bytecode in the file (a named function is stored by name only).
    source = f"lambda x: (__import__('pathlib').Path({str(marker)!r}).write_text('Lambda payload ran'), x / 255.0)[1]"
    scale = eval(source)  # the payload under test
    return keras.Sequential([keras.Input((48, 48, 1)), layers.Lambda(scale), layers.Flatten(),
                             layers.Dense(7, activation="softmax")])


def random_bytes(path, n=4096, seed=0):
    Path(path).write_bytes(np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes())
    return path
