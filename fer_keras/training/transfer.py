"""Starting from what exists: ``init`` (a model file), frozen early layers, and two-phase transfer learning.

:func:`build_model` builds a registered model or continues one from a file
(copying every weight but the classifier when the number of classes
changes), then freezes early layers; :func:`init_lineage` records where the
run started; :func:`head_phase` and :func:`fine_tune_phase` are the two runs
of ImageNet transfer learning (:func:`fer_keras.training.engine.train_two_phase`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from fer_keras import models
from fer_keras.errors import ConfigError
from fer_keras.io_utils import file_sha256
from fer_keras.models import model_io

CLASSIFIER_LAYER = "predictions_logits"
"""The final Dense of every registered model (``models.preprocessing.classifier``):
the one layer re-initialised when ``init`` changes the number of classes."""


def build_model(config, num_classes):
    """The model to train: registered by name, or initialised from ``config.init``;
    then ``freeze_layers`` / ``freeze_until`` freeze its early layers."""
    model = _build_or_init(config, num_classes)
    freeze_early_layers(model, layers=config.freeze_layers, until=config.freeze_until)
    return model


def _build_or_init(config, num_classes):
    options = dict(config.model_options)
    if config.weights:
        options["weights"] = config.weights
    if not config.init:
        return models.build(config.model, num_classes=num_classes, **options)
    source = model_io.load_model(config.init)
    meta = source.fer_metadata
    if not meta.get("architecture"):
        raise ConfigError(f"init {config.init}: the file has no fer_keras metadata (architecture unknown)",
                          parameter="init")
    if meta["architecture"] != config.model:
        print(f"init: training {meta['architecture']} (from the file), not {config.model}")
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
            raise ConfigError(f"init {config.init}: weights do not fit ({exc})", parameter="init") from None
        return model
    copied = copy_weights_except_classifier(source, model, what=f"init {config.init}")
    print(f"init: {Path(config.init).name} has {source_classes} classes, this run {num_classes}: copied the "
          f"weights of {copied} layers; the classifier ({CLASSIFIER_LAYER}) starts from a fresh initialisation")
    return model


# What a started-from file contributes to the card of the model fine-tuned from it.
LINEAGE_KEYS = ("architecture", "recipe", "epochs_run", "best_epoch", "train_seconds", "machine", "validation",
                "init_from")


def init_lineage(path):
    """Where an ``init`` run started: the file (name, sha256) and how it was made.

    The run's own recipe covers only its last stage; without this a card would
    show a 25-minute fine-tune as the whole recipe, and a reader could not tell
    which file (or which version of ``model_4.h5``) to start from. Nested
    ``init_from`` keeps a chain of fine-tunes complete.
    """
    meta = model_io.read_metadata(path)
    return {"file": Path(path).name, "path": str(path), "sha256": file_sha256(path),
            **{key: meta[key] for key in LINEAGE_KEYS if key in meta}}


def copy_weights_except_classifier(source, target, *, what="init"):
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
            raise ConfigError(f"freeze_until {until!r}: no layer with weights of that name ({shown})",
                              parameter="freeze_until")
        layers = names.index(until) + 1
    if layers >= len(weighted):
        raise ConfigError(f"freeze_layers {layers}: the model has {len(weighted)} layers with weights; "
                          "freezing all of them would leave nothing to train", parameter="freeze_layers")
    frozen = weighted[:layers]
    for layer in frozen:
        layer.trainable = False
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    print(f"froze {len(frozen)} layer(s) ({frozen[0].name} ... {frozen[-1].name}); "
          f"{trainable:,} trainable parameters left")
    return [layer.name for layer in frozen]


def head_phase(config, *, head_epochs, head_lr):
    """Phase 1 of transfer learning: only the new head trains, on the frozen ImageNet base.

    A high LR would wreck the pretrained filters through a random head's
    gradients, so the base stays frozen (``trainable_blocks=0``). The phase
    keeps its model in its own run folder; a time budget is shared in
    proportion to the epochs of each phase.
    """
    run_dir = config.resolved_run_dir()
    share = head_epochs / (head_epochs + config.epochs)
    return dataclasses.replace(
        config, epochs=head_epochs, lr=head_lr, snapshots=0, schedule="cosine",
        model_options={**config.model_options, "trainable_blocks": 0},
        models_dir=str(run_dir / "phase1_model"), run_dir=str(run_dir / _phase1_name(head_epochs, head_lr)),
        time_budget=config.time_budget * share)


def _phase1_name(head_epochs, head_lr):
    """Phase 1's folder, named by its settings: they are not in the run's hash, and a rerun with
    another ``head_lr`` must not go on from the phase 1 of the old one."""
    return f"phase1-{head_epochs}ep-lr{head_lr:g}"


def fine_tune_phase(config, head_model, *, head_epochs, head_lr, unfreeze_blocks):
    """Phase 2: from phase 1's model, the top ``unfreeze_blocks`` conv block(s) train too,
    at ``config.lr``; its model lands in ``config.models_dir``. Its folder names the phase 1 it
    starts from and the blocks it trains."""
    share = head_epochs / (head_epochs + config.epochs)
    name = f"phase2-top{unfreeze_blocks}-after-{_phase1_name(head_epochs, head_lr)}"
    return dataclasses.replace(
        config, init=head_model, weights="",
        model_options={**config.model_options, "trainable_blocks": unfreeze_blocks},
        run_dir=str(config.resolved_run_dir() / name), time_budget=config.time_budget * (1 - share))


def check_phases(*, head_epochs, head_lr, unfreeze_blocks, blocks):
    """Refuse settings of the two phases before phase 1 trains (not after it, in phase 2)."""
    for name, value, ok, requirement in (
            ("head_epochs", head_epochs, head_epochs >= 1, "must be at least 1 (phase 1 trains the new head)"),
            ("head_lr", head_lr, head_lr > 0, "must be above 0"),
            ("unfreeze_blocks", unfreeze_blocks, 0 <= unfreeze_blocks <= blocks,
             f"must be 0..{blocks} (the base's conv blocks, counted from the top)")):
        if not ok:
            raise ConfigError(f"{name} {requirement}. Received: {name}={value}", parameter=name)
