"""The callbacks a training run is made of, one class each.

Validation on the whole split with macro-F1 and a collapse warning, the best
checkpoint, the learning-rate schedule (set from ``optimizer.iterations``, so
it survives a resume), the time budget, the NaN guard, a backup that reports
damage in one line, and the EMA swap. The engine
(:func:`fer_keras.training.engine.train`) puts them in order; the distributed
loop drives the same ones.
"""

from __future__ import annotations

import time

import keras
import numpy as np

from fer_keras.constants import CLASS_NAMES_8
from fer_keras.errors import FerError
from fer_keras.io_utils import atomic_path, write_json_atomic
from fer_keras.metrics import classification_metrics, prediction_collapse
from fer_keras.training.schedule import lr_at, plan_epochs, snapshot_epochs


class LearningRateSchedule(keras.callbacks.Callback):
    """Sets the LR before each batch from ``optimizer.iterations``, so it
    survives a resume; the horizon can shrink to fit a time budget."""

    def __init__(self, config, steps_per_epoch, state):
        super().__init__()
        self.config = config
        self.steps_per_epoch = steps_per_epoch
        self.state = state

    def on_train_batch_begin(self, batch, logs=None):
        if self.config.schedule == "plateau" and self.state.get("plateau_active"):
            return
        step = int(self.model.optimizer.iterations.numpy())
        lr = lr_at(step, peak=self.config.lr, total_steps=self.state["planned_epochs"] * self.steps_per_epoch,
                   warmup_steps=self.config.warmup_steps, schedule=self.config.schedule,
                   cycles=max(self.config.snapshots, 1))
        if self.config.schedule == "plateau" and step >= self.config.warmup_steps:
            self.state["plateau_active"] = True
        self.model.optimizer.learning_rate.assign(lr)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["lr"] = float(self.model.optimizer.learning_rate.numpy())


class Validation(keras.callbacks.Callback):
    """Validates once per epoch on the whole split: loss, accuracy, macro-F1,
    and a loud warning when predictions collapse onto one class."""

    def __init__(self, x, y, num_classes, batch_size, state, class_names=None, ema=0.0):
        super().__init__()
        self.x, self.y, self.num_classes = x, y, num_classes
        self.class_names = tuple(class_names or CLASS_NAMES_8[:num_classes])
        self.batch_size = batch_size
        self.state = state
        self.ema = ema

    def on_epoch_end(self, epoch, logs=None):
        if "nan_at" in self.state:
            return  # weights are NaN: nothing to validate
        probs = self.model.predict(self.x, batch_size=self.batch_size, verbose=0)
        probs = np.asarray(probs, dtype="float64")
        m = classification_metrics(self.y, probs, self.class_names)
        nll = -np.mean(np.log(np.clip(probs[np.arange(len(self.y)), self.y], 1e-12, 1)))
        logs.update(val_loss=float(nll), val_accuracy=m["accuracy"], val_macro_f1=m["macro_f1"])
        collapse = prediction_collapse(probs)
        if collapse:
            cls, share = collapse
            # Keras starts the ema average at the first step's (near random)
            # weights; their share decays as ema ** steps.
            first_step_share = self.ema ** int(self.model.optimizer.iterations.numpy()) if self.ema else 0.0
            if first_step_share > 0.1:
                print(f"\nepoch {epoch + 1}: {share:.0%} of validation predictions are "
                      f"'{self.class_names[cls]}', as expected this early with ema={self.ema:g}: "
                      f"the average is still {first_step_share:.0%} the first step's weights", flush=True)
            else:
                warning = (f"epoch {epoch + 1}: {share:.0%} of validation predictions are "
                           f"'{self.class_names[cls]}' — the model has collapsed onto one class "
                           "(lower lr, check labels/class weights)")
                print(f"\n!!! WARNING: {warning}", flush=True)
                self.state.setdefault("warnings", []).append(warning)
        self.state["last_val"] = m


class BestKeeper(keras.callbacks.Callback):
    """Saves weights whenever validation accuracy improves (atomic write),
    plus each snapshot at the end of a cosine cycle."""

    def __init__(self, run_dir, state, snapshot_epochs=()):
        super().__init__()
        self.run_dir = run_dir
        self.state = state
        self.snapshot_epochs = set(snapshot_epochs)

    def on_epoch_end(self, epoch, logs=None):
        if "nan_at" in self.state:
            return  # never let NaN weights become the best model
        acc = logs.get("val_accuracy", -1)
        if acc > self.state.get("best_val_accuracy", -1):
            with atomic_path(self.run_dir / "best.weights.h5") as tmp:
                self.model.save_weights(tmp)
            self.state.update(best_val_accuracy=acc, best_epoch=epoch + 1,
                              best_val_macro_f1=logs.get("val_macro_f1"))
        if epoch + 1 in self.snapshot_epochs:
            with atomic_path(self.run_dir / f"snapshot_{epoch + 1}.weights.h5") as tmp:
                self.model.save_weights(tmp)
            self.state.setdefault("snapshots", []).append(epoch + 1)


