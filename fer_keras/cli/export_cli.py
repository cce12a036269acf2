"""Command line of export.py: one model file (or several formats of it) for apps.

A thin layer over :mod:`fer_keras.export`: it loads the members, fuses them
into one Keras model, writes each ``--format``, then runs every artefact in
its own runtime on a validation split and prints how closely it follows the
Keras original (also written to ``export_report.json`` in ``--out``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from fer_keras import ensemble as ens
from fer_keras import export as ex
from fer_keras.cli.common import add_weights_argument, calibration_note, run_cli, skipped_line, weights_file
from fer_keras.constants import CLASS_NAMES, INPUT_SHAPE, NUM_CLASSES
from fer_keras.ensemble import find_model_files
from fer_keras.errors import ConfigError, ModelFileError, check_seed
from fer_keras.export import FORMATS, LATENCY_CALLS, REPRESENTATIVE_FACES, TFLITE_VARIANTS, slug
from fer_keras.io_utils import check_writable_folder, refuse_inputs, write_json_atomic
from fer_keras.machine import machine_info

EPILOG = """\
examples:
  %(prog)s                                              # models/ fused into exported/fer_ensemble.keras + .h5
  %(prog)s --format tflite --format onnx --csv data/fer2013.csv
  %(prog)s --models-dir models --weights reports/fitted/weights.json --format all --out exported/v1
  %(prog)s --model models/model_12.h5 --format tflite --tflite-variants int8

every artefact takes raw grey faces, uint8 (N, 48, 48, 1), and returns the 7
FER2013 probabilities in FER2013 order (the fused .keras/.h5 take the same
values as float, like every fer_keras member). files in --out, for --name NAME:
  keras       NAME.keras, NAME.h5        one Keras model: members, adapters, weighted mean
  savedmodel  NAME_savedmodel/           serving_default: faces uint8 -> probabilities
  tflite      NAME_float32.tflite, NAME_float16.tflite,
              NAME_int8.tflite           full-integer; uint8 input (scale 1), float32 output
  onnx        NAME.onnx                  via tf2onnx; input "faces" uint8
