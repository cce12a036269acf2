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
from fer_keras.data import DATASETS
from fer_keras.errors import ConfigError, check_seed
from fer_keras.training import augment, precision

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("cosine", "plateau", "onecycle")
DISTRIBUTE = ("none", "mirrored", "multiworker")
FERPLUS_MODES = ("majority", "probability")

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
    # === Distillation (see fer_keras.training.distill) ===
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
