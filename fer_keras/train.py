"""The training engine every training script uses.

``train(TrainConfig(...))`` reads the training data (FER2013 by default, or
FER+, RAF-DB, AffectNet, CK+: :func:`load_training_data`), builds a
registered model (or starts from ``--init``, optionally with early layers
frozen), trains it with a tf.data pipeline (augmentation on batches,
prefetching), validates on PublicTest after every epoch, keeps the best
weights, and saves the best model as ``models/model_<i>.h5`` with its recipe,
dataset and scores inside the file.

A run folder holds everything needed to resume and to judge the run:
``config.json``, ``history.csv``, ``curves.png``, ``confusion_matrix.png``,
TensorBoard logs, the backup Keras restores from after an interruption, and
``summary.json``. Rerunning the same command continues where it stopped.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import shutil
import time
from pathlib import Path

import numpy as np

from fer_keras.constants import CLASS_NAMES_8, TRAIN_SPLIT, VALIDATION_SPLIT
from fer_keras.data import DATASETS, balanced, load_dataset
from fer_keras.errors import ConfigError, FerError, check_seed
from fer_keras.io_utils import write_json_atomic
from fer_keras.machine import machine_description, tensorflow_backend
from fer_keras.models import crop_margin


OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("cosine", "plateau", "onecycle")
DISTRIBUTE = ("none", "mirrored", "multiworker")
FERPLUS_MODES = ("majority", "probability")
CLASSIFIER_LAYER = "predictions_logits"
"""The final Dense of every registered model (``models.preprocessing.classifier``):
the one layer re-initialised when ``--init`` changes the number of classes."""

# Fields added after run folders already existed: left out of the run-folder
# hash while they hold their defaults, so older commands still resume.
_HASHED_ONLY_WHEN_SET = {"dataset": "fer2013", "ferplus_labels": "", "ferplus_mode": "majority",
                         "data_root": "", "num_classes": 7, "ckplus_fold": 0, "ckplus_folds": 10,
                         "freeze_layers": 0, "freeze_until": "", "teacher": "", "distill_alpha": 0.7,
                         "distill_temperature": 2.0, "ema": 0.0, "mixup": 0.0}


@dataclasses.dataclass
class TrainConfig:
    """Everything that defines a run. Written to ``config.json``; its hash names
    the default run folder, so the same command resumes the same run."""

    model: str = "vgg16"
    model_options: dict = dataclasses.field(default_factory=dict)
    csv: str = "data/fer2013.csv"
    epochs: int = 60
    batch_size: int = 128
    lr: float = 0.03
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    warmup_steps: int = 300
    label_smoothing: float = 0.1
    augment: str = "strong"
    mixup: float = 0.0  # Beta(alpha, alpha) of the mixup weight; 0 = off
    class_weight: str = "none"
    balanced_data: bool = False
    seed: int = 1
    precision: str = "auto"
    time_budget: float = 0.0  # minutes; 0 = no budget
    init: str = ""
    weights: str = ""  # local ImageNet weights for *_imagenet models
    snapshots: int = 0
    distribute: str = "none"
    deterministic: bool = False
    models_dir: str = "models"
    run_dir: str = ""
    save_format: str = ".h5"
    skip_bad_rows: bool = False
    clipnorm: float = 0.0
    ema: float = 0.0  # decay of the moving average of the weights that is validated and saved; 0 = off
    phases: list = dataclasses.field(default_factory=list)  # see train_vgg_transfer_learning.py
    # === Dataset (see load_training_data) ===
    dataset: str = "fer2013"
    ferplus_labels: str = ""  # fer2013new.csv; the faces come from ``csv``
    ferplus_mode: str = "majority"
    data_root: str = ""  # rafdb / affectnet / ckplus folder (affectnet: or a label .csv)
    num_classes: int = 7  # 8 = plus contempt (ferplus, affectnet, ckplus)
    ckplus_fold: int = 0
    ckplus_folds: int = 10
    # === Fine-tuning ===
    freeze_layers: int = 0  # freeze the first N layers that have weights
    freeze_until: str = ""  # ... or every layer with weights up to and including this one
    # === Distillation (see fer_keras.distill) ===
    teacher: str = ""  # a folder of members (or one file) whose soft predictions the student learns
    distill_alpha: float = 0.7  # weight of the teacher's probabilities in the target
    distill_temperature: float = 2.0  # > 1 flattens the teacher's probabilities

    def validate(self):
        checks = [
            (self.optimizer in OPTIMIZERS, f"--optimizer must be one of {', '.join(OPTIMIZERS)}"),
            (self.schedule in SCHEDULES, f"--schedule must be one of {', '.join(SCHEDULES)}"),
            (self.distribute in DISTRIBUTE, f"--distribute must be one of {', '.join(DISTRIBUTE)}"),
            (self.class_weight in ("none", "balanced"), "--class-weight must be none or balanced"),
            (self.epochs >= 1, "--epochs must be at least 1"),
            (self.batch_size >= 1, "--batch-size must be at least 1"),
            (self.lr > 0, "--lr must be positive"),
            (0 <= self.momentum <= 1, f"--momentum {self.momentum}: must be in [0, 1] (0.9 is usual)"),
            (self.weight_decay >= 0, f"--weight-decay {self.weight_decay}: must be >= 0 (0 = off)"),
            (self.clipnorm >= 0, f"--clipnorm {self.clipnorm}: must be >= 0 (0 = off)"),
            (self.warmup_steps >= 0, f"--warmup-steps {self.warmup_steps}: must be >= 0 (0 = no warm-up)"),
            (not Path(self.models_dir).exists() or Path(self.models_dir).is_dir(),
             f"--models-dir {self.models_dir}: is a file; the trained model is saved into a folder"),
            (self.time_budget >= 0, "--time-budget must be >= 0 minutes"),
            (self.snapshots >= 0, "--snapshots must be >= 0"),
            (0 <= self.ema < 1, "--ema must be in [0, 1) (0 = off; 0.999 averages about the last 1000 steps)"),
            (self.save_format in (".h5", ".keras"), "--save-format must be .h5 or .keras"),
            (0 <= self.label_smoothing < 1, "--label-smoothing must be in [0, 1)"),
            (self.mixup >= 0, "--mixup must be >= 0 (0 = off; 0.2 is the usual choice)"),
            (self.dataset in DATASETS, f"--dataset must be one of {', '.join(DATASETS)}"),
            (self.ferplus_mode in FERPLUS_MODES, f"--ferplus-mode must be one of {', '.join(FERPLUS_MODES)}"),
            (self.num_classes in (7, 8), "--num-classes must be 7 (FER2013 classes) or 8 (plus contempt)"),
            (self.freeze_layers >= 0, "--freeze-layers must be >= 0"),
            (not (self.freeze_layers and self.freeze_until), "give --freeze-layers or --freeze-until, not both"),
            (0 <= self.distill_alpha <= 1, "--distill-alpha must be in [0, 1]"),
            (self.distill_temperature > 0, "--distill-temperature must be positive"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        check_seed(self.seed)
        from fer_keras import augment, models, precision

        models.check_options(self.model, {**self.model_options, **({"weights": self.weights} if self.weights else {})})
        self._validate_dataset()
        if self.augment not in augment.LEVELS:
            raise ConfigError(f"--augment must be one of {', '.join(augment.LEVELS)}")
        if self.precision not in precision.POLICIES:
            raise ConfigError(f"--precision must be one of {', '.join(precision.POLICIES)}")
        return self

    def _validate_dataset(self):
        """What each --dataset needs, and the options it cannot take."""
        name = self.dataset
        if name == "fer2013" and self.num_classes != 7:
            raise ConfigError("--dataset fer2013 has 7 classes; --num-classes 8 needs ferplus, affectnet or ckplus")
        if name == "rafdb" and self.num_classes != 7:
            raise ConfigError("--dataset rafdb (RAF-DB basic) has 7 classes, no contempt; drop --num-classes 8")
        if name == "ferplus" and not self.ferplus_labels:
            raise ConfigError("--dataset ferplus needs --ferplus-labels FILE (fer2013new.csv) and --csv "
                              "(the original fer2013.csv the labels refer to, by row)")
        if name in ("rafdb", "affectnet", "ckplus") and not self.data_root:
            raise ConfigError(f"--dataset {name} needs --data-root DIR (see --help for the layout)")
        if name == "ckplus" and not (self.ckplus_folds >= 2 and 0 <= self.ckplus_fold < self.ckplus_folds):
            raise ConfigError(f"--ckplus-fold must be 0..{self.ckplus_folds - 1} and --ckplus-folds >= 2")
        if self.teacher:
            if not Path(self.teacher).exists():
                raise ConfigError(f"--teacher {self.teacher}: no such folder or model file")
            if self.soft_targets:
                raise ConfigError("--teacher replaces the targets; it cannot be combined with --ferplus-mode "
                                  "probability")
            if self.class_weight != "none":
                raise ConfigError("--class-weight balanced is not supported with --teacher (the targets are "
                                  "the teacher's probabilities, not one class per face)")
        if self.soft_targets:
            if self.class_weight != "none":
                raise ConfigError("--class-weight balanced is not supported with --ferplus-mode probability "
                                  "(soft targets have no single class per face to weight); use majority mode")
            if self.balanced_data:
                raise ConfigError("--balanced-data is not supported with --ferplus-mode probability "
                                  "(soft targets have no single class per face to balance); use majority mode")

    @property
    def soft_targets(self):
        """Whether this run trains on label distributions (FER+ probability mode)."""
        return self.dataset == "ferplus" and self.ferplus_mode == "probability"

    def fingerprint(self):
        """Short hash of what shapes the result (not where files go)."""
        keep = {k: v for k, v in dataclasses.asdict(self).items()
                if k not in ("models_dir", "run_dir", "time_budget")
                and not (k in _HASHED_ONLY_WHEN_SET and v == _HASHED_ONLY_WHEN_SET[k])}
        return hashlib.sha1(json.dumps(keep, sort_keys=True, default=str).encode()).hexdigest()[:8]

    def resolved_run_dir(self):
        return Path(self.run_dir or Path("runs") / f"{self.model}-{self.fingerprint()}")


# --------------------------------------------------------------------------
# Input pipeline
# --------------------------------------------------------------------------


def make_dataset(x, y, *, batch_size, num_classes, training, augment="none", mixup=0.0, seed=0,
                 crop_margin=0):
    """tf.data pipeline: uint8 faces → float batches, one target row per face.

    ``y``: integer labels (N,), one-hot encoded here, or soft targets
    (N, num_classes), e.g. FER+ vote distributions, used as they are.
    Training: cache the arrays, reshuffle every epoch, batch, then augment
    whole batches in parallel (and mix them with ``mixup`` > 0, after the
    targets are rows, so both are blended alike) and prefetch so the model
    never waits. ``crop_margin``: what ``augment="crop"`` shifts by (the
    pixels the model's central crop drops on each side).
    Under another Keras backend (JAX on a GPU machine without TensorFlow)
    the same batches come from :func:`array_batches` instead.
    """
    from fer_keras.augment import build_augmenter, build_mixer

    y = np.asarray(y)
    soft = y.ndim == 2
    if soft and y.shape[1] != num_classes:
        raise ConfigError(f"soft targets have {y.shape[1]} columns; the model has {num_classes} classes")
    augmenter = build_augmenter(augment, seed=seed, crop_margin=crop_margin) if training else None
    mixer = build_mixer(mixup, seed=seed) if training else None
    if not tensorflow_backend():
        return array_batches(x, y, batch_size=batch_size, num_classes=num_classes, training=training,
                            augmenter=augmenter, mixer=mixer, seed=seed)

    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((x, y.astype("float32" if soft else "int32")))
    if training:
        ds = ds.cache().shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=training)

    def to_float(images, labels):
        return tf.cast(images, "float32"), labels if soft else tf.one_hot(labels, num_classes)

    ds = ds.map(to_float, num_parallel_calls=tf.data.AUTOTUNE)
    if augmenter is not None:
        ds = ds.map(lambda im, lab: (augmenter(im, training=True), lab),
                    num_parallel_calls=tf.data.AUTOTUNE)
    if mixer is not None:
        ds = ds.map(lambda im, lab: _mix(mixer, im, lab), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def _mix(mixer, images, labels):
    """Keras' ``MixUp`` takes and returns a dict; both pipelines carry (images, targets) pairs."""
    mixed = mixer({"images": images, "labels": labels}, training=True)
    return mixed["images"], mixed["labels"]


def array_batches(x, y, *, batch_size, num_classes, training, augmenter=None, mixer=None, seed=0):
    """The batches :func:`make_dataset` gives, as a ``keras.utils.PyDataset``
    for backends without tf.data: reshuffled every epoch (seeded), whole
    batches augmented by the same Keras layers, which then run in the
    backend (on the GPU under JAX)."""
    import keras

    class _ArrayBatches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()
            self.rng = np.random.default_rng(seed)
            self.order = self.rng.permutation(len(x)) if training else np.arange(len(x))

        def __len__(self):
            return len(x) // batch_size if training else math.ceil(len(x) / batch_size)

        def __getitem__(self, index):
            rows = self.order[index * batch_size:(index + 1) * batch_size]
            images = x[rows].astype("float32")
            labels = y[rows].astype("float32") if y.ndim == 2 else np.eye(num_classes, dtype="float32")[y[rows]]
            if augmenter is not None:
                images = augmenter(images, training=True)
            if mixer is not None:
                images, labels = _mix(mixer, images, labels)
            return images, labels

        def on_epoch_end(self):
            if training:
                self.order = self.rng.permutation(len(x))

    return _ArrayBatches()


# --------------------------------------------------------------------------
# Callbacks
# --------------------------------------------------------------------------


def lr_at(step, *, peak, total_steps, warmup_steps, schedule, cycles=1):
    """Learning rate at optimizer step ``step`` (a pure function, easy to test).

    cosine: linear warm-up then cosine decay to 0 at ``total_steps``, restarting
    ``cycles`` times (snapshot ensembles). onecycle: linear ramp to ``peak`` over
    the first 30% then cosine down. plateau: warm-up then constant (the plateau
    callback lowers it).
    """
    total_steps = max(total_steps, 1)
    if schedule == "onecycle":
        ramp = max(int(0.3 * total_steps), 1)
        if step < ramp:
            return peak * (0.04 + 0.96 * step / ramp)
        t = min((step - ramp) / max(total_steps - ramp, 1), 1.0)
        return peak * 0.5 * (1 + math.cos(math.pi * t)) + 1e-6
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    if schedule == "plateau":
        return peak
    cycle_len = max(total_steps // max(cycles, 1), 1)
    if cycles > 1:
        t = (step % cycle_len) / cycle_len
    else:
        t = min((step - warmup_steps) / max(total_steps - warmup_steps, 1), 1.0)
    return peak * 0.5 * (1 + math.cos(math.pi * t))


GROW_WINDOW = 1 / 3
"""Share of the planned epochs during which a time-budget plan may still grow."""
RECENT_EPOCHS = 3
"""Epoch times an early plan looks at (the fastest of them): one slow epoch is noise."""
SHRINK_WINDOW = 8
"""Epoch times a late plan averages: these VMs slow down in stretches of two or
three epochs (43 s epochs took 82 s), and a median of three read such a stretch
as the new speed (a 50-min plan fell from 65 to 45 epochs on two slow ones;
the mean of eight keeps 56)."""


def plan_epochs(*, epochs_done, planned, max_epochs, epoch_seconds, seconds_left, may_grow=True):
    """How many epochs fit the time budget, re-planned after every epoch.

    The first epoch includes tracing, and a busy machine slows some epochs.
    Within the first ``GROW_WINDOW`` of the plan (and always for the first
    three epochs), while the cosine LR is still near its peak, the plan
    follows the fastest of the last three epochs, up or down, so that slow
    first epochs do not waste the rest of the budget: a first epoch that is
    mostly compilation (seen on a GPU: 197 s, then 28 s) must not shrink
    the plan so far that the window closes before a normal epoch is seen.
    After that it only shrinks, when the mean of the last ``SHRINK_WINDOW``
    epochs says the plan no longer fits: the mean is the expected epoch time
    when slow stretches come and go, and a lasting slowdown still moves it
    within a few epochs (the LR then jumps down, which is harmless; growing
    late would raise it mid-annealing). Snapshot runs never grow (their
    cycle ends are fixed).
    """

    def fits(seconds_per_epoch):
        return max(min(max_epochs, int(seconds_left // max(seconds_per_epoch, 1e-9)) + epochs_done),
                   epochs_done + 1)

    if may_grow and epochs_done <= max(GROW_WINDOW * planned, RECENT_EPOCHS):
        return fits(min(epoch_seconds[-RECENT_EPOCHS:]))
    return min(planned, fits(float(np.mean(epoch_seconds[-SHRINK_WINDOW:]))))


def _callbacks_module():
    import keras

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
            from fer_keras.metrics import classification_metrics, prediction_collapse

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
                # Keras starts the --ema average at the first step's (near random)
                # weights; their share decays as ema ** steps.
                first_step_share = self.ema ** int(self.model.optimizer.iterations.numpy()) if self.ema else 0.0
                if first_step_share > 0.1:
                    print(f"\nepoch {epoch + 1}: {share:.0%} of validation predictions are "
                          f"'{self.class_names[cls]}', as expected this early with --ema {self.ema:g}: "
                          f"the average is still {first_step_share:.0%} the first step's weights", flush=True)
                else:
                    warning = (f"epoch {epoch + 1}: {share:.0%} of validation predictions are "
                               f"'{self.class_names[cls]}' — the model has collapsed onto one class "
                               "(lower --lr, check labels/class weights)")
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
            from fer_keras.io_utils import atomic_path

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
            if self.budget and self.config.schedule != "plateau":
                previous = self.state["planned_epochs"]
                planned = plan_epochs(
                    epochs_done=epoch + 1, planned=previous, max_epochs=self.config.epochs,
                    epoch_seconds=self.state["epoch_seconds"], seconds_left=self.budget - self.state["train_seconds"],
                    may_grow=not self.config.snapshots)
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
        """With ``--ema``: exchanges the weights and their moving average at the
        end of each epoch. One instance before Validation puts the average in
        for validation and the best checkpoint; one after BestKeeper swaps it
        back before the epoch backup, so training continues from the raw
        weights and a resume restores both. (Keras' own SwapEMAWeights leaves
        the average in until the next epoch begins, so the backup would store
        the two the wrong way round.)"""

        def on_epoch_end(self, epoch, logs=None):
            swap_ema_weights(self.model)

    return LearningRateSchedule, Validation, BestKeeper, Budget, NaNGuard, SafeBackupAndRestore, SwapEMAWeights


def swap_ema_weights(model):
    """Exchange ``model``'s trainable weights with the optimizer's moving
    average of them (Keras keeps it in the optimizer when ``use_ema`` is set
    and writes it into the model only when ``fit`` ends)."""
    from keras import ops

    optimizer = getattr(model.optimizer, "inner_optimizer", model.optimizer)  # LossScaleOptimizer wraps it
    for weight, average in zip(optimizer._trainable_variables, optimizer._model_variables_moving_average):
        if average is not None:
            current = ops.convert_to_numpy(weight)
            weight.assign(ops.convert_to_numpy(average))
            average.assign(current)


# --------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------


def make_optimizer(config):
    import keras

    extra = {"clipnorm": config.clipnorm} if config.clipnorm else {}
    if config.ema:
        extra.update(use_ema=True, ema_momentum=config.ema)
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(config.lr, momentum=config.momentum, nesterov=True,
                                    weight_decay=config.weight_decay or None, **extra)
    if config.optimizer == "adam":
        return keras.optimizers.Adam(config.lr, **extra)
    return keras.optimizers.AdamW(config.lr, weight_decay=config.weight_decay or 0.0, **extra)


def _strategy(config):
    if not tensorflow_backend():
        if config.distribute != "none":
            raise ConfigError(f"--distribute {config.distribute} needs the TensorFlow backend")
        return _NoStrategy()
    import tensorflow as tf

    if config.distribute == "mirrored":
        return tf.distribute.MirroredStrategy()
    if config.distribute == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


class _NoStrategy:
    """``strategy.scope()`` for backends without tf.distribute: one device, nothing to set up."""

    def scope(self):
        import contextlib

        return contextlib.nullcontext()


# --------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------


def load_training_data(config):
    """The dataset ``config`` names (``--dataset``), as a FERDataset whose
    ``class_names`` has ``config.num_classes`` names; Training trains and
    PublicTest validates (RAF-DB test, AffectNet val and the CK+ held-out fold
    are read as PublicTest). See :func:`load_dataset`; ``--skip-bad-rows``
    skips bad CSV rows and missing/unreadable images with a warning.
    """
    return load_dataset(config.dataset, csv=config.csv, ferplus_labels=config.ferplus_labels,
                        ferplus_mode=config.ferplus_mode, data_root=config.data_root,
                        num_classes=config.num_classes, ckplus_fold=config.ckplus_fold,
                        ckplus_folds=config.ckplus_folds, on_bad="skip" if config.skip_bad_rows else "error")


def dataset_metadata(config, dataset):
    """The ``dataset`` entry of a saved model's metadata: which data, which file(s), checksum."""
    files = {"fer2013": config.csv, "ferplus": config.ferplus_labels}.get(config.dataset, config.data_root)
    meta = {"name": config.dataset, "file": Path(files).name, "sha256": dataset.checksum,
            "num_classes": len(dataset.class_names), "targets": "soft" if config.soft_targets else "hard"}
    if config.dataset == "ferplus":
        meta.update(mode=config.ferplus_mode, faces_file=Path(config.csv).name)
    if config.dataset == "ckplus":
        meta.update(fold=config.ckplus_fold, folds=config.ckplus_folds)
    dropped = getattr(dataset, "dropped", None)
    if dropped:
        meta["dropped"] = dict(dropped)
    return meta


# --------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------


def check_crop_recipe(config, model):
    """``--augment crop`` shifts faces for the model's central crop: a model without one cannot use it."""
    if config.augment == "crop" and not crop_margin(model):
        raise ConfigError(f"--augment crop needs a model that crops its input: add -o crop=44 "
                          f"(or 40..46) to --model {config.model}")


def build_model(config, num_classes):
    """The model to train: registered by name, or initialised from ``--init``;
    then ``--freeze-layers`` / ``--freeze-until`` freeze its early layers."""
    model = _build_or_init(config, num_classes)
    freeze_early_layers(model, layers=config.freeze_layers, until=config.freeze_until)
    return model


def _build_or_init(config, num_classes):
    from fer_keras import models
    from fer_keras.models import model_io

    options = dict(config.model_options)
    if config.weights:
        options["weights"] = config.weights
    if not config.init:
        return models.build(config.model, num_classes=num_classes, **options)
    source = model_io.load_model(config.init)
    meta = source.fer_metadata
    if not meta.get("architecture"):
        raise ConfigError(f"--init {config.init}: the file has no fer_keras metadata (architecture unknown)")
    if meta["architecture"] != config.model:
        print(f"--init: training {meta['architecture']} (from the file), not {config.model}")
        config.model = meta["architecture"]
    options = {**meta.get("options", {}), **config.model_options}
    if "weights" in options:
        options["weights"] = None  # the file's weights replace ImageNet's
    model = models.build(meta["architecture"], num_classes=num_classes, **options)
    source_classes = int(source.outputs[0].shape[-1])
    if source_classes == num_classes:
        try:
            model.set_weights(source.get_weights())
        except ValueError as exc:
            raise ConfigError(f"--init {config.init}: weights do not fit ({exc})") from None
        return model
    copied = copy_weights_except_classifier(source, model, what=f"--init {config.init}")
    print(f"--init: {Path(config.init).name} has {source_classes} classes, this run {num_classes}: copied the "
          f"weights of {copied} layers; the classifier ({CLASSIFIER_LAYER}) starts from a fresh initialisation")
    return model


# What a started-from file contributes to the card of the model fine-tuned from it.
LINEAGE_KEYS = ("architecture", "recipe", "epochs_run", "best_epoch", "train_seconds", "machine", "validation",
                "init_from")


def init_lineage(path):
    """Where an ``--init`` run started: the file (name, sha256) and how it was made.

    The run's own recipe covers only its last stage; without this a card would
    show a 25-minute fine-tune as the whole recipe, and a reader could not tell
    which file (or which version of ``model_4.h5``) to start from. Nested
    ``init_from`` keeps a chain of fine-tunes complete.
    """
    from fer_keras.models import model_io

    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    meta = model_io.read_metadata(path)
    return {"file": Path(path).name, "path": str(path), "sha256": digest.hexdigest(),
            **{key: meta[key] for key in LINEAGE_KEYS if key in meta}}


def copy_weights_except_classifier(source, target, *, what="--init"):
    """Copy every layer's weights from ``source`` into ``target`` (same
    architecture, layer by layer in order) except the final classifier Dense
    (``predictions_logits``), which keeps ``target``'s fresh initialisation.
    Returns the number of layers copied; ConfigError when the models differ."""
    if len(source.layers) != len(target.layers):
        raise ConfigError(f"{what}: the file's model has {len(source.layers)} layers, this one "
                          f"{len(target.layers)}; options must match to copy weights")
    names = [layer.name for layer in target.layers]
    if CLASSIFIER_LAYER not in names:
        raise ConfigError(f"{what}: no {CLASSIFIER_LAYER!r} layer to replace; the number of classes can only "
                          "change for models built by fer_keras")
    copied = 0
    for src, dst in zip(source.layers, target.layers):
        if dst.name == CLASSIFIER_LAYER or not dst.weights:
            continue
        weights = src.get_weights()
        shapes = [tuple(w.shape) for w in weights]
        wanted = [tuple(w.shape) for w in dst.weights]
        if shapes != wanted:
            raise ConfigError(f"{what}: layer {dst.name!r} has weights {wanted} here but {shapes} in the file; "
                              "options must match to copy weights")
        dst.set_weights(weights)
        copied += 1
    return copied


def freeze_early_layers(model, *, layers=0, until=""):
    """Freeze the first ``layers`` layers that have weights, or every layer
    with weights up to and including the one named ``until``. Returns the
    frozen layers' names (frozen BatchNormalization layers run in inference
    mode, as fine-tuning wants)."""
    if not layers and not until:
        return []
    weighted = [layer for layer in model.layers if layer.weights]
    if until:
        names = [layer.name for layer in weighted]
        if until not in names:
            shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
            raise ConfigError(f"--freeze-until {until!r}: no layer with weights of that name ({shown})")
        layers = names.index(until) + 1
    if layers >= len(weighted):
        raise ConfigError(f"--freeze-layers {layers}: the model has {len(weighted)} layers with weights; "
                          "freezing all of them would leave nothing to train")
    frozen = weighted[:layers]
    for layer in frozen:
        layer.trainable = False
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    print(f"froze {len(frozen)} layer(s) ({frozen[0].name} ... {frozen[-1].name}); "
          f"{trainable:,} trainable parameters left")
    return [layer.name for layer in frozen]


def train(config, *, verbose=1):
    """Run one training job; returns the summary dict (also in summary.json).

    Keras' dtype policy is global: it is restored afterwards, even on failure,
    so models built later in the same process compute in float32 again.

    Some mistakes only show once the data is read or the model is built (an
    option value, a batch larger than the split). When such an error stops a
    run before its first epoch, the run folder this call made is removed, so
    a corrected command does not find a folder holding only config.json.
    """
    import keras

    run_dir = config.resolved_run_dir()
    made_run_dir = not run_dir.exists()
    previous_policy = keras.mixed_precision.global_policy()
    try:
        return _train(config, verbose=verbose)
    except FerError:
        if made_run_dir and not (run_dir / "state.json").exists():
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)


def _train(config, *, verbose):
    import keras

    from fer_keras import plots, precision
    from fer_keras.models import model_io
    from fer_keras.metrics import classification_metrics, prediction_collapse

    config.validate()
    # MultiWorkerMirroredStrategy must exist before TensorFlow runs anything else.
    strategy = _strategy(config)
    run_dir = config.resolved_run_dir()
    models_dir = config.models_dir
    if config.distribute == "multiworker":
        from fer_keras.distributed import worker_role

        _, index, is_chief = worker_role()
        if not is_chief:  # workers keep their own logs; only the chief saves the model
            run_dir = run_dir / f"worker_{index}"
            models_dir = str(run_dir / "models")
        if config.class_weight != "none":
            raise ConfigError("--class-weight is not supported with --distribute multiworker")
    summary_file = run_dir / "summary.json"
    if summary_file.exists():
        done = json.loads(summary_file.read_text())
        raise FerError(f"{run_dir} holds a finished run (model: {done.get('model_file')}); "
                       "choose another --run-dir (or --seed) to train again")
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(run_dir / "config.json", dataclasses.asdict(config))

    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        if not tensorflow_backend():
            raise ConfigError("--deterministic needs the TensorFlow backend")
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    policy = precision.set_policy(config.precision)

    dataset = load_training_data(config)
    class_names = tuple(dataset.class_names)
    num_classes = len(class_names)
    if num_classes != config.num_classes:
        raise ConfigError(f"--dataset {config.dataset} gave {num_classes} classes, not --num-classes "
                          f"{config.num_classes}")
    train_split = dataset[TRAIN_SPLIT]
    val_name = VALIDATION_SPLIT if VALIDATION_SPLIT in dataset else None
    if val_name is None:
        raise FerError(f"{dataset.source}: no {VALIDATION_SPLIT} split to validate on")
    val_split = dataset[val_name]
    if config.balanced_data:
        train_split = balanced(train_split, seed=config.seed, num_classes=num_classes)
    # Soft targets (FER+ probability mode) are the loss target; hard labels are one-hot encoded.
    train_targets = train_split.soft if config.soft_targets else train_split.y
    teacher_info = None
    if config.teacher:
        from fer_keras import distill

        teacher_probs, teacher_info = distill.teacher_probabilities(
            config.teacher, train_split.x, class_names=class_names, cache_dir=run_dir, verbose=verbose)
        train_targets = distill.distillation_targets(
            teacher_probs, train_split.y, alpha=config.distill_alpha, temperature=config.distill_temperature,
            num_classes=num_classes)
        teacher_info["training_agreement"] = float(np.mean(teacher_probs.argmax(1) == train_split.y))
    class_weight = None
    if config.class_weight == "balanced":
        counts = np.maximum(train_split.class_counts(num_classes), 1)
        class_weight = {i: float(len(train_split) / (num_classes * c)) for i, c in enumerate(counts)}

    steps_per_epoch = len(train_split) // config.batch_size
    if steps_per_epoch == 0:
        raise ConfigError(f"--batch-size {config.batch_size} is larger than the training split ({len(train_split)} faces)")

    state_file = run_dir / "state.json"
    state = json.loads(state_file.read_text()) if state_file.exists() else {"planned_epochs": config.epochs}
    resumed = state_file.exists()
    # A run killed after its last epoch but before the model was saved: Keras
    # has already deleted its backup, so fit() would start again from epoch 0.
    finished = resumed and (run_dir / "best.weights.h5").exists() and (
        state.get("epochs_done", 0) >= state.get("planned_epochs", config.epochs)
        or state.get("stopped_by_budget") or "nan_at" in state)
    if not finished:
        state.pop("nan_at", None)

    with strategy.scope():
        model = build_model(config, num_classes)
        model.fer_metadata["class_names"] = list(class_names)
        model.compile(
            optimizer=make_optimizer(config),
            loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
            metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
        )
    check_crop_recipe(config, model)
    train_ds = make_dataset(train_split.x, train_targets, batch_size=config.batch_size,
                            num_classes=num_classes, training=True, augment=config.augment, mixup=config.mixup,
                            seed=config.seed, crop_margin=crop_margin(model))

    LearningRateSchedule, Validation, BestKeeper, Budget, NaNGuard, SafeBackupAndRestore, SwapEMAWeights = (
        _callbacks_module())
    snapshot_epochs = ()
    if config.snapshots > 1:
        cycle = config.epochs // config.snapshots
        snapshot_epochs = tuple(cycle * (k + 1) for k in range(config.snapshots))
    callbacks = [
        NaNGuard(state),
        LearningRateSchedule(config, steps_per_epoch, state),
        *([SwapEMAWeights()] if config.ema else []),  # the average is validated and kept ...
        Validation(val_split.x, val_split.y, num_classes, 256, state, class_names, ema=config.ema),
        BestKeeper(run_dir, state, snapshot_epochs),
        *([SwapEMAWeights()] if config.ema else []),  # ... and the raw weights go on training
        keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=True),
        SafeBackupAndRestore(str(run_dir / "backup"), double_checkpoint=True),
        Budget(config, state, run_dir),
    ]
    if tensorflow_backend():  # Keras writes TensorBoard logs through tf.summary
        callbacks.append(keras.callbacks.TensorBoard(str(run_dir / "tensorboard"), profile_batch=0))
    if config.schedule == "plateau":
        callbacks.append(keras.callbacks.ReduceLROnPlateau(monitor="val_accuracy", mode="max",
                                                           factor=0.5, patience=3, min_lr=1e-5))

    print(f"fer_keras train: {config.model} ({model.count_params():,} parameters), {policy}, "
          f"{len(train_split)} training / {len(val_split)} {val_name} faces")
    if config.dataset != "fer2013" or num_classes != 7:
        targets = "soft (vote distributions)" if config.soft_targets else "hard labels"
        print(f"data: {config.dataset}, {num_classes} classes, {targets}: {dataset.source}")
    print(f"machine: {machine_description()}")
    print(f"run folder: {run_dir}{' (resuming)' if resumed else ''}", flush=True)

    started = time.monotonic()
    try:
        if finished:
            print("all planned epochs were done before the interruption: saving the best model")
        elif config.distribute == "multiworker":
            from fer_keras.distributed import fit_custom_loop

            fit_custom_loop(model, train_ds, strategy=strategy, epochs=config.epochs,
                            steps_per_epoch=steps_per_epoch, callbacks=callbacks,
                            label_smoothing=config.label_smoothing, global_batch_size=config.batch_size,
                            verbose=verbose)
        else:
            model.fit(train_ds, epochs=config.epochs, steps_per_epoch=steps_per_epoch, callbacks=callbacks,
                      class_weight=class_weight, verbose=verbose, shuffle=False)
    except KeyboardInterrupt:
        print("\ninterrupted: rerun the same command to resume from the last finished epoch")
        raise
    wall = time.monotonic() - started

    nan_at = state.pop("nan_at", None)
    if nan_at is not None:
        print(f"\n!!! the loss became NaN/inf at epoch {nan_at[0]}, batch {nan_at[1]}: training stopped "
              "(lower --lr or add --clipnorm)", flush=True)
    best_weights = run_dir / "best.weights.h5"
    if not best_weights.exists():
        why = "the loss became NaN/inf in the first epoch (lower --lr)" if nan_at is not None else "no epoch finished"
        raise FerError(f"training produced no model: {why}")
    model.load_weights(best_weights)
    # Score and save the same float32 copy: the file's figures are what it
    # does, not the mixed-precision model's (bf16 moves a few faces either way).
    shipped = model_io.as_float32(model)
    probs = shipped.predict(val_split.x, batch_size=256, verbose=0)
    val_metrics = classification_metrics(val_split.y, probs, class_names)
    collapse = prediction_collapse(probs)

    history = _read_history(run_dir / "history.csv")
    plots.save_figure(plots.curves_figure(history), run_dir / "curves.png")
    plots.save_figure(plots.confusion_figure(val_metrics["confusion_matrix"], class_names,
                                               title=f"{config.model} on {val_name}"),
                       run_dir / "confusion_matrix.png")

    recipe = {k: v for k, v in dataclasses.asdict(config).items() if k not in ("models_dir", "run_dir")}
    metadata = {
        "recipe": recipe,
        "precision_trained": policy,
        "epochs_run": state.get("epochs_done", 0),
        "best_epoch": state.get("best_epoch"),
        "train_seconds": round(state.get("train_seconds", wall), 1),
        "machine": machine_description(),
        "class_names": list(class_names),
        "dataset": {**dataset_metadata(config, dataset), "train_split": TRAIN_SPLIT, "validation_split": val_name},
        "validation": {"split": val_name, "accuracy": val_metrics["accuracy"],
                       "macro_f1": val_metrics["macro_f1"]},
    }
    if teacher_info is not None:
        metadata["teacher"] = teacher_info
    if config.init:
        metadata["init_from"] = init_lineage(config.init)
    written = []
    model_file = model_io.save_new_model(shipped, models_dir, metadata, suffix=config.save_format)
    written.append(str(model_file))
    for epoch in state.get("snapshots", []):
        model.load_weights(run_dir / f"snapshot_{epoch}.weights.h5")
        snapshot = model_io.as_float32(model)
        snap_probs = snapshot.predict(val_split.x, batch_size=256, verbose=0)
        snap_metrics = classification_metrics(val_split.y, snap_probs, class_names)
        snap_meta = {**metadata, "snapshot_epoch": epoch,
                     "validation": {"split": val_name, "accuracy": snap_metrics["accuracy"],
                                    "macro_f1": snap_metrics["macro_f1"]}}
        written.append(str(model_io.save_new_model(snapshot, models_dir, snap_meta, suffix=config.save_format)))

    summary = {
        "model_file": written[0],
        "snapshot_files": written[1:],
        "architecture": config.model,
        "parameters": int(model.count_params()),
        "precision": policy,
        "epochs_run": state.get("epochs_done", 0),
        "best_epoch": state.get("best_epoch"),
        "stopped_by_budget": bool(state.get("stopped_by_budget")),
        "stopped_by_nan": nan_at is not None,
        "train_minutes": round(state.get("train_seconds", wall) / 60, 1),
        "validation": {k: val_metrics[k] for k in ("accuracy", "macro_f1", "weighted_f1")},
        "per_class_f1": {k: v["f1"] for k, v in val_metrics["per_class"].items()},
        "collapsed_onto": class_names[collapse[0]] if collapse else None,
        "dataset": config.dataset,
        "num_classes": num_classes,
        "frozen_layers": sum(1 for layer in model.layers if layer.weights and not layer.trainable),
        "warnings": state.get("warnings", []),
        "machine": machine_description(),
    }
    write_json_atomic(summary_file, summary)
    _print_summary(summary, val_name)
    return summary


def _read_history(path):
    import csv

    history = {}
    if path.exists():
        with open(path, newline="") as fh:
            for row in csv.DictReader(fh):
                for key, value in row.items():
                    try:
                        history.setdefault(key, []).append(float(value))
                    except (TypeError, ValueError):  # e.g. "NA" for a NaN epoch: keep rows aligned
                        history.setdefault(key, []).append(float("nan"))
    return history


def _print_summary(summary, val_name):
    v = summary["validation"]
    lines = [
        "",
        "=" * 64,
        f" {summary['architecture']}  →  {summary['model_file']}",
        f" {val_name}: accuracy {v['accuracy']:.2%}   macro-F1 {v['macro_f1']:.3f}   weighted-F1 {v['weighted_f1']:.3f}",
        " per-class F1: " + "  ".join(f"{k} {f:.2f}" for k, f in summary["per_class_f1"].items()),
        f" epochs {summary['epochs_run']} (best {summary['best_epoch']}), {summary['train_minutes']} min, "
        f"{summary['precision']}, {summary['parameters']:,} parameters",
        f" machine: {summary['machine']}",
    ]
    if summary["stopped_by_budget"]:
        lines.append(" stopped at the --time-budget; the best epoch was kept")
    if summary["stopped_by_nan"]:
        lines.append(" !!! the loss became NaN/inf: training stopped; the last good best model was kept")
    if summary["collapsed_onto"]:
        lines.append(f" !!! WARNING: predictions collapsed onto '{summary['collapsed_onto']}'")
    for snap in summary["snapshot_files"]:
        lines.append(f" snapshot member: {snap}")
    lines.append("=" * 64)
    print("\n".join(lines), flush=True)


def train_two_phase(config, *, head_epochs=5, head_lr=1e-3, unfreeze_blocks=1, verbose=1):
    """Transfer learning for ``*_imagenet`` models, in two phases.

    Phase 1 trains only the new head on the frozen ImageNet base (a high LR
    would wreck the pretrained filters through a random head's gradients).
    Phase 2 starts from phase 1's best model, unfreezes the top
    ``unfreeze_blocks`` conv block(s) and trains at ``config.lr`` (lower).
    Only phase 2's model lands in ``config.models_dir``; a time budget is
    shared in proportion to the epochs of each phase.
    """
    run_dir = config.resolved_run_dir()
    share = head_epochs / (head_epochs + config.epochs)
    phase1 = dataclasses.replace(
        config, epochs=head_epochs, lr=head_lr, snapshots=0, schedule="cosine",
        model_options={**config.model_options, "trainable_blocks": 0},
        models_dir=str(run_dir / "phase1_model"), run_dir=str(run_dir / "phase1"),
        time_budget=config.time_budget * share)
    done = phase1.resolved_run_dir() / "summary.json"
    if done.exists():  # resuming after phase 1 finished
        head_model = json.loads(done.read_text())["model_file"]
        print(f"phase 1 already done: {head_model}")
    else:
        print(f"phase 1: training the new head on the frozen base ({head_epochs} epochs, lr {head_lr})")
        head_model = train(phase1, verbose=verbose)["model_file"]
    phase2 = dataclasses.replace(
        config, init=head_model, weights="",
        model_options={**config.model_options, "trainable_blocks": unfreeze_blocks},
        run_dir=str(run_dir / "phase2"), time_budget=config.time_budget * (1 - share))
    print(f"phase 2: fine-tuning the top {unfreeze_blocks} block(s) ({config.epochs} epochs, lr {config.lr})")
    return train(phase2, verbose=verbose)
