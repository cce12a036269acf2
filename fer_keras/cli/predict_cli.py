"""Command line of predict.py: the emotions of the faces in pictures, folders, videos and webcams.

A thin layer over :mod:`fer_keras.inference`: it picks the models, the faces'
detector and the output folder from the options, runs each ``--input`` and
prints what it found. With no ``--input`` it runs on matplotlib's bundled
photo of Grace Hopper (nothing to download).
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
from fer_keras.errors import ConfigError, InputError, ModelFileError
from fer_keras.export import RUNTIME_SUFFIXES, RuntimeModel
from fer_keras.faces import DEFAULT_DETECTOR, Tracker, available_detectors, build_detector
from fer_keras.inference import FacePredictor, OutputFolder, demo_image, input_kind, parse_webcam
from fer_keras.tables import format_table

EPILOG = """\
examples:
  %(prog)s                                        # the models in models/ on a bundled demo photo
  %(prog)s --input photo.jpg --explain            # + a Grad-CAM picture per face
  %(prog)s --input photos/ --recursive --out predictions/photos
  %(prog)s --input clip.mp4 --every 5             # annotated video + emotion timeline
  %(prog)s --input webcam --interval 1            # a frame a second until Enter / Ctrl+C
  %(prog)s --input webcam:1 --interval 0 --max-frames 50 --headless
  %(prog)s --input faces/ --no-detect --model models/model_12.h5  # already-cropped faces
  %(prog)s --input clip.mp4 --model exported/fer_ensemble_int8.tflite  # an export.py file, in LiteRT

