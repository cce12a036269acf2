"""The training engine every training script uses: :func:`train`, one run cut into named steps.

``train(TrainConfig(...))`` (or ``train(model="vgg16", csv=...)``) reads the
training data (FER2013 by default, or FER+, RAF-DB, AffectNet, CK+:
:func:`load_training_data`), builds a registered model (or starts from
``init``, optionally with early layers frozen), trains it with a tf.data
pipeline (augmentation on batches, prefetching), validates on PublicTest after
every epoch, keeps the best weights, and saves the best model as
``models/model_<i>.h5`` with its recipe, dataset and scores inside the file.

A run folder holds everything needed to resume and to judge the run:
``config.json``, ``history.csv``, ``curves.png``, ``confusion_matrix.png``,
TensorBoard logs, the backup Keras restores from after an interruption, and
``summary.json``. Rerunning the same command continues where it stopped.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
import time
from pathlib import Path

import numpy as np

from fer_keras import models, plots
from fer_keras.constants import TRAIN_SPLIT, VALIDATION_SPLIT
from fer_keras.data import balanced, load_dataset
from fer_keras.errors import ConfigError, FerError
from fer_keras.io_utils import write_json_atomic
from fer_keras.machine import machine_description, tensorflow_backend
from fer_keras.metrics import classification_metrics, prediction_collapse
from fer_keras.models import model_io
from fer_keras.training import distill, precision
from fer_keras.training.callbacks import (BestKeeper, Budget, LearningRateSchedule, NaNGuard, SafeBackupAndRestore,
                                          SwapEMAWeights, Validation)
from fer_keras.training.config import TrainConfig
from fer_keras.training.distributed import fit_custom_loop, make_strategy, worker_role
from fer_keras.training.pipeline import check_crop_recipe, make_dataset
from fer_keras.training.schedule import snapshot_epochs
from fer_keras.training.transfer import build_model, check_phases, fine_tune_phase, head_phase, init_lineage


def train(config=None, *, verbose=1, **options):
    """Run one training job; returns the summary dict (also in summary.json).

    ``config``: a :class:`TrainConfig`; ``options`` set (or override) its
    fields, so ``train(model="mini_xception", csv="data/fer2013.csv",
    epochs=5)`` is a whole run. ``verbose`` follows Keras (1: progress bars,
    2: one line per epoch, 0: silent).

    Keras' dtype policy is global: it is restored afterwards, even on failure,
    so models built later in the same process compute in float32 again.

    Some mistakes only show once the data is read or the model is built (an
    option value, a batch larger than the split). When such an error stops a
    run before its first epoch, the run folder this call made is removed, so
    a corrected command does not find a folder holding only config.json.
    """
    import keras

    if config is None:
        config = TrainConfig(**options)
    elif options:
        config = dataclasses.replace(config, **options)
    run_dir = config.resolved_run_dir()
    made_run_dir = not run_dir.exists()
    previous_policy = keras.mixed_precision.global_policy()
    try:
        return _run(config, verbose=verbose)
    except FerError:
        if made_run_dir and not (run_dir / "state.json").exists():
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)


def train_two_phase(config, *, head_epochs=5, head_lr=1e-3, unfreeze_blocks=1, verbose=1):
    """Transfer learning for ``*_imagenet`` models: the head on the frozen base, then fine-tuning.

    The two runs are :func:`~fer_keras.training.transfer.head_phase` and
    :func:`~fer_keras.training.transfer.fine_tune_phase`; a rerun after phase 1
    finished goes straight to phase 2. Only phase 2's model lands in
    ``config.models_dir``.
    """
    check_phases(head_epochs=head_epochs, head_lr=head_lr, unfreeze_blocks=unfreeze_blocks,
                 blocks=len(models.vgg.VGG16_BLOCKS))
    config.validate()
    phase1 = head_phase(config, head_epochs=head_epochs, head_lr=head_lr)
    done = phase1.resolved_run_dir() / "summary.json"
    if done.exists():  # resuming after phase 1 finished
        head_model = json.loads(done.read_text())["model_file"]
        print(f"phase 1 already done: {head_model}")
    else:
        print(f"phase 1: training the new head on the frozen base ({head_epochs} epochs, lr {head_lr})")
        head_model = train(phase1, verbose=verbose)["model_file"]
    phase2 = fine_tune_phase(config, head_model, head_epochs=head_epochs, head_lr=head_lr,
                             unfreeze_blocks=unfreeze_blocks)
    print(f"phase 2: fine-tuning the top {unfreeze_blocks} block(s) ({config.epochs} epochs, lr {config.lr})")
    return train(phase2, verbose=verbose)


def _run(config, *, verbose):
    """One run, step by step; each step below does one job."""
    import keras

    config.validate()
    # MultiWorkerMirroredStrategy must exist before TensorFlow runs anything else.
    strategy = make_strategy(config)
    run_dir, models_dir = _start_run_folder(config)
    keras.utils.set_random_seed(config.seed)
    _set_determinism(config)
    policy = precision.set_policy(config.precision)

    dataset, train_split, val_split = _read_data(config)
    class_names = tuple(dataset.class_names)
    targets, teacher_info = _targets(config, train_split, class_names, run_dir, verbose)
    class_weight = _class_weight(config, train_split, len(class_names))
    steps_per_epoch = len(train_split) // config.batch_size
    if steps_per_epoch == 0:
        raise ConfigError(f"batch_size must be at most the training split's {len(train_split)} faces. "
                          f"Received: batch_size={config.batch_size}", parameter="batch_size")
    state, resumed, finished = _resume_state(config, run_dir)

    model = _compiled_model(config, strategy, class_names)
    check_crop_recipe(config, model)
    train_ds = make_dataset(train_split.x, targets, batch_size=config.batch_size, num_classes=len(class_names),
                            training=True, augment=config.augment, mixup=config.mixup, seed=config.seed,
                            crop_margin=models.crop_margin(model), zoom=config.zoom)
    callbacks = _callbacks(config, run_dir, state, steps_per_epoch, val_split, class_names)
    _announce(config, model, policy, dataset, train_split, val_split, run_dir, resumed)
    wall = _fit(config, model, train_ds, strategy, steps_per_epoch, callbacks, class_weight, finished, verbose)
    return _finish(config, model, dataset, val_split, class_names, state, policy, wall, run_dir, models_dir,
                   teacher_info)


# === Before the first epoch ===


def _start_run_folder(config):
    """``(run folder, models folder)``; the run folder made, holding config.json. A finished run is refused."""
    run_dir = config.resolved_run_dir()
    models_dir = config.models_dir
    if config.distribute == "multiworker":
        _, index, is_chief = worker_role()
        if not is_chief:  # workers keep their own logs; only the chief saves the model
            run_dir = run_dir / f"worker_{index}"
            models_dir = str(run_dir / "models")
        if config.class_weight != "none":
            raise ConfigError("class_weight is not supported with distribute='multiworker'", parameter="class_weight")
    summary_file = run_dir / "summary.json"
    if summary_file.exists():
        done = json.loads(summary_file.read_text())
        raise FerError(f"{run_dir} holds a finished run (model: {done.get('model_file')}); "
                       "choose another run_dir (or seed) to train again", parameter="run_dir")
    _refuse_another_runs_folder(config, run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(run_dir / "config.json", dataclasses.asdict(config))
    return run_dir, models_dir


def _refuse_another_runs_folder(config, run_dir):
    """FerError when ``run_dir`` holds files but not a run of these options.

    Why: a run resumes whatever state its folder holds. The default folder is
    named by the options' hash, so it can only hold the same run; a folder
    named by hand could hold a run of another learning rate or model (whose
    weights and epoch count would be taken over, and whose recipe the saved
    file would misreport) or a user's own files (which config.json, curves.png
    and summary.json would replace)."""
    # A multi-worker run's workers keep their logs in worker_<i>/ inside the chief's folder, and may make it first.
    if not run_dir.is_dir() or all(p.name.startswith("worker_") for p in run_dir.iterdir()):
        return
    config_file = run_dir / "config.json"
    try:
        options = json.loads(config_file.read_text())
    except FileNotFoundError:
        raise FerError(f"{run_dir} is not empty and holds no config.json, so it is not a training run's folder; "
                       "choose a new or empty run_dir", parameter="run_dir") from None
    except (OSError, ValueError) as exc:
        raise FerError(f"{config_file}: cannot be read as a run's options ({exc}); choose another run_dir",
                       parameter="run_dir") from None
    changed = config.differences(options) if isinstance(options, dict) else ["(not a JSON object)"]
    if changed:
        shown = ", ".join(changed[:4]) + (f" and {len(changed) - 4} more" if len(changed) > 4 else "")
        raise FerError(f"{run_dir} holds a run of other options ({shown} differ), which this run would take over; "
                       "choose another run_dir, or leave it out to get a folder of these options",
                       parameter="run_dir")


def _set_determinism(config):
    """``config.deterministic``: TensorFlow's deterministic kernels (slower)."""
    if config.deterministic:
        if not tensorflow_backend():
            raise ConfigError("deterministic=True needs the TensorFlow backend", parameter="deterministic")
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


