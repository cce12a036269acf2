"""Bad flag values: one ``error:`` line naming the flag or file, exit code 2, nothing written.

The cases that used to end in a traceback (a seed NumPy refuses, an export
folder that is a file, a negative momentum, a non-numeric model option, a
models folder that is a file, ImageNet weights that cannot be had) and the
values that used to be accepted without a word (negative weight decay,
clipnorm, warm-up steps, width, margin; one bootstrap resample). Then the
messages that used to mislead.
"""

import numpy as np
import pytest
from tests.reliability.conftest import one_error_line, png_bytes

from fer_keras.cli import ensemble_cli, export_cli, predict_cli, train_cli
from fer_keras.cli.preprocess_cli import data_resize_main


def _train(synthetic_csv, tmp_path, *extra, script=None):
    argv = ["--csv", str(synthetic_csv), "--run-dir", str(tmp_path / "run"), "--models-dir", str(tmp_path / "models"),
            "--epochs", "1", "--quiet", *extra]
    if script == "transfer":
        return train_cli.main(argv, prog="train_vgg_transfer_learning.py", defaults={"model": "vgg16_imagenet"},
                              two_phase=True)
    return train_cli.main(argv, prog="train.py", choose_model=True)


def _nothing_written(tmp_path):
    assert not (tmp_path / "run").exists() and not (tmp_path / "models").exists()


@pytest.mark.parametrize("extra, fragments", [
    (["--seed", "-1"], ("--seed: ", "seed=-1")),
    (["--seed", "4294967296"], ("--seed: ", "seed=4294967296")),
    (["--momentum", "-1"], ("--momentum: ", "momentum=-1.0")),
    (["--weight-decay", "-1"], ("--weight-decay: ", "weight_decay=-1.0")),
    (["--clipnorm", "-1"], ("--clipnorm: ", "clipnorm=-1.0")),
    (["--warmup-steps", "-1"], ("--warmup-steps: ", "warmup_steps=-1")),
    (["--model", "vgg16", "-o", "width=-1"], ("width=-1",)),
    (["--model", "vgg16", "-o", "width=abc"], ("width='abc': expected a number",)),
    (["--model", "resemotenet", "-o", "stem_pools=2.5"], ("expected a whole number",)),
    (["--model", "vgg16", "-o", "dropout=1.5"], ("dropout rate must be in [0, 1)",)),
    (["--model", "vgg16", "-o", "num_classes=8"], ("has no option(s) num_classes",)),  # was a TypeError
    (["--model", "vgg16", "-o", "crop=44.5"], ("crop must be an even number",)),
])
def test_train_refuses_bad_values_before_any_work(extra, fragments, synthetic_csv, tmp_path, capsys):
    """Check that each bad training value is one line naming its flag and value, exit 2, no run or models folder."""
    assert _train(synthetic_csv, tmp_path, *extra) == 2
    line = one_error_line(capsys.readouterr().err, *fragments)
    assert line.count("abc") <= 1  # the value once, not eight times
    _nothing_written(tmp_path)


@pytest.mark.parametrize("extra, fragments", [
    (["--model", "mini_xception", "-o", "crop=45"], ("crop must be an even number", "got 45")),
    (["--model", "vgg16", "--augment", "crop"], ("augment='crop' needs a model that crops its input", "crop=44")),
])
def test_train_refuses_crop_mistakes_before_reading_the_data(extra, fragments, synthetic_csv, tmp_path, monkeypatch,
                                                             capsys):
    """Check that a bad crop, or the crop recipe without a crop, is refused before the CSV is read (it was
    found only once the model was built, after the data and any teacher's predictions)."""
    from fer_keras.training import engine

    def no_reading(*args, **kwargs):
        raise AssertionError("the data was read before the options were checked")

    monkeypatch.setattr(engine, "_read_data", no_reading)
    assert _train(synthetic_csv, tmp_path, *extra) == 2
    one_error_line(capsys.readouterr().err, *fragments)
    _nothing_written(tmp_path)


def test_train_refuses_a_models_dir_that_is_a_file_before_training(synthetic_csv, tmp_path, capsys):
    """Check that --models-dir naming a file is refused up front, not after the whole run."""
    models = tmp_path / "models"
    models.write_text("a file")
    assert _train(synthetic_csv, tmp_path, "--models-dir", str(models)) == 2
    one_error_line(capsys.readouterr().err, "--models-dir: ", "is a file")
    assert not (tmp_path / "run").exists()


