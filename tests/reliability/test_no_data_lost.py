"""--overwrite replaces only the files the command writes, never anything else.

Each case puts a user's own files where a command writes (its input CSV, a
note, a photos folder, a predictions.csv, a weights.json) and checks that they
are byte-identical afterwards, and that a run which would write over one of
its own inputs is refused with one line and exit code 2.
"""

import json

import numpy as np
import pytest
from tests.reliability.conftest import REPO, one_error_line, png_bytes

from fer_keras import io_utils
from fer_keras.cli import ensemble_cli
from fer_keras.cli.preprocess_cli import csv_to_images_main, data_resize_main, images_to_csv_main
from fer_keras.data import write_synthetic_csv


def _snapshot(folder):
    """``{relative path: bytes}`` of every file under ``folder``."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _user_files(folder):
    """A note and a photos folder of the user's, in ``folder``."""
    (folder / "photos").mkdir(parents=True)
    (folder / "notes.txt").write_text("my notes\n")
    (folder / "photos" / "me.png").write_bytes(png_bytes(np.full((60, 50), 90, np.uint8)))


def test_csv_to_images_overwrite_keeps_the_input_csv_and_the_users_files(tmp_path, capsys):
    """Check that csv_to_images --overwrite into the CSV's own folder keeps the CSV, a note and a photos folder."""
    out = tmp_path / "out"
    _user_files(out)
    csv = write_synthetic_csv(out / "in.csv", sizes=(("Training", 30),))
    before = _snapshot(out)
    assert csv_to_images_main([str(csv), str(out), "--overwrite", "--quiet"]) == 0
    after = _snapshot(out)
    assert {k: after.get(k) for k in before} == before
    assert any(k.startswith("Training/") for k in after)


def test_csv_to_images_overwrite_removes_only_its_own_stale_files(tmp_path):
    """Check that a second, smaller run removes the faces the first run wrote and it did not, and nothing else."""
    out = tmp_path / "tree"
    big = write_synthetic_csv(tmp_path / "big.csv", sizes=(("Training", 28),))
    small = write_synthetic_csv(tmp_path / "small.csv", sizes=(("Training", 14),))
    assert csv_to_images_main([str(big), str(out), "--quiet"]) == 0
    (out / "Training" / "angry" / "mine.png").write_bytes(b"a user's file")
    assert csv_to_images_main([str(small), str(out), "--overwrite", "--quiet"]) == 0
    names = set(_snapshot(out))
    fresh = tmp_path / "fresh"
    assert csv_to_images_main([str(small), str(fresh), "--quiet"]) == 0
    assert names - {io_utils.OUTPUTS_RECORD} == (set(_snapshot(fresh)) - {io_utils.OUTPUTS_RECORD}) | {
        "Training/angry/mine.png"}


def _photos(folder, n=3):
    (folder / "happy").mkdir(parents=True)
    for i in range(n):
        (folder / "happy" / f"p{i}.png").write_bytes(png_bytes(np.full((64, 80), 40 * i, np.uint8)))
    return folder


def test_data_resize_overwrite_with_src_inside_dst_keeps_the_photos(tmp_path):
    """Check that data_resize SRC DST --overwrite with SRC inside DST leaves every source photo as it was."""
    dst = tmp_path / "dst"
    src = _photos(dst / "photos")
    (dst / "notes.txt").write_text("keep me\n")
    before = _snapshot(dst)
    assert data_resize_main([str(src), str(dst), "--overwrite", "--quiet"]) == 0
    after = _snapshot(dst)
    assert {k: after.get(k) for k in before} == before
    assert "happy/p0.png" in after


def test_data_resize_refuses_to_write_over_its_own_input(tmp_path, capsys):
    """Check that an output file landing on a source photo is refused (exit 2), and the photo kept."""
    src = tmp_path / "faces" / "happy"
    src.mkdir(parents=True)
    photo = src / "a.png"
    photo.write_bytes(png_bytes(np.full((64, 64), 7, np.uint8)))
    before = photo.read_bytes()
    code = data_resize_main([str(src), str(tmp_path / "faces"), "--label", "happy", "--overwrite", "--quiet"])
    assert code == 2
    one_error_line(capsys.readouterr().err, "a.png", "input")
    assert photo.read_bytes() == before


