"""Multi-worker training: a custom loop, because ``model.fit`` cannot do it.

Keras 3's ``model.fit`` under ``MultiWorkerMirroredStrategy`` fails with
"Attempt to convert a value (PerReplica…) to a Tensor" (keras-team/keras
#20585, open). The same model trains fine across workers with the loop the
TensorFlow guide describes: ``strategy.run`` + ``tf.GradientTape`` +
``optimizer.apply_gradients``, the loss averaged over the *global* batch with
``tf.nn.compute_average_loss``. This module runs that loop while driving the
usual Keras callbacks, so validation, best-model keeping, resume and the time
budget behave exactly as with ``fit``.

Workers are described by ``TF_CONFIG``; only the chief writes the model and
the run folder's artefacts, the others write into ``<run_dir>/worker_<i>``.
:func:`make_strategy` picks the strategy ``TrainConfig.distribute`` names.
"""

from __future__ import annotations

import contextlib
import json
import os

from fer_keras.errors import ConfigError
from fer_keras.machine import tensorflow_backend


def worker_role():
    """``(task_type, index, is_chief)`` from ``TF_CONFIG`` (chief when unset)."""
    config = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
    task = config.get("task", {})
    task_type, index = task.get("type", "chief"), int(task.get("index", 0))
    has_chief = "chief" in config.get("cluster", {})
    is_chief = task_type == "chief" or (task_type == "worker" and index == 0 and not has_chief)
    return task_type, index, is_chief


def fit_custom_loop(model, dataset, *, strategy, epochs, steps_per_epoch, callbacks, label_smoothing,
                    global_batch_size, verbose=1):
    """Train ``model`` (compiled, built under ``strategy.scope()``) on ``dataset``.

    Mirrors ``model.fit(dataset, epochs, steps_per_epoch, callbacks)`` for the
    parts fer_keras uses: per-batch and per-epoch callbacks with ``loss`` and
    ``accuracy`` logs, ``model.stop_training``, and ``BackupAndRestore``'s
    initial epoch.
    """
    import keras
    import tensorflow as tf

    loss_fn = keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing, reduction=None)
    optimizer = model.optimizer
    distributed = strategy.experimental_distribute_dataset(dataset.repeat())
    iterator = iter(distributed)

    @tf.function
    def train_step(iterator):
        def step_fn(inputs):
            x, y = inputs
            with tf.GradientTape() as tape:
                probs = model(x, training=True)
                loss = tf.nn.compute_average_loss(loss_fn(y, probs), global_batch_size=global_batch_size)
                if model.losses:
                    loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
                # Under mixed_float16 the optimizer is a LossScaleOptimizer, which divides every
                # gradient by its loss scale: the gradient must be of the scaled loss (as
                # model.fit takes it), or each update is 32768 times too small.
                scaled = optimizer.scale_loss(loss)
            grads = tape.gradient(scaled, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
            hits = tf.cast(tf.equal(tf.argmax(probs, -1), tf.argmax(y, -1)), tf.float32)
            return loss, tf.reduce_sum(hits)

        loss, hits = strategy.run(step_fn, args=(next(iterator),))
        return (strategy.reduce(tf.distribute.ReduceOp.SUM, loss, axis=None),
                strategy.reduce(tf.distribute.ReduceOp.SUM, hits, axis=None))

    callback_list = keras.callbacks.CallbackList(
        callbacks, add_history=True, add_progbar=verbose != 0, model=model,
        verbose=verbose, epochs=epochs, steps=steps_per_epoch)
    model.stop_training = False
    callback_list.on_train_begin()
    start_epoch = int(getattr(model, "_initial_epoch", 0) or 0)
    logs = {}
    for epoch in range(start_epoch, epochs):
        callback_list.on_epoch_begin(epoch)
        total_loss = total_hits = 0.0
        for step in range(steps_per_epoch):
            callback_list.on_train_batch_begin(step)
            loss, hits = train_step(iterator)
            total_loss += float(loss)
            total_hits += float(hits)
            logs = {"loss": total_loss / (step + 1), "accuracy": total_hits / ((step + 1) * global_batch_size)}
            callback_list.on_train_batch_end(step, logs)
            if model.stop_training:
                break
        epoch_logs = dict(logs)
        callback_list.on_epoch_end(epoch, epoch_logs)
        if model.stop_training:
            break
    callback_list.on_train_end(logs)
    return model.history


def make_strategy(config):
    """The ``tf.distribute`` strategy ``config.distribute`` asks for (one device without TensorFlow).

    MultiWorkerMirroredStrategy must exist before TensorFlow runs anything else:
    the engine makes the strategy first.
    """
    if not tensorflow_backend():
        if config.distribute != "none":
            raise ConfigError(f"distribute={config.distribute!r} needs the TensorFlow backend", parameter="distribute")
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
        return contextlib.nullcontext()
