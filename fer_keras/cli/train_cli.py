"""Command line shared by every training script (train.py, train_vgg.py, ...).

Each script passes its own defaults (model, recipe) and description; the
options are grouped as in timm's train.py, and ``--help`` shows every default.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import os
import sys

from fer_keras import models
from fer_keras.cli.common import SKIP_BAD_ROWS_HINT, run_cli
from fer_keras.data import DATASETS
from fer_keras.errors import BadRowError
from fer_keras.training import (DISTRIBUTE, FERPLUS_MODES, OPTIMIZERS, SCHEDULES, TrainConfig, augment, train,
                                train_two_phase)

EPILOG = """\
examples:
  %(prog)s --csv data/fer2013.csv                      # the recipe above, until done
  %(prog)s --csv data/fer2013.csv --time-budget 100    # stop (keeping the best) after 100 min
  %(prog)s --csv data/fer2013.csv --epochs 3 --augment none --precision float32
  rerun the same command after an interruption to resume from the last epoch.

distillation: a small, fast student that learns the ensemble in models/ (its soft
predictions, cached in the run folder) as well as the labels; it is saved into models/
as the next member:
  train.py --model vgg16 -o width=0.25 --csv data/fer2013.csv --teacher models --time-budget 60

other datasets (Training trains, PublicTest validates; RAF-DB test, AffectNet val and
the held-out CK+ fold are read as PublicTest):
  %(prog)s --dataset ferplus --csv data/fer2013.csv --ferplus-labels data/fer2013new.csv
  %(prog)s --dataset ferplus --csv data/fer2013.csv --ferplus-labels data/fer2013new.csv \\
      --ferplus-mode probability --num-classes 8      # soft targets: the vote distributions
  %(prog)s --dataset rafdb --data-root data/RAF-DB/basic     # EmoLabel/ + Image/aligned/
  %(prog)s --dataset affectnet --data-root data/AffectNet --num-classes 8
  %(prog)s --dataset ckplus --data-root data/CK+ --ckplus-fold 3   # subject-independent folds

fine-tuning recipe: a FER2013-trained model fine-tuned on FER+ majority labels with a
lower learning rate, a short warm-up and its first conv block frozen (VGG: 4 layers with
weights, block1 conv+BN x2; --freeze-until block2_2_bn freezes two blocks):
  %(prog)s --dataset ferplus --csv data/fer2013.csv --ferplus-labels data/fer2013new.csv \\
      --init models/model_1.h5 --lr 0.003 --warmup-steps 50 --epochs 15 --freeze-layers 4
  add --num-classes 8 to learn contempt too: every weight is copied except the final
  classifier (predictions_logits), which starts afresh with 8 outputs.
