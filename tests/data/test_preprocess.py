"""preprocess/: data_resize, csv_to_images, images_to_csv and their library."""

import gzip
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fer_keras import data
from fer_keras.cli import preprocess_cli
from fer_keras.constants import CLASS_NAMES, IMAGE_SIZE, INPUT_SHAPE
from fer_keras.data import convert, pictures
from fer_keras.errors import DataError

REPO = Path(__file__).resolve().parents[2]
REAL_CSV = REPO.parent / "shared" / "data" / "fer2013" / "fer2013_train_publictest.csv.gz"


def random_faces(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n,) + INPUT_SHAPE, dtype=np.uint8), rng.integers(0, len(CLASS_NAMES), n)


def write_fer_csv(path, x, y, usage=None):
    lines = ["emotion,pixels" + (",Usage" if usage is not None else "")]
    for i in range(len(y)):
        pixels = " ".join(map(str, x[i].ravel().tolist()))
        lines.append(f"{y[i]},{pixels}" + (f",{usage[i]}" if usage is not None else ""))
    Path(path).write_text("\n".join(lines) + "\n")
    return Path(path)


def picture(path, size=(64, 48), mode="RGB", value=120, fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    colour = value if mode in ("L",) else (value, 255 - value, value // 2) if mode == "RGB" else (value,) * 4
    Image.new(mode, size, colour).save(path, format=fmt)
    return path


def visible(folder):
    """Names in ``folder`` a reader sees (hidden files, such as the outputs record, are ignored)."""
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def same_arrays(a, b):
    assert list(a.splits) == list(b.splits)
    for usage in a.splits:
        np.testing.assert_array_equal(a[usage].x, b[usage].x)
        np.testing.assert_array_equal(a[usage].y, b[usage].y)


# --------------------------------------------------------------------------
# CSV <-> images
# --------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz"])
def test_csv_to_images_to_csv_round_trip(tmp_path, suffix):
    """Check that CSV → images → CSV gives identical arrays, Usage by Usage, in order."""
    x, y = random_faces(40)
    usage = ["Training", "PublicTest", "Training", "PrivateTest"] * 10  # interleaved on purpose
    source = write_fer_csv(tmp_path / "fer.csv", x, y, usage)
    summary = data.csv_to_images(source, tmp_path / "tree", progress=False)
    assert summary["written"] == 40 and summary["per_usage"] == {"Training": 20, "PublicTest": 10, "PrivateTest": 10}
    first = tmp_path / "tree" / "Training" / CLASS_NAMES[y[0]] / "Training_0.png"
    with Image.open(first) as img:
        assert img.mode == "L" and img.size == (IMAGE_SIZE, IMAGE_SIZE) and img.format == "PNG"
    back = tmp_path / f"again{suffix}"
    data.images_to_csv(tmp_path / "tree", back, progress=False)
    if suffix == ".csv.gz":
        assert back.read_bytes()[:2] == b"\x1f\x8b"
    same_arrays(data.load_fer2013(source, cache=False), data.load_fer2013(back, cache=False))


def test_round_trip_without_usage(tmp_path):
    """Check that a CSV without Usage becomes a class-only tree and comes back without Usage."""
    x, y = random_faces(25, seed=1)
    source = write_fer_csv(tmp_path / "custom.csv", x, y)
    data.csv_to_images(source, tmp_path / "tree", progress=False)
    assert visible(tmp_path / "tree") == sorted({CLASS_NAMES[i] for i in y})
    data.images_to_csv(tmp_path / "tree", tmp_path / "back.csv", progress=False)
    assert (tmp_path / "back.csv").read_text().splitlines()[0] == "emotion,pixels"
    same_arrays(data.load_fer2013(source, cache=False), data.load_fer2013(tmp_path / "back.csv", cache=False))


def test_real_fer2013_round_trip_of_a_slice(tmp_path):
    """Check the round trip on real faces when the shared CSV is present (first 300 rows)."""
    if not REAL_CSV.is_file():
        pytest.skip("shared FER2013 CSV not present")
    with gzip.open(REAL_CSV, "rt") as fh:
        head = [next(fh) for _ in range(301)]
    source = tmp_path / "slice.csv"
    source.write_text("".join(head))
    data.csv_to_images(source, tmp_path / "tree", progress=False)
    data.images_to_csv(tmp_path / "tree", tmp_path / "back.csv", progress=False)
    assert (tmp_path / "back.csv").read_bytes() == source.read_bytes().replace(b"\r\n", b"\n")


def test_csv_lines_match_the_plain_python_format():
    """Check that the compiled formatter writes exactly what str.join would."""
    x, y = random_faces(5)
    x[0] = 0
    x[1] = 255
    expected = "".join(f"{y[i]},{' '.join(map(str, x[i].ravel().tolist()))},PublicTest\n" for i in range(5))
    assert b"".join(data.csv_lines(x, y, "PublicTest", rows_per_block=2)) == expected.encode()
    no_usage = b"".join(data.csv_lines(x[:1], np.array([12])))
    assert no_usage == ("12," + " ".join(map(str, x[0].ravel().tolist())) + "\n").encode()


def test_outputs_are_never_overwritten_without_permission(tmp_path):
    """Check that an existing output is refused, and with overwrite gets the new files beside the user's own."""
    x, y = random_faces(6)
    source = write_fer_csv(tmp_path / "fer.csv", x, y, ["Training"] * 6)
    out = tmp_path / "tree"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    with pytest.raises(DataError, match="already exists; pass overwrite=True"):
        data.csv_to_images(source, out, progress=False)
    assert (out / "stale.txt").exists()
    data.csv_to_images(source, out, overwrite=True, progress=False)
    assert (out / "stale.txt").read_text() == "old" and (out / "Training").is_dir()
    target = tmp_path / "back.csv"
    target.write_text("keep me")
    with pytest.raises(DataError, match="already exists"):
        data.images_to_csv(out, target, progress=False)
    assert target.read_text() == "keep me"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith((".tmp-", ".old-"))]


def test_failed_conversion_leaves_nothing(tmp_path, monkeypatch):
    """Check that a crash half-way leaves neither the output nor a temporary folder."""
    x, y = random_faces(6)
    source = write_fer_csv(tmp_path / "fer.csv", x, y, ["Training"] * 6)
    calls = []

    def failing_save(face, path):
        calls.append(path)
        if len(calls) == 3:
            raise OSError("disk full")
        Image.fromarray(face[..., 0]).save(path)

    monkeypatch.setattr(convert, "save_png", failing_save)
    with pytest.raises(OSError, match="disk full"):
        data.csv_to_images(source, tmp_path / "tree", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fer.csv"]


def test_images_to_csv_maps_split_folders(tmp_path):
    """Check that train/val/test folders map to Training/PublicTest/PrivateTest and other sizes are converted."""
    root = tmp_path / "tree"
    picture(root / "train" / "happiness" / "a.jpg", size=(96, 96))
    picture(root / "val" / "anger" / "b.png", mode="L")
    picture(root / "test" / "sad" / "c.png", mode="L")
    data.images_to_csv(root, tmp_path / "out.csv", progress=False)
    ds = data.load_fer2013(tmp_path / "out.csv", cache=False)
    assert list(ds.splits) == ["Training", "PublicTest", "PrivateTest"]
    assert ds["Training"].y.tolist() == [3] and ds["PublicTest"].y.tolist() == [0]
    assert ds["PrivateTest"].y.tolist() == [4]


def test_images_to_csv_class_only_with_usage_and_unreadable(tmp_path):
    """Check --usage for a class-only tree, and that a broken file is skipped with a warning."""
    src = tmp_path / "src"
    picture(src / "fear" / "a.png", mode="L", size=(48, 48))
    (src / "fear" / "broken.png").write_bytes(b"")
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable file\(s\)"):
        summary = data.images_to_csv(src, tmp_path / "out.csv", usage="PrivateTest", progress=False)
    assert summary["written"] == 1 and summary["unreadable"] == 1
    ds = data.load_fer2013(tmp_path / "out.csv", cache=False)
    assert list(ds.splits) == ["PrivateTest"] and ds["PrivateTest"].y.tolist() == [2]


def test_images_to_csv_rejects_flat_folder(tmp_path):
    """Check that a folder of unlabelled pictures cannot become a CSV."""
    picture(tmp_path / "src" / "a.png")
    with pytest.raises(DataError, match="has no class folders"):
        data.images_to_csv(tmp_path / "src", tmp_path / "out.csv", progress=False)


# --------------------------------------------------------------------------
# data_resize
# --------------------------------------------------------------------------


def custom_pictures(root):
    """Colour/grey, jpg/png, square and not, in class folders."""
    picture(root / "happy" / "big.jpg", size=(640, 480))
    picture(root / "happy" / "big.png", size=(30, 90), mode="L")  # same stem as big.jpg
    picture(root / "anger" / "rgba.png", size=(100, 100), mode="RGBA")
    picture(root / "sad" / "sub" / "nested.png", size=(48, 48), mode="L")
    return root


def test_resize_folder_to_tree(tmp_path):
    """Check that any pictures become 48x48 grey PNGs in a mirrored tree."""
    src = custom_pictures(tmp_path / "src")
    summary = data.resize_folder(src, tmp_path / "out", progress=False)
    assert summary["written"] == 4 and summary["per_class"] == {"angry": 1, "happy": 2, "sad": 1}
    files = sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*.png"))
    assert files == ["anger/rgba.png", "happy/big.png", "happy/big_png.png", "sad/sub/nested.png"]
    for file in (tmp_path / "out").rglob("*.png"):
        with Image.open(file) as img:
            assert img.mode == "L" and img.size == (IMAGE_SIZE, IMAGE_SIZE)
    ds = data.load_image_folder(tmp_path / "out")
    assert sorted(ds["PrivateTest"].y.tolist()) == [0, 3, 3, 4]


def test_resize_folder_to_csv(tmp_path):
    """Check --format csv: class tree → CSV without Usage; split tree → with Usage."""
    src = custom_pictures(tmp_path / "src")
    data.resize_folder(src, tmp_path / "faces.csv", fmt="csv", progress=False)
    assert (tmp_path / "faces.csv").read_text().splitlines()[0] == "emotion,pixels"
    ds = data.load_fer2013(tmp_path / "faces.csv", cache=False)
    assert sum(len(s) for s in ds.splits.values()) == 4
    picture(tmp_path / "split" / "train" / "happy" / "a.jpg")
    picture(tmp_path / "split" / "test" / "surprised" / "b.jpg")
    data.resize_folder(tmp_path / "split", tmp_path / "split.csv.gz", fmt="csv", progress=False)
    ds = data.load_fer2013(tmp_path / "split.csv.gz", cache=False)
    assert ds["Training"].y.tolist() == [3] and ds["PublicTest"].y.tolist() == [5]


def test_resize_flat_folder(tmp_path):
    """Check that a flat folder needs --label for a CSV, takes --usage, and --label makes a class folder."""
    picture(tmp_path / "src" / "one.jpg")
    picture(tmp_path / "src" / "two.png", mode="L")
    with pytest.raises(DataError, match="give one label for them all"):
        data.resize_folder(tmp_path / "src", tmp_path / "a.csv", fmt="csv", progress=False)
    data.resize_folder(tmp_path / "src", tmp_path / "a.csv", fmt="csv", label="happiness",
                             usage="PublicTest", progress=False)
    ds = data.load_fer2013(tmp_path / "a.csv", cache=False)
    assert ds["PublicTest"].y.tolist() == [3, 3]
    data.resize_folder(tmp_path / "src", tmp_path / "flat", progress=False)
    assert visible(tmp_path / "flat") == ["one.png", "two.png"]
    data.resize_folder(tmp_path / "src", tmp_path / "labelled", label="sad", progress=False)
    assert data.load_image_folder(tmp_path / "labelled")["PrivateTest"].y.tolist() == [4, 4]


def test_resize_skips_unreadable_and_refuses_existing_output(tmp_path):
    """Check that broken files are skipped and counted, and an existing output is kept."""
    src = tmp_path / "src"
    picture(src / "happy" / "ok.jpg")
    (src / "happy" / "zero.jpg").write_bytes(b"")
    (src / "happy" / "text.jpg").write_text("not a picture")
    with pytest.warns(UserWarning, match=r"skipped 2 unreadable"):
        summary = data.resize_folder(src, tmp_path / "out", progress=False)
    assert summary["written"] == 1 and summary["unreadable"] == 2
    assert "skipped 2 unreadable" in preprocess_cli.format_summary(summary)
    with pytest.raises(DataError, match="already exists"):
        data.resize_folder(src, tmp_path / "out", progress=False)
    with pytest.raises(DataError, match="must not be"):
        data.resize_folder(src, src / "out", progress=False)


def test_fit_modes():
    """Check centre crop, black padding and stretching of a wide picture."""
    wide = np.full((40, 100), 200, np.uint8)
    wide[:, :30] = 10
    assert pictures.fit_square(wide, "crop").shape == (40, 40)
    assert pictures.fit_square(wide, "crop").min() == 200  # the dark left edge is cut off
    padded = pictures.fit_square(wide, "pad")
    assert padded.shape == (100, 100) and padded[0, 0] == 0 and padded[50, 50] == 200
    assert pictures.fit_square(wide, "stretch").shape == (40, 100)
    assert pictures.to_face(wide).shape == (IMAGE_SIZE, IMAGE_SIZE)


def test_square_box_margin_and_clamping():
    """Check that the face square grows by the margin and stays inside the picture."""
    assert pictures.square_box(200, 300, (100, 50, 40, 40), margin=0.25) == (40, 90, 60)
    assert pictures.square_box(200, 300, (0, 0, 40, 40), margin=0.25) == (0, 0, 60)  # shifted in
    assert pictures.square_box(100, 300, (100, 10, 90, 90), margin=0.5) == (0, 95, 100)  # shrunk to fit
    assert pictures.square_box(100, 300) == (0, 100, 100)


def test_detect_faces_crops_the_largest_face(tmp_path):
    """Check that --detect-faces crops around the largest box; no face → kept whole or skipped."""
    img = np.full((200, 300), 30, np.uint8)
    img[50:130, 160:240] = 250  # the "face"
    Image.fromarray(img).save(picture(tmp_path / "src" / "happy" / "face.png"))
    picture(tmp_path / "src" / "happy" / "none.png", value=90, mode="L")

    def detect(grey):
        return [(160, 50, 80, 80), (10, 10, 20, 20)] if grey.max() == 250 else []

    finder = data.FaceFinder(margin=0.0, detect=detect)
    summary = data.resize_folder(tmp_path / "src", tmp_path / "keep", detect_faces=True, finder=finder,
                                       progress=False)
    assert (summary["faces_found"], summary["no_face_kept"], summary["written"]) == (1, 1, 2)
    with Image.open(tmp_path / "keep" / "happy" / "face.png") as face:
        assert np.asarray(face).min() == 250  # only the face, no background
    summary = data.resize_folder(tmp_path / "src", tmp_path / "skip", detect_faces=True, finder=finder,
                                       no_face="skip", progress=False)
    assert (summary["faces_found"], summary["no_face_skipped"], summary["written"]) == (1, 1, 1)
    assert "no face (skipped): 1" in preprocess_cli.format_summary(summary)


def test_haar_cascade_on_a_blank_picture(tmp_path):
    """Check that OpenCV's bundled cascade loads and finds no face in a flat grey picture."""
    finder = data.FaceFinder()
    assert finder.crop(np.full((120, 160), 128, np.uint8)) is None


def test_haar_cascade_finds_a_real_face(tmp_path):
    """Check the real cascade on a FER2013 face pasted, enlarged, into a bigger picture."""
    if not REAL_CSV.is_file():
        pytest.skip("shared FER2013 CSV not present")
    with gzip.open(REAL_CSV, "rt") as fh:
        lines = [next(fh) for _ in range(2)]
    face = np.array(lines[1].split(",")[1].split(), np.uint8).reshape(IMAGE_SIZE, IMAGE_SIZE)
    canvas = np.full((300, 400), 128, np.uint8)
    canvas[60:204, 200:344] = np.asarray(Image.fromarray(face).resize((144, 144), Image.Resampling.BICUBIC))
    Image.fromarray(canvas).save(picture(tmp_path / "src" / "face.jpg"), quality=95)
    summary = data.resize_folder(tmp_path / "src", tmp_path / "out", detect_faces=True, margin=0.0,
                                       progress=False)
    assert summary["faces_found"] == 1
    x, y, w, h = max(data.FaceFinder().boxes(canvas), key=lambda b: b[2] * b[3])
    overlap = max(0, min(x + w, 344) - max(x, 200)) * max(0, min(y + h, 204) - max(y, 60))
    assert overlap / (w * h + 144 * 144 - overlap) > 0.7  # IoU with where the face was pasted
    with Image.open(tmp_path / "out" / "face.png") as out:
        got = np.asarray(out, np.float64).ravel()
    assert np.corrcoef(got, face.astype(np.float64).ravel())[0, 1] > 0.6


# --------------------------------------------------------------------------
# The scripts
# --------------------------------------------------------------------------


def run_script(name, *args):
    return subprocess.run([sys.executable, str(REPO / "preprocess" / f"{name}.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": ""})


@pytest.mark.parametrize("name", ["data_resize", "csv_to_images", "images_to_csv"])
def test_scripts_help_teaches(name):
    """Check that --help shows examples, and the module docstring says what the script does."""
    result = run_script(name, "--help")
    assert result.returncode == 0 and "examples:" in result.stdout
    assert len((REPO / "preprocess" / f"{name}.py").read_text().splitlines()) <= 25


def test_scripts_end_to_end_and_errors(tmp_path):
    """Check csv_to_images.py then images_to_csv.py from the shell, and a one-line error."""
    x, y = random_faces(8)
    source = write_fer_csv(tmp_path / "fer.csv", x, y, ["Training", "PublicTest"] * 4)
    result = run_script("csv_to_images", source, tmp_path / "tree", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "wrote 8 face(s)" in result.stdout
    result = run_script("images_to_csv", tmp_path / "tree", tmp_path / "back.csv", "--quiet")
    assert result.returncode == 0, result.stderr
    same_arrays(data.load_fer2013(source, cache=False), data.load_fer2013(tmp_path / "back.csv", cache=False))
    result = run_script("csv_to_images", tmp_path / "missing.csv", tmp_path / "other")
    assert result.returncode == 2 and result.stderr.strip() == f"error: {tmp_path / 'missing.csv'}: no such file"


def test_data_resize_main_in_process(tmp_path, capsys):
    """Check the data_resize command line: format from the suffix, summary printed."""
    src = custom_pictures(tmp_path / "src")
    assert preprocess_cli.data_resize_main([str(src), str(tmp_path / "f.csv"), "--quiet"]) == 0
    assert "wrote 4 face(s)" in capsys.readouterr().out
    assert data.load_fer2013(tmp_path / "f.csv", cache=False)
    assert preprocess_cli.data_resize_main([str(src), str(tmp_path / "f.csv"), "--quiet"]) == 2
    assert "already exists" in capsys.readouterr().err


def test_data_resize_cli_errors_name_flags_and_files(tmp_path, capsys):
    """Check that a file given as the source folder is called a file (it read "no such folder"), and that a
    flat folder written to a CSV names --label, not the library's label=/fmt= keywords."""
    picture(tmp_path / "src" / "one.jpg")
    assert preprocess_cli.data_resize_main([str(tmp_path / "src" / "one.jpg"), str(tmp_path / "o"), "--quiet"]) == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'src' / 'one.jpg'}: is a file, not a folder"
    assert preprocess_cli.data_resize_main([str(tmp_path / "src"), str(tmp_path / "f.csv"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --label: ") and "label=" not in err and "fmt=" not in err
    assert not (tmp_path / "f.csv").exists()


def test_pack_dataset_script_packs_and_refuses_to_overwrite(tmp_path, capsys):
    """pack_dataset.py writes a file load_fer2013 reads back identically; a second run
    with the same OUT, or an OUT without the packed suffix, is a one-line error (exit 2)."""
    from fer_keras.data import write_synthetic_csv

    csv = tmp_path / "faces.csv"
    write_synthetic_csv(csv)
    out = tmp_path / f"faces{data.PACKED_SUFFIX}"
    assert preprocess_cli.pack_dataset_main([str(csv), str(out)]) == 0
    np.testing.assert_array_equal(data.load_fer2013(out)["Training"].x, data.load_fer2013(csv)["Training"].x)
    assert preprocess_cli.pack_dataset_main([str(csv), str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert preprocess_cli.pack_dataset_main([str(csv), str(tmp_path / "faces.npz")]) == 2
    assert data.PACKED_SUFFIX in capsys.readouterr().err