def load_training_data(config):
    """The dataset ``config`` names (``config.dataset``), as a FERDataset whose
    ``class_names`` has ``config.num_classes`` names; Training trains and
    PublicTest validates (RAF-DB test, AffectNet val and the CK+ held-out fold
    are read as PublicTest). See :func:`~fer_keras.data.load_dataset`;
    ``config.skip_bad_rows`` skips bad CSV rows and missing/unreadable images with a warning.
    """
    return load_dataset(config.dataset, csv=config.csv, ferplus_labels=config.ferplus_labels,
                        ferplus_mode=config.ferplus_mode, data_root=config.data_root,
                        num_classes=config.num_classes, ckplus_fold=config.ckplus_fold,
                        ckplus_folds=config.ckplus_folds, on_bad="skip" if config.skip_bad_rows else "error")


def _read_data(config):
    """``(dataset, training split, validation split)``; the training split balanced with ``config.balanced_data``."""
    dataset = load_training_data(config)
    num_classes = len(dataset.class_names)
    if num_classes != config.num_classes:
        raise ConfigError(f"dataset {config.dataset!r} gave {num_classes} classes. Received: "
                          f"num_classes={config.num_classes}", parameter="num_classes")
    train_split = dataset[TRAIN_SPLIT]
    if VALIDATION_SPLIT not in dataset:
        raise FerError(f"{dataset.source}: no {VALIDATION_SPLIT} split to validate on")
    val_split = dataset[VALIDATION_SPLIT]
    if config.balanced_data:
        train_split = balanced(train_split, seed=config.seed, num_classes=num_classes)
    return dataset, train_split, val_split


