"""Training engine and scripts, end to end on a tiny synthetic CSV."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fer_keras.cli import train_cli
from fer_keras.errors import ConfigError, FerError
from fer_keras.models import model_io
from fer_keras.training import TrainConfig, lr_at, precision, train

REPO = Path(__file__).resolve().parents[2]


def tiny_config(learnable_csv, tmp_path, **overrides):
    values = dict(model="vgg16", model_options={"width": 0.125, "dense_units": 128}, csv=str(learnable_csv),
                  epochs=2, batch_size=16, lr=0.01, warmup_steps=2, augment="light",
                  precision="float32", models_dir=str(tmp_path / "models"), run_dir=str(tmp_path / "run"))
    values.update(overrides)
    return TrainConfig(**values)


@pytest.mark.slow
def test_train_saves_model_with_metadata_and_run_folder(learnable_csv, tmp_path):
    """Check that a run learns, saves its best epoch as models/model_1.h5 with its recipe and scores,
    and writes the run artefacts (TensorBoard logs included)."""
    summary = train(tiny_config(learnable_csv, tmp_path, epochs=3, augment="none", optimizer="adam", lr=0.003,
                                warmup_steps=0, model_options={"width": 0.125, "dense_units": 32, "dropout": 0.0}),
                    verbose=0)
    model_file = Path(summary["model_file"])
    assert model_file == tmp_path / "models" / "model_1.h5"
    meta = model_io.read_metadata(model_file)
    assert meta["architecture"] == "vgg16"
    assert meta["class_names"][0] == "angry" and len(meta["class_names"]) == 7
    assert meta["recipe"]["epochs"] == 3 and meta["epochs_run"] == 3
    assert len(meta["dataset"]["sha256"]) == 64
    for name in ("config.json", "history.csv", "curves.png", "confusion_matrix.png", "summary.json"):
        assert (tmp_path / "run" / name).exists(), name
    history = _history(tmp_path / "run")
    # It learnt: each class's bright band is easy, so three epochs beat chance (1/7) by far on the training
    # faces. (Validation stays near chance this early: batch-norm's moving statistics need hundreds of steps.)
    assert history["accuracy"][-1] >= 0.5
    # The file holds the first epoch with the highest val_accuracy in history.csv, and scores as it did.
    best = int(np.argmax(history["val_accuracy"]))
    assert summary["best_epoch"] == meta["best_epoch"] == best + 1
    assert meta["validation"]["accuracy"] == pytest.approx(history["val_accuracy"][best], abs=1e-6)
    # TensorBoard logs: event files for training and validation.
    for side in ("train", "validation"):
        assert list((tmp_path / "run" / "tensorboard" / side).glob("events.out.tfevents.*")), side
    model = model_io.load_model(model_file)
    probs = model.predict(np.zeros((2, 48, 48, 1), "float32"), verbose=0)
    np.testing.assert_allclose(probs.sum(axis=1), 1, atol=1e-5)


def _history(run_dir):
    """history.csv as {column: [float per epoch]}."""
    import csv

    with open(run_dir / "history.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return {key: [float(row[key]) for row in rows] for key in rows[0]}


@pytest.mark.slow
def test_second_run_takes_next_index_and_finished_run_is_not_repeated(learnable_csv, tmp_path):
    """Check that a new run never overwrites model_1.h5 and a finished run folder is refused."""
    train(tiny_config(learnable_csv, tmp_path, epochs=1), verbose=0)
    summary = train(tiny_config(learnable_csv, tmp_path, epochs=1, run_dir=str(tmp_path / "run2")), verbose=0)
    assert summary["model_file"].endswith("model_2.h5")
    with pytest.raises(FerError, match="finished run"):
        train(tiny_config(learnable_csv, tmp_path, epochs=1), verbose=0)


@pytest.mark.slow
def test_mixed_bfloat16_run_saves_float32_model(learnable_csv, tmp_path):
    """Check that a model trained under mixed_bfloat16 is saved computing in float32."""
    import keras

    try:
        summary = train(tiny_config(learnable_csv, tmp_path, epochs=1, precision="mixed_bfloat16"), verbose=0)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert summary["precision"] == "mixed_bfloat16"
    model = model_io.load_model(summary["model_file"])
    assert {layer.dtype_policy.name for layer in model.layers} == {"float32"}
    # The figures stored in the file are the saved float32 model's, not the bf16 model's.
    from fer_keras.data import load_fer2013
    from fer_keras.metrics import classification_metrics

    meta = model_io.read_metadata(summary["model_file"])
    val = load_fer2013(learnable_csv, cache=False).splits["PublicTest"]
    scored = classification_metrics(val.y, model.predict(val.x, batch_size=256, verbose=0), meta["class_names"])
    stored = meta["validation"]
    assert stored["accuracy"] == pytest.approx(scored["accuracy"])
    assert stored["macro_f1"] == pytest.approx(scored["macro_f1"])


@pytest.mark.slow
def test_resume_after_interruption_continues(learnable_csv, tmp_path, monkeypatch):
    """Check that rerunning an interrupted run resumes from the last finished epoch."""
    import keras

    original = keras.callbacks.CSVLogger.on_epoch_end

    def interrupt_in_epoch_two(self, epoch, logs=None):
        original(self, epoch, logs)
        if epoch == 1:
            raise KeyboardInterrupt

    config = tiny_config(learnable_csv, tmp_path, epochs=3)
    monkeypatch.setattr(keras.callbacks.CSVLogger, "on_epoch_end", interrupt_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        train(config, verbose=0)
    assert not (tmp_path / "models").exists() or not list((tmp_path / "models").iterdir())
    monkeypatch.setattr(keras.callbacks.CSVLogger, "on_epoch_end", original)
    summary = train(config, verbose=0)  # the same command again
    epochs = [row.split(",")[0] for row in (tmp_path / "run" / "history.csv").read_text().splitlines()[1:]]
    # Epochs 0 and 1 from the first attempt; the backup of epoch 1 was not written
    # (interrupted before BackupAndRestore), so the resumed run redoes epoch 1 then 2.
    assert epochs[:2] == ["0", "1"] and epochs[-1] == "2"
    assert "0" not in epochs[2:], "the resumed run started again from epoch 0"
    assert summary["epochs_run"] == 3


@pytest.mark.slow
def test_nan_loss_stops_with_clear_error(learnable_csv, tmp_path):
    """Check that an absurd learning rate stops training with a clear message instead of a model of NaNs."""
    config = tiny_config(learnable_csv, tmp_path, epochs=2, lr=1e30, warmup_steps=0, optimizer="sgd",
                         model_options={"width": 0.125, "dense_units": 128})
    with pytest.raises(FerError, match="NaN"):
        train(config, verbose=0)


@pytest.mark.slow
def test_time_budget_stops_early_and_keeps_best(learnable_csv, tmp_path):
    """Check that --time-budget stops the run and still saves the best epoch."""
    summary = train(tiny_config(learnable_csv, tmp_path, epochs=50, time_budget=0.001), verbose=0)
    assert summary["stopped_by_budget"]
    assert summary["epochs_run"] < 50
    assert Path(summary["model_file"]).exists()


@pytest.mark.slow
def test_snapshot_ensemble_saves_each_cycle(learnable_csv, tmp_path):
    """Check that --snapshots K saves K members (the best model plus K snapshots), each at the end of a
    cycle, where the learning rate is near 0; 5 epochs in 2 cycles train 4 (cycles cut from all 5 put
    the first snapshot at 10% of the peak)."""
    summary = train(tiny_config(learnable_csv, tmp_path, epochs=5, snapshots=2), verbose=0)
    assert len(summary["snapshot_files"]) == 2
    for file in summary["snapshot_files"]:
        assert model_io.read_metadata(file)["snapshot_epoch"] in (2, 4)
    lr = _history(tmp_path / "run")["lr"]
    assert len(lr) == 4 and lr[1] < 0.02 * 0.01 and lr[3] < 0.02 * 0.01


@pytest.mark.slow
def test_ema_validates_and_saves_the_moving_average(learnable_csv, tmp_path, monkeypatch):
    """Check that with --ema the saved model is the moving average of its best epoch, not the raw weights.

    Each epoch swaps the average in (validation, best checkpoint) and back out
    (training, backup): the spy records the weights on both sides of the swap-in.
    """
    from fer_keras.training import callbacks as train_module

    original_swap = train_module.swap_ema_weights
    raw, averaged, calls = [], [], []

    def recording_swap(model):
        swapping_in = len(calls) % 2 == 0  # in before validation, out after the best checkpoint
        calls.append(swapping_in)
        if swapping_in:
            raw.append([v.numpy().copy() for v in model.trainable_variables])
        original_swap(model)
        if swapping_in:
            averaged.append([v.numpy().copy() for v in model.trainable_variables])

    monkeypatch.setattr(train_module, "swap_ema_weights", recording_swap)
    summary = train(tiny_config(learnable_csv, tmp_path, epochs=3, ema=0.9), verbose=0)
    assert len(averaged) == 3
    best = summary["best_epoch"] - 1
    saved = [v.numpy() for v in model_io.load_model(summary["model_file"]).trainable_variables]
    for got, want in zip(saved, averaged[best]):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    assert any(not np.allclose(got, other) for got, other in zip(saved, raw[best]))


def test_swap_ema_weights_exchanges_weights_and_average():
    """Check that the swap puts the optimizer's moving average into the model and the weights into the average."""
    import keras

    from fer_keras.training.callbacks import swap_ema_weights

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.SGD(0.1, use_ema=True, ema_momentum=0.5), loss="mse")
    rng = np.random.default_rng(0)
    for _ in range(4):  # not fit(): it ends by writing the average into the model
        model.train_on_batch(rng.normal(size=(2, 3)), rng.normal(size=(2, 2)))
    weights = [v.numpy().copy() for v in model.trainable_variables]
    averages = [v.numpy().copy() for v in model.optimizer._model_variables_moving_average]
    assert not np.allclose(weights[0], averages[0])
    swap_ema_weights(model)
    for variable, average in zip(model.trainable_variables, averages):
        np.testing.assert_array_equal(variable.numpy(), average)
    for average, weight in zip(model.optimizer._model_variables_moving_average, weights):
        np.testing.assert_array_equal(average.numpy(), weight)
    swap_ema_weights(model)
    for variable, weight in zip(model.trainable_variables, weights):
        np.testing.assert_array_equal(variable.numpy(), weight)



