"""Inputs that used to give wrong results without a word.

A 16-bit PNG read as white and a phone photo read on its side (every reader
must go through ``data.read_grey``); a parsed-CSV cache served stale after a
same-size edit that kept the mtime; macro-F1 counting a class absent from
both truth and predictions as 0.
"""

import io
import os

import numpy as np
import pytest

from fer_keras import data
from fer_keras.cli.preprocess_cli import data_resize_main, images_to_csv_main
from fer_keras.data import _items as datasets
from fer_keras.ensemble.stats import macro_f1_from_confusion
from fer_keras.metrics import MACRO_AVERAGE, classification_metrics


def _png16(path, value=77 * 257):
    """A 16-bit grey PNG whose pixels all read as ``value / 257`` in 8 bits (77 by default)."""
    from PIL import Image

    Image.fromarray(np.full((48, 48), value, np.uint16)).save(path)
    return path


def _sideways_photo(path):
    """A 60x40 PNG (dark left half) stored as is, with EXIF orientation 6: seen upright it is 40x60,
    dark on top."""
    from PIL import Image

    pixels = np.full((40, 60), 230, np.uint8)
    pixels[:, :30] = 20
    img = Image.fromarray(pixels)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to view
    buffer = io.BytesIO()
    img.save(buffer, format="PNG", exif=exif.tobytes())
    path.write_bytes(buffer.getvalue())
    return path


def test_16_bit_png_reads_as_its_grey_level_everywhere(tmp_path):
    """Check that a 16-bit PNG reads as 77, not 255, through read_face, image folders and images_to_csv."""
    (tmp_path / "tree" / "happy").mkdir(parents=True)
    png = _png16(tmp_path / "tree" / "happy" / "a.png")
    assert data.read_face(png).mean() == pytest.approx(77, abs=0.5)
    assert data.load_image_folder(tmp_path / "tree")["PrivateTest"].x.mean() == pytest.approx(77, abs=0.5)
    assert images_to_csv_main([str(tmp_path / "tree"), str(tmp_path / "out.csv"), "--quiet"]) == 0
    faces = data.load_fer2013(tmp_path / "out.csv", cache=False)
    assert np.concatenate([s.x for s in faces.splits.values()]).mean() == pytest.approx(77, abs=0.5)


def test_exif_orientation_is_applied_by_every_reader(tmp_path):
    """Check that read_face, the box-cropping dataset reader and data_resize all see the photo upright."""
    (tmp_path / "src" / "happy").mkdir(parents=True)
    photo = _sideways_photo(tmp_path / "src" / "happy" / "p.png")
    face = data.read_face(photo)[..., 0]
    assert face[:10].mean() < 60 and face[-10:].mean() > 180  # dark on top once upright
    boxed = data.read_face(photo, box=(0, 0, 40, 30))[..., 0]  # the upright top half: all dark
    assert boxed.mean() < 60
    assert data_resize_main([str(tmp_path / "src"), str(tmp_path / "dst"), "--fit", "stretch", "--quiet"]) == 0
    resized = data.read_face(tmp_path / "dst" / "happy" / "p.png")[..., 0]
    assert np.abs(resized.astype(int) - face).mean() < 8


def test_dataset_reader_goes_through_read_face():
    """Check that the image datasets have no reader of their own left."""
    assert not hasattr(datasets, "_read_face_box")


def test_csv_cache_notices_a_same_size_edit_that_kept_the_mtime(tmp_path):
    """Check that the parsed-CSV cache is keyed on content: cp -p of an edited file is not served stale."""
    from fer_keras.data import write_synthetic_csv

    path = write_synthetic_csv(tmp_path / "faces.csv", sizes=(("Training", 14),))
    first = data.load_fer2013(path)
    stat = os.stat(path)
    text = path.read_text()
    path.write_text(text.replace("\n0,", "\n1,", 1))  # one label changed, same size
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert os.stat(path).st_size == stat.st_size and os.stat(path).st_mtime_ns == stat.st_mtime_ns
    again = data.load_fer2013(path)
    assert again["Training"].y.tolist() != first["Training"].y.tolist()
    assert again["Training"].y.tolist() == data.load_fer2013(path, cache=False)["Training"].y.tolist()


def test_macro_f1_leaves_out_a_class_absent_from_truth_and_predictions():
    """Check that macro-F1 follows scikit-learn's labels=None, zero_division=0, and that the report says so."""
    from sklearn.metrics import f1_score, precision_score, recall_score

    y = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    pred = np.array([0, 0, 1, 1, 2, 2, 3, 0])
    probs = np.eye(7)[pred]
    m = classification_metrics(y, probs)
    assert m["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro", zero_division=0))
    assert m["precision_macro"] == pytest.approx(precision_score(y, pred, average="macro", zero_division=0))
    assert m["recall_macro"] == pytest.approx(recall_score(y, pred, average="macro", zero_division=0))
    assert m["macro_f1"] > 0.85  # 0.61 when the 3 absent classes count as 0
    assert len(m["per_class"]) == 7  # every class still has its row
    from sklearn.metrics import confusion_matrix

    cm = confusion_matrix(y, pred, labels=np.arange(7))
    assert macro_f1_from_confusion(cm) == pytest.approx(m["macro_f1"])
    assert "labels=None" in MACRO_AVERAGE and "zero_division=0" in MACRO_AVERAGE


def test_ensemble_report_states_the_macro_average(synthetic_csv, good_models, tmp_path):
    """Check that report.json and report.md say how macro averages were taken."""
    import json

    from fer_keras.cli import ensemble_cli

    out = tmp_path / "r"
    assert ensemble_cli.main(["--csv", str(synthetic_csv), "--models-dir", str(good_models), "--out", str(out),
                              "--bootstrap", "0", "--quiet"]) == 0
    assert json.loads((out / "report.json").read_text())["macro_average"] == MACRO_AVERAGE
    assert MACRO_AVERAGE in (out / "report.md").read_text()


def test_a_new_model_never_takes_a_retired_members_name(tmp_path):
    """Check that a new file is numbered one above the highest index, never a gap's: a retired model_2.h5's
    name still stands for it in a distilled member's teachers and in temperatures.json."""
    from fer_keras.io_utils import next_model_path

    assert next_model_path(tmp_path).name == "model_1.h5"
    for name in ("model_1.h5", "model_3.keras", "model_5.h5", "notes.txt", "model_9.json"):
        (tmp_path / name).write_bytes(b"")
    assert next_model_path(tmp_path).name == "model_6.h5"
    assert next_model_path(tmp_path, ".keras").name == "model_6.keras"