def _targets(config, train_split, class_names, run_dir, verbose):
    """``(targets, teacher info or None)``: what the loss compares the model with.

    Soft targets (FER+ probability mode) are used as they are; hard labels are
    one-hot encoded by the pipeline; with ``config.teacher`` the targets mix the
    teacher ensemble's softened probabilities with the labels (:mod:`~fer_keras.training.distill`).
    """
    targets = train_split.soft if config.soft_targets else train_split.y
    if not config.teacher:
        return targets, None
    teacher_probs, teacher_info = distill.teacher_probabilities(
        config.teacher, train_split.x, class_names=class_names, cache_dir=run_dir, verbose=verbose)
    targets = distill.distillation_targets(
        teacher_probs, train_split.y, alpha=config.distill_alpha, temperature=config.distill_temperature,
        num_classes=len(class_names))
    teacher_info["training_agreement"] = float(np.mean(teacher_probs.argmax(1) == train_split.y))
    return targets, teacher_info


def _class_weight(config, train_split, num_classes):
    """``class_weight="balanced"``: each class weighted by its inverse frequency; else None."""
    if config.class_weight != "balanced":
        return None
    counts = np.maximum(train_split.class_counts(num_classes), 1)
    return {i: float(len(train_split) / (num_classes * c)) for i, c in enumerate(counts)}