def test_train_refuses_a_run_dir_that_is_a_file_before_training(synthetic_csv, tmp_path, capsys):
    """Check that --run-dir naming a file is one line up front (it was a FileExistsError traceback)."""
    run = tmp_path / "run"
    run.write_text("a file")
    assert _train(synthetic_csv, tmp_path, "--run-dir", str(run)) == 2
    one_error_line(capsys.readouterr().err, "--run-dir: ", "is a file")
    assert not (tmp_path / "models").exists()


def test_train_refuses_a_run_dir_holding_a_run_of_other_options(synthetic_csv, tmp_path, capsys):
    """Check that --run-dir on another run's folder is refused before any work: the run resumed the
    other run's weights and epochs and saved them under this run's recipe."""
    import dataclasses
    import json

    from fer_keras.training import TrainConfig

    run = tmp_path / "run"
    run.mkdir()
    other = TrainConfig(model="mini_xception", csv=str(synthetic_csv), epochs=1, lr=0.5, run_dir=str(run))
    (run / "config.json").write_text(json.dumps(dataclasses.asdict(other)))
    before = (run / "config.json").read_text()
    assert _train(synthetic_csv, tmp_path, "--model", "mini_xception", "--lr", "0.01") == 2
    one_error_line(capsys.readouterr().err, "--run-dir: ", "holds a run of other options (lr differ)")
    assert (run / "config.json").read_text() == before
    assert not (tmp_path / "models").exists()


def test_train_refuses_a_run_dir_holding_other_files(synthetic_csv, tmp_path, capsys):
    """Check that --run-dir on a folder of the user's own files is refused and the files are left alone."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "history.csv").write_text("my own numbers\n")
    assert _train(synthetic_csv, tmp_path) == 2
    one_error_line(capsys.readouterr().err, "--run-dir: ", "holds no config.json")
    assert sorted(p.name for p in run.iterdir()) == ["history.csv"]
    assert (run / "history.csv").read_text() == "my own numbers\n"


@pytest.mark.parametrize("extra, flag", [
    (["--head-epochs", "0"], "--head-epochs: "),  # was blamed on --epochs
    (["--unfreeze-blocks", "-3"], "--unfreeze-blocks: "),  # was refused only after phase 1 had trained
    (["--unfreeze-blocks", "9"], "--unfreeze-blocks: "),  # was accepted
])
def test_transfer_learning_refuses_bad_phase_settings_before_training(extra, flag, synthetic_csv, tmp_path, capsys):
    """Check that the two phases' own flags are checked before phase 1 trains, naming the flag."""
    assert _train(synthetic_csv, tmp_path, *extra, script="transfer") == 2
    one_error_line(capsys.readouterr().err, flag)
    _nothing_written(tmp_path)


def test_a_whole_crop_written_as_a_float_builds():
    """Check that -o crop=44.0 builds the 44 px crop (it was a ValueError traceback from CenterCrop)."""
    from fer_keras.models import build, input_crop

    assert input_crop(build("vgg16", width=0.125, dense_units=16, crop=44.0)) == 44


def test_transfer_learning_offline_says_the_weights_could_not_be_downloaded(synthetic_csv, tmp_path, monkeypatch, capsys):
    """Check that a failed ImageNet download is one line saying so and how to pass a file, not 'URL fetch failure'."""
    from keras.src.utils import file_utils

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/x.h5: None -- [Errno -2] no network")

    monkeypatch.setattr(file_utils, "get_file", offline)
    assert _train(synthetic_csv, tmp_path, "--head-epochs", "1", script="transfer") == 2
    one_error_line(capsys.readouterr().err, "--weights: ", "could not be downloaded", "pass its path as weights")


def test_transfer_learning_refuses_a_text_file_as_weights(synthetic_csv, tmp_path, capsys):
    """Check that --weights naming a text file is one line, before any data is read."""
    text = tmp_path / "weights.h5"
    text.write_text("not weights")
    assert _train(synthetic_csv, tmp_path, "--weights", str(text), script="transfer") == 2
    one_error_line(capsys.readouterr().err, str(text), "not an HDF5 weights file")
    _nothing_written(tmp_path)