outputs (in --out): <name>.annotated.png per picture, <name>.annotated.mp4 and
<name>.timeline.png per video or webcam, <name>.face<i>.gradcam.png with
--explain, and predictions.csv / predictions.json with one row per face
(source, frame, time_s, face, x, y, w, h, p_<class> x7, label, confidence).
exit codes: 0 done (some inputs may have been skipped, with a message),
2 nothing could be processed or a problem to fix, 130 interrupted.
"""


LIVE_DETECTOR = "mtcnn"
LIVE_TRACK_EVERY = 10
LIVE_DETECT_SIDE = 320
LIVE_DEFAULT = f"{LIVE_DETECTOR} on a {LIVE_DETECT_SIDE}-pixel copy every {LIVE_TRACK_EVERY}th frame + tracking"
"""The webcam's default: 66 frames/s by CPU time (29-52 by the clock, the 2-core Xeon shared with a
training run) with 8 faces, 89% of them followed, as many as MTCNN on every frame finds; MTCNN on every
frame gives 5 by CPU time (BENCHMARKS.md, "Finding faces")."""

DETECTION_HELP = f"""\
Defaults measured on synthetic group photos of FER2013 faces (BENCHMARKS.md):
{DEFAULT_DETECTOR} finds the most faces with the fewest false ones in pictures and
videos (96% of upright and 93% of turned faces, 0.07-0.09 false faces a photo;
94% and 89% with --no-hog-proposals; haar: 71% and 35%) and gives eye landmarks,
so faces are rotated level and framed as FER2013's. A webcam searches a {LIVE_DETECT_SIDE}-pixel copy of each frame; analysing every
frame (--interval 0) it runs the detector every {LIVE_TRACK_EVERY}th frame and follows the faces
between, to keep 30 frames/s (66 by CPU time, 29-52 by the clock on a shared 2-core
Xeon; 3-5 running MTCNN on every frame)."""

TABLE_ROWS = 50
"""Face rows printed; the rest are in predictions.csv."""


def build_parser(prog=None, description=None):
    p = argparse.ArgumentParser(prog=prog, description=description or __doc__.splitlines()[0], epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("input")
    g.add_argument("--input", "-i", action="append", default=[], metavar="PATH|webcam[:N]",
                   help="a picture, a folder of pictures, a video file, or webcam[:index]; repeatable "
                   "(default: matplotlib's bundled grace_hopper.jpg)")
    g.add_argument("--recursive", action="store_true", help="also read pictures in sub-folders of a folder")
    g.add_argument("--no-detect", action="store_true",
                   help="no face detection: each picture (or frame) is one already-cropped face, as in FER2013")

    g = p.add_argument_group("models")
    g.add_argument("--models-dir", metavar="DIR", help="every *.h5 and *.keras here is an ensemble member "
                   "(default: models, unless --model is given; for a webcam, the member of models/ distilled "
                   "from the ensemble runs alone when there is one)")
    g.add_argument("--model", action="append", default=[], metavar="FILE", help="a member file, repeatable: "
                   ".h5/.keras, or a .tflite/.onnx file or SavedModel folder written by export.py (run in its "
                   "own runtime: LiteRT, onnxruntime, TensorFlow)")
    g.add_argument("--include-distilled", action="store_true", help="also average the distilled members of "
                   "--models-dir (set aside by default while all its teachers are members beside it: it copies them)")
    g.add_argument("--method", choices=METHODS, default="mean", help="how members are combined (default: %(default)s)")
    add_weights_argument(g)
    add_tta_argument(g)
    g.add_argument("--unsafe", action="store_true", help="allow model files that run code when loaded "
                   "(Lambda layers); only for files you trust")

    g = p.add_argument_group("face detection", DETECTION_HELP)
    g.add_argument("--detector", choices=available_detectors(), default=None,
                   help=f"the face detector (default: {DEFAULT_DETECTOR} for pictures and videos, "
                   f"{LIVE_DEFAULT} for a webcam)")
    add_face_crop_arguments(g)
    g.add_argument("--scale-factor", type=float, default=None, metavar="F",
                   help="haar: image pyramid step; closer to 1 finds more faces, slower (default: 1.1)")
    g.add_argument("--detect-side", type=int, default=None, metavar="PX",
                   help="search for faces on a copy at most PX pixels on its longer side, 0 = full size "
                   f"(default: {LIVE_DETECT_SIDE} for a webcam, else 0); smaller is faster, finds fewer small faces")
    g.add_argument("--track-every", type=int, default=None, metavar="K",
                   help=f"webcam with --interval 0: run the detector on every K-th frame and follow the faces "
                   f"between (default: {LIVE_TRACK_EVERY}; 1 = detect on every frame)")

    g = p.add_argument_group("video and webcam")
    g.add_argument("--every", type=int, default=1, metavar="K",
                   help="video: analyse every K-th frame (default: %(default)s)")
    g.add_argument("--interval", type=float, default=2.0, metavar="SECONDS",
                   help="webcam: analyse a frame every SECONDS, 0 = every frame (default: %(default)s)")
    g.add_argument("--max-frames", type=int, metavar="N", help="webcam: stop after N analysed frames")
    g.add_argument("--duration", type=float, metavar="SECONDS", help="webcam: stop after SECONDS")
    g.add_argument("--headless", action="store_true",
                   help="webcam: never open a window (automatic when there is no display)")

    g = p.add_argument_group("explain")
    g.add_argument("--explain", action="store_true", help="pictures: a Grad-CAM heat map per face "
                   "(where the model looked), from the last spatial feature map of one member")
    g.add_argument("--explain-member", type=int, default=0, metavar="I",
                   help="which member Grad-CAM explains, 0 = the first (default: %(default)s)")

    g = p.add_argument_group("output")
    g.add_argument("--out", default="predictions", metavar="DIR", help="output folder (default: %(default)s)")
    g.add_argument("--overwrite", action="store_true", help="replace files of an earlier run in --out")
    g.add_argument("--quiet", action="store_true", help="no progress bar and no per-frame lines")
    return p


def _check_options(args):
    if args.every < 1:
        raise ConfigError("--every must be at least 1")
    if args.interval < 0:
        raise ConfigError("--interval must be 0 (every frame) or a number of seconds")
    if args.max_frames is not None and args.max_frames < 1:
        raise ConfigError("--max-frames must be at least 1")
    if args.duration is not None and args.duration <= 0:
        raise ConfigError("--duration must be above 0 seconds")
    if args.explain_member < 0:
        raise ConfigError("--explain-member must be 0 or more")
    check_weights_file(args)


def build_face_detector(args, *, stdout=None):
    """The detector the options ask for: the picture default, or the webcam's when every input is a webcam."""
    live = _webcam_only(args)
    name = args.detector or (LIVE_DETECTOR if live else DEFAULT_DETECTOR)
    side = args.detect_side if args.detect_side is not None else (LIVE_DETECT_SIDE if live else 0)
    options = {"align": not args.no_align, "margin": args.margin, "detect_side": side}
    if args.min_face is not None:
        options["min_face"] = args.min_face
    haar_only = {"scale_factor": args.scale_factor, "min_neighbors": args.min_neighbors}
    given = {k: v for k, v in haar_only.items() if v is not None}
    if given and name != "haar":
        flags = ", ".join("--" + k.replace("_", "-") for k in given)
        raise ConfigError(f"{flags}: only for --detector haar (this run uses {name})")
    options.update(given)
    if args.no_hog_proposals:
        if name != "mtcnn":
            raise ConfigError(f"--no-hog-proposals: only for --detector mtcnn (this run uses {name})")
        options["hog_proposals"] = False
    # Tracking needs consecutive frames: a webcam analysing every frame (--interval 0). Frames seconds
    # apart are each searched in full (MTCNN on a 320-pixel copy: ~150 ms every 2 s).
    every_frame = live and args.interval == 0
    if args.track_every is not None and (args.track_every < 1 or not every_frame):
        raise ConfigError("--track-every must be at least 1, and is for a webcam analysing every frame "
                          "(--interval 0)")
    track_every = args.track_every if args.track_every is not None else (LIVE_TRACK_EVERY if every_frame else 1)
    if every_frame and track_every > 1:
        detector = Tracker(name, every=track_every, **options)
    else:
        detector = build_detector(name, **options)
    if not detector.has_landmarks and not args.no_align:
        print(f"note: {name} gives no eye landmarks, so faces are cropped upright, not aligned "
              f"(--detector {DEFAULT_DETECTOR} aligns them)", file=stdout or sys.stdout)
    return detector