def test_swap_ema_weights_names_the_missing_keras_internals():
    """Check that an optimizer without Keras 3.15's moving-average attributes fails with one line naming
    them, use_ema and the Keras version, not an AttributeError."""
    from types import SimpleNamespace

    from fer_keras.errors import FerError
    from fer_keras.training.callbacks import swap_ema_weights

    model = SimpleNamespace(optimizer=SimpleNamespace(_trainable_variables=[]))
    with pytest.raises(FerError, match=r"no _model_variables_moving_average: it was built without use_ema.*Keras 3\.15"):
        swap_ema_weights(model)

def test_collapse_warning_waits_while_the_ema_average_is_mostly_the_first_step(capsys):
    """Check that one-class predictions early in an --ema run print a note, not a warning, and later warn."""
    from types import SimpleNamespace

    from fer_keras.training.callbacks import Validation

    labels = np.arange(70) % 7
    all_happy = np.tile(np.eye(7)[3], (70, 1))

    def warnings_after(ema, steps):
        state = {}
        model = SimpleNamespace(predict=lambda x, **kwargs: all_happy,
                                optimizer=SimpleNamespace(iterations=SimpleNamespace(numpy=lambda: steps)))
        callback = Validation(np.zeros((70, 48, 48, 1)), labels, 7, 256, state, ema=ema)
        callback.set_model(model)
        callback.on_epoch_end(0, {})
        return state.get("warnings", [])

    assert warnings_after(0.999, 200) == []  # 0.999 ** 200: 82% of the average is the first step
    assert "as expected this early with ema=0.999" in capsys.readouterr().out
    assert len(warnings_after(0.999, 5000)) == 1  # 0.7%: the average is the model now
    assert len(warnings_after(0.0, 10)) == 1


