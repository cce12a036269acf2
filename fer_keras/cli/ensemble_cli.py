"""Command line of test_ensemble_model.py: evaluate every saved model and their ensemble.

Members are every ``*.h5``/``*.keras`` file in ``--models-dir`` (natural
order) plus each ``--model FILE``; adding a member is dropping a file there.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from fer_keras import data
from fer_keras import ensemble as ens
from fer_keras.cli.common import (add_tta_argument, add_weights_argument, calibration_note, plain_warnings, run_cli,
                                  skipped_line, weights_file)
from fer_keras.constants import CLASS_NAMES, TEST_SPLIT, TRAIN_SPLIT, VALIDATION_SPLIT
from fer_keras.data import DATASETS, Split, load_dataset
from fer_keras.ensemble import BATCH_SIZE, CLASS_MAPS, METHODS, combine_probas, report_files
from fer_keras.ensemble.calibration import expected_calibration_error, fit_temperature, held_out_ece
from fer_keras.ensemble.selection import greedy_selection
from fer_keras.errors import ConfigError, DataError, ModelFileError, check_seed
from fer_keras.io_utils import (check_outputs, check_writable_folder, not_a_folder, prepare_output_dir,
                               record_outputs)
from fer_keras.machine import machine_info
from fer_keras.metrics import classification_metrics, negative_log_likelihood

EPILOG = """\
examples:
  %(prog)s --csv data/fer2013.csv --usage PrivateTest --models-dir models --out reports/final
  %(prog)s --csv data/fer2013.csv --tta --method geometric --out reports/geo_tta
  %(prog)s --csv data/fer2013.csv --fit-weights PublicTest --out reports/fitted
  %(prog)s --csv data/fer2013.csv --calibrate PublicTest --worst 24 --out reports/calibrated
  %(prog)s --csv data/fer2013.csv --select greedy --select-on PublicTest --out reports/selected
  %(prog)s --images faces/ --model other/mini_xception.h5 --out reports/faces
  %(prog)s --dataset ferplus --csv data/fer2013.csv --ferplus-labels data/fer2013new.csv
  %(prog)s --dataset rafdb --data-root data/RAF-DB/basic --out reports/rafdb   # evaluates test (PublicTest)
  %(prog)s --dataset affectnet --data-root data/AffectNet --num-classes 8 --models-dir models8
  %(prog)s --dataset ckplus --data-root data/CK+ --num-classes 8 --class-map drop-contempt

class sets: 7-way members (FER2013 classes) and 8-way members (plus contempt, e.g.
trained with --num-classes 8) are never mixed silently. All 8-way members on
--num-classes 8 data just work. A 7-way member on 8-class data, or an 8-way one on
7-class data, is refused unless --class-map drop-contempt: everything is then
evaluated on the 7 shared classes, 8-way members' contempt probability is dropped
and the other 7 renormalised, and contempt faces are left out of the data.

