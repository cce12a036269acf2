"""The learning-rate schedule, and how many epochs fit a time budget.

Pure functions of the step and of measured epoch times, so they are tested
without training: :func:`lr_at` (warm-up, cosine, one-cycle, snapshot
cycles), :func:`snapshot_epochs` (where those cycles end) and
:func:`plan_epochs` (the budget's re-plan after every epoch, which the
:class:`~fer_keras.training.callbacks.Budget` callback applies).
"""

from __future__ import annotations

import math

import numpy as np


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


def snapshot_epochs(epochs, snapshots):
    """The epochs that end a snapshot run's cosine cycles: ``epochs // snapshots`` epochs a cycle.

    Why whole epochs: a snapshot is saved when an epoch ends, and :func:`lr_at`
    restarts its cycles every ``total_steps // cycles`` steps; with
    ``total_steps`` = the last of these epochs x steps per epoch, each cycle
    ends exactly at an epoch's end, where the learning rate is near 0 (50
    epochs in 3 cycles saved at learning rates of up to 3.5% of the peak when
    the cycles were cut from all 50). The ``epochs % snapshots`` epochs left
    over are not trained. Empty for fewer than two snapshots.
    """
    if snapshots < 2:
        return ()
    cycle = epochs // snapshots
    return tuple(cycle * (k + 1) for k in range(snapshots))


GROW_WINDOW = 1 / 3
"""Share of the planned epochs during which a time-budget plan may still grow."""

RECENT_EPOCHS = 3
"""Epoch times an early plan looks at (the fastest of them): one slow epoch is noise."""

SHRINK_WINDOW = 8
"""Epoch times a late plan averages: these VMs slow down in stretches of two or
three epochs (43 s epochs took 82 s), and a median of three read such a stretch
as the new speed (a 50-min plan fell from 65 to 45 epochs on two slow ones;
the mean of eight keeps 56)."""


def plan_epochs(*, epochs_done, planned, max_epochs, epoch_seconds, seconds_left):
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
    late would raise it mid-annealing).
    """

    def fits(seconds_per_epoch):
        return max(min(max_epochs, int(seconds_left // max(seconds_per_epoch, 1e-9)) + epochs_done),
                   epochs_done + 1)

    if epochs_done <= max(GROW_WINDOW * planned, RECENT_EPOCHS):
        return fits(min(epoch_seconds[-RECENT_EPOCHS:]))
    return min(planned, fits(float(np.mean(epoch_seconds[-SHRINK_WINDOW:]))))