def is_runtime_file(path):
    """Whether ``path`` is run by its own runtime, not Keras: a .tflite or .onnx file, or a SavedModel folder."""
    path = Path(path)
    return path.suffix.lower() in RUNTIME_SUFFIXES or (path.is_dir() and (path / "saved_model.pb").is_file())


def model_sources(args, *, stdout=None):
    """The folders/files to load Keras members from (.tflite/.onnx/SavedModel ``--model`` files are left
    to :func:`runtime_sources`); raises a FerError saying what to do when there are none."""
    folder = args.models_dir or (None if args.model else "models")
    fast = distilled_member(folder) if _webcam_only(args) and not args.models_dir and not args.model else None
    if fast is not None:
        print(f"webcam: {fast.name}, the member distilled from the ensemble, runs alone (fast); "
              "pass --models-dir models for the whole ensemble", file=stdout or sys.stdout)
        return [str(fast)]
    if folder is not None and not args.model:
        found = find_model_files(folder) if Path(folder).is_dir() else []
        if not found:
            state = "has no trained models yet" if Path(folder).is_dir() else "does not exist"
            raise ModelFileError(
                f"{folder}/ {state} (*.h5 or *.keras). The shipped models are in the repository's models/ "
                "(run from the repository folder, or pass --models-dir PATH/models); or train one, e.g. "
                "`python train_vgg.py --csv data/fer2013.csv`, or pass --model FILE")
    return ([folder] if folder else []) + [f for f in args.model if not is_runtime_file(f)]


def _webcam_only(args):
    return bool(args.input) and all(str(i).startswith("webcam") for i in args.input)


def runtime_sources(args):
    """The ``--model`` files run by their own runtime (exported by export.py): .tflite, .onnx, SavedModel."""
    return [f for f in args.model if is_runtime_file(f)]


