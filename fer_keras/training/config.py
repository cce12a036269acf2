"""What defines a training run: :class:`TrainConfig`, checked, hashed, written to ``config.json``.

The hash of the options that shape the result names the default run folder,
so rerunning the same command resumes the same run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

from fer_keras import models
from fer_keras.constants import IMAGE_SIZE
from fer_keras.data import DATASETS
from fer_keras.errors import ConfigError, check_seed
from fer_keras.training import augment, precision
from fer_keras.training.pipeline import crop_recipe_error

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("cosine", "plateau", "onecycle")
DISTRIBUTE = ("none", "mirrored", "multiworker")
FERPLUS_MODES = ("majority", "probability")

# Fields added after run folders already existed: left out of the run-folder
# hash while they hold their defaults, so older commands still resume.
_HASHED_ONLY_WHEN_SET = {"dataset": "fer2013", "ferplus_labels": "", "ferplus_mode": "majority",
                         "data_root": "", "num_classes": 7, "ckplus_fold": 0, "ckplus_folds": 10,
                         "freeze_layers": 0, "freeze_until": "", "teacher": "", "distill_alpha": 0.7,
                         "distill_temperature": 2.0, "ema": 0.0, "mixup": 0.0, "zoom": 0.0}


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
    zoom: float = 0.0  # random zoom by 1 +- zoom on top of augment; 0 = the level's own (strong: 0.1)
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
    # === Distillation (see fer_keras.training.distill) ===
    teacher: str = ""  # a folder of members (or one file) whose soft predictions the student learns
    distill_alpha: float = 0.7  # weight of the teacher's probabilities in the target
    distill_temperature: float = 2.0  # > 1 flattens the teacher's probabilities

    def validate(self):
        """Raise :class:`ConfigError` naming the first field whose value cannot work; returns ``self``."""
        checks = [
            ("optimizer", self.optimizer in OPTIMIZERS, f"must be one of {', '.join(OPTIMIZERS)}"),
            ("schedule", self.schedule in SCHEDULES, f"must be one of {', '.join(SCHEDULES)}"),
            ("distribute", self.distribute in DISTRIBUTE, f"must be one of {', '.join(DISTRIBUTE)}"),
            ("class_weight", self.class_weight in ("none", "balanced"), "must be none or balanced"),
            ("epochs", self.epochs >= 1, "must be at least 1"),
            ("batch_size", self.batch_size >= 1, "must be at least 1"),
            ("lr", self.lr > 0, "must be positive"),
            ("momentum", 0 <= self.momentum <= 1, "must be in [0, 1] (0.9 is usual)"),
            ("weight_decay", self.weight_decay >= 0, "must be >= 0 (0 = off)"),
            ("clipnorm", self.clipnorm >= 0, "must be >= 0 (0 = off)"),
            ("warmup_steps", self.warmup_steps >= 0, "must be >= 0 (0 = no warm-up)"),
            ("models_dir", not Path(self.models_dir).exists() or Path(self.models_dir).is_dir(),
             "must be a folder, and is a file (the trained model is saved into a folder)"),
            ("run_dir", not self.run_dir or not Path(self.run_dir).exists() or Path(self.run_dir).is_dir(),
             "must be a folder, and is a file (the run's checkpoints and logs go into a folder)"),
            ("time_budget", self.time_budget >= 0, "must be >= 0 minutes"),
            ("snapshots", self.snapshots >= 0, "must be >= 0"),
            ("ema", 0 <= self.ema < 1, "must be in [0, 1) (0 = off; 0.999 averages about the last 1000 steps)"),
            ("save_format", self.save_format in (".h5", ".keras"), "must be .h5 or .keras"),
            ("label_smoothing", 0 <= self.label_smoothing < 1, "must be in [0, 1)"),
            ("mixup", self.mixup >= 0, "must be >= 0 (0 = off; 0.2 is the usual choice)"),
            ("zoom", 0 <= self.zoom < 0.5, "must be in [0, 0.5) (0 = the augment level's own: 0.1 for strong, none otherwise)"),
            ("dataset", self.dataset in DATASETS, f"must be one of {', '.join(DATASETS)}"),
            ("ferplus_mode", self.ferplus_mode in FERPLUS_MODES, f"must be one of {', '.join(FERPLUS_MODES)}"),
            ("num_classes", self.num_classes in (7, 8), "must be 7 (FER2013 classes) or 8 (plus contempt)"),
            ("freeze_layers", self.freeze_layers >= 0, "must be >= 0"),
            ("freeze_until", not (self.freeze_layers and self.freeze_until),
             f"cannot be combined with freeze_layers={self.freeze_layers}; give one, not both"),
            ("distill_alpha", 0 <= self.distill_alpha <= 1, "must be in [0, 1]"),
            ("distill_temperature", self.distill_temperature > 0, "must be positive"),
        ]
        for field, ok, requirement in checks:
            if not ok:
                raise _refused(field, requirement, getattr(self, field))
        check_seed(self.seed)
        models.check_options(self.model, {**self.model_options, **({"weights": self.weights} if self.weights else {})})
        self._validate_dataset()
        if self.augment not in augment.LEVELS:
            raise _refused("augment", f"must be one of {', '.join(augment.LEVELS)}", self.augment)
        self._validate_crop_recipe()
        if self.precision not in precision.POLICIES:
            raise _refused("precision", f"must be one of {', '.join(precision.POLICIES)}", self.precision)
        return self

    def _validate_dataset(self):
        """What each ``dataset`` needs, and the options it cannot take."""
        name = self.dataset
        if name in ("fer2013", "rafdb") and self.num_classes != 7:
            raise ConfigError(f"dataset {name!r} has 7 classes, no contempt; num_classes=8 needs ferplus, affectnet "
                              f"or ckplus. Received: num_classes={self.num_classes}", parameter="num_classes")
        if name == "ferplus" and not self.ferplus_labels:
            raise ConfigError("dataset 'ferplus' needs ferplus_labels, the FER+ fer2013new.csv, and csv, the "
                              "original fer2013.csv the labels refer to, by row", parameter="ferplus_labels")
        if name in ("rafdb", "affectnet", "ckplus") and not self.data_root:
            raise ConfigError(f"dataset {name!r} needs data_root, its folder in the official layout (see "
                              "fer_keras.data)", parameter="data_root")
        if name == "ckplus" and not (self.ckplus_folds >= 2 and 0 <= self.ckplus_fold < self.ckplus_folds):
            raise ConfigError(f"ckplus_fold must be 0..{self.ckplus_folds - 1} and ckplus_folds >= 2. Received: "
                              f"ckplus_fold={self.ckplus_fold}, ckplus_folds={self.ckplus_folds}",
                              parameter="ckplus_fold")
        if self.teacher:
            if not Path(self.teacher).exists():
                raise ConfigError(f"teacher {self.teacher}: no such folder or model file", parameter="teacher")
            if self.soft_targets:
                raise ConfigError("teacher replaces the targets; it cannot be combined with "
                                  "ferplus_mode='probability'", parameter="teacher")
            if self.class_weight != "none":
                raise ConfigError("class_weight='balanced' is not supported with a teacher (the targets are "
                                  "the teacher's probabilities, not one class per face)", parameter="class_weight")
        if self.soft_targets:
            if self.class_weight != "none":
                raise ConfigError("class_weight='balanced' is not supported with ferplus_mode='probability' "
                                  "(soft targets have no single class per face to weight); use majority mode",
                                  parameter="class_weight")
            if self.balanced_data:
                raise ConfigError("balanced_data is not supported with ferplus_mode='probability' "
                                  "(soft targets have no single class per face to balance); use majority mode",
                                  parameter="balanced_data")

    def _validate_crop_recipe(self):
        """augment='crop' shifts faces for the model's central crop: refused now, before the data is read,
        for a model built without one (with ``init`` the file's options decide, checked once it is built)."""
        if self.augment != "crop" or self.init:
            return
        crop = {**models.options_of(self.model), **self.model_options}.get("crop")
        if not crop or crop >= IMAGE_SIZE:
            raise crop_recipe_error(self.model)

    @property
    def soft_targets(self):
        """Whether this run trains on label distributions (FER+ probability mode)."""
        return self.dataset == "ferplus" and self.ferplus_mode == "probability"

    def fingerprint(self):
        """Short hash of what shapes the result (not where files go)."""
        keep = shaping_options(dataclasses.asdict(self))
        return hashlib.sha1(json.dumps(keep, sort_keys=True, default=str).encode()).hexdigest()[:8]

    def differences(self, options):
        """The fields whose values shape the result and differ between this run and ``options`` (another
        run's config.json): why a run folder may not be resumed by this one."""
        mine = shaping_options(json.loads(json.dumps(dataclasses.asdict(self), default=str)))
        theirs = shaping_options(options)
        return sorted(k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k))

    def resolved_run_dir(self):
        return Path(self.run_dir or Path("runs") / f"{self.model}-{self.fingerprint()}")


def shaping_options(options):
    """The options of a run (a :class:`TrainConfig` as a dict) that shape its result: what names its folder."""
    return {k: v for k, v in options.items() if k not in ("models_dir", "run_dir", "time_budget")
            and not (k in _HASHED_ONLY_WHEN_SET and v == _HASHED_ONLY_WHEN_SET[k])}


def _refused(field, requirement, value):
    """The error for one field: what it needs, then what it got (``lr must be positive. Received: lr=0``)."""
    return ConfigError(f"{field} {requirement}. Received: {field}={value!r}", parameter=field)
