"""Command lines of ``preprocess/*.py``: data_resize, csv_to_images, images_to_csv, pack_dataset.

The work is in :mod:`fer_keras.data` (``resize_folder``, ``csv_to_images``,
``images_to_csv``, ``pack_dataset``); here are the flags, the help texts,
what a flag adds to an error (``--skip-bad-rows``), and the short summary
each run prints of what it wrote.
"""

from __future__ import annotations

import argparse
import contextlib
import warnings
from pathlib import Path

from fer_keras import data
from fer_keras.cli.common import SKIP_BAD_ROWS_HINT, run_cli
from fer_keras.constants import CLASS_NAMES, IMAGE_SIZE, USAGES
from fer_keras.data.pictures import FITS
from fer_keras.errors import BadRowError
from fer_keras.faces import DEFAULT_DETECTOR, available_detectors


def format_summary(summary):
    """A short human report of a summary dict."""
    lines = [f"wrote {summary['written']} face(s) to {summary['output']}"]
    for key in ("per_class", "per_usage"):
        if summary.get(key):
            lines.append("  " + ", ".join(f"{k}: {v}" for k, v in summary[key].items()))
    if summary.get("faces_found") or summary.get("no_face_kept") or summary.get("no_face_skipped"):
        lines.append(f"  faces found: {summary['faces_found']}, no face (whole picture kept): "
                     f"{summary['no_face_kept']}, no face (skipped): {summary['no_face_skipped']}")
    if summary.get("unreadable"):
        lines.append(f"  skipped {summary['unreadable']} unreadable file(s), e.g. {summary['problems'][0]}")
    if summary.get("skipped_rows"):
        lines.append(f"  {summary['skipped_rows']}")
    return "\n".join(lines)


