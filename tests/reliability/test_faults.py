"""Faults while training and saving: kills, crashes, full disks, NaN losses, collapsed models.

The promise under test: whatever happens, no file under a final name is ever
half written, a file that was there stays byte-identical, a rerun of the same
command resumes, and every failure is one clear line (exit code 2).
"""

import csv
import errno
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from tests.reliability.conftest import REPO, one_error_line

from fer_keras import data, io_utils, models
from fer_keras.cli import train_cli
from fer_keras.cli.common import run_cli
from fer_keras.data import fer2013, synthetic_faces, write_synthetic_csv
from fer_keras.ensemble import find_model_files, load_members
from fer_keras.errors import FerError, ModelFileError
from fer_keras.models import model_io
from fer_keras.training import TrainConfig, train


def tiny_config(csv_path, tmp_path, **overrides):
    values = {"model": "vgg16", "model_options": {"width": 0.125, "dense_units": 32}, "csv": str(csv_path),
              "epochs": 2, "batch_size": 16, "lr": 0.01, "warmup_steps": 2, "augment": "none",
              "precision": "float32", "models_dir": str(tmp_path / "models"), "run_dir": str(tmp_path / "run")}
    values.update(overrides)
    return TrainConfig(**values)


def history_epochs(run_dir):
    lines = (Path(run_dir) / "history.csv").read_text().splitlines()
    return [int(line.split(",")[0]) for line in lines[1:]]


def leftovers(folder):
    return sorted(p.name for p in Path(folder).iterdir() if p.name.startswith(".tmp-"))


@pytest.fixture
def saved(tmp_path):
    """``(model, path, bytes)``: a tiny model already saved as models/model_1.h5."""
    import keras

    keras.utils.set_random_seed(0)
    model = models.build("vgg16", width=0.125, dense_units=32)
    path = model_io.save_model(model, tmp_path / "models" / "model_1.h5")
    return model, path, path.read_bytes()


# --------------------------------------------------------------------------
# Killed with SIGKILL
# --------------------------------------------------------------------------


