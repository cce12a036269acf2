"""The training stage: one run of :func:`train` turns a :class:`TrainConfig` into a model file.

One module per job: :mod:`~fer_keras.training.config` (the run's options and
the folder they name), :mod:`~fer_keras.training.pipeline` and
:mod:`~fer_keras.training.augment` (batches), :mod:`~fer_keras.training.schedule`
(learning rate, time budget), :mod:`~fer_keras.training.callbacks`,
:mod:`~fer_keras.training.transfer` (``init``, frozen layers, two-phase
transfer learning), :mod:`~fer_keras.training.distill` (a student taught by an
ensemble), :mod:`~fer_keras.training.distributed`,
:mod:`~fer_keras.training.precision`, and :mod:`~fer_keras.training.engine`,
which runs them in order.

This stage reads data through :mod:`fer_keras.data`, builds and saves models
through :mod:`fer_keras.models`, and asks :mod:`fer_keras.ensemble` only for
a distillation teacher; it never imports inference, export or the CLI.
"""

from fer_keras.training.config import DISTRIBUTE, FERPLUS_MODES, OPTIMIZERS, SCHEDULES, TrainConfig
from fer_keras.training.engine import train, train_two_phase
from fer_keras.training.pipeline import array_batches, make_dataset
from fer_keras.training.schedule import lr_at, plan_epochs

__all__ = ["DISTRIBUTE", "FERPLUS_MODES", "OPTIMIZERS", "SCHEDULES", "TrainConfig", "array_batches", "lr_at",
           "make_dataset", "plan_epochs", "train", "train_two_phase"]