"""


def _parse_option(text):
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        value = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        pass  # plain string
    return key.strip().replace("-", "_"), value


def build_parser(prog, description, defaults, *, choose_model=False):
    d = dataclasses.replace(TrainConfig(), **defaults)
    p = argparse.ArgumentParser(prog=prog, description=description, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("data")
    g.add_argument("--csv", default=d.csv, help="FER2013-layout CSV (.csv or .csv.gz); Training trains, "
                   "PublicTest validates and selects the best epoch; with --dataset ferplus, the original "
                   "fer2013.csv holding the faces (default: %(default)s)")
    g.add_argument("--balanced-data", action="store_true",
                   help="train on a class-balanced copy of Training (mean class size; seeded)")
    g.add_argument("--skip-bad-rows", action="store_true", help="drop malformed CSV rows (and missing or "
                   "unreadable images of image datasets) with a warning instead of failing")
    g.add_argument("--dataset", choices=DATASETS, default=d.dataset,
                   help="fer2013: --csv; ferplus: --ferplus-labels on the faces of --csv; rafdb, affectnet, "
                   "ckplus: --data-root (default: %(default)s)")
    g.add_argument("--ferplus-labels", default=d.ferplus_labels, metavar="FILE",
                   help="FER+ fer2013new.csv; its rows label the rows of the original --csv fer2013.csv")
    g.add_argument("--ferplus-mode", choices=FERPLUS_MODES, default=d.ferplus_mode,
                   help="majority: the most-voted class (ties, unknown and not-a-face dropped); probability: "
                   "train on the vote distribution as soft targets (default: %(default)s)")
    g.add_argument("--data-root", default=d.data_root, metavar="DIR",
                   help="rafdb: the basic/ folder (EmoLabel/list_patition_label.txt, Image/aligned/); "
                   "affectnet: <split>/<class>/ folders or label CSVs (training.csv, validation.csv); "
                   "ckplus: <class>/S005_001_*.png folders")
    g.add_argument("--num-classes", type=int, choices=(7, 8), default=d.num_classes,
                   help="8 keeps contempt as class 7 (ferplus, affectnet, ckplus); 7 drops contempt faces "
                   "(default: %(default)s)")
    g.add_argument("--ckplus-fold", type=int, default=d.ckplus_fold, metavar="K",
                   help="CK+ fold held out for validation (default: %(default)s)")
    g.add_argument("--ckplus-folds", type=int, default=d.ckplus_folds, metavar="N",
                   help="CK+ subject-independent folds (default: %(default)s)")

    g = p.add_argument_group("model")
    if choose_model:
        g.add_argument("--model", default=d.model, choices=models.available(),
                       help="registered architecture (default: %(default)s)")
    g.add_argument("--model-option", "-o", action="append", type=_parse_option, default=[],
                   metavar="KEY=VALUE", help="builder option, repeatable, e.g. -o width=0.5 "
                   f"(defaults here: {d.model_options or 'none'})")
    g.add_argument("--init", default=d.init, metavar="FILE",
                   help="start from this saved model's weights (fine-tune on another dataset or split); "
                   "with another --num-classes every weight but the final classifier is copied")
    g.add_argument("--freeze-layers", type=int, default=d.freeze_layers, metavar="N",
                   help="freeze the first N layers that have weights (fine-tuning; default: %(default)s = none)")
    g.add_argument("--freeze-until", default=d.freeze_until, metavar="LAYER",
                   help="freeze every layer with weights up to and including this layer name")
    g.add_argument("--weights", default=d.weights, metavar="PATH",
                   help="ImageNet weights of *_imagenet models: 'imagenet' downloads them on first use (fails "
                   "offline), or the path of a local copy"
                   + (" (default: %(default)s)" if d.weights else ""))

    g = p.add_argument_group("optimizer")
    g.add_argument("--epochs", type=int, default=d.epochs, help="maximum epochs (default: %(default)s)")
    g.add_argument("--batch-size", type=int, default=d.batch_size, help="default: %(default)s")
    g.add_argument("--lr", type=float, default=d.lr, help="peak learning rate (default: %(default)s)")
    g.add_argument("--optimizer", choices=OPTIMIZERS, default=d.optimizer,
                   help="sgd = SGD with Nesterov momentum (default: %(default)s)")
    g.add_argument("--momentum", type=float, default=d.momentum, help="SGD momentum (default: %(default)s)")
    g.add_argument("--weight-decay", type=float, default=d.weight_decay,
                   help="decoupled weight decay, sgd/adamw (default: %(default)s)")
    g.add_argument("--clipnorm", type=float, default=d.clipnorm, help="gradient norm clip, 0 = off (default: %(default)s)")
    g.add_argument("--ema", type=float, default=d.ema, metavar="DECAY",
                   help="validate and save an exponential moving average of the weights, updated every step "
                   "(0.999 averages about the last 1000 steps; default: %(default)s = off)")

    g = p.add_argument_group("schedule")
    g.add_argument("--schedule", choices=SCHEDULES, default=d.schedule,
                   help="cosine: warm-up then cosine to 0; plateau: halve on a 3-epoch plateau; "
                   "onecycle: ramp up 30%% then down (default: %(default)s)")
    g.add_argument("--warmup-steps", type=int, default=d.warmup_steps, help="linear warm-up steps (default: %(default)s)")
    g.add_argument("--time-budget", type=float, default=d.time_budget, metavar="MINUTES",
                   help="stop cleanly after this many minutes, keeping the best epoch; the cosine "
                   "schedule is shortened to fit (default: %(default)s = none)")
    g.add_argument("--snapshots", type=int, default=d.snapshots, metavar="K",
                   help="snapshot ensemble: K cosine cycles of EPOCHS // K epochs, each end saved as its "
                   "own member; a --time-budget stops the run, keeping the cycles completed")

    g = p.add_argument_group("regularisation")
    g.add_argument("--augment", choices=augment.LEVELS, default=d.augment,
                   help="light: flip+shift; medium: light + random erasing (small, fast nets that over-fit light); "
                        "crop: flip + whole-pixel shifts the model's centre crop turns into random crops "
                        "(-o crop=44) + erasing; strong: medium + rotation, zoom, brightness/contrast "
                        "(default: %(default)s)")
    g.add_argument("--zoom", type=float, default=d.zoom, metavar="FRACTION",
                   help="also scale each face by a random factor of about 1 +- FRACTION, after the shifts: "
                   "faces cut by a detector (and FER2013's own crops) differ in scale by about 9%%; "
                   "benchmarks/bench_crop.py measures what that costs a member (0.1 is usual; default: "
                   "%(default)s = the level's own: 0.1 for strong, none otherwise)")
    g.add_argument("--mixup", type=float, default=d.mixup, metavar="ALPHA",
                   help="blend each face and its target with another face's, by a weight drawn from "
                   "Beta(ALPHA, ALPHA), after --augment (0.2 is usual; default: %(default)s = off)")
    g.add_argument("--label-smoothing", type=float, default=d.label_smoothing, help="default: %(default)s")
    g.add_argument("--class-weight", choices=("none", "balanced"), default=d.class_weight,
                   help="weight the loss by inverse class frequency (default: %(default)s)")

    g = p.add_argument_group("distillation (a small, fast member taught by an ensemble)")
    g.add_argument("--teacher", default=d.teacher, metavar="DIR|FILE",
                   help="learn the mean softmax (with flip TTA) of these members as well as the labels; "
                   "e.g. --teacher models -o width=0.25")
    g.add_argument("--distill-alpha", type=float, default=d.distill_alpha, metavar="A",
                   help="target = A x teacher + (1 - A) x one-hot label (default: %(default)s)")
    g.add_argument("--distill-temperature", type=float, default=d.distill_temperature, metavar="T",
                   help="soften the teacher: softmax(log p / T); T > 1 flattens (default: %(default)s)")

    g = p.add_argument_group("run")
    g.add_argument("--seed", type=int, default=d.seed, help="default: %(default)s")
    g.add_argument("--deterministic", action="store_true", help="deterministic ops (slower; see README)")
    g.add_argument("--precision", choices=("auto", "float32", "mixed_bfloat16", "mixed_float16"),
                   default=d.precision, help="auto: mixed_float16 on a GPU, mixed_bfloat16 on a CPU with "
                   "AMX/AVX512-BF16, else float32 (default: %(default)s)")
    g.add_argument("--distribute", choices=DISTRIBUTE, default=d.distribute,
                   help="mirrored: all local GPUs/devices; multiworker: machines listed in TF_CONFIG")
    g.add_argument("--models-dir", default=d.models_dir, help="the best model is saved here as model_<i>.h5, "
                   "with the next free index (default: %(default)s)")
    g.add_argument("--save-format", choices=(".h5", ".keras"), default=d.save_format, help="default: %(default)s")
    g.add_argument("--run-dir", default=d.run_dir, help="logs, curves, checkpoints "
                   "(default: runs/<model>-<hash of the options>, so the same command resumes)")
    g.add_argument("--quiet", action="store_true", help="one line per epoch instead of progress bars (automatic when output is not a terminal)")
    return p


def config_from_args(args, defaults):
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if hasattr(args, f.name)}
    options = dict(defaults.get("model_options", {}))
    options.update(dict(args.model_option))
    values["model_options"] = options
    base = {**defaults, **values}
    return TrainConfig(**base)


def main(argv=None, *, prog=None, description="", defaults=None, choose_model=False, two_phase=False):
    """Parse ``argv``, train, print the summary. Returns the exit code.

    ``two_phase``: transfer learning (head on a frozen base, then fine-tuning);
    adds the --head-epochs, --head-lr and --unfreeze-blocks options.
    """
    defaults = dict(defaults or {})
    prog = prog or os.path.basename(sys.argv[0])
    parser = build_parser(prog, description, defaults, choose_model=choose_model)
    if two_phase:
        g = parser.add_argument_group("transfer learning")
        g.add_argument("--head-epochs", type=int, default=5, help="phase 1 epochs: new head only, base frozen (default: %(default)s)")
        g.add_argument("--head-lr", type=float, default=1e-3, help="phase 1 learning rate (default: %(default)s)")
        g.add_argument("--unfreeze-blocks", type=int, default=1,
                       help="phase 2 trains the top N of the base's 5 conv blocks at --lr (default: %(default)s)")
    args = parser.parse_args(argv)

    def job():
        config = config_from_args(args, defaults)
        # A progress bar redrawn into a log file is noise: one line per epoch there.
        verbose = 2 if args.quiet or not sys.stdout.isatty() else 1
        if two_phase:
            train_two_phase(config, head_epochs=args.head_epochs, head_lr=args.head_lr,
                            unfreeze_blocks=args.unfreeze_blocks, verbose=verbose)
        else:
            train(config, verbose=verbose)

    return run_cli(job, hints={BadRowError: SKIP_BAD_ROWS_HINT}, parser=parser)