def test_transfer_learning_refuses_weights_of_another_architecture(synthetic_csv, tmp_path, capsys):
    """Check that a weights file of another network is one line naming it."""
    from fer_keras import models

    other = tmp_path / "other.weights.h5"
    models.build("mini_xception", width=0.5).save_weights(other)
    assert _train(synthetic_csv, tmp_path, "--weights", str(other), "--head-epochs", "1", script="transfer") == 2
    one_error_line(capsys.readouterr().err, str(other), "does not fit")


# --------------------------------------------------------------------------
# Ensemble, export, data_resize, predict
# --------------------------------------------------------------------------


@pytest.mark.parametrize("extra, fragments", [
    (["--seed", "-1"], ("--seed: ", "seed=-1")),
    (["--seed", "4294967296"], ("--seed: ", "seed=4294967296")),
    (["--bootstrap", "1"], ("--bootstrap 1",)),
])
def test_ensemble_refuses_bad_values_and_leaves_no_out(extra, fragments, synthetic_csv, good_models, tmp_path, capsys):
    """Check that a bad --seed or --bootstrap 1 is one line, exit 2, and --out is not created."""
    out = tmp_path / "out"
    assert ensemble_cli.main(["--csv", str(synthetic_csv), "--models-dir", str(good_models), "--out", str(out),
                              "--quiet", *extra]) == 2
    one_error_line(capsys.readouterr().err, *fragments)
    assert not out.exists()


def _export(synthetic_csv, good_models, out, *extra):
    return export_cli.main(["--models-dir", str(good_models), "--csv", str(synthetic_csv), "--out", str(out),
                            "--no-verify", *extra])


@pytest.mark.parametrize("seed", ["-1", "4294967296"])
def test_export_refuses_a_seed_numpy_cannot_take(seed, synthetic_csv, good_models, tmp_path, capsys):
    """Check that export.py --seed out of NumPy's range is one line and writes nothing."""
    assert _export(synthetic_csv, good_models, tmp_path / "out", "--seed", seed) == 2
    one_error_line(capsys.readouterr().err, "--seed: ", f"seed={seed}")
    assert not (tmp_path / "out").exists()


def test_export_refuses_an_out_that_is_a_file(synthetic_csv, good_models, tmp_path, capsys):
    """Check that export.py --out naming a file (or a folder below a file) is one line, exit 2."""
    afile = tmp_path / "afile"
    afile.write_text("x")
    for out in (afile, afile / "below"):
        assert _export(synthetic_csv, good_models, out) == 2
        one_error_line(capsys.readouterr().err, str(afile), "is a file")
    assert afile.read_text() == "x"


def test_export_refuses_a_read_only_out(synthetic_csv, good_models, tmp_path, monkeypatch, capsys):
    """Check that export.py --out in a folder it cannot write is one line, exit 2 (os.access stands in for
    the permission bits, which root ignores)."""
    import os

    locked = tmp_path / "locked"
    locked.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(locked) else real(p, mode))
    assert _export(synthetic_csv, good_models, locked / "out") == 2
    one_error_line(capsys.readouterr().err, str(locked), "permission denied")


def test_export_reads_and_checks_the_csv_before_writing_anything(good_models, tmp_path, capsys):
    """Check that a broken --csv stops export.py before any artefact is written."""
    bad = tmp_path / "bad.csv"
    bad.write_text("emotion,pixels,Usage\n0,1 2 3,PublicTest\n")
    out = tmp_path / "out"
    assert export_cli.main(["--models-dir", str(good_models), "--csv", str(bad), "--out", str(out)]) == 2
    line = one_error_line(capsys.readouterr().err, f"{bad}:2")
    assert "--skip-bad-rows" not in line  # export.py has no such flag
    assert not out.exists()


def test_data_resize_refuses_a_negative_margin(tmp_path, capsys):
    """Check that data_resize.py --margin -1 is refused instead of cropping a flat face."""
    (tmp_path / "src" / "happy").mkdir(parents=True)
    (tmp_path / "src" / "happy" / "a.png").write_bytes(png_bytes(np.full((60, 60), 50, np.uint8)))
    assert data_resize_main([str(tmp_path / "src"), str(tmp_path / "dst"), "--detect-faces", "--margin", "-1",
                             "--quiet"]) == 2
    one_error_line(capsys.readouterr().err, "margin -1")
    assert not (tmp_path / "dst").exists()