@pytest.mark.parametrize("share, warns", [(64 / 70, True), (63 / 70, False)])
def test_collapse_warning_fires_above_90_percent_of_predictions(share, warns):
    """Check that the one-class warning fires when more than 90% of validation predictions fall into one
    class (64 of 70: 91.4%) and stays quiet at 90% (63 of 70), as the README documents."""
    from types import SimpleNamespace

    from fer_keras.training.callbacks import Validation

    n = 70
    stuck = round(share * n)
    predicted = np.array([3] * stuck + [k for k in range(7) if k != 3] * n)[:n]
    labels = np.arange(n) % 7
    model = SimpleNamespace(predict=lambda x, **kwargs: np.eye(7)[predicted],
                            optimizer=SimpleNamespace(iterations=SimpleNamespace(numpy=lambda: 10**6)))
    state = {}
    callback = Validation(np.zeros((n, 48, 48, 1)), labels, 7, 256, state)
    callback.set_model(model)
    callback.on_epoch_end(0, {})
    assert bool(state.get("warnings")) is warns


def test_ema_decay_must_be_below_one(learnable_csv, tmp_path):
    """Check that ema=1 (an average that never moves) is refused with a message naming the parameter."""
    with pytest.raises(FerError, match=r"ema must be in \[0, 1\) .*Received: ema=1.0"):
        train(tiny_config(learnable_csv, tmp_path, ema=1.0), verbose=0)