and export_report.json (options, members, weights, checks, versions).
tflite and onnx need the optional packages in requirements-export.txt
(pip install -r requirements-export.txt): tf2onnx + onnx + onnxruntime for
onnx; ai-edge-litert runs .tflite files (else tf.lite.Interpreter is used).
checks: --csv's PublicTest (else synthetic faces): accuracy, top-1 agreement
with the Keras original, largest probability difference, size and
single-face latency (median of --latency-calls calls). targets: agreement
>= 99.9%% (int8: >= 99%% and >= 3x smaller than float32).
exit codes: 0 done (a missed target is reported, not fatal), 2 a problem to
fix (message on stderr), 130 interrupted.
"""

REPORT_FILE = "export_report.json"


def build_parser(prog=None, description=None):
    p = argparse.ArgumentParser(prog=prog, description=description or __doc__.splitlines()[0], epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("models")
    g.add_argument("--models-dir", metavar="DIR", help="every *.h5 and *.keras here is a member of the exported "
                   "ensemble (default: models, unless --model is given)")
    g.add_argument("--model", action="append", default=[], metavar="FILE",
                   help="a member file, repeatable (one --model exports that model alone)")
    add_weights_argument(g)
    g.add_argument("--unsafe", action="store_true", help="allow member files that run code when loaded "
                   "(Lambda layers); only for files you trust")

    g = p.add_argument_group("formats")
    g.add_argument("--format", action="append", choices=[*FORMATS, "all"], metavar="FORMAT",
                   help=f"{', '.join(FORMATS)} or all; repeatable (default: keras)")
    g.add_argument("--tflite-variants", default=",".join(TFLITE_VARIANTS), metavar="LIST",
                   help="comma-separated TFLite files to write (default: %(default)s)")
    g.add_argument("--opset", type=int, metavar="N", help="ONNX opset (default: tf2onnx's)")

    g = p.add_argument_group("data")
    g.add_argument("--csv", help="FER2013-layout CSV: int8 calibration faces from its Training split, checks on "
                   "its PublicTest split (default: synthetic faces for both)")
    g.add_argument("--limit", type=int, metavar="N", help="check on the first N validation faces only")
    g.add_argument("--representative", type=int, default=REPRESENTATIVE_FACES, metavar="N",
                   help="int8 calibration faces (default: %(default)s)")
    g.add_argument("--seed", type=int, default=0, help="seed of the calibration sample (default: %(default)s)")

    g = p.add_argument_group("output")
    g.add_argument("--out", default="exported", metavar="DIR", help="output folder (default: %(default)s)")
    g.add_argument("--name", help="file name stem (default: fer_ensemble, or the member's name for one --model)")
    g.add_argument("--overwrite", action="store_true", help="replace files of an earlier export in --out")
    g.add_argument("--latency-calls", type=int, default=LATENCY_CALLS, metavar="N",
                   help="single-face calls timed per artefact (default: %(default)s)")
    g.add_argument("--no-verify", action="store_true", help="write the files without running the checks")
    return p


def _options(args):
    """``(formats, variants, name)`` from the options; raises ConfigError for bad ones."""
    formats = list(dict.fromkeys(args.format or ["keras"]))
    if "all" in formats:
        formats = list(FORMATS)
    variants = [v.strip() for v in args.tflite_variants.split(",") if v.strip()]
    unknown = sorted(set(variants) - set(TFLITE_VARIANTS))
    if unknown or not variants:
        raise ConfigError(f"--tflite-variants: {', '.join(unknown) or 'nothing given'}; "
                          f"choose from {', '.join(TFLITE_VARIANTS)}")
    if args.limit is not None and args.limit < 1:
        raise ConfigError("--limit must be at least 1")
    if args.representative < 1:
        raise ConfigError("--representative must be at least 1")
    if args.latency_calls < 1:
        raise ConfigError("--latency-calls must be at least 1")
    check_seed(args.seed)
    if args.models_dir and args.model:
        raise ConfigError("give --models-dir or --model, not both")
    name = args.name or (Path(args.model[0]).stem if len(args.model) == 1 else "fer_ensemble")
    if slug(name) != name:
        raise ConfigError(f"--name {name!r}: use letters, digits and _ only")
    return formats, list(dict.fromkeys(variants)), name


def _sources(args):
    if args.model:
        return list(args.model)
    folder = args.models_dir or "models"
    if not Path(folder).is_dir() or not find_model_files(folder):
        state = "has no model files" if Path(folder).is_dir() else "does not exist"
        raise ModelFileError(f"{folder}/ {state} (*.h5 or *.keras); train one first or pass --model FILE")
    return [folder]


def _folder_inputs(args):
    """The member files and calibration of the models folder this run reads (none with --model): an
    output named like one of them (``--out models --name model_3 --overwrite``) would replace a member."""
    folder = Path(args.models_dir or "models")
    if args.model or not folder.is_dir():
        return []
    return [*find_model_files(folder), folder / ens.CALIBRATION_FILE]


def run(args, *, stdout=None):
    """Export as ``args`` say; print the checks; write export_report.json. Returns 0."""
    stdout = stdout or sys.stdout
    started = time.perf_counter()
    formats, variants, name = _options(args)
    out = Path(args.out)
    paths = ex.artefact_paths(out, name, formats, variants)
    check_writable_folder(out)  # before any slow work: the place, the names, the converters
    ex.check_free([*paths.values(), out / REPORT_FILE], overwrite=args.overwrite)
    refuse_inputs([*paths.values(), out / REPORT_FILE],
                  [args.csv, weights_file(args), *args.model, *_folder_inputs(args)])
    ex.check_converters(formats, verify=not args.no_verify)

    given = weights_file(args) is not None
    weights, temperatures = ens.read_weights_file(args.weights) if given else (None, None)
    # Every input is read (a bad --csv refused) before the models load and before anything is written.
    representative, rep_source = None, None
    if "tflite" in formats and "int8" in variants:
        representative, rep_source = ex.representative_faces(args.representative, csv=args.csv, seed=args.seed)
    val_source = None
    if not args.no_verify:
        faces, labels, val_source = ex.validation_faces(csv=args.csv, limit=args.limit)
    members, skipped = ens.load_members(_sources(args), safe_mode=not args.unsafe)
    source = args.weights if given else ("uniform" if len(members) > 1 else None)
    if args.weights == "auto" and not args.model:
        folder = args.models_dir or "models"
        temperatures, note = ens.folder_temperatures(folder, members)
        if note:
            print(calibration_note(note, folder, temperatures is not None), file=stdout)
        if temperatures is not None:
            source = str(Path(folder) / ens.CALIBRATION_FILE)
    model = ex.fuse(members, weights=weights, temperatures=temperatures, name=name)
    metadata = ex.fused_metadata(members, weights=weights, temperatures=temperatures,
                                 source=source)
    print(f"{len(members)} member(s)" + (f", {len(skipped)} skipped" if skipped else ""), file=stdout)
    for entry, member in zip(metadata["members"], members):
        temp = f", T={entry['temperature']:.3f}" if entry["temperature"] != 1 else ""
        print(f"  {entry['file']:<28} weight {entry['weight']:.4f}{temp}  {member.adapter.describe()}", file=stdout)
    for s in skipped:
        print(skipped_line(s), file=stdout)

    if rep_source:
        print(f"int8 calibration: {rep_source}", file=stdout)

    def written(fmt, variant, path):
        print(f"  wrote {path}" + ("/" if Path(path).is_dir() else ""), file=stdout, flush=True)

    print(f"writing {', '.join(formats)} to {out}/", file=stdout)
    ex.export(model, out, name=name, formats=formats, variants=variants, metadata=metadata,
              representative=representative, overwrite=args.overwrite, on_written=written)

    rows = []
    if not args.no_verify:
        print(f"\nchecks on {val_source}; latency: median of {args.latency_calls} single-face calls", file=stdout)
        rows = ex.verify(model, paths, faces, labels, calls=args.latency_calls, synthetic=args.csv is None)
        print(ex.results_table(rows), file=stdout)
        missed = [Path(r["file"]).name for r in rows if r["passed"] is False]
        if missed:
            print(f"note: target missed by {', '.join(missed)} (see {REPORT_FILE})", file=stdout)
        unverified = [Path(r["file"]).name for r in rows if r["file"] and r["passed"] is None]
        if unverified:
            print(f"note: {', '.join(unverified)} checked on synthetic faces only, which say little of how a "
                  "quantized file agrees on real ones: pass --csv to check them on PublicTest", file=stdout)

    report = {"name": name, "formats": formats, "tflite_variants": variants if "tflite" in formats else None,
              "files": {f"{fmt}" + (f"/{v}" if v else ""): str(p) for (fmt, v), p in paths.items()},
              "contract": {"input": {"name": ex.INPUT_NAME, "shape": ["N", *INPUT_SHAPE], "dtype": "uint8",
                                     "range": "0-255, grey 48x48 face"},
                           "output": {"name": ex.OUTPUT_NAME, "shape": ["N", NUM_CLASSES], "dtype": "float32",
                                      "class_names": list(CLASS_NAMES)},
                           "keras": "the .keras/.h5 take the same values as float32",
                           "tflite_int8": "full-integer ops; uint8 input (scale 1, zero point 0), float32 output"},
              "members": metadata["members"], "weights": metadata["weights"],
              "temperatures": metadata["temperatures"], "skipped": [str(s) for s in skipped],
              "representative": rep_source, "validation": val_source, "checks": rows,
              "versions": ex.versions(), "machine": machine_info(),
              "seconds": round(time.perf_counter() - started, 2),
              "options": {k: v for k, v in vars(args).items()}}
    write_json_atomic(out / REPORT_FILE, report)
    print(f"\nwrote {out / REPORT_FILE} ({time.perf_counter() - started:.1f} s)", file=stdout)
    return 0


def main(argv=None, *, prog=None, description=None):
    """Parse ``argv``, export, check, report. Returns the exit code."""
    parser = build_parser(prog or os.path.basename(sys.argv[0]), description)
    args = parser.parse_args(argv)
    return run_cli(lambda: run(args), parser=parser)
