"""The one reader: EXIF, CMYK, 16-bit, transparency, bombs, truncated and tiny files, the same pixels for data."""

import io

import numpy as np
import pytest
from PIL import Image

from fer_keras import data
from fer_keras.errors import DataError, InputError
from fer_keras.faces import read_grey, read_image, to_grey


def save(image, path, **options):
    image.save(path, **options)
    return path


def test_exif_orientation_is_applied(tmp_path):
    """Check that a JPEG stored on its side with EXIF orientation 6 (turn 90 degrees clockwise) reads upright,
    through read_image and read_grey alike."""
    stored = np.zeros((40, 80), np.uint8)
    stored[:, :40] = 255  # left half white as stored
    exif = Image.Exif()
    exif[0x0112] = 6
    path = save(Image.fromarray(stored).convert("RGB"), tmp_path / "side.jpg", exif=exif, quality=95)
    image = read_image(path)
    assert image.shape == (80, 40, 3)
    assert image[:40].mean() > 200 and image[40:].mean() < 50  # the white half is now on top
    assert read_grey(path).shape == (80, 40)


def test_cmyk_jpeg_reads_as_its_colours(tmp_path):
    """Check that a CMYK JPEG reads as BGR with the right colour (pure cyan → blue and green high, red low)."""
    path = save(Image.new("CMYK", (32, 32), (255, 0, 0, 0)), tmp_path / "cmyk.jpg", quality=95)
    b, g, r = read_image(path)[16, 16]
    assert r < 60 and g > 180 and b > 180


def test_16_bit_png_is_scaled_not_clipped(tmp_path):
    """Check that a 16-bit grey PNG keeps its gradient (scaled to 0..255), not all white."""
    values = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (16, 1))
    path = save(Image.fromarray(values), tmp_path / "deep.png")
    for grey in (read_grey(path), to_grey(read_image(path))):
        assert grey[0, 0] < 5 and grey[0, -1] > 250 and 110 < grey[0, 32] < 145
    # A dark 16-bit picture stays dark, as the same pixels passed as an array do (values up to 65 of 65535).
    dark = (values // 1000).astype(np.uint16)
    path = save(Image.fromarray(dark), tmp_path / "dark.png")
    assert read_grey(path).max() == to_grey(dark).max() == 0


def test_rgba_png_is_on_white(tmp_path):
    """Check that transparent pixels read as white, opaque ones as themselves."""
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[:, :8] = (0, 0, 0, 255)  # opaque black left half; the right half is transparent black
    path = save(Image.fromarray(rgba), tmp_path / "alpha.png")
    image = read_image(path)
    assert image[:, :8].max() == 0 and image[:, 8:].min() == 255
    assert read_grey(path)[:, 8:].min() == 255
    # The same pixels passed as a BGRA array (detect_emotions, serve.py's frames) read alike.
    assert np.array_equal(to_grey(rgba[..., [2, 1, 0, 3]]), read_grey(path))


def test_data_and_inference_read_the_same_pixels(tmp_path):
    """Check that data.read_grey (training data) and read_image (inference) give the same grey picture."""
    rng = np.random.default_rng(0)
    path = save(Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)), tmp_path / "c.png")
    assert np.abs(data.read_grey(path).astype(int) - to_grey(read_image(path)).astype(int)).max() <= 1


def jpeg_bytes(side=64):
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (side, side, 3), dtype=np.uint8)).save(
        buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def test_truncated_jpeg_is_an_error_not_half_a_picture(tmp_path):
    """Check that a JPEG cut in half is an InputError naming the file (OpenCV would decode half of it)."""
    path = tmp_path / "cut.jpg"
    path.write_bytes(jpeg_bytes()[:1500])
    with pytest.raises(InputError, match=r"cut.jpg: not a readable image \(OSError: image file is truncated"):
        read_image(path)
    with pytest.raises(DataError, match="cut.jpg: not a readable image"):
        data.read_grey(path)


def test_one_pixel_picture_is_too_small(tmp_path):
    """Check that a 1x1 picture is refused as too small to hold a face."""
    path = save(Image.new("RGB", (1, 1)), tmp_path / "dot.png")
    with pytest.raises(InputError, match=r"dot.png: 1x1 pixels is too small to hold a face \(at least 8x8\)"):
        read_image(path)


def test_picture_declaring_20000_squared_pixels_is_refused_unread(tmp_path):
    """Check that a PNG header declaring 20000x20000 pixels is refused before decoding."""
    import struct
    import zlib

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    path = tmp_path / "huge.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 20000, 20000, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b""))
    with pytest.raises(InputError, match=r"huge.png: .*too large to decode safely"):
        read_image(path)


def test_a_format_pillow_does_not_know_goes_to_opencv_or_fails_in_one_line(tmp_path):
    """Check that bytes Pillow cannot identify are an InputError naming the file, in one line."""
    path = tmp_path / "noise.jpg"
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(InputError, match="noise.jpg: not an image") as info:
        read_image(path)
    assert "\n" not in str(info.value)