a model file without fer_keras metadata may carry a sidecar JSON next to it
(model.json): {"input_scale": "0-1" | "-1-1" | "0-255", "class_names": [...]} (7 names, or 8
with contempt for an 8-way model).
a --weights file holds "weights", "temperatures" or both; the weights.json,
temperatures.json and selection.json this tool writes are all such files.
every report has calibration (ECE, NLL, Brier; reliability.png), 95%% bootstrap
intervals, McNemar tests against the ensemble, member disagreement
(disagreement.png) and report.html with every table and figure.
exit codes: 0 done, 2 a problem to fix (message on stderr), 130 interrupted.
"""


def build_parser(prog=None, description=None):
    p = argparse.ArgumentParser(prog=prog, description=description or __doc__.splitlines()[0], epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("data")
    src = g.add_mutually_exclusive_group()
    src.add_argument("--csv", help="FER2013-layout CSV (.csv or .csv.gz); with --dataset ferplus the original "
                     "fer2013.csv holding the faces (default: data/fer2013.csv)")
    src.add_argument("--images", metavar="DIR", help="image-folder dataset (<split>/<class>/*.jpg or <class>/*.jpg) "
                     "instead of --csv")
    g.add_argument("--dataset", choices=DATASETS, help="fer2013 (--csv, the default), ferplus (--ferplus-labels "
                   "on the faces of --csv; majority labels), rafdb, affectnet, ckplus (--data-root)")
    g.add_argument("--ferplus-labels", metavar="FILE", help="FER+ fer2013new.csv (its rows label the rows of --csv)")
    g.add_argument("--data-root", metavar="DIR", help="rafdb: basic/ (EmoLabel/, Image/aligned/); affectnet: "
                   "<split>/<class>/ folders or label CSVs; ckplus: <class>/S005_001_*.png folders")
    g.add_argument("--num-classes", type=int, choices=(7, 8), default=7,
                   help="8 keeps contempt as class 7 (ferplus, affectnet, ckplus) (default: %(default)s)")
    g.add_argument("--ckplus-fold", type=int, default=0, metavar="K",
                   help="CK+ held-out fold, read as PublicTest (default: %(default)s)")
    g.add_argument("--ckplus-folds", type=int, default=10, metavar="N",
                   help="CK+ subject-independent folds (default: %(default)s)")
    g.add_argument("--usage", help="split to evaluate (default: PrivateTest if present, else the last split)")

    g = p.add_argument_group("members")
    g.add_argument("--models-dir", help="every *.h5 and *.keras here is a member "
                   "(default: models, unless --model is given)")
    g.add_argument("--model", action="append", default=[], metavar="FILE", help="a member file, repeatable")
    g.add_argument("--unsafe", action="store_true", help="allow files that run code when loaded (Lambda layers); "
                   "only for files you trust")
    g.add_argument("--strict", action="store_true", help="fail (exit 2) instead of skipping an unusable file")
    g.add_argument("--include-distilled", action="store_true", help="also average the folder's distilled "
                   "members (trained with --teacher); by default a student is set aside while all its "
                   "teachers are members beside it, since it copies them")
    g.add_argument("--class-map", choices=CLASS_MAPS,
                   help="drop-contempt: evaluate 7-way and 8-way members together on the 7 shared classes "
                   "(contempt column dropped and renormalised, contempt faces left out); without it mixed "
                   "class sets are an error")

    g = p.add_argument_group("ensemble")
    g.add_argument("--method", choices=METHODS, default="mean",
                   help="mean of softmax, geometric mean, or majority vote (default: %(default)s)")
    add_weights_argument(g)
    g.add_argument("--fit-weights", metavar="SPLIT", help="fit non-negative weights summing to 1 on this split "
                   "(minimum NLL of the weighted mean; e.g. PublicTest) and write weights.json to --out")
    add_tta_argument(g)

    g = p.add_argument_group("calibration and statistics")
    g.add_argument("--calibrate", metavar="SPLIT", help="fit one temperature per member on this split (minimum NLL "
                   "of softmax(log p / T); e.g. PublicTest), apply it before combining, write temperatures.json "
                   "to --out and report ECE before and after")
    g.add_argument("--bootstrap", type=int, default=1000, metavar="N",
                   help="bootstrap resamples for the 95%% intervals of accuracy and macro-F1; 0: none "
                   "(default: %(default)s)")
    g.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resamples (default: %(default)s)")
    g.add_argument("--worst", type=int, default=0, metavar="N",
                   help="write worst.png: the N most confidently wrong faces with true and predicted label")

    g = p.add_argument_group("member selection")
    g.add_argument("--select", choices=["greedy"], help="greedy forward selection with replacement (Caruana et al. "
                   "2004) on --select-on; writes selection.json (a --weights file) to --out and compares the "
                   "selected members with all of them")
    g.add_argument("--select-on", metavar="SPLIT", help="split the selection is fitted on (default: PublicTest)")
    g.add_argument("--select-metric", choices=["accuracy", "nll"], default="accuracy",
                   help="what the selection maximises: accuracy (ties broken by NLL) or minus the NLL "
                   "(default: %(default)s)")

    g = p.add_argument_group("run")
    g.add_argument("--out", help="report folder (default: reports/ensemble-<usage>-<time>)")
    g.add_argument("--overwrite", action="store_true", help="replace a report already in --out")
    g.add_argument("--batch-size", type=int, default=BATCH_SIZE, help="default: %(default)s")
    g.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def _load_dataset(args):
    """``(dataset, context)``: the faces to evaluate and what report.json says about them."""
    name = getattr(args, "dataset", None)
    if args.images:
        if name:
            raise ConfigError(f"--images and --dataset {name} both name the data; give one")
        return data.load_image_folder(args.images), {"csv": None, "images": str(args.images), "dataset": "images"}
    name = name or "fer2013"
    root = getattr(args, "data_root", None)
    if name in ("rafdb", "affectnet", "ckplus"):
        if args.csv:
            raise ConfigError(f"--dataset {name} reads --data-root, not --csv")
        dataset = load_dataset(name, data_root=root or "", num_classes=args.num_classes,
                               ckplus_fold=args.ckplus_fold, ckplus_folds=args.ckplus_folds)
        return dataset, {"csv": None, "dataset": name, "data_root": str(root)}
    if root:
        raise ConfigError(f"--data-root is for rafdb, affectnet and ckplus, not --dataset {name}")
    csv = args.csv or "data/fer2013.csv"
    dataset = load_dataset(name, csv=csv, ferplus_labels=getattr(args, "ferplus_labels", None) or "",
                           num_classes=getattr(args, "num_classes", 7))
    context = {"csv": str(csv), "dataset": name}
    if name == "ferplus":
        context["ferplus_labels"] = str(args.ferplus_labels)
    return dataset, context


def _drop_contempt_faces(dataset):
    """``(dataset without contempt faces, number dropped)`` for 8-class data; unchanged for 7."""
    import dataclasses

    if len(dataset.class_names) == len(CLASS_NAMES):
        return dataset, 0
    contempt = len(CLASS_NAMES)
    splits, files, dropped = {}, {}, 0
    for usage, split in dataset.splits.items():
        keep = split.y != contempt
        dropped += int((~keep).sum())
        splits[usage] = Split(split.x[keep], split.y[keep])
        if usage in getattr(dataset, "files", {}):
            files[usage] = [f for f, k in zip(dataset.files[usage], keep) if k]
    changes = {"splits": splits, "class_names": CLASS_NAMES}
    if hasattr(dataset, "files"):
        changes["files"] = files
    return dataclasses.replace(dataset, **changes), dropped


def _pick_usage(dataset, requested):
    if requested:
        dataset[requested]  # raises DataError naming the splits present
        return requested
    return TEST_SPLIT if TEST_SPLIT in dataset else list(dataset.splits)[-1]


def _refuse_evaluated_split(flag, split, usage, dataset, harm, *, min_faces=1, why_min=""):
    """ConfigError when ``split`` (fitted on) is ``usage`` (evaluated), missing or smaller than
    ``min_faces``; the advice names a split the data really has, never the evaluated one."""
    if split != usage:
        faces = len(dataset[split])  # raises DataError naming the splits present
        if faces < min_faces:
            raise DataError(f"{flag} {split}: the split has {faces} face(s); {why_min} needs at least {min_faces}")
        return
    others = sorted((u for u in dataset.splits if u != usage), key=lambda u: u != VALIDATION_SPLIT)
    advice = f"use another split, e.g. {others[0]}" if others else "the data has no other split"
    raise ConfigError(f"{flag} {split} is the evaluated split; {harm} ({advice})")


def run(args, *, stdout=None):
    """Evaluate as ``args`` say; print the report; write the report folder. Returns 0."""
    stdout = stdout or sys.stdout
    started = time.perf_counter()
    if args.batch_size < 1:
        raise ConfigError("--batch-size must be at least 1")
    if args.bootstrap < 0 or args.bootstrap == 1:
        raise ConfigError(f"--bootstrap {args.bootstrap}: give 0 (no intervals) or at least 2 resamples (one "
                          "resample gives a zero-width interval; the default is 1000)")
    check_seed(args.seed)
    if args.worst < 0:
        raise ConfigError("--worst must be 0 or more")
    if args.select and args.fit_weights:
        raise ConfigError("--select and --fit-weights both set the weights; give one")
    if args.select_on and not args.select:
        raise ConfigError("--select-on needs --select greedy")
    given = weights_file(args) is not None
    weights, temperatures = ens.read_weights_file(args.weights) if given else (None, None)
    if args.fit_weights and weights is not None:
        raise ConfigError("--weights and --fit-weights contradict each other; give one")
    if args.select and weights is not None:
        raise ConfigError(f"--select sets the weights, but {args.weights} gives weights too; give one")
    if args.calibrate and temperatures is not None:
        raise ConfigError(f"--calibrate fits temperatures, but {args.weights} gives temperatures too; give one")
    if args.models_dir and not Path(args.models_dir).is_dir():  # said now, not after the CSV is read
        raise ModelFileError(f"--models-dir: {not_a_folder(args.models_dir)}")

    dataset, context = _load_dataset(args)
    usage = _pick_usage(dataset, args.usage)
    if args.fit_weights:
        _refuse_evaluated_split("--fit-weights", args.fit_weights, usage, dataset,
                                "fitting weights on the faces being judged inflates the score")
    if args.calibrate:
        _refuse_evaluated_split("--calibrate", args.calibrate, usage, dataset, "fitting temperatures on the faces "
                                "being judged makes the calibration look better than it is",
                                min_faces=2, why_min="judging the temperatures on faces they were not fitted on "
                                "(one half fits, the other judges)")
    select_on = None
    if args.select:
        select_on = args.select_on or VALIDATION_SPLIT
        _refuse_evaluated_split("--select-on", select_on, usage, dataset,
                                "selecting members on the faces being judged inflates the score")
    split = dataset[usage]
    if len(split) == 0:
        raise DataError(f"split {usage} is empty")
    out = Path(args.out or f"reports/ensemble-{usage}-{time.strftime('%Y%m%d-%H%M%S')}")
    names = _output_names(args)
    inputs = [args.csv, getattr(args, "ferplus_labels", None), args.weights if given else None]
    # Refuse now, not after predicting; create the folder only once the members have loaded, so that
    # a run stopped by a bad model file leaves no empty folder behind.
    check_outputs(out, names, overwrite=args.overwrite, inputs=inputs)
    check_writable_folder(out)

    sources = ([args.models_dir] if args.models_dir else ([] if args.model else ["models"])) + list(args.model)
    members, skipped = ens.load_members(sources, safe_mode=not args.unsafe, strict=args.strict,
                                        class_counts=ens.CLASS_COUNTS, include_distilled=args.include_distilled)
    print(f"{len(members)} member(s)" + (f", {len(skipped)} skipped" if skipped else ""), file=stdout)
    for m in members:
        print(f"  {m.name:<28} {m.adapter.describe()}", file=stdout)
    for s in skipped:
        print(skipped_line(s), file=stdout)

    class_map = getattr(args, "class_map", None)
    classes = ens.evaluation_classes(members, data_classes=len(dataset.class_names), class_map=class_map)
    if class_map:
        dataset, dropped = _drop_contempt_faces(dataset)
        context["class_map"] = {"name": class_map, "contempt_faces_dropped": dropped,
                                "members_8_way": [m.name for m in members if m.num_classes == 8]}
        print(f"--class-map {class_map}: evaluating on the 7 shared classes"
              + (f"; {dropped} contempt face(s) left out" if dropped else ""), file=stdout)
        split = dataset[usage]
        if len(split) == 0:
            raise DataError(f"split {usage} has no faces left once contempt faces are dropped")

    ensemble = ens.Ensemble(members, method=args.method, weights=weights, batch_size=args.batch_size,
                            verbose=0 if args.quiet else 1, temperatures=temperatures, class_map=class_map)
    weights_source = f"file {args.weights}" if weights is not None else "uniform"
    calibration_file = args.weights if temperatures is not None else None
    folder = args.models_dir or (None if args.model else "models")
    if args.weights == "auto" and folder and not args.model and not args.calibrate:
        ensemble.temperatures, note = ens.folder_temperatures(folder, members)
        if note:
            print(calibration_note(note, folder, ensemble.temperatures is not None), file=stdout)
        if ensemble.temperatures is not None:
            calibration_file = Path(folder) / ens.CALIBRATION_FILE
    if calibration_file is not None:
        ensemble.temperatures_  # names every member, or fails now
        context["temperature_scaling"] = {"file": str(calibration_file)}
    prepare_output_dir(out, overwrite=args.overwrite, names=names, inputs=inputs)
    if args.calibrate:
        _calibrate(ensemble, dataset, args, context, out, stdout,
                   set_aside=[s for s in skipped if s.reason == ens.DISTILLED_REASON])
    if args.fit_weights:
        fit_split = dataset[args.fit_weights]
        uniform_nll = _nll(ensemble, fit_split, args.tta)
        ensemble.fit_weights(fit_split.x, fit_split.y, tta=args.tta)
        fitted_nll = _nll(ensemble, fit_split, args.tta)
        written = ens.write_weights(out / "weights.json", ensemble, fitted_on={
            **context, "usage": args.fit_weights, "n_samples": len(fit_split), "tta": args.tta},
            objective="NLL of the weighted mean", nll=fitted_nll, nll_uniform=uniform_nll)
        weights_source = (f"fitted on {args.fit_weights} (NLL {uniform_nll:.4f} uniform → {fitted_nll:.4f}), "
                          f"{written}")
        print(f"weights fitted on {args.fit_weights}: " +
              ", ".join(f"{k} {v:.3f}" for k, v in ensemble.weights_dict().items()), file=stdout)
    all_weights = ensemble.weights_
    if args.select:
        weights_source = _select(ensemble, dataset, select_on, args, context, out, stdout)

    overlap = None
    if TRAIN_SPLIT in dataset and usage != TRAIN_SPLIT:  # FER2013: 280 PublicTest faces are Training faces
        overlap = (TRAIN_SPLIT, data.seen_in(split.x, dataset[TRAIN_SPLIT].x))
    report = ens.evaluate(ensemble, split.x, split.y, tta=args.tta, skipped=skipped,
                          context={**context, "usage": usage, "weights_source": weights_source,
                                   "safe_mode": not args.unsafe, "options": vars(args)},
                          bootstrap=args.bootstrap, seed=args.seed, class_names=classes, overlap=overlap)
    if args.select:
        report.context["selection"]["evaluated"] = _selected_vs_all(report, all_weights)
    report.seconds["total"] = round(time.perf_counter() - started, 3)
    report.context["machine"] = machine_info()
    print("", file=stdout)
    print(report.to_text(), file=stdout)
    report.save(out, overwrite=args.overwrite, worst=args.worst)
    record_outputs(out, "test_ensemble_model", names, inputs=inputs)
    print(f"\nreport written to {out}/ ({', '.join(names)})", file=stdout)
    return 0


def _output_names(args):
    """Every file this run writes into --out: the report, and the JSON files its options ask for."""
    asked = {"weights.json": args.fit_weights, "temperatures.json": args.calibrate, "selection.json": args.select}
    return [*report_files(worst=args.worst), *(name for name, given in asked.items() if given)]


def _calibrate(ensemble, dataset, args, context, out, stdout, set_aside=()):
    """Fit temperatures on ``--calibrate``; write temperatures.json.

    ``set_aside``: the folder's distilled files the ensemble left out; each gets a temperature
    of its own, fitted on the same faces, since the webcam runs it alone."""
    cal = dataset[args.calibrate]
    alone = []
    for skipped in set_aside:
        (member,), _ = ens.load_members([str(skipped.path)], safe_mode=not args.unsafe, strict=True)
        probas = member.predict_proba(cal.x, tta=args.tta, batch_size=args.batch_size, verbose=0)
        alone.append((member, fit_temperature(probas, cal.y)))
        print(f"temperature of {member.name} alone (set aside from the ensemble) fitted on {args.calibrate}: "
              f"{alone[-1][1]:.3f}", file=stdout)
    raw = ensemble.member_probas(cal.x, tta=args.tta)
    ensemble.temperatures = None
    plain = ensemble.combine(raw)
    ensemble.calibrate(cal.x, cal.y, member_probas=raw)
    calibrated = ensemble.combine(raw)
    ece = {"before": expected_calibration_error(cal.y, plain), "after": expected_calibration_error(cal.y, calibrated)}
    combination = ensemble.combination_of_members()
    if combination is not None:
        ece.update(held_out_ece(raw, cal.y, combination, seed=args.seed))
    path = ens.write_temperatures(
        out / "temperatures.json", ensemble, alone=alone, shared_scale=ensemble.shared_scale_,
        fitted_on={**context, "usage": args.calibrate, "n_samples": len(cal), "tta": args.tta}, ece=ece,
        accuracy={"before": float(np.mean(plain.argmax(1) == cal.y)), "after": float(np.mean(calibrated.argmax(1) == cal.y))},
        how="fer_keras.ensemble.Ensemble(members).calibrate(faces, labels): one temperature per member "
            "(minimum NLL of softmax(log p / T)), then one shared factor minimising the ensemble's NLL; "
            "held-out: fitted on a seeded half of the split, judged on the other, both ways, averaged")
    context["temperature_scaling"] = {"fitted_on": args.calibrate, "n_samples": len(cal), "file": str(path)}
    held_out = (f"; fitted on one half, judged on the other {ece['held_out_before']:.4f} → "
                f"{ece['held_out_after']:.4f}" if "held_out_after" in ece else "")
    print(f"temperatures fitted on {args.calibrate}: " +
          ", ".join(f"{k} {v:.3f}" for k, v in ensemble.temperatures_dict().items()) +
          f" (ensemble ECE there {ece['before']:.4f} → {ece['after']:.4f}{held_out})", file=stdout)


def _select(ensemble, dataset, select_on, args, context, out, stdout):
    """Greedy selection on ``select_on``; sets the ensemble's weights, writes selection.json;
    returns the weights' description."""
    val = dataset[select_on]
    stack = ensemble.calibrated(ensemble.member_probas(val.x, tta=args.tta))
    before = ens.combine_probas(stack, ensemble.weights_, "mean")
    result = greedy_selection(stack, val.y, metric=args.select_metric)
    keys = ens.member_keys(ensemble.members)
    ensemble.weights = dict(zip(keys, result.weights.tolist()))
    after = ens.combine_probas(stack, ensemble.weights_, "mean")

    def figures(p):
        return {"accuracy": float((p.argmax(axis=1) == val.y).mean()), "nll": negative_log_likelihood(val.y, p)}

    selection = {"method": "greedy forward selection with replacement (Caruana et al., ICML 2004)",
                 "metric": args.select_metric, "fitted_on": select_on, "n_samples": len(val),
                 "steps": len(result.history), "best_step": result.best_step,
                 "counts": dict(zip(keys, map(int, result.counts))),
                 "order": [keys[i] for i in result.order],
                 "excluded_constant": [keys[i] for i in result.excluded],
                 "validation": {"all": figures(before), "selected": figures(after)},
                 "weights": ensemble.weights_dict()}
    extra = {k: v for k, v in selection.items() if k not in ("weights", "fitted_on", "n_samples")}
    path = ens.write_weights(out / "selection.json", ensemble, fitted_on={
        **context, "usage": select_on, "n_samples": len(val), "tta": args.tta}, **extra)
    context["selection"] = {**selection, "file": str(path)}
    chosen = ", ".join(f"{k} ×{c}" for k, c in selection["counts"].items() if c)
    print(f"greedy selection on {select_on}: {chosen} (validation accuracy "
          f"{selection['validation']['all']['accuracy']:.4f} all → "
          f"{selection['validation']['selected']['accuracy']:.4f} selected)", file=stdout)
    return f"greedy selection on {select_on} ({chosen}), {path}"


def _selected_vs_all(report, all_weights):
    """Accuracy, macro-F1 and NLL on the evaluated faces: every member (their weights before
    selection) vs the selected ones."""
    out = {}
    for key, w in (("all", all_weights), ("selected", report.weights)):
        p = combine_probas(report.member_probas, w, report.method)
        m = classification_metrics(report.y_true, p, report.class_names)
        out[key] = {"n_members": int(np.count_nonzero(np.asarray(w) > 0)), "accuracy": m["accuracy"],
                    "macro_f1": m["macro_f1"], "nll": negative_log_likelihood(report.y_true, p)}
    return out


def _nll(ensemble, split, tta):
    probas = combine_probas(ensemble.calibrated(ensemble.member_probas(split.x, tta=tta)), ensemble.weights_, "mean")
    return negative_log_likelihood(split.y, probas)


def main(argv=None, *, prog=None, description=None):
    """Parse ``argv``, evaluate, print, write the report. Returns the exit code."""
    parser = build_parser(prog or os.path.basename(sys.argv[0]), description)
    args = parser.parse_args(argv)

    def job():
        with plain_warnings():
            return run(args)

    return run_cli(job, parser=parser)