def _wait_for(predicate, proc, timeout, what):
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            pytest.fail(f"the run ended (exit {proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def _backup_epoch(run_dir):
    try:
        return json.loads((run_dir / "backup" / "training_metadata.json").read_text())["epoch"]
    except (OSError, ValueError, KeyError):
        return 0


@pytest.mark.slow
def test_sigkill_mid_epoch_then_same_command_resumes(tmp_path):
    """Check that a training run killed with SIGKILL in its second epoch leaves no model file, and that
    the same command run again says it resumes, continues from the last finished epoch (not epoch 0)
    and ends with a complete, loadable model; a hidden half-written file beside it is ignored."""
    faces = write_synthetic_csv(tmp_path / "tiny.csv", sizes=(("Training", 560), ("PublicTest", 70)))
    run_dir, models_dir = tmp_path / "R", tmp_path / "M"
    command = [sys.executable, str(REPO / "train_vgg.py"), "--csv", str(faces), "-o", "width=0.125",
               "-o", "dense_units=32", "--epochs", "5", "--batch-size", "16", "--augment", "none",
               "--precision", "float32", "--warmup-steps", "2", "--lr", "0.01", "--run-dir", str(run_dir),
               "--models-dir", str(models_dir), "--quiet"]
    with open(tmp_path / "first.log", "w") as log:
        proc = subprocess.Popen(command, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
        _wait_for(lambda: _backup_epoch(run_dir) >= 1, proc, 120, "the first epoch's backup")
        time.sleep(0.3)  # into epoch 2 (an epoch takes about a second here)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    done = history_epochs(run_dir)
    assert done and done[0] == 0 and len(done) < 5, done
    assert not models_dir.exists() or not find_model_files(models_dir)
    json.loads((run_dir / "state.json").read_text())  # written atomically: never half a JSON

    # What a kill during the final save would leave: a hidden temporary file, never a model_<i>.h5.
    models_dir.mkdir(exist_ok=True)
    (models_dir / ".tmp-k1ll3d-model_1.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(1000))

    second = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
    assert second.returncode == 0, second.stdout + second.stderr
    assert f"run folder: {run_dir} (resuming)" in second.stdout
    epochs = history_epochs(run_dir)
    assert epochs.count(0) == 1, f"the resumed run started again from epoch 0: {epochs}"
    assert epochs[-1] == 4 and sorted(set(epochs)) == [0, 1, 2, 3, 4]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["epochs_run"] == 5 and summary["model_file"] == str(models_dir / "model_1.h5")
    members, skipped = load_members(models_dir)
    assert [m.name for m in members] == ["model_1.h5"] and not skipped
    probs = members[0].predict_proba(synthetic_faces(7)[0])
    assert np.isfinite(probs).all() and np.allclose(probs.sum(axis=1), 1, atol=1e-4)
    assert model_io.read_metadata(models_dir / "model_1.h5")["epochs_run"] == 5


KILLED_SAVE = """
import sys, time
import keras
from fer_keras import models
from fer_keras.models import model_io

model = models.build("vgg16", width=0.125, dense_units=32)
real_save = keras.Model.save

def save_half_then_hang(self, path, *args, **kwargs):
    real_save(self, path, *args, **kwargs)
    content = open(path, "rb").read()
    open(path, "wb").write(content[: len(content) // 2])
    print("HALF WRITTEN", flush=True)
    time.sleep(600)  # the kill comes here

keras.Model.save = save_half_then_hang
model_io.save_model(model, sys.argv[1], overwrite=True)
"""


def test_sigkill_during_save_keeps_previous_file_byte_identical(saved, tmp_path):
    """Check that a process killed with SIGKILL halfway through replacing a model file leaves the previous
    file byte-identical, only a hidden .tmp-* file beside it, and that the members loader ignores it."""
    _, path, before = saved
    proc = subprocess.Popen([sys.executable, "-c", KILLED_SAVE, str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, cwd=tmp_path)
    try:
        assert proc.stdout.readline().strip() == "HALF WRITTEN"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    assert path.read_bytes() == before
    tmp = leftovers(path.parent)
    assert len(tmp) == 1 and tmp[0].endswith("-model_1.h5")
    assert [p.name for p in find_model_files(path.parent)] == ["model_1.h5"]
    members, skipped = load_members(path.parent)
    assert len(members) == 1 and not skipped



def _interrupt_in_epoch(monkeypatch, epoch_index):
    """Make training raise KeyboardInterrupt right after the history row of ``epoch_index`` (0-based)."""
    import keras

    original = keras.callbacks.CSVLogger.on_epoch_end

    def interrupt(self, epoch, logs=None):
        original(self, epoch, logs)
        if epoch == epoch_index:
            raise KeyboardInterrupt

    monkeypatch.setattr(keras.callbacks.CSVLogger, "on_epoch_end", interrupt)


def _kill_while_writing_backup(monkeypatch, write_number):
    """Make the ``write_number``-th (1-based) write of the epoch backup stop half way with KeyboardInterrupt:
    the file Keras writes in place is left cut in half, as a kill during the write leaves it."""
    import keras

    original, writes = keras.Model.save_weights, []

    def save_weights(self, filepath, *args, **kwargs):
        original(self, filepath, *args, **kwargs)
        if Path(filepath).name == "latest.weights.h5":
            writes.append(filepath)
            if len(writes) == write_number:
                content = Path(filepath).read_bytes()
                Path(filepath).write_bytes(content[: len(content) // 2])
                raise KeyboardInterrupt

    monkeypatch.setattr(keras.Model, "save_weights", save_weights)


@pytest.mark.slow
def test_backup_damaged_by_a_kill_while_it_was_written(synthetic_csv, tmp_path, monkeypatch, capsys):
    """Check RELIABILITY.md's promise: after a kill that cut the backup of epoch 2 in half, the rerun restores
    the backup's second copy (epoch 1) and resumes at epoch 2 (history rows 0, 1, then 1 again, 2), not at 0;
    with both copies damaged, one error line names the backup folder and best.weights.h5 is still there."""
    import shutil

    _kill_while_writing_backup(monkeypatch, 2)  # the backup after epoch index 1
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(synthetic_csv, tmp_path, epochs=3), verbose=0)
    monkeypatch.undo()
    backup = tmp_path / "run" / "backup"
    assert history_epochs(tmp_path / "run") == [0, 1]
    assert json.loads((backup / "training_metadata.json").read_text())["epoch"] == 1  # written after the weights
    assert (backup / "latest.weights.h5.bkp").is_file()  # the intact copy double_checkpoint keeps
    both_damaged = tmp_path / "both"
    shutil.copytree(tmp_path, both_damaged, ignore=shutil.ignore_patterns("both"))

    summary = train(tiny_config(synthetic_csv, tmp_path, epochs=3), verbose=0)
    assert history_epochs(tmp_path / "run") == [0, 1, 1, 2], "the rerun did not resume from the intact backup"
    assert Path(summary["model_file"]).is_file()

    copy = both_damaged / "run" / "backup" / "latest.weights.h5.bkp"
    copy.write_bytes(copy.read_bytes()[: copy.stat().st_size // 2])
    code = run_cli(lambda: train(tiny_config(synthetic_csv, both_damaged, epochs=3), verbose=0))
    assert code == 2
    one_error_line(capsys.readouterr().err, str(both_damaged / "run" / "backup"), "damaged", "delete")
    assert (both_damaged / "run" / "best.weights.h5").is_file()
    assert history_epochs(both_damaged / "run") == [0, 1]
    assert not list((both_damaged / "models").glob("*.h5"))


@pytest.mark.slow
def test_kill_after_the_last_epoch_before_the_model_is_saved(synthetic_csv, tmp_path, monkeypatch):
    """Check that a rerun after an interruption between the end of training and the model save saves the
    model without training again from epoch 0."""
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(model_io, "save_model", interrupted)
    monkeypatch.setattr(model_io, "save_new_model", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(synthetic_csv, tmp_path, epochs=2), verbose=0)
    monkeypatch.undo()
    assert history_epochs(tmp_path / "run") == [0, 1]
    summary = train(tiny_config(synthetic_csv, tmp_path, epochs=2), verbose=0)
    assert history_epochs(tmp_path / "run") == [0, 1], "the rerun trained again from epoch 0"
    assert summary["epochs_run"] == 2 and Path(summary["model_file"]).is_file()

# --------------------------------------------------------------------------
# Crashes and write errors while saving
# --------------------------------------------------------------------------


def _half_then(exc):
    """A stand-in for keras.Model.save that writes half a file, then raises ``exc``."""

    def save(self, path, *args, **kwargs):
        Path(path).write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(5000))
        raise exc

    return save


@pytest.mark.parametrize("overwrite", [True, False])
def test_crash_during_save_leaves_previous_file_and_no_new_name(saved, monkeypatch, overwrite):
    """Check that a crash in the middle of Keras' save leaves the previous file byte-identical, no file
    under a new final name, and no temporary file."""
    import keras

    model, path, before = saved
    monkeypatch.setattr(keras.Model, "save", _half_then(RuntimeError("simulated crash")))
    target = path if overwrite else path.with_name("model_2.h5")
    with pytest.raises(RuntimeError, match="simulated crash"):
        model_io.save_model(model, target, overwrite=overwrite)
    assert path.read_bytes() == before
    assert not path.with_name("model_2.h5").exists()
    assert leftovers(path.parent) == []


def _raise(code):
    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    return fail


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES])
@pytest.mark.parametrize("stage", ["create", "write", "move"])
@pytest.mark.parametrize("overwrite", [True, False])
def test_disk_full_or_read_only_while_saving(saved, monkeypatch, capsys, code, stage, overwrite):
    """Check that a full disk, a read-only file system or a refused permission, when the temporary file is
    created, written or moved into place, is a ModelFileError naming the file and the cause (one line,
    exit code 2 from a script), the previous file stays byte-identical and nothing is left behind.
    (Tests run as root, where permission bits are ignored: the OS errors are injected.)"""
    import keras

    model, path, before = saved
    target = path if overwrite else path.with_name("model_2.h5")
    if stage == "create":
        monkeypatch.setattr(io_utils.tempfile, "mkstemp", _raise(code))
    elif stage == "write":
        monkeypatch.setattr(keras.Model, "save", _half_then(OSError(code, os.strerror(code))))
    else:
        monkeypatch.setattr(io_utils.os, "replace" if overwrite else "link", _raise(code))
    with pytest.raises(ModelFileError) as caught:
        model_io.save_model(model, target, overwrite=overwrite)
    assert str(caught.value) == f"cannot write {target}: {os.strerror(code)}"

    def job():
        model_io.save_model(model, target, overwrite=overwrite)

    assert run_cli(job) == 2
    one_error_line(capsys.readouterr().err, f"cannot write {target}: {os.strerror(code)}")
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert not path.with_name("model_2.h5").exists()
    assert leftovers(path.parent) == []


def test_write_errors_of_reports_and_state_are_one_line_errors(tmp_path, monkeypatch, capsys):
    """Check that a full disk while writing a JSON/text file (state.json, summary.json, reports) is a
    one-line FerError naming the file that is also an OSError, and the previous content stays."""
    target = tmp_path / "summary.json"
    io_utils.write_json_atomic(target, {"ok": True})
    monkeypatch.setattr(io_utils.os, "replace", _raise(errno.ENOSPC))
    with pytest.raises(io_utils.WriteError) as caught:
        io_utils.write_json_atomic(target, {"ok": False})
    assert isinstance(caught.value, FerError) and isinstance(caught.value, OSError)
    assert caught.value.errno == errno.ENOSPC
    assert str(caught.value) == f"cannot write {target}: No space left on device"
    assert run_cli(lambda: io_utils.write_text_atomic(target, "x")) == 2
    one_error_line(capsys.readouterr().err, str(target), "No space left on device")
    monkeypatch.undo()
    assert json.loads(target.read_text()) == {"ok": True}
    assert leftovers(tmp_path) == []


def test_csv_cache_that_cannot_be_written_is_only_a_warning(synthetic_csv, tmp_path, monkeypatch, caplog):
    """Check that a full disk while writing the parsed-CSV cache still returns the data, warns, and leaves
    neither a cache nor a temporary file."""
    copy = tmp_path / "faces.csv"
    copy.write_bytes(synthetic_csv.read_bytes())
    monkeypatch.setattr(fer2013.np, "savez", _raise(errno.ENOSPC))
    with caplog.at_level(logging.WARNING, logger="fer_keras.data"):
        ds = data.load_fer2013(copy)
    assert len(ds["Training"]) == 280
    assert "could not write cache" in caplog.text and "No space left on device" in caplog.text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["faces.csv"]


def test_never_overwrites_a_file_another_process_creates_meanwhile(saved, monkeypatch):
    """Check that when another process creates model_2.h5 while this one is writing it, the other file is
    kept byte-identical and this save fails clearly; save_new_model takes the next free index instead."""
    import keras

    model, path, _ = saved
    real_save = keras.Model.save
    theirs = b"another run's model"

    def save_while_another_run_finishes(self, tmp, *args, **kwargs):
        real_save(self, tmp, *args, **kwargs)
        target = path.with_name("model_2.h5")
        if not target.exists():
            target.write_bytes(theirs)

    monkeypatch.setattr(keras.Model, "save", save_while_another_run_finishes)
    with pytest.raises(ModelFileError, match="model_2.h5 exists .*refusing to overwrite"):
        model_io.save_model(model, path.with_name("model_2.h5"))
    assert path.with_name("model_2.h5").read_bytes() == theirs
    assert leftovers(path.parent) == []

    path.with_name("model_2.h5").unlink()
    written = model_io.save_new_model(model, path.parent)
    assert written == path.with_name("model_3.h5")
    assert path.with_name("model_2.h5").read_bytes() == theirs
    monkeypatch.undo()
    assert model_io.load_model(written).count_params() == model.count_params()


# --------------------------------------------------------------------------
# NaN losses and collapsed predictions
# --------------------------------------------------------------------------


@pytest.mark.slow
def test_nan_from_the_first_step_is_exit_2_and_writes_no_model(synthetic_csv, tmp_path, capsys):
    """Check that a learning rate that makes the loss NaN at once ends train_vgg.py with exit code 2 and
    one line saying so, and no model file is written."""
    code = train_cli.main(["--csv", str(synthetic_csv), "-o", "width=0.125", "-o", "dense_units=32", "--epochs", "2",
                           "--batch-size", "16", "--lr", "1e30", "--warmup-steps", "0", "--augment", "none",
                           "--precision", "float32", "--run-dir", str(tmp_path / "run"),
                           "--models-dir", str(tmp_path / "models"), "--quiet"],
                          prog="train_vgg.py", defaults={"model": "vgg16"})
    out, err = capsys.readouterr()
    assert code == 2
    one_error_line(err, "training produced no model", "NaN")
    assert "the loss became NaN/inf at epoch 1" in out
    assert not (tmp_path / "models").exists() or not find_model_files(tmp_path / "models")
    assert not (tmp_path / "run" / "summary.json").exists()


@pytest.mark.slow
def test_nan_in_epoch_2_keeps_epoch_1_model(synthetic_csv, tmp_path, monkeypatch, capsys):
    """Check that when an absurd learning rate makes the loss NaN in epoch 2 after a good epoch 1, training
    stops, says so, and saves epoch 1's finite model (summary and metadata say best epoch 1)."""
    from fer_keras.training import engine

    steps_per_epoch = 280 // 16

    class BlowUpInEpochTwo(engine.LearningRateSchedule):
        def on_train_batch_begin(self, batch, logs=None):
            super().on_train_batch_begin(batch, logs)
            if int(self.model.optimizer.iterations.numpy()) >= steps_per_epoch + 3:
                self.model.optimizer.learning_rate.assign(1e30)

    monkeypatch.setattr(engine, "LearningRateSchedule", BlowUpInEpochTwo)
    summary = train(tiny_config(synthetic_csv, tmp_path, epochs=3), verbose=0)
    out = capsys.readouterr().out
    assert "the loss became NaN/inf at epoch 2" in out
    assert summary["stopped_by_nan"] and summary["best_epoch"] == 1
    model_file = Path(summary["model_file"])
    assert model_io.read_metadata(model_file)["best_epoch"] == 1
    model = model_io.load_model(model_file)
    assert all(np.isfinite(w).all() for w in model.get_weights())
    reference = models.build("vgg16", width=0.125, dense_units=32)
    reference.load_weights(tmp_path / "run" / "best.weights.h5")
    for a, b in zip(model.get_weights(), reference.get_weights()):
        np.testing.assert_array_equal(a, b)
    probs = model.predict(synthetic_faces(14)[0].astype("float32"), verbose=0)
    assert np.isfinite(probs).all()
    with open(tmp_path / "run" / "history.csv", newline="") as fh:
        epoch_one = next(csv.DictReader(fh))
    assert summary["validation"]["accuracy"] == pytest.approx(float(epoch_one["val_accuracy"]))

@pytest.mark.slow
def test_predictions_collapsed_onto_one_class_are_reported_loudly(tmp_path, capsys):
    """Check that a model that predicts one class for every validation face (trained on labels that are
    all 'happy') is flagged in the training log and in summary.json."""
    x, y = synthetic_faces(70, seed=1)
    lines = ["emotion,pixels,Usage"]
    lines += [f"3,{' '.join(map(str, face.ravel()))},Training" for face in synthetic_faces(280)[0]]
    lines += [f"{label},{' '.join(map(str, face.ravel()))},PublicTest" for face, label in zip(x, y)]
    one_class = tmp_path / "one_class.csv"
    one_class.write_text("\n".join(lines) + "\n")
    train(tiny_config(one_class, tmp_path, epochs=1), verbose=0)
    out = capsys.readouterr().out
    assert "!!! WARNING: epoch 1: 100% of validation predictions are 'happy'" in out
    assert "!!! WARNING: predictions collapsed onto 'happy'" in out
    saved = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert saved["collapsed_onto"] == "happy"
    assert any("collapsed onto one class" in w for w in saved["warnings"])