def test_predict_checks_detector_flags_before_loading_models(good_models, tmp_path, monkeypatch, capsys):
    """Check that predict.py refuses --scale-factor 1 without loading a single model."""
    from fer_keras import ensemble

    def no_loading(*args, **kwargs):
        raise AssertionError("models loaded before the flags were checked")

    monkeypatch.setattr(ensemble, "load_members", no_loading)
    code = predict_cli.main(["--models-dir", str(good_models), "--scale-factor", "1", "--out", str(tmp_path / "o")])
    assert code == 2
    one_error_line(capsys.readouterr().err, "--scale-factor")


# --------------------------------------------------------------------------
# Messages that used to mislead
# --------------------------------------------------------------------------


def test_ensemble_bad_row_error_does_not_offer_a_flag_it_lacks(tmp_path, good_models, capsys):
    """Check that test_ensemble_model.py's bad-row error names the row but not --skip-bad-rows."""
    bad = tmp_path / "bad.csv"
    bad.write_text("emotion,pixels,Usage\n0,1 2 3,PrivateTest\n")
    assert ensemble_cli.main(["--csv", str(bad), "--models-dir", str(good_models), "--out",
                              str(tmp_path / "r")]) == 2
    line = one_error_line(capsys.readouterr().err, f"{bad}:2", "field 'pixels'")
    assert "skip-bad-rows" not in line and "on_bad_rows" not in line


def test_train_bad_row_error_offers_skip_bad_rows(tmp_path, capsys):
    """Check that train.py, which has --skip-bad-rows, still says how to drop such rows."""
    bad = tmp_path / "bad.csv"
    bad.write_text("emotion,pixels,Usage\n0,1 2 3,Training\n")
    assert _train(bad, tmp_path) == 2
    one_error_line(capsys.readouterr().err, f"{bad}:2", "(pass --skip-bad-rows to drop such rows)")


def test_calibrate_on_the_evaluated_split_suggests_a_split_that_is_not_it(synthetic_csv, good_models, tmp_path, capsys):
    """Check that --calibrate PublicTest --usage PublicTest suggests another split, not PublicTest again."""
    assert ensemble_cli.main(["--csv", str(synthetic_csv), "--models-dir", str(good_models), "--usage", "PublicTest",
                              "--calibrate", "PublicTest", "--out", str(tmp_path / "r")]) == 2
    line = one_error_line(capsys.readouterr().err, "--calibrate PublicTest is the evaluated split")
    assert "e.g. Training" in line and "e.g. PublicTest" not in line


def test_calibrate_on_a_one_face_split_is_refused_before_any_work(good_models, tmp_path, capsys):
    """Check that --calibrate on a split of one face is a one-line error, not a traceback, and leaves no --out."""
    pixels = " ".join(["128"] * 2304)
    csv = tmp_path / "one.csv"
    csv.write_text("emotion,pixels,Usage\n" + "".join(f"{i % 7},{pixels},Training\n" for i in range(6))
                   + f"3,{pixels},PublicTest\n")
    out = tmp_path / "r"
    assert ensemble_cli.main(["--csv", str(csv), "--models-dir", str(good_models), "--usage", "Training",
                              "--calibrate", "PublicTest", "--bootstrap", "0", "--out", str(out)]) == 2
    one_error_line(capsys.readouterr().err, "--calibrate PublicTest: the split has 1 face(s)", "at least 2")
    assert not out.exists()


def test_ensemble_missing_models_dir_is_named_before_the_csv_is_read(good_models, tmp_path, monkeypatch, capsys):
    """Check that a --models-dir typo is one line naming the flag, said before the CSV is parsed."""
    from fer_keras.cli import ensemble_cli as cli

    def no_reading(*args, **kwargs):
        raise AssertionError("the CSV was read before --models-dir was checked")

    monkeypatch.setattr(cli, "_load_dataset", no_reading)
    missing = tmp_path / "mdoels"
    assert cli.main(["--csv", str(tmp_path / "x.csv"), "--models-dir", str(missing), "--out", str(tmp_path / "r")]) == 2
    one_error_line(capsys.readouterr().err, f"--models-dir: {missing}: no such folder")
    assert not (tmp_path / "r").exists()


def test_folder_as_csv_says_it_is_a_folder(tmp_path, good_models, capsys):
    """Check that a folder given as --csv is reported as a folder, not as a missing file."""
    assert ensemble_cli.main(["--csv", str(tmp_path), "--models-dir", str(good_models), "--out",
                              str(tmp_path / "r")]) == 2
    one_error_line(capsys.readouterr().err, f"{tmp_path}: is a folder")
