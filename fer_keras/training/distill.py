"""Knowledge distillation: train a small, fast member on an ensemble's soft predictions.

Hinton et al., "Distilling the Knowledge in a Neural Network" (2015). An
ensemble of large members is accurate but slow; a student trained to match
its probabilities learns the "dark knowledge" in them (a fearful face that
looks a little surprised) and gets closer to the ensemble than the same
network trained on hard labels alone.

We distil offline: the teacher (every member of a folder, combined by mean
of softmax, with horizontal-flip TTA) predicts each training face once, and
the student trains with cross-entropy on

    target = alpha * soften(teacher, T) + (1 - alpha) * one_hot(label)

``soften`` raises the teacher's probabilities to the power ``1/T`` and
renormalises, i.e. divides its log-probabilities by ``T`` (T > 1 flattens).
Training on a fixed target is the soft-label form of distillation: it needs
no teacher in the training loop, so a distillation epoch costs what any
epoch costs. The teacher sees the clean face while the student sees the
augmented one, a common approximation that costs a little fidelity.

The teacher's probabilities are cached in the run folder, so a resumed run
does not predict them again.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fer_keras import ensemble as ens
from fer_keras.ensemble.calibration import apply_temperature
from fer_keras.errors import ConfigError
from fer_keras.io_utils import atomic_path

TEACHER_PROBS_FILE = "teacher_probs.npz"


def soften(probs, temperature):
    """``softmax(log p / T)``, row by row, as float32 targets: the calibration's temperature
    (:func:`~fer_keras.ensemble.calibration.apply_temperature`), checked as a training option."""
    if not temperature > 0:
        raise ConfigError(f"temperature must be positive. Received: temperature={temperature}",
                          parameter="temperature")
    return apply_temperature(probs, temperature).astype(np.float32)


def distillation_targets(teacher_probs, labels, *, alpha, temperature, num_classes):
    """The student's targets: ``alpha`` of the softened teacher, the rest the one-hot label."""
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"alpha must be in [0, 1]. Received: alpha={alpha}", parameter="alpha")
    teacher_probs = np.asarray(teacher_probs)
    if teacher_probs.shape != (len(labels), num_classes):
        raise ConfigError(f"the teacher gives {teacher_probs.shape[1:]} probabilities per face for "
                          f"{len(labels)} faces; the student needs {num_classes} per face")
    one_hot = np.eye(num_classes, dtype=np.float32)[np.asarray(labels)]
    return alpha * soften(teacher_probs, temperature) + (1.0 - alpha) * one_hot


def teacher_probabilities(teacher, faces, *, class_names, cache_dir=None, verbose=1):
    """The teacher ensemble's probabilities for ``faces``, and a description of the teacher.

    ``teacher``: a folder of members or one model file. ``verbose`` follows
    Keras: 1 draws a progress bar per member, 2 prints one line, 0 is silent.
    Cached in ``cache_dir`` (keyed by the faces and the member files), so
    resuming is free. Returns ``(probs, info)`` with ``info = {"members": [...], "tta": True}``.
    """
    members, skipped = ens.load_members(teacher)
    for s in skipped:
        print(f"teacher: skipped {s}")
    teacher_classes = ens.evaluation_classes(members)
    if tuple(teacher_classes) != tuple(class_names):
        raise ConfigError(f"the teacher {teacher} predicts {len(teacher_classes)} classes "
                          f"({', '.join(teacher_classes)}); the student learns {len(class_names)} "
                          f"({', '.join(class_names)})")
    info = {"members": [m.name for m in members], "tta": True}
    stats = [(m.path.name, m.path.stat()) for m in members]
    key = "|".join([str(ens.faces_fingerprint(np.asarray(faces))),
                    *(f"{name}:{st.st_size}:{st.st_mtime_ns}" for name, st in stats)])
    cache = Path(cache_dir) / TEACHER_PROBS_FILE if cache_dir else None
    if cache is not None and cache.exists():
        with np.load(cache, allow_pickle=False) as stored:
            if str(stored["key"]) == key:
                return stored["probs"], info
    if verbose:
        print(f"teacher: {len(members)} member(s) of {teacher} predict {len(faces)} training faces (with flip TTA)",
              flush=True)
    # Keras' verbose=2 means "not a terminal" (a log file): no bars there.
    probs = ens.Ensemble(members, verbose=verbose == 1).predict_proba(faces, tta=True)
    if cache is not None:
        with atomic_path(cache, overwrite=True) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, probs=probs, key=np.array(key))
    return probs, info