class Budget(keras.callbacks.Callback):
    """Stops cleanly at the time budget and, after the first epoch, shortens
    the LR horizon so the schedule still anneals within the budget."""

    def __init__(self, config, state, run_dir):
        super().__init__()
        self.config, self.state, self.run_dir = config, state, run_dir
        self.budget = config.time_budget * 60

    def on_train_begin(self, logs=None):
        self.started = time.monotonic() - self.state.get("train_seconds", 0.0)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_start = time.monotonic()

    def on_train_batch_end(self, batch, logs=None):
        if self.budget and time.monotonic() - self.started > self.budget:
            self.state["stopped_by_budget"] = True
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        now = time.monotonic()
        self.state["train_seconds"] = now - self.started
        self.state["epochs_done"] = epoch + 1
        epoch_seconds = now - self.epoch_start
        self.state.setdefault("epoch_seconds", []).append(round(epoch_seconds, 1))
        # A snapshot run keeps its cycles (re-planning would move their ends off the epochs
        # its snapshots are saved at): the budget only stops it, keeping the cycles completed.
        if self.budget and self.config.schedule != "plateau" and not snapshot_epochs(self.config.epochs,
                                                                                     self.config.snapshots):
            previous = self.state["planned_epochs"]
            planned = plan_epochs(
                epochs_done=epoch + 1, planned=previous, max_epochs=self.config.epochs,
                epoch_seconds=self.state["epoch_seconds"], seconds_left=self.budget - self.state["train_seconds"])
            if planned != previous:
                recent = ", ".join(f"{t:.0f}" for t in self.state["epoch_seconds"][-3:])
                print(f"\ntime budget {self.config.time_budget:g} min (last epochs: {recent} s): "
                      f"planning {planned} epochs instead of {previous}", flush=True)
                self.state["planned_epochs"] = planned
        if self.state["epochs_done"] >= self.state["planned_epochs"]:
            self.model.stop_training = True
        write_json_atomic(self.run_dir / "state.json", self.state)


class NaNGuard(keras.callbacks.Callback):
    """Stops on a NaN/inf loss and records where, so validation and the best
    checkpoint skip the broken weights and the summary can say so."""

    def __init__(self, state):
        super().__init__()
        self.state = state

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(loss):
            self.state["nan_at"] = [self.epoch + 1, batch + 1]
            self.model.stop_training = True


class SafeBackupAndRestore(keras.callbacks.BackupAndRestore):
    """BackupAndRestore that turns a damaged backup (a kill during its
    write) into a clear error instead of a traceback on every rerun."""

    def on_train_begin(self, logs=None):
        try:
            super().on_train_begin(logs)
        except (OSError, ValueError, KeyError) as exc:
            raise FerError(f"{self.backup_dir}: the epoch backup is damaged ({type(exc).__name__}); delete "
                           "that folder to train again (best.weights.h5 keeps the best epoch)") from None


class SwapEMAWeights(keras.callbacks.Callback):
    """With ``ema``: exchanges the weights and their moving average at the
    end of each epoch. One instance before Validation puts the average in
    for validation and the best checkpoint; one after BestKeeper swaps it
    back before the epoch backup, so training continues from the raw
    weights and a resume restores both. (Keras' own SwapEMAWeights leaves
    the average in until the next epoch begins, so the backup would store
    the two the wrong way round.)"""

    def on_epoch_end(self, epoch, logs=None):
        swap_ema_weights(self.model)


EMA_INTERNALS = ("_trainable_variables", "_model_variables_moving_average")
"""The Keras optimizer attributes that hold the weights and their moving average."""


def swap_ema_weights(model):
    """Exchange ``model``'s trainable weights with the optimizer's moving
    average of them (Keras keeps it in the optimizer when ``use_ema`` is set
    and writes it into the model only when ``fit`` ends)."""
    optimizer = getattr(model.optimizer, "inner_optimizer", model.optimizer)  # LossScaleOptimizer wraps it
    # Keras has no public handle on the average (its own SwapEMAWeights reaches in too), so an
    # optimizer without it (built without use_ema, or a Keras that renamed it) fails with one line.
    missing = [name for name in EMA_INTERNALS if not hasattr(optimizer, name)]
    if missing:
        raise FerError(f"ema: the {type(optimizer).__name__} optimizer has no {', '.join(missing)}: it was "
                       f"built without use_ema, or this Keras ({keras.__version__}) keeps its moving average "
                       f"elsewhere (fer_keras reads it as Keras 3.15 does)")
    for weight, average in zip(*(getattr(optimizer, name) for name in EMA_INTERNALS)):
        if average is not None:
            current = keras.ops.convert_to_numpy(weight)
            weight.assign(keras.ops.convert_to_numpy(average))
            average.assign(current)
