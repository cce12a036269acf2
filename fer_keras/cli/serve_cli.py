"""Command line of serve.py: the local web app and REST API (:mod:`fer_keras.serve`).

Loads the ensemble once (for ``/api/predict``) and the fast distilled member
(for the live webcam view), builds the face detector from the flags, then runs
:func:`fer_keras.serve.create_app` under uvicorn on 127.0.0.1 unless told
otherwise.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from fer_keras import ensemble as ens
from fer_keras.cli.common import (add_face_crop_arguments, add_tta_argument, add_weights_argument, apply_weights,
                                  check_weights_file, plain_warnings, run_cli, skipped_line)
from fer_keras.ensemble import METHODS, distilled_member, find_model_files
from fer_keras.errors import ConfigError, ModelFileError
from fer_keras.faces import DEFAULT_DETECTOR, available_detectors, build_detector
from fer_keras.serve import create_app

EPILOG = """\
examples:
  %(prog)s                                   # models/ on http://127.0.0.1:8000/
  %(prog)s --port 8080 --tta                 # the photo API with mirror-image TTA
  %(prog)s --model models/model_3.h5 --model models/model_5.h5
  %(prog)s --host 0.0.0.0                    # reachable from other machines (read the warning)
  curl -F image=@photo.jpg http://127.0.0.1:8000/api/predict