def _first_plan(config):
    """Epochs planned before the first one: all of them, or a snapshot run's last cycle end."""
    cycle_ends = snapshot_epochs(config.epochs, config.snapshots)
    return cycle_ends[-1] if cycle_ends else config.epochs


def _resume_state(config, run_dir):
    """``(state, resumed, finished)``: the run's saved state (state.json), whether this run resumes,
    and whether every planned epoch was done before an interruption."""
    state_file = run_dir / "state.json"
    resumed = state_file.exists()
    state = json.loads(state_file.read_text()) if resumed else {"planned_epochs": _first_plan(config)}
    # A run killed after its last epoch but before the model was saved: Keras
    # has already deleted its backup, so fit() would start again from epoch 0.
    finished = resumed and (run_dir / "best.weights.h5").exists() and (
        state.get("epochs_done", 0) >= state.get("planned_epochs", config.epochs)
        or state.get("stopped_by_budget") or "nan_at" in state)
    if not finished:
        state.pop("nan_at", None)
    return state, resumed, finished


def make_optimizer(config):
    """The optimizer ``config.optimizer`` names, with its ``clipnorm`` and ``ema`` (the moving average
    lives in the optimizer, so a resume restores it)."""
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


def _compiled_model(config, strategy, class_names):
    """The model to train, built and compiled under the distribution strategy."""
    import keras

    with strategy.scope():
        model = build_model(config, len(class_names))
        model.fer_metadata["class_names"] = list(class_names)
        model.compile(
            optimizer=make_optimizer(config),
            loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
            metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
        )
    return model


