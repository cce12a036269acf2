"""Command line of test_ensemble_model.py: evaluate every saved model and their ensemble.

Members are every ``*.h5``/``*.keras`` file in ``--models-dir`` (natural
order) plus each ``--model FILE``; adding a member is dropping a file there.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
import warnings
from pathlib import Path

from fer_keras.cli.common import run_cli

EPILOG = """\
examples:
  %(prog)s --csv data/fer2013.csv --usage PrivateTest --models-dir models --out reports/final
  %(prog)s --csv data/fer2013.csv --tta --method geometric --out reports/geo_tta
  %(prog)s --csv data/fer2013.csv --fit-weights PublicTest --out reports/fitted
  %(prog)s --images faces/ --model other/mini_xception.h5 --out reports/faces

a model file without fer_keras metadata may carry a sidecar JSON next to it
(model.json): {"input_scale": "0-1" | "-1-1" | "0-255", "class_names": [...]}.
exit codes: 0 done, 2 a problem to fix (message on stderr), 130 interrupted.
"""


def build_parser(prog=None, description=None):
    from fer_keras.ensemble import BATCH_SIZE, METHODS

    p = argparse.ArgumentParser(prog=prog, description=description or __doc__.splitlines()[0], epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("data")
    src = g.add_mutually_exclusive_group()
    src.add_argument("--csv", help="FER2013-layout CSV (.csv or .csv.gz) (default: data/fer2013.csv)")
    src.add_argument("--images", metavar="DIR", help="image-folder dataset (<split>/<class>/*.jpg or <class>/*.jpg) "
                     "instead of --csv")
    g.add_argument("--usage", help="split to evaluate (default: PrivateTest if present, else the last split)")

    g = p.add_argument_group("members")
    g.add_argument("--models-dir", help="every *.h5 and *.keras here is a member "
                   "(default: models, unless --model is given)")
    g.add_argument("--model", action="append", default=[], metavar="FILE", help="a member file, repeatable")
    g.add_argument("--unsafe", action="store_true", help="allow files that run code when loaded (Lambda layers); "
                   "only for files you trust")
    g.add_argument("--strict", action="store_true", help="fail (exit 2) instead of skipping an unusable file")

    g = p.add_argument_group("ensemble")
    g.add_argument("--method", choices=METHODS, default="mean",
                   help="mean of softmax, geometric mean, or majority vote (default: %(default)s)")
    g.add_argument("--weights", default="uniform", metavar="uniform|FILE",
                   help='per-member weights JSON {"weights": {"model_1.h5": 0.6, ...}} (default: %(default)s)')
    g.add_argument("--fit-weights", metavar="SPLIT", help="fit non-negative weights summing to 1 on this split "
                   "(minimum NLL of the weighted mean; e.g. PublicTest) and write weights.json to --out")
    g.add_argument("--tta", action="store_true", help="average each member over the face and its mirror image")

    g = p.add_argument_group("run")
    g.add_argument("--out", help="report folder (default: reports/ensemble-<usage>-<time>)")
    g.add_argument("--overwrite", action="store_true", help="replace a report already in --out")
    g.add_argument("--batch-size", type=int, default=BATCH_SIZE, help="default: %(default)s")
    g.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def _load_dataset(args):
    from fer_keras import data

    if args.images:
        return data.load_image_folder(args.images), {"csv": None, "images": str(args.images)}
    csv = args.csv or "data/fer2013.csv"
    return data.load_fer2013(csv), {"csv": str(csv)}


def _pick_usage(dataset, requested):
    from fer_keras.constants import TEST_SPLIT

    if requested:
        dataset[requested]  # raises DataError naming the splits present
        return requested
    return TEST_SPLIT if TEST_SPLIT in dataset else list(dataset.splits)[-1]


def run(args, *, stdout=None):
    """Evaluate as ``args`` say; print the report; write the report folder. Returns 0."""
    from fer_keras import ensemble as ens
    from fer_keras.errors import ConfigError, DataError
    from fer_keras.io_utils import prepare_output_dir

    stdout = stdout or sys.stdout
    started = time.perf_counter()
    if args.batch_size < 1:
        raise ConfigError("--batch-size must be at least 1")
    if args.fit_weights and args.weights != "uniform":
        raise ConfigError("--weights and --fit-weights contradict each other; give one")
    weights = None if args.weights == "uniform" else ens.read_weights(args.weights)

    dataset, context = _load_dataset(args)
    usage = _pick_usage(dataset, args.usage)
    if args.fit_weights:
        if args.fit_weights == usage:
            raise ConfigError(f"--fit-weights {args.fit_weights} is the evaluated split; fitting weights on the "
                              "faces being judged inflates the score (fit on another split, e.g. PublicTest)")
        dataset[args.fit_weights]
    split = dataset[usage]
    if len(split) == 0:
        raise DataError(f"split {usage} is empty")
    out = Path(args.out or f"reports/ensemble-{usage}-{time.strftime('%Y%m%d-%H%M%S')}")
    prepare_output_dir(out, overwrite=args.overwrite)  # fail now, not after the predictions

    sources = ([args.models_dir] if args.models_dir else ([] if args.model else ["models"])) + list(args.model)
    members, skipped = ens.load_members(sources, safe_mode=not args.unsafe, strict=args.strict)
    print(f"{len(members)} member(s)" + (f", {len(skipped)} skipped" if skipped else ""), file=stdout)
    for m in members:
        print(f"  {m.name:<28} {m.adapter.describe()}", file=stdout)
    for s in skipped:
        print(f"  skipped {s}", file=stdout)

    ensemble = ens.Ensemble(members, method=args.method, weights=weights, batch_size=args.batch_size,
                            verbose=0 if args.quiet else 1)
    weights_source = f"file {args.weights}" if weights is not None else "uniform"
    if args.fit_weights:
        fit_split = dataset[args.fit_weights]
        uniform_nll = _nll(ensemble, fit_split, args.tta)
        ensemble.fit_weights(fit_split.x, fit_split.y, tta=args.tta)
        fitted_nll = _nll(ensemble, fit_split, args.tta)
        weights_file = ens.write_weights(out / "weights.json", ensemble, fitted_on={
            **context, "usage": args.fit_weights, "n_samples": len(fit_split), "tta": args.tta},
            objective="NLL of the weighted mean", nll=fitted_nll, nll_uniform=uniform_nll)
        weights_source = (f"fitted on {args.fit_weights} (NLL {uniform_nll:.4f} uniform → {fitted_nll:.4f}), "
                          f"{weights_file}")
        print(f"weights fitted on {args.fit_weights}: " +
              ", ".join(f"{k} {v:.3f}" for k, v in ensemble.weights_dict().items()), file=stdout)

    report = ens.evaluate(ensemble, split.x, split.y, tta=args.tta, skipped=skipped,
                          context={**context, "usage": usage, "weights_source": weights_source,
                                   "safe_mode": not args.unsafe, "options": vars(args)})
    report.seconds["total"] = round(time.perf_counter() - started, 3)
    report.context["machine"] = ens.machine_info()
    print("", file=stdout)
    print(report.to_text(), file=stdout)
    report.save(out, overwrite=args.overwrite)
    print(f"\nreport written to {out}/ ({', '.join(ens.REPORT_FILES)}"
          f"{', weights.json' if args.fit_weights else ''})", file=stdout)
    return 0


@contextlib.contextmanager
def _plain_warnings():
    """Show Python warnings as ``warning: message`` lines; hide TensorFlow's retracing notices
    (every member traces its own predict function once)."""
    import logging

    previous = warnings.showwarning
    tf_logger = logging.getLogger("tensorflow")
    level = tf_logger.level

    def show(message, category, filename, lineno, file=None, line=None):
        print(f"warning: {message}", file=sys.stderr)

    warnings.showwarning = show
    tf_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            yield
    finally:
        warnings.showwarning = previous
        tf_logger.setLevel(level)


def _nll(ensemble, split, tta):
    from fer_keras.ensemble import combine_probas
    from fer_keras.metrics import negative_log_likelihood

    probas = combine_probas(ensemble.member_probas(split.x, tta=tta), ensemble.weights_, "mean")
    return negative_log_likelihood(split.y, probas)


def main(argv=None, *, prog=None, description=None):
    """Parse ``argv``, evaluate, print, write the report. Returns the exit code."""
    parser = build_parser(prog or os.path.basename(sys.argv[0]), description)
    args = parser.parse_args(argv)

    def job():
        with _plain_warnings():
            return run(args)

    return run_cli(job)