the page: http://127.0.0.1:8000/ (webcam, photo upload); the API: POST /api/predict,
POST /api/live, GET /api/health; its schema: /openapi.json, browsable at /docs (offline too).
exit codes: 0 stopped, 2 a problem to fix (no models, a bad option), 130 interrupted.
"""

LIVE_DETECTOR = "haar"
"""Webcam frames come one request at a time, so nothing follows a face from frame to frame: OpenCV's
cascade on a 320-pixel copy gave the browser 25 annotated frames/s on a busy 2-core machine, MTCNN
(``--live-detector mtcnn``) 15.6: it finds turned faces the cascade misses, at ~50 ms a 320-pixel
frame (BENCHMARKS.md, "Finding faces", 2026-12-07)."""

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")

LIVE_DETECT_SIDE = 320
"""Webcam frames are searched for faces at this size (a detector's ``detect_side``)."""


def build_parser(prog=None, description=None):
    p = argparse.ArgumentParser(prog=prog, description=description or __doc__.splitlines()[0], epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("models")
    g.add_argument("--models-dir", metavar="DIR", help="every *.h5 and *.keras here is an ensemble member "
                   "(default: models, unless --model is given); its distilled member runs the live view")
    g.add_argument("--model", action="append", default=[], metavar="FILE",
                   help="a member file (.h5/.keras), repeatable; the live view runs the same ensemble")
    g.add_argument("--live-model", metavar="FILE", help="the model of the live webcam view (default: the "
                   "member of the models folder distilled from the ensemble, else the ensemble)")
    g.add_argument("--include-distilled", action="store_true", help="also average the distilled members of "
                   "--models-dir (set aside by default while all its teachers are members beside it: it copies "
                   "them)")
    g.add_argument("--method", choices=METHODS, default="mean", help="how members are combined (default: %(default)s)")
    add_weights_argument(g)
    add_tta_argument(g)
    g.add_argument("--unsafe", action="store_true", help="allow model files that run code when loaded "
                   "(Lambda layers); only for files you trust")

    g = p.add_argument_group("face detection")
    g.add_argument("--detector", choices=available_detectors(), default=DEFAULT_DETECTOR,
                   help="how faces are found in uploaded pictures (default: %(default)s: the most faces, "
                   "the fewest false ones, eyes levelled; BENCHMARKS.md)")
    g.add_argument("--live-detector", choices=available_detectors(), default=LIVE_DETECTOR,
                   help=f"how faces are found in webcam frames, searched at {LIVE_DETECT_SIDE} px "
                   "(default: %(default)s, fast enough for a live view)")
    add_face_crop_arguments(g)
    g.add_argument("--detect-side", type=int, default=0, metavar="PX",
                   help="pictures: search for faces on a copy at most PX pixels on its longer side, 0 = full "
                   f"size (default: %(default)s); smaller is faster, finds fewer small faces. Webcam frames "
                   f"are searched at {LIVE_DETECT_SIDE} px")

    g = p.add_argument_group("server")
    g.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s, this machine "
                   "only; 0.0.0.0 opens it to the network)")
    g.add_argument("--port", type=int, default=8000, help="port (default: %(default)s)")
    g.add_argument("--no-batching", action="store_true", help="run each request's faces alone instead of "
                   "batching concurrent requests together")
    return p


def _check_options(args):
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port {args.port}: a port is 0..65535 (0: any free port)")
    if not args.host.strip():
        raise ConfigError("--host must name an address, e.g. 127.0.0.1")
    check_weights_file(args)


def _detector(args, *, live=False):
    """A zero-argument callable building the face detector of the flags (one per request thread).

    The only place that knows which detector ``--detector`` / ``--live-detector`` names.
    """
    name = args.live_detector if live else args.detector
    options = {"align": not args.no_align, "margin": args.margin,
               "detect_side": LIVE_DETECT_SIDE if live else args.detect_side}
    if args.min_face is not None:
        options["min_face"] = args.min_face
    if args.min_neighbors is not None:
        if "haar" not in (args.detector, args.live_detector):
            raise ConfigError("--min-neighbors: only for the haar detector (--detector or --live-detector haar)")
        if name == "haar":
            options["min_neighbors"] = args.min_neighbors
    if args.no_hog_proposals:
        if "mtcnn" not in (args.detector, args.live_detector):
            raise ConfigError("--no-hog-proposals: only for the mtcnn detector (--detector or --live-detector mtcnn)")
        if name == "mtcnn":
            options["hog_proposals"] = False
    build_detector(name, **options)  # the flags are checked now, before the models load

    def build():
        return build_detector(name, **options)

    return build


def _sources(args):
    folder = args.models_dir or (None if args.model else "models")
    if folder is not None:
        found = find_model_files(folder) if Path(folder).is_dir() else []
        if not found:
            state = "has no trained models yet" if Path(folder).is_dir() else "does not exist"
            raise ModelFileError(f"{folder}/ {state} (*.h5 or *.keras): train one first "
                                 "(`python train_vgg.py --csv data/fer2013.csv`), or pass --model FILE")
    return folder, ([folder] if folder else []) + list(args.model)


def load_models(args, *, stdout):
    """``(ensemble, live_ensemble or None)`` from the options; prints what was loaded."""
    folder, sources = _sources(args)
    if args.live_model and not Path(args.live_model).is_file():
        raise ModelFileError(f"--live-model {args.live_model}: no such file")
    members, skipped = ens.load_members(sources, safe_mode=not args.unsafe, include_distilled=args.include_distilled)
    ensemble = ens.Ensemble(members, method=args.method)
    print(f"ensemble (/api/predict): {len(members)} member(s)" + (f", {len(skipped)} skipped" if skipped else "")
          + f": {', '.join(m.name for m in members)}", file=stdout)
    for s in skipped:
        print(skipped_line(s), file=stdout)
    note = apply_weights(ensemble, args, folder if not args.model else None)
    if note:
        print(f"  {note}", file=stdout)
    live_file = args.live_model or (distilled_member(folder) if folder and not args.model else None)
    live = None
    if live_file is not None:
        live_members, _ = ens.load_members([live_file], safe_mode=not args.unsafe, strict=True)
        live = ens.Ensemble(live_members)
        # its own temperature from the folder it lies in; --weights uniform turns that off too
        live.temperatures, note = ((None, None) if args.weights == "uniform"
                                   else ens.folder_temperatures(Path(live_file).parent, live_members))
        print(f"live view (/api/live): {live_members[0].name}"
              + ("" if args.live_model else ", the member distilled from the ensemble (fast)")
              + (f"; {note}" if live.temperatures is not None else ""), file=stdout)
    else:
        print("live view (/api/live): the ensemble (no distilled member; pass --live-model FILE for speed)",
              file=stdout)
    return ensemble, live


def build_app(args, *, stdout=None, stderr=None):
    """The FastAPI app of the options (models loaded); prints the warning for a non-local host."""
    stdout, stderr = stdout or sys.stdout, stderr or sys.stderr
    _check_options(args)
    if args.host not in LOCAL_HOSTS:
        print(f"warning: --host {args.host} serves the models to every machine that can reach this one "
              "(no password, uploads unencrypted); browsers give the camera only to http://localhost or "
              "HTTPS pages", file=stderr)
    detector, live_detector = _detector(args), _detector(args, live=True)
    ensemble, live = load_models(args, stdout=stdout)
    return create_app(ensemble, live_ensemble=live, detector_factory=detector, live_detector_factory=live_detector,
                      batching=not args.no_batching, tta=args.tta)


def _uvicorn(app, host, port):
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


def main(argv=None, *, prog=None, description=None, run_server=None):
    """Parse ``argv``, load the models, serve until Ctrl+C. Returns the exit code.

    ``run_server(app, host, port)``: runs the app (default: uvicorn); tests pass a fake.
    """
    parser = build_parser(prog or os.path.basename(sys.argv[0]), description)
    args = parser.parse_args(argv)

    def job():
        with plain_warnings():
            app = build_app(args)
            where = f"[{args.host}]" if ":" in args.host else args.host
            print(f"serving on http://{where}:{args.port}/ (API schema: /openapi.json); Ctrl+C stops", flush=True)
            (run_server or _uvicorn)(app, args.host, args.port)
        return 0

    return run_cli(job, parser=parser)