@contextlib.contextmanager
def _summary_reports_problems():
    """The printed summary counts skipped files/rows; no second, Python-style warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        yield


def _parser(prog, description, epilog):
    return argparse.ArgumentParser(prog=prog, description=description, epilog=epilog,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


DATA_RESIZE_EPILOG = """\
input layouts (class folders may use common spellings: anger, happiness, ...):
  flat:        photos/*.jpg                  (needs --label for --format csv)
  classes:     photos/<class>/*.jpg          e.g. photos/happy/me.jpg
  splits:      photos/<split>/<class>/*.jpg  split = train, val, test, ...

examples:
  %(prog)s photos/ faces/                              # 48x48 grey PNG tree, centre-cropped
  %(prog)s photos/ faces/ --detect-faces               # the largest face, framed as FER2013's, eyes level
  %(prog)s photos/ faces.csv --format csv --detect-faces --no-face skip
  %(prog)s selfies/ happy.csv --format csv --label happy --usage PrivateTest
  then: python train.py --csv faces.csv
"""


def data_resize_main(argv=None, *, prog=None):
    """``preprocess/data_resize.py``. Returns the exit code."""
    p = _parser(prog, "Turn a folder of pictures (any size, colour or grey, jpg/png/...) into "
                f"{IMAGE_SIZE}x{IMAGE_SIZE} grey FER2013-style faces: an image tree or a FER2013-layout CSV.",
                DATA_RESIZE_EPILOG)
    p.add_argument("src", help="folder of pictures (flat, <class>/ or <split>/<class>/)")
    p.add_argument("dst", help="output folder (--format folder) or CSV file, .csv or .csv.gz (--format csv)")
    p.add_argument("--format", choices=("folder", "csv"), default=None,
                   help="default: csv when DST ends in .csv/.csv.gz, else folder")
    g = p.add_argument_group("faces")
    g.add_argument("--detect-faces", action="store_true",
                   help="crop each picture to its largest face, found and cut as predict.py does")
    g.add_argument("--detector", choices=available_detectors(), default=DEFAULT_DETECTOR,
                   help="with --detect-faces: the face detector (default: %(default)s, which found the most "
                   "faces with the fewest false ones on synthetic group photos, BENCHMARKS.md)")
    g.add_argument("--no-align", action="store_true",
                   help="with --detect-faces: do not rotate faces so the eyes are level (haar never aligns: "
                   "it gives no eye landmarks)")
    g.add_argument("--margin", type=float, default=None,
                   help="with --detect-faces: crop the box grown by this fraction on each side instead of "
                   "FER2013's measured framing (default: measured)")
    g.add_argument("--no-face", choices=("keep", "skip"), default="keep",
                   help="with --detect-faces, a picture without a face is kept whole or skipped "
                   "(default: %(default)s)")
    g.add_argument("--fit", choices=FITS, default="crop",
                   help="how a whole non-square picture becomes square: centre crop, pad with black, "
                   "or stretch (default: %(default)s)")
    g = p.add_argument_group("labels")
    g.add_argument("--label", metavar="CLASS", help="class of every picture in a flat folder "
                   f"({', '.join(CLASS_NAMES)}); with --format folder they go into DST/<class>/")
    g.add_argument("--usage", choices=USAGES, help="Usage of every row made from a flat or class-only folder "
                   "(default: no Usage column; training then splits it 80/10/10)")
    g = p.add_argument_group("output")
    g.add_argument("--overwrite", action="store_true", help="write into an existing DST, replacing only the "
                   "files this command writes (and those an earlier run of it wrote); nothing else there is touched")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    fmt = args.format or ("csv" if args.dst.lower().endswith((".csv", ".csv.gz")) else "folder")

    def job():
        if args.detect_faces and args.detector == "haar" and not args.no_align:
            print("note: haar gives no eye landmarks, so faces are cropped upright, not aligned "
                  f"(--detector {DEFAULT_DETECTOR} aligns them)")
        with _summary_reports_problems():
            summary = data.resize_folder(args.src, args.dst, fmt=fmt, detect_faces=args.detect_faces,
                                    detector=args.detector, align=not args.no_align, margin=args.margin, no_face=args.no_face, fit=args.fit, label=args.label,
                                    usage=args.usage, overwrite=args.overwrite, progress=not args.quiet)
        print(format_summary(summary))

    return run_cli(job, parser=p)


CSV_TO_IMAGES_EPILOG = """\
output: OUT/<Usage>/<class_name>/<Usage>_<i>.png, i counting each Usage's rows in
file order (a CSV without Usage gives OUT/<class_name>/<i>.png). PNG is lossless:
images_to_csv.py turns the tree back into the same CSV.

examples:
  %(prog)s data/fer2013.csv data/fer2013_images
  %(prog)s data/fer2013.csv.gz /tmp/faces --skip-bad-rows --overwrite
"""


def csv_to_images_main(argv=None, *, prog=None):
    """``preprocess/csv_to_images.py``. Returns the exit code."""
    p = _parser(prog, "Write every face of a FER2013-layout CSV as a grey PNG, in <Usage>/<class>/ folders.",
                CSV_TO_IMAGES_EPILOG)
    p.add_argument("csv", help="FER2013-layout CSV (.csv or .csv.gz)")
    p.add_argument("out", help="output folder (must not exist or be empty, unless --overwrite)")
    p.add_argument("--skip-bad-rows", action="store_true", help="drop malformed rows with a warning instead of failing")
    p.add_argument("--overwrite", action="store_true", help="write into an existing OUT, replacing only the "
                   "files this command writes (and those an earlier run of it wrote); nothing else there is touched")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)

    def job():
        with _summary_reports_problems():
            summary = data.csv_to_images(args.csv, args.out, overwrite=args.overwrite,
                                    on_bad_rows="skip" if args.skip_bad_rows else "error", progress=not args.quiet)
        print(format_summary(summary))

    return run_cli(job, hints={BadRowError: SKIP_BAD_ROWS_HINT}, parser=p)


PACK_DATASET_EPILOG = f"""\
Every fer_keras --csv option reads the packed file like the CSV. Use it to carry
the data to a machine that receives only a size-capped copy of the repo
(FER2013 Training + PublicTest: 85 MB gzipped CSV -> about 54 MB packed).

example:
  %(prog)s ../shared/data/fer2013/fer2013_train_publictest.csv.gz .gpu/fer2013{data.PACKED_SUFFIX}
"""


def pack_dataset_main(argv=None, *, prog=None):
    """``preprocess/pack_dataset.py``. Returns the exit code."""
    p = _parser(prog, "Pack a FER2013-layout CSV into a small lossless file (fer_keras.data.save_packed).",
                PACK_DATASET_EPILOG)
    p.add_argument("csv", help="FER2013-layout CSV (.csv or .csv.gz)")
    p.add_argument("out", help=f"packed file to write (its name ends in {data.PACKED_SUFFIX})")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    args = p.parse_args(argv)

    def job():
        dataset = data.pack_dataset(args.csv, args.out, overwrite=args.overwrite)
        print(f"{args.out}: {Path(args.out).stat().st_size / 1e6:.1f} MB\n{dataset.summary()}")

    return run_cli(job, parser=p)


IMAGES_TO_CSV_EPILOG = f"""\
input: ROOT/<split>/<class>/*.png (split: {', '.join(sorted(data.FOLDER_SPLITS))};
test/ is PublicTest, or PrivateTest beside a val/ folder) or ROOT/<class>/*.png;
class folders may use common spellings (anger, happiness, ...).
Within a split, rows follow the file names in natural order, so a tree written by
csv_to_images.py gives back the original CSV's arrays.

examples:
  %(prog)s data/fer2013_images data/fer2013_again.csv
  %(prog)s my_faces/ my_faces.csv.gz --usage PrivateTest     # class folders only
"""


def images_to_csv_main(argv=None, *, prog=None):
    """``preprocess/images_to_csv.py``. Returns the exit code."""
    p = _parser(prog, "Write an image tree of faces as one FER2013-layout CSV (48x48 grey; other "
                "pictures are converted).", IMAGES_TO_CSV_EPILOG)
    p.add_argument("root", help="image tree: <split>/<class>/ or <class>/")
    p.add_argument("csv", help="output CSV (.csv, or .csv.gz for gzip)")
    p.add_argument("--usage", choices=USAGES, help="Usage of every row of a class-only tree "
                   "(default: no Usage column; training then splits it 80/10/10)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing CSV")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)

    def job():
        with _summary_reports_problems():
            summary = data.images_to_csv(args.root, args.csv, usage=args.usage, overwrite=args.overwrite,
                                    progress=not args.quiet)
        print(format_summary(summary))

    return run_cli(job, parser=p)