def load_predictor(args, *, stdout):
    """Members, ensemble, detector and predictor from the options; prints the member list.

    Keras members come first (folder, then files), then the .tflite/.onnx/SavedModel
    files, each run in its own runtime (:class:`fer_keras.export.RuntimeModel`).
    """
    # The detector checks its flags: build it before the models load (seconds), not after.
    detector = None if args.no_detect else build_face_detector(args, stdout=stdout)
    sources, runtime_files = model_sources(args, stdout=stdout), runtime_sources(args)
    members, skipped = ens.load_members(sources, safe_mode=not args.unsafe,
                                         include_distilled=args.include_distilled) if sources else ([], [])
    members += [RuntimeModel.from_file(f) for f in runtime_files]
    print(f"{len(members)} member(s)" + (f", {len(skipped)} skipped" if skipped else ""), file=stdout)
    for m in members:
        print(f"  {m.name:<28} {m.adapter.describe()}", file=stdout)
    for s in skipped:
        print(skipped_line(s), file=stdout)
    if args.explain and 0 <= args.explain_member < len(members) and members[args.explain_member].model is None:
        member = members[args.explain_member]
        raise ConfigError(f"--explain needs a Keras member; member {args.explain_member} ({member.name}) runs in "
                          f"{member.runtime}: pick a .h5/.keras member with --explain-member")
    ensemble = ens.Ensemble(members, method=args.method)
    folder = args.models_dir or (None if args.model else "models")
    note = apply_weights(ensemble, args, folder if members and not args.model else None)
    if note and (ensemble.temperatures is not None or sources == [folder]):
        print(note, file=stdout)  # silent when the webcam runs the distilled member alone and it has no temperature
    predictor = FacePredictor(ensemble, detector, detect=not args.no_detect, tta=args.tta,
                              explain_member=args.explain_member)
    return predictor, members, skipped


def run(args, *, open_capture=None, stdout=None, stderr=None):
    """Predict as ``args`` say; print; write the output folder. Returns the exit code."""
    stdout, stderr = stdout or sys.stdout, stderr or sys.stderr
    _check_options(args)
    inputs = list(args.input) or [str(demo_image())]
    OutputFolder.check(args.out, overwrite=args.overwrite)  # fail before the models load
    absent = [spec for spec in inputs if input_kind(spec) != "webcam" and not Path(spec).exists()]
    if absent and len(absent) == len(inputs):  # nothing to read: say so before the models load
        raise InputError(f"{', '.join(absent)}: no such file or folder")
    predictor, members, skipped = load_predictor(args, stdout=stdout)
    out = OutputFolder(args.out, overwrite=args.overwrite)

    def problem(message):
        print(str(message), file=stderr)

    processed, failed, image_results, interrupted, only_failure = 0, 0, [], False, None
    for spec in inputs:
        kind = input_kind(spec)
        try:
            if kind == "folder":
                results, problems = predictor.predict_folder(
                    spec, recursive=args.recursive, sink=out, explain=args.explain, on_problem=problem)
                image_results += results
                processed += len(results)
                failed += len(problems)
                if not results:
                    message = _empty_folder_message(spec, problems, args.recursive)
                    problem(message)
                    out.note(spec, "folder", "failed", message=message)
            elif kind == "image":
                image_results.append(predictor.predict_file(spec, sink=out, explain=args.explain))
                processed += 1
            elif kind == "video":
                _explain_note(args, spec, stderr)
                result = predictor.predict_video(spec, every=args.every, sink=out, progress=not args.quiet)
                processed += 1
                _print_stream(result, predictor.class_names, stdout)
                interrupted = result.stopped_by == "interrupt"
            else:
                _explain_note(args, spec, stderr)
                result = _webcam(predictor, parse_webcam(spec), args, out, open_capture, stdout)
                processed += 1
                _print_stream(result, predictor.class_names, stdout)
        except InputError as exc:
            failed += 1
            if len(inputs) == 1 and kind != "folder":
                only_failure = exc  # said once, as the error, below
            else:
                problem(exc)
            out.note(spec, kind, "failed", message=str(exc))
        except KeyboardInterrupt:
            interrupted = True
        if interrupted:
            problem("interrupted: the inputs not yet processed are skipped; what was done is written")
            break

    _print_faces(image_results, predictor, stdout)
    if processed == 0 and not interrupted:
        out.discard()
        print(f"error: {only_failure}" if only_failure else "error: nothing could be processed", file=stderr)
        return 2
    out.close(models={"members": [str(m.path) for m in members], "skipped": [str(s) for s in skipped],
                      "method": args.method, "tta": args.tta},
              detector=("none (--no-detect)" if args.no_detect else predictor.detector.get_config()),
              options=vars(args))
    failures = f", {failed} skipped (said above)" if failed else ""
    print(f"\n{len(out.rows)} face row(s) from {processed} input(s){failures}; wrote {out.path}/ "
          f"({', '.join(_short_list(out.files + ['predictions.csv', 'predictions.json']))})", file=stdout)
    return 130 if interrupted else 0


