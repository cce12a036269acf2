"""The one place a dataset is chosen by name: training and evaluation read data through it.

Training (``TrainConfig.dataset``) and the ensemble tester both
name a dataset through :func:`load_dataset`, so a dataset's options are checked, and its
reader called, the same way wherever it is named.
"""

from __future__ import annotations

from fer_keras.data.affectnet import load_affectnet
from fer_keras.data.ckplus import load_ckplus
from fer_keras.data.fer2013 import load_fer2013
from fer_keras.data.ferplus import load_ferplus
from fer_keras.data.rafdb import load_rafdb
from fer_keras.errors import ConfigError

DATASETS = ("fer2013", "ferplus", "rafdb", "affectnet", "ckplus")
"""The datasets :func:`load_dataset` can name (one reader module each in :mod:`fer_keras.data`)."""


def load_dataset(name, *, csv="", ferplus_labels="", ferplus_mode="majority", data_root="", num_classes=7,
                 ckplus_fold=0, ckplus_folds=10, on_bad="error"):
    """One place that turns a dataset name and its arguments into a dataset.

    fer2013: ``csv``. ferplus: ``ferplus_labels`` (fer2013new.csv) on the
    faces of ``csv`` (the original fer2013.csv), ``ferplus_mode`` majority or
    probability (SoftSplit s with the vote distributions). rafdb, affectnet,
    ckplus: ``data_root`` in the official layout (see
    :mod:`fer_keras.data`); ckplus holds out fold ``ckplus_fold`` of
    ``ckplus_folds`` subject-independent folds as PublicTest. ``num_classes``
    8 keeps contempt (ferplus, affectnet, ckplus).
    """
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}", parameter="dataset")
    if num_classes not in (7, 8):
        raise ConfigError(f"num_classes must be 7 (FER2013 classes) or 8 (plus contempt). Received: "
                          f"num_classes={num_classes}", parameter="num_classes")
    if num_classes == 8 and name in ("fer2013", "rafdb"):
        raise ConfigError(f"dataset {name!r} has 7 classes, no contempt; num_classes=8 needs ferplus, affectnet "
                          "or ckplus", parameter="num_classes")
    if name == "ferplus" and not ferplus_labels:
        raise ConfigError("dataset 'ferplus' needs ferplus_labels, the FER+ fer2013new.csv, and csv, the "
                          "original fer2013.csv the labels refer to, by row", parameter="ferplus_labels")
    if name in ("rafdb", "affectnet", "ckplus") and not data_root:
        raise ConfigError(f"dataset {name!r} needs data_root, its folder in the official layout (see "
                          "fer_keras.data)", parameter="data_root")
    if name == "fer2013":
        return load_fer2013(csv, on_bad_rows=on_bad)
    if name == "ferplus":
        return load_ferplus(ferplus_labels, csv, mode=ferplus_mode, num_classes=num_classes)
    if name == "rafdb":
        return load_rafdb(data_root, on_bad_images=on_bad)
    if name == "affectnet":
        return load_affectnet(data_root, num_classes=num_classes, on_bad_images=on_bad)
    return load_ckplus(data_root, folds=ckplus_folds, fold=ckplus_fold, num_classes=num_classes,
                                on_bad_images=on_bad)