def test_images_to_csv_refuses_an_output_that_is_one_of_its_pictures(tmp_path, capsys):
    """Check that images_to_csv never writes its CSV over one of the pictures it reads."""
    root = tmp_path / "tree"
    _photos(root)
    target = root / "happy" / "p1.png"
    before = target.read_bytes()
    assert images_to_csv_main([str(root), str(target), "--overwrite", "--quiet"]) == 2
    one_error_line(capsys.readouterr().err, "p1.png", "input")
    assert target.read_bytes() == before


# --------------------------------------------------------------------------
# Report folders
# --------------------------------------------------------------------------


def _ensemble(csv, models, out, *extra):
    return ensemble_cli.main(["--csv", str(csv), "--models-dir", str(models), "--out", str(out), "--quiet",
                              "--bootstrap", "0", *extra])


@pytest.mark.parametrize("name, extra", [("predictions.csv", ()), ("weights.json", ("--fit-weights", "Training"))])
def test_ensemble_out_refuses_a_users_file_without_overwrite(name, extra, synthetic_csv, good_models, tmp_path, capsys):
    """Check that test_ensemble_model.py --out never silently replaces any file it writes, not just report.json."""
    out = tmp_path / "out"
    out.mkdir()
    (out / name).write_text("the user's own file\n")
    assert _ensemble(synthetic_csv, good_models, out, *extra) == 2
    one_error_line(capsys.readouterr().err, name, "--overwrite")
    assert (out / name).read_text() == "the user's own file\n"
    assert sorted(p.name for p in out.iterdir()) == [name]


def test_ensemble_weights_input_in_out_is_never_written(synthetic_csv, good_models, tmp_path, capsys):
    """Check that a --weights file that sits where the run writes weights.json is refused even with --overwrite."""
    out = tmp_path / "out"
    out.mkdir()
    weights = out / "temperatures.json"
    weights.write_text(json.dumps({"weights": {"model_1.h5": 1.0}}))
    before = weights.read_bytes()
    assert _ensemble(synthetic_csv, good_models, out, "--weights", str(weights), "--calibrate", "Training",
                     "--overwrite") == 2
    one_error_line(capsys.readouterr().err, "temperatures.json", "input")
    assert weights.read_bytes() == before


def test_ensemble_overwrite_removes_its_stale_worst_png_only(synthetic_csv, good_models, tmp_path, capsys):
    """Check that a rerun with --overwrite and without --worst removes the earlier worst.png, not the user's files."""
    out = tmp_path / "out"
    assert _ensemble(synthetic_csv, good_models, out, "--worst", "4") == 0
    assert (out / "worst.png").is_file()
    (out / "notes.txt").write_text("mine\n")
    assert _ensemble(synthetic_csv, good_models, out, "--overwrite") == 0
    assert not (out / "worst.png").exists()
    assert (out / "notes.txt").read_text() == "mine\n"
    assert (out / "report.json").is_file()


def _compare_main():
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("results_compare", REPO / "results" / "compare.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module.main


def test_results_compare_refuses_to_replace_results_without_overwrite(synthetic_csv, good_models, tmp_path, capsys):
    """Check that results/compare.py keeps an existing results.md unless --overwrite is given."""
    report = tmp_path / "report"
    assert _ensemble(synthetic_csv, good_models, report) == 0
    out = tmp_path / "results"
    out.mkdir()
    (out / "results.md").write_text("my table\n")
    main = _compare_main()
    assert main([str(report / "report.json"), "--out", str(out)]) == 2
    one_error_line(capsys.readouterr().err, "results.md", "--overwrite")
    assert (out / "results.md").read_text() == "my table\n"
    assert main([str(report / "report.json"), "--out", str(out), "--overwrite"]) == 0
    assert (out / "results.md").read_text() != "my table\n"