def _empty_folder_message(folder, problems, recursive):
    folder = Path(folder)
    if problems:
        return f"{folder}: no picture in the folder could be read"
    if not recursive and any(p.is_dir() and not p.name.startswith(".") for p in folder.iterdir()):
        return f"{folder}: no picture here; it has sub-folders (add --recursive)"
    return f"{folder}: the folder holds no pictures"


def _explain_note(args, spec, stderr):
    if args.explain:
        print(f"note: --explain writes pictures for still images only; not for {spec}", file=stderr)


def _webcam(predictor, index, args, out, open_capture, stdout):
    def started(show):
        if not args.quiet:
            how = ("press q or Esc in the window, or Enter here, to stop" if show else
                   ("running headless" if args.headless else "no display: running headless")
                   + "; press Enter or Ctrl+C to stop")
            every = f"every {args.interval:g} s" if args.interval > 0 else "every frame"
            print(f"webcam:{index}: analysing a frame {every}; {how} (results go to {out.path}/)", file=stdout)

    def line(frame):
        faces = ", ".join(f"{f.label} {f.confidence:.0%}" for f in frame.faces) or "no face"
        print(f"  t={frame.time_s:7.1f}s  frame {frame.frame:>6}: {faces}", file=stdout, flush=True)

    return predictor.run_webcam(index, open_capture=open_capture, interval=args.interval,
                                max_frames=args.max_frames, duration=args.duration,
                                show=False if args.headless else None, sink=out, on_start=started,
                                on_frame=None if args.quiet else line)


def _print_stream(result, class_names, stdout):
    import numpy as np

    analysed = len(result.frames)
    with_faces = [f for f in result.frames if f.faces]
    text = f"{result.source}: {analysed} frame(s) analysed of {result.frames_read} read, {len(with_faces)} with a face"
    if with_faces:
        labels = [f.largest_face().label for f in with_faces]
        names, counts = np.unique(labels, return_counts=True)
        top = int(np.argmax(counts))
        text += f"; most frequent emotion: {names[top]} ({counts[top] / len(labels):.0%} of those frames)"
    if result.stopped_by not in ("end",):
        text += f"; stopped by {result.stopped_by}"
    if result.files:
        text += f" -> {', '.join(result.files)}"
    print(text, file=stdout)


def _print_faces(results, predictor, stdout):
    if not results:
        return
    rows, no_face = [], []
    for result in results:
        name = Path(result.source).name
        if not result.faces:
            no_face.append(name)
        for i, face in enumerate(result.faces):
            (_, _), (second, p2) = face.top(2, predictor.class_names)
            rows.append([name, i + 1, "{}, {}, {}, {}".format(*face.box.as_tuple()), face.label,
                         float(face.confidence), f"{second} {p2:.2f}"])
    print("", file=stdout)
    if rows:
        print(format_table(["source", "face", "box x, y, w, h", "emotion", "confidence", "runner-up"],
                           rows[:TABLE_ROWS], align=["<", ">", ">", "<", ">", "<"]), file=stdout)
        if len(rows) > TABLE_ROWS:
            print(f"... {len(rows) - TABLE_ROWS} more face(s) in predictions.csv", file=stdout)
    for name in no_face:
        print(f"{name}: no face found (try another --detector, a lower --min-face, or --no-detect for "
              "already-cropped faces)", file=stdout)


def _short_list(names, limit=6):
    names = list(dict.fromkeys(names))
    return names if len(names) <= limit else names[:limit - 1] + [f"... {len(names) - limit + 1} more"]


def main(argv=None, *, prog=None, description=None, open_capture=None):
    """Parse ``argv``, predict, print, write the outputs. Returns the exit code.

    ``open_capture(index)``: opens a webcam (default ``cv2.VideoCapture``); tests pass a fake.
    """

    parser = build_parser(prog or os.path.basename(sys.argv[0]), description)
    args = parser.parse_args(argv)

    def job():
        with plain_warnings():
            return run(args, open_capture=open_capture)

    return run_cli(job, parser=parser)