def test_settings_refused_after_loading_leave_no_run_folder(learnable_csv, tmp_path):
    """Check that a mistake found only once the data is read removes the run folder that call made,
    and leaves a folder that existed before alone."""
    config = tiny_config(learnable_csv, tmp_path, batch_size=1000)
    with pytest.raises(ConfigError, match="Received: batch_size=1000"):
        train(config, verbose=0)
    assert not (tmp_path / "run").exists()
    (tmp_path / "run").mkdir()  # a folder of the same run, made before (a run folder holds its config.json)
    (tmp_path / "run" / "config.json").write_text(json.dumps(dataclasses.asdict(config)))
    (tmp_path / "run" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="Received: batch_size=1000"):
        train(config, verbose=0)
    assert (tmp_path / "run" / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("script_args", [
    ["--epochs", "1", "--augment", "medium"],
    ["--epochs", "1", "--augment", "strong", "--optimizer", "adamw", "--lr", "0.001", "--schedule", "onecycle",
     "--class-weight", "balanced", "--balanced-data"],
    ["--epochs", "2", "--schedule", "plateau", "--optimizer", "adam", "--lr", "0.001"],
])
@pytest.mark.slow
def test_cli_options_run_end_to_end(learnable_csv, tmp_path, script_args):
    """Check that the training CLI runs with each optimizer, schedule and augmentation choice."""
    code = train_cli.main(["--csv", str(learnable_csv), "--batch-size", "16", "-o", "width=0.125",
                           "--precision", "float32", "--models-dir", str(tmp_path / "m"),
                           "--run-dir", str(tmp_path / "r"), "--quiet", *script_args],
                          prog="train_vgg.py", defaults={"model": "vgg16"})
    assert code == 0
    assert (tmp_path / "m" / "model_1.h5").exists()
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert config["model_options"]["width"] == 0.125


def test_cli_reports_bad_input_in_one_line(tmp_path, capsys):
    """Check that a missing CSV or a bad option value gives a one-line error and exit code 2."""
    code = train_cli.main(["--csv", str(tmp_path / "missing.csv"), "--run-dir", str(tmp_path / "r"),
                           "--models-dir", str(tmp_path / "m")], prog="train_vgg.py", defaults={"model": "vgg16"})
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing.csv" in err[0]
    code = train_cli.main(["--csv", "x.csv", "-o", "no_such_option=1", "--run-dir", str(tmp_path / "r2")],
                          prog="train_vgg.py", defaults={"model": "vgg16"})
    assert code == 2
    assert "no_such_option" in capsys.readouterr().err


@pytest.mark.slow
def test_transfer_learning_two_phases_with_local_weights(learnable_csv, tmp_path):
    """Check that the transfer script runs both phases from a local ImageNet-format weights file, and that
    a rerun with another --head-lr trains its own phase 1 (it went on from the old one's)."""
    import keras

    weights = tmp_path / "vgg16_notop.weights.h5"
    keras.applications.VGG16(include_top=False, weights=None, input_shape=(48, 48, 3)).save_weights(weights)

    def run(*extra):
        return train_cli.main(["--csv", str(learnable_csv), "--batch-size", "16", "--epochs", "1", "--head-epochs",
                               "1", "--weights", str(weights), "--precision", "float32", "--models-dir",
                               str(tmp_path / "m"), "--run-dir", str(tmp_path / "r"), "--quiet", *extra],
                              prog="train_vgg_transfer_learning.py", two_phase=True,
                              defaults={"model": "vgg16_imagenet", "lr": 1e-4, "warmup_steps": 0})

    assert run() == 0
    meta = model_io.read_metadata(tmp_path / "m" / "model_1.h5")
    assert meta["options"]["trainable_blocks"] == 1
    assert meta["recipe"]["init"].endswith(".h5")
    # Phase 2 started from phase 1's file: the lineage names it and how it was made.
    assert meta["init_from"]["file"] == Path(meta["recipe"]["init"]).name
    assert meta["init_from"]["path"] == meta["recipe"]["init"]
    assert len(meta["init_from"]["sha256"]) == 64
    assert meta["init_from"]["epochs_run"] == 1 and meta["init_from"]["validation"]["split"] == "PublicTest"
    assert (tmp_path / "r" / "phase1-1ep-lr0.001" / "summary.json").exists()
    assert run("--head-lr", "0.01") == 0
    again = model_io.read_metadata(tmp_path / "m" / "model_2.h5")
    assert again["init_from"]["file"] == "model_2.h5" and again["init_from"]["recipe"]["lr"] == 0.01
    assert (tmp_path / "r" / "phase1-1ep-lr0.01" / "summary.json").exists()


def test_precision_auto_follows_the_hardware(monkeypatch):
    """Check that auto picks float16 on a GPU, bfloat16 on a bf16 CPU and float32 otherwise."""
    monkeypatch.setattr(precision, "gpu_names", lambda: ["H100"])
    assert precision.resolve_policy("auto") == "mixed_float16"
    monkeypatch.setattr(precision, "gpu_names", lambda: [])
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx2", "amx_bf16"}))
    assert precision.resolve_policy("auto") == "mixed_bfloat16"
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx2"}))
    assert precision.resolve_policy("auto") == "float32"
    assert precision.resolve_policy("float32") == "float32"


def test_learning_rate_schedule_shapes():
    """Check the warm-up, cosine end point, one-cycle peak and snapshot restarts."""
    kw = dict(peak=0.1, total_steps=1000, warmup_steps=100)
    assert lr_at(0, schedule="cosine", **kw) == pytest.approx(0.001)
    assert lr_at(99, schedule="cosine", **kw) == pytest.approx(0.1)
    assert lr_at(1000, schedule="cosine", **kw) == pytest.approx(0.0, abs=1e-9)
    assert lr_at(300, schedule="onecycle", **kw) == pytest.approx(0.1, rel=1e-3)
    assert lr_at(500, schedule="plateau", **kw) == 0.1
    kw["warmup_steps"] = 0
    assert lr_at(499, schedule="cosine", cycles=2, **kw) < 0.001 < lr_at(500, schedule="cosine", cycles=2, **kw)


@pytest.mark.slow
def test_mirrored_strategy_on_two_logical_cpus(learnable_csv, tmp_path):
    """Check that --distribute mirrored trains under the strategy it builds, with two replicas, and saves a
    model that loads and predicts."""
    code = f"""
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from fer_keras.training import TrainConfig, train
seen = []
fit = keras.Model.fit
def spying_fit(self, *args, **kwargs):  # the strategy the model is really trained under
    seen.append(self.distribute_strategy)
    return fit(self, *args, **kwargs)
keras.Model.fit = spying_fit
s = train(TrainConfig(model="vgg16", model_options={{"width": 0.125}}, csv={str(learnable_csv)!r}, epochs=1,
          batch_size=16, precision="float32", distribute="mirrored", models_dir={str(tmp_path / 'm')!r},
          run_dir={str(tmp_path / 'r')!r}), verbose=0)
print("TRAINED UNDER", [type(x).__name__ for x in seen], [x.num_replicas_in_sync for x in seen])
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "TRAINED UNDER ['MirroredStrategy'] [2]" in out.stdout
    model = model_io.load_model(tmp_path / "m" / "model_1.h5")
    probs = model.predict(np.zeros((2, 48, 48, 1), "float32"), verbose=0)
    np.testing.assert_allclose(probs.sum(axis=1), 1, atol=1e-5)


def _free_port():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_multiworker_two_processes_on_loopback(learnable_csv, tmp_path):
    """Check that --distribute multiworker trains one epoch across two worker processes on 127.0.0.1."""
    import os

    workers = [f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"]
    code = f"""
from fer_keras.training import TrainConfig, train
s = train(TrainConfig(model="vgg16", model_options={{"width": 0.125}}, csv={str(learnable_csv)!r}, epochs=1,
          batch_size=16, precision="float32", distribute="multiworker", augment="none",
          models_dir={str(tmp_path / 'm')!r}, run_dir={str(tmp_path / 'r')!r}), verbose=0)
print("MODEL", s["model_file"])
"""
    procs = []
    for index in range(2):
        env = dict(os.environ, TF_CONFIG=json.dumps({"cluster": {"worker": workers},
                                                     "task": {"type": "worker", "index": index}}))
        procs.append(subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    outputs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-2000:]
    assert (tmp_path / "m" / "model_1.h5").exists()  # the chief saved the shared model
    assert (tmp_path / "r" / "worker_1" / "summary.json").exists()  # the other worker kept its own logs
    chief = model_io.load_model(tmp_path / "m" / "model_1.h5")
    other = model_io.load_model(tmp_path / "r" / "worker_1" / "models" / "model_1.h5")
    # Trained weights stay in sync (gradients are all-reduced); batch-norm moving
    # statistics are per worker, each seeing its own shard of the data.
    for a, b in zip(chief.trainable_weights, other.trainable_weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)


def test_budget_plan_shrinks_to_fit_and_regrows_only_early():
    """Check that slow first epochs shrink the plan, faster ones regrow it early, and never late."""
    from fer_keras.training import plan_epochs

    # 100 min budget, first epoch 266 s (tracing + a busy machine): 22 epochs fit.
    first = plan_epochs(epochs_done=1, planned=60, max_epochs=60, epoch_seconds=[266], seconds_left=6000 - 266)
    assert first == 22
    # Epoch 4 runs at 155 s on a quiet machine: still early, the plan grows on the fastest recent epoch.
    fourth = plan_epochs(epochs_done=4, planned=first, max_epochs=60, epoch_seconds=[266, 280, 248, 155],
                         seconds_left=6000 - 949)
    assert fourth == 4 + int((6000 - 949) // 155) > first
    # A first epoch that is mostly compilation (GPU: 197 s, then 28 s; 18 min budget) shrinks
    # the plan to 5 epochs, but the second epoch is still early enough to regrow it.
    tiny = plan_epochs(epochs_done=1, planned=150, max_epochs=150, epoch_seconds=[197], seconds_left=1080 - 197)
    assert tiny == 5
    assert plan_epochs(epochs_done=2, planned=tiny, max_epochs=150, epoch_seconds=[197, 28],
                       seconds_left=1080 - 225) == 2 + int((1080 - 225) // 28)
    # Late in the plan, more time never raises the LR again ...
    assert plan_epochs(epochs_done=15, planned=30, max_epochs=60, epoch_seconds=[100] * 3, seconds_left=3000) == 30
    # ... but a lasting slowdown (the mean of the last eight epochs) still shrinks it, never below one more epoch.
    assert plan_epochs(epochs_done=15, planned=30, max_epochs=60, epoch_seconds=[100] * 5 + [300] * 3,
                       seconds_left=1500) == 15 + int(1500 // 175)
    assert plan_epochs(epochs_done=15, planned=30, max_epochs=60, epoch_seconds=[300] * 3, seconds_left=0) == 16
    # A stretch of two slow epochs among quiet ones shrinks the plan by the time it adds on average, not as
    # if it were the new speed. A real 50-min run here, after 23 of 65 planned epochs (1807.6 s left): the
    # median of its last three epochs (82.7 s) cut the plan to 45; their mean over eight (53.2 s) gives 56.
    real_epochs = [42.2, 44.5, 45.9, 42.1, 42.6, 81.7, 82.7, 44.2]
    assert plan_epochs(epochs_done=23, planned=65, max_epochs=150, epoch_seconds=real_epochs,
                       seconds_left=1807.6) == 56
    # Never more than --epochs.
    assert plan_epochs(epochs_done=1, planned=20, max_epochs=20, epoch_seconds=[1], seconds_left=1000) == 20


def test_array_batches_match_the_tf_data_contract():
    """The PyDataset used under non-TensorFlow backends: float images, one-hot rows,
    whole batches in training (reshuffled each epoch), every face once in evaluation."""
    from fer_keras.training import array_batches

    x = np.arange(10, dtype="uint8").reshape(10, 1, 1, 1) * np.ones((1, 48, 48, 1), "uint8")
    y = np.arange(10) % 7
    train_batches = array_batches(x, y, batch_size=4, num_classes=7, training=True, seed=0)
    assert len(train_batches) == 2  # the last partial batch is dropped, as tf.data's drop_remainder
    images, labels = train_batches[0]
    assert images.dtype == np.float32 and images.shape == (4, 48, 48, 1)
    np.testing.assert_array_equal(labels.argmax(1), images[:, 0, 0, 0].astype(int) % 7)
    first_order = train_batches.order.copy()
    train_batches.on_epoch_end()
    assert not np.array_equal(first_order, train_batches.order)
    eval_batches = array_batches(x, y, batch_size=4, num_classes=7, training=False)
    seen = np.concatenate([eval_batches[i][0][:, 0, 0, 0] for i in range(len(eval_batches))])
    np.testing.assert_array_equal(seen, np.arange(10))
    soft = np.full((10, 7), 1 / 7, "float32")
    _, soft_labels = array_batches(x, soft, batch_size=4, num_classes=7, training=False)[0]
    np.testing.assert_allclose(soft_labels, soft[:4])


NO_TENSORFLOW = """
import importlib.abc, sys

class NoTensorFlow(importlib.abc.MetaPathFinder):  # as on a GPU machine that has only JAX
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "tensorflow":
            raise ModuleNotFoundError(f"No module named {name!r}")

sys.meta_path.insert(0, NoTensorFlow())
"""


@pytest.mark.slow
def test_training_under_jax_without_tensorflow_saves_a_model_tensorflow_loads(learnable_csv, tmp_path):
    """Check the JAX path end to end: train.py runs with TensorFlow absent (augmentation, the
    LR schedule, time budget, validation), and the saved .h5 gives TensorFlow the same outputs."""
    pytest.importorskip("jax")
    import os

    code = NO_TENSORFLOW + f"""
sys.argv = ["train.py", "--model", "vgg16", "-o", "width=0.125", "--csv", {str(learnable_csv)!r}, "--epochs", "2",
            "--batch-size", "16", "--lr", "0.01", "--warmup-steps", "4", "--augment", "strong",
            "--precision", "float32", "--models-dir", {str(tmp_path / 'm')!r}, "--run-dir", {str(tmp_path / 'r')!r},
            "--quiet"]
import runpy
runpy.run_path("train.py", run_name="__main__")
"""
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=env,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Keras backend: jax" in out.stdout
    history = (tmp_path / "r" / "history.csv").read_text().splitlines()
    lrs = [float(line.split(",")[header_index]) for header_index in
           [history[0].split(",").index("lr")] for line in history[1:]]
    assert lrs[0] != lrs[1]  # the per-batch schedule reached the optimizer under JAX
    model_file = tmp_path / "m" / "model_1.h5"
    assert "jax" in model_io.read_metadata(model_file)["machine"]
    faces = np.random.default_rng(0).uniform(0, 255, (4, 48, 48, 1)).astype("float32")
    check = NO_TENSORFLOW + f"""
import numpy as np
from fer_keras.models import model_io
faces = np.random.default_rng(0).uniform(0, 255, (4, 48, 48, 1)).astype("float32")
np.save({str(tmp_path / 'jax.npy')!r}, model_io.load_model({str(model_file)!r}).predict(faces, verbose=0))
"""
    out = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, cwd=REPO, env=env,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    tf_probs = model_io.load_model(model_file).predict(faces, verbose=0)
    np.testing.assert_allclose(tf_probs, np.load(tmp_path / "jax.npy"), atol=1e-5)


@pytest.mark.parametrize("pipeline", ["tf.data", "array_batches"])
def test_mixup_blends_each_face_and_its_target_by_the_same_weight(pipeline):
    """Check that --mixup mixes faces in pairs and their one-hot targets in the same proportion.

    Face k is a flat image of value 10 * class, so a mixed face's value must be
    10 x the class-weighted sum of its mixed target row."""
    from fer_keras.training.augment import build_mixer
    from fer_keras.training import array_batches, make_dataset

    y = np.arange(64) % 7
    x = (10 * y).astype("uint8").reshape(-1, 1, 1, 1) * np.ones((1, 48, 48, 1), "uint8")
    if pipeline == "tf.data":
        ds = make_dataset(x, y, batch_size=64, num_classes=7, training=True, mixup=1.0, seed=3)
        images, labels = (np.asarray(t) for t in next(iter(ds)))
    else:
        batches = array_batches(x, y, batch_size=64, num_classes=7, training=True, mixer=build_mixer(1.0, seed=3))
        images, labels = (np.asarray(t) for t in batches[0])
    assert images.dtype == np.float32
    np.testing.assert_allclose(labels.sum(1), 1.0, atol=1e-5)
    assert ((labels > 1e-6).sum(1) <= 2).all()  # each face is mixed with one partner
    np.testing.assert_allclose(images[:, 0, 0, 0], 10 * labels @ np.arange(7), atol=1e-2)
    np.testing.assert_allclose(images.std(axis=(1, 2, 3)), 0, atol=1e-3)  # mixed whole faces, not patches
    assert (labels.max(1) < 0.9).mean() > 0.5  # Beta(1, 1): most weights are far from 0 and 1


def test_mixup_off_and_negative_alpha():
    """Check that --mixup 0 leaves batches unmixed and a negative alpha is refused by name."""
    from fer_keras.training.augment import build_mixer

    assert build_mixer(0.0) is None
    with pytest.raises(ConfigError, match="mixup must be >= 0.*Received: mixup=-0.1"):
        TrainConfig(mixup=-0.1).validate()


def test_options_added_later_leave_old_run_folders_where_they_were():
    """Check that every option kept out of the run-folder hash at its default really defaults to
    that value, and that setting one (e.g. --mixup) names a new run folder."""
    from fer_keras.training.config import _HASHED_ONLY_WHEN_SET

    defaults = dataclasses.asdict(TrainConfig())
    for key, value in _HASHED_ONLY_WHEN_SET.items():
        assert defaults[key] == value, key
    assert TrainConfig(mixup=0.2).fingerprint() != TrainConfig().fingerprint()


@pytest.mark.slow
def test_mixup_and_zoom_run_trains_and_its_card_command_repeats_both(learnable_csv, tmp_path, monkeypatch):
    """Check that a --mixup --zoom run trains end to end with both in its training pipeline, and the card's
    command reproduces both."""
    from fer_keras.cli.model_card import training_command
    from fer_keras.training import engine

    pipelines = []

    def recording_make_dataset(*args, **kwargs):
        pipelines.append(kwargs)
        return make_dataset(*args, **kwargs)

    make_dataset = engine.make_dataset
    monkeypatch.setattr(engine, "make_dataset", recording_make_dataset)
    summary = train(tiny_config(learnable_csv, tmp_path, epochs=1, mixup=0.2, zoom=0.1), verbose=0)
    meta = model_io.read_metadata(summary["model_file"])
    assert meta["recipe"]["mixup"] == 0.2 and meta["recipe"]["zoom"] == 0.1
    assert "--mixup 0.2" in training_command(meta) and "--zoom 0.1" in training_command(meta)
    training = [kw for kw in pipelines if kw.get("training")]
    assert training and all(kw["zoom"] == 0.1 and kw["mixup"] == 0.2 for kw in training)


def _weights(model_file):
    return [np.asarray(w) for w in model_io.load_model(model_file).get_weights()]


def _largest_difference(a, b):
    return max(float(np.abs(x - y).max()) for x, y in zip(_weights(a), _weights(b)))


@pytest.mark.slow
def test_seed_reproduces_a_run_and_deterministic_bit_for_bit(learnable_csv, tmp_path):
    """Check README's determinism: two runs with the same --seed agree to within run-to-run noise (far closer
    than a run with another seed), and with --deterministic they are bit-identical (weights and history).
    In a fresh process: TensorFlow's op determinism, once on, cannot be turned off."""
    # Without --deterministic the pair runs without augmentation: a same-seed pair with --augment light was once
    # seen to differ as much as two seeds (the augmentation's random draws in a parallel tf.data map, not
    # README's oneDNN noise); the --deterministic pair keeps it and must still match bit for bit.
    runs = {"a": (0, False, "none"), "b": (0, False, "none"), "c": (1, False, "none"), "d": (0, True, "light"),
            "e": (0, True, "light")}
    code = f"""
from fer_keras.training import TrainConfig, train
for name, (seed, deterministic, augment) in {runs!r}.items():  # the deterministic runs last
    train(TrainConfig(model="vgg16", model_options={{"width": 0.125, "dense_units": 32}}, csv={str(learnable_csv)!r},
                      epochs=1, batch_size=16, lr=0.01, warmup_steps=2, augment=augment, precision="float32",
                      seed=seed, deterministic=deterministic, models_dir={str(tmp_path)!r} + "/" + name + "/m",
                      run_dir={str(tmp_path)!r} + "/" + name + "/r"), verbose=0)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    model = {name: tmp_path / name / "m" / "model_1.h5" for name in runs}
    noise = _largest_difference(model["a"], model["b"])
    other_seed = _largest_difference(model["a"], model["c"])
    assert other_seed > 1e-3 and noise < other_seed / 100, (noise, other_seed)
    for got, want in zip(_weights(model["d"]), _weights(model["e"])):
        np.testing.assert_array_equal(got, want)
    assert _history(tmp_path / "d" / "r") == _history(tmp_path / "e" / "r")


@pytest.mark.slow
def test_ema_average_survives_a_resume(learnable_csv, tmp_path, monkeypatch):
    """Check that a run with --ema interrupted after the backup of epoch 2 resumes with both the raw weights
    and the optimizer's moving average as they were backed up (the average not restarted from the weights),
    and carries on from epoch 2 (history rows 0, 1, 2)."""
    import keras

    def state(model):
        optimizer = getattr(model.optimizer, "inner_optimizer", model.optimizer)
        average = [v.numpy().copy() for v in optimizer._model_variables_moving_average if v is not None]
        return [v.numpy().copy() for v in model.trainable_variables], average

    backed_up, restored = [], []
    on_epoch_end = keras.callbacks.BackupAndRestore.on_epoch_end

    def interrupt_after_backup(self, epoch, logs=None):
        on_epoch_end(self, epoch, logs)
        if epoch == 1:
            backed_up.append(state(self.model))
            raise KeyboardInterrupt

    def record_first_step(self, batch, logs=None):  # after every callback's on_train_begin, before a step
        if not restored:
            restored.append(state(self.model))

    config = tiny_config(learnable_csv, tmp_path, epochs=3, ema=0.9)
    monkeypatch.setattr(keras.callbacks.BackupAndRestore, "on_epoch_end", interrupt_after_backup)
    with pytest.raises(KeyboardInterrupt):
        train(config, verbose=0)
    monkeypatch.setattr(keras.callbacks.BackupAndRestore, "on_epoch_end", on_epoch_end)
    monkeypatch.setattr(keras.callbacks.BackupAndRestore, "on_train_batch_begin", record_first_step)
    summary = train(config, verbose=0)
    (raw, average), = backed_up
    (raw_back, average_back), = restored
    assert len(average) == len(raw) > 0
    assert len(raw_back) == len(raw) and len(average_back) == len(average)
    for i, (want, got) in enumerate(zip(raw, raw_back)):
        np.testing.assert_array_equal(got, want, err_msg=f"weight {i}")
    for i, (want, got) in enumerate(zip(average, average_back)):
        np.testing.assert_array_equal(got, want, err_msg=f"moving average {i}")
    assert any(not np.allclose(a, w) for a, w in zip(average, raw))  # the average is not the weights
    assert [row.split(",")[0] for row in (tmp_path / "run" / "history.csv").read_text().splitlines()[1:]] == \
        ["0", "1", "2"]
    assert summary["epochs_run"] == 3


def test_custom_loop_scales_the_loss_like_fit_under_mixed_float16():
    """Check that the multi-worker loop's first update under mixed_float16 equals model.fit's: the
    LossScaleOptimizer divides gradients by its loss scale, so unscaled gradients moved 32768x too little."""
    import keras
    import tensorflow as tf

    from fer_keras.training.distributed import fit_custom_loop

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (32, 48, 48, 1)).astype("float32")
    y = np.eye(7, dtype="float32")[rng.integers(0, 7, 32)]
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)

    def first_update(fit):
        keras.utils.set_random_seed(0)
        face = keras.Input((48, 48, 1))
        hidden = keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(face))
        hidden = keras.layers.Dense(16, activation="relu")(hidden)
        probs = keras.layers.Activation("softmax", dtype="float32")(keras.layers.Dense(7)(hidden))
        model = keras.Model(face, probs)
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="categorical_crossentropy")
        before = np.array(model.trainable_weights[-1])
        fit(model)
        return np.array(model.trainable_weights[-1]) - before

    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        by_fit = first_update(lambda m: m.fit(dataset, epochs=1, steps_per_epoch=1, verbose=0, shuffle=False))
        by_loop = first_update(lambda m: fit_custom_loop(
            m, dataset, strategy=tf.distribute.get_strategy(), epochs=1, steps_per_epoch=1, callbacks=[],
            label_smoothing=0.0, global_batch_size=32, verbose=0))
    finally:
        keras.mixed_precision.set_global_policy(previous)
    assert np.abs(by_fit).max() > 1e-3
    np.testing.assert_allclose(by_loop, by_fit, rtol=0.02, atol=1e-5)


@pytest.mark.parametrize("epochs, snapshots", [(50, 3), (60, 3), (4, 2), (7, 2)])
def test_snapshots_are_saved_where_the_learning_rate_ends_a_cycle(epochs, snapshots):
    """Check that every snapshot epoch ends a cosine cycle, at under 0.1% of the peak learning rate: cycles
    cut from all 50 epochs in 3 put the snapshots of epochs 16, 32, 48 at 0.4%, 1.6% and 3.5%."""
    from fer_keras.training.schedule import snapshot_epochs

    steps = 40
    ends = snapshot_epochs(epochs, snapshots)
    assert len(ends) == snapshots and ends[-1] <= epochs
    for end in ends:
        last_step = end * steps - 1
        lr = lr_at(last_step, peak=1.0, total_steps=ends[-1] * steps, warmup_steps=0, schedule="cosine",
                   cycles=snapshots)
        assert lr < 1e-3
    assert snapshot_epochs(epochs, 1) == snapshot_epochs(epochs, 0) == ()


def test_time_budget_stops_a_snapshot_run_without_moving_its_cycles(tmp_path, monkeypatch):
    """Check that a slow epoch shrinks a plain run's plan but leaves a snapshot run's cycles where they are
    (a shrunk plan moved the cycle ends off the snapshot epochs), and that the budget still stops it."""
    from fer_keras.training import callbacks

    clock = [0.0]
    monkeypatch.setattr(callbacks.time, "monotonic", lambda: clock[0])

    class Model:
        stop_training = False

    plans = {}
    for snapshots in (0, 3):
        config = TrainConfig(epochs=60, snapshots=snapshots, time_budget=1)  # 60 s
        state = {"planned_epochs": 60}
        budget = callbacks.Budget(config, state, tmp_path)
        budget.set_model(Model())
        clock[0] = 0.0
        budget.on_train_begin()
        budget.on_epoch_begin(0)
        clock[0] = 25.0  # 25 s an epoch: two fit in the budget
        budget.on_epoch_end(0)
        plans[snapshots] = state["planned_epochs"]
        clock[0] = 61.0
        budget.on_train_batch_end(0)
        assert state["stopped_by_budget"] and budget.model.stop_training
    assert plans == {0: 2, 3: 60}