def _callbacks(config, run_dir, state, steps_per_epoch, val_split, class_names):
    """The run's callbacks, in the order they must run (:mod:`~fer_keras.training.callbacks`)."""
    import keras

    callbacks = [
        NaNGuard(state),
        LearningRateSchedule(config, steps_per_epoch, state),
        *([SwapEMAWeights()] if config.ema else []),  # the average is validated and kept ...
        Validation(val_split.x, val_split.y, len(class_names), 256, state, class_names, ema=config.ema),
        BestKeeper(run_dir, state, snapshot_epochs(config.epochs, config.snapshots)),
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
    return callbacks


def _announce(config, model, policy, dataset, train_split, val_split, run_dir, resumed):
    """What is about to train, on what, where."""
    num_classes = len(dataset.class_names)
    print(f"fer_keras train: {config.model} ({model.count_params():,} parameters), {policy}, "
          f"{len(train_split)} training / {len(val_split)} {VALIDATION_SPLIT} faces")
    if config.dataset != "fer2013" or num_classes != 7:
        targets = "soft (vote distributions)" if config.soft_targets else "hard labels"
        print(f"data: {config.dataset}, {num_classes} classes, {targets}: {dataset.source}")
    print(f"machine: {machine_description()}")
    print(f"run folder: {run_dir}{' (resuming)' if resumed else ''}", flush=True)


# === The epochs ===


def _fit(config, model, train_ds, strategy, steps_per_epoch, callbacks, class_weight, finished, verbose):
    """Train until done (or interrupted); returns the wall time in seconds."""
    started = time.monotonic()
    try:
        if finished:
            print("all planned epochs were done before the interruption: saving the best model")
        elif config.distribute == "multiworker":
            fit_custom_loop(model, train_ds, strategy=strategy, epochs=config.epochs,
                            steps_per_epoch=steps_per_epoch, callbacks=callbacks,
                            label_smoothing=config.label_smoothing, global_batch_size=config.batch_size,
                            verbose=verbose)
        else:
            model.fit(train_ds, epochs=config.epochs, steps_per_epoch=steps_per_epoch, callbacks=callbacks,
                      class_weight=class_weight, verbose=verbose, shuffle=False)
    except KeyboardInterrupt:
        print("\ninterrupted: training again with the same configuration resumes from the last finished epoch")
        raise
    return time.monotonic() - started


# === After the last epoch ===


def _finish(config, model, dataset, val_split, class_names, state, policy, wall, run_dir, models_dir, teacher_info):
    """Score the best epoch, draw the run's figures, save the model file(s), write and print summary.json."""
    nan_at = state.pop("nan_at", None)
    if nan_at is not None:
        print(f"\n!!! the loss became NaN/inf at epoch {nan_at[0]}, batch {nan_at[1]}: training stopped "
              "(lower lr or add clipnorm)", flush=True)
    best_weights = run_dir / "best.weights.h5"
    if not best_weights.exists():
        why = "the loss became NaN/inf in the first epoch (lower lr)" if nan_at is not None else "no epoch finished"
        raise FerError(f"training produced no model: {why}", parameter="lr" if nan_at is not None else None)
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
                                             title=f"{config.model} on {VALIDATION_SPLIT}"),
                      run_dir / "confusion_matrix.png")

    metadata = _metadata(config, dataset, state, policy, wall, class_names, val_metrics, teacher_info)
    written = [str(model_io.save_new_model(shipped, models_dir, metadata, suffix=config.save_format))]
    for epoch in state.get("snapshots", []):
        model.load_weights(run_dir / f"snapshot_{epoch}.weights.h5")
        snapshot = model_io.as_float32(model)
        snap_probs = snapshot.predict(val_split.x, batch_size=256, verbose=0)
        snap_metrics = classification_metrics(val_split.y, snap_probs, class_names)
        snap_meta = {**metadata, "snapshot_epoch": epoch,
                     "validation": {"split": VALIDATION_SPLIT, "accuracy": snap_metrics["accuracy"],
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
        "num_classes": len(class_names),
        "frozen_layers": sum(1 for layer in model.layers if layer.weights and not layer.trainable),
        "warnings": state.get("warnings", []),
        "machine": machine_description(),
    }
    write_json_atomic(run_dir / "summary.json", summary)
    _print_summary(summary, VALIDATION_SPLIT)
    return summary


def _metadata(config, dataset, state, policy, wall, class_names, val_metrics, teacher_info):
    """What the saved file says about itself: recipe, data, scores, machine, teacher and lineage."""
    recipe = {k: v for k, v in dataclasses.asdict(config).items() if k not in ("models_dir", "run_dir")}
    metadata = {
        "recipe": recipe,
        "precision_trained": policy,
        "epochs_run": state.get("epochs_done", 0),
        "best_epoch": state.get("best_epoch"),
        "train_seconds": round(state.get("train_seconds", wall), 1),
        "machine": machine_description(),
        "class_names": list(class_names),
        "dataset": {**dataset_metadata(config, dataset), "train_split": TRAIN_SPLIT,
                    "validation_split": VALIDATION_SPLIT},
        "validation": {"split": VALIDATION_SPLIT, "accuracy": val_metrics["accuracy"],
                       "macro_f1": val_metrics["macro_f1"]},
    }
    if teacher_info is not None:
        metadata["teacher"] = teacher_info
    if config.init:
        metadata["init_from"] = init_lineage(config.init)
    return metadata


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


def _read_history(path):
    """history.csv as ``{column: [value per epoch]}`` (a value that is not a number reads as NaN)."""
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
    """The run's result, framed so it stands out at the end of a long log."""
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
        lines.append(" stopped at the time budget; the best epoch was kept")
    if summary["stopped_by_nan"]:
        lines.append(" !!! the loss became NaN/inf: training stopped; the last good best model was kept")
    if summary["collapsed_onto"]:
        lines.append(f" !!! WARNING: predictions collapsed onto '{summary['collapsed_onto']}'")
    for snap in summary["snapshot_files"]:
        lines.append(f" snapshot member: {snap}")
    lines.append("=" * 64)
    print("\n".join(lines), flush=True)
