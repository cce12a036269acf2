"""What every fer_keras script does around its real work.

Errors the user can fix (:class:`fer_keras.errors.FerError`) become one line on
stderr and exit code 2; Ctrl+C exits 130; anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from pathlib import Path

from fer_keras.constants import TTA_MODES
from fer_keras.errors import FerError


def quiet_tensorflow():
    """Import TensorFlow without its C++ start-up chatter.

    ``TF_CPP_MIN_LOG_LEVEL`` silences TensorFlow's own logging, but the lines
    absl prints before it is initialised ("oneDNN custom operations are on",
    "failed call to cuInit" on machines without a GPU) ignore every setting,
    so stderr is pointed at /dev/null for the import alone. An import error
    still raises normally. Set FER_KERAS_VERBOSE_TF=1 to see everything.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if os.environ.get("FER_KERAS_VERBOSE_TF") or "tensorflow" in sys.modules:
        return
    if os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow":
        return  # e.g. training under JAX on a GPU machine that has no TensorFlow
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow as tf

        if not os.environ.get("TF_CONFIG"):  # multi-worker runs must configure devices first
            tf.config.list_logical_devices("CPU")  # device start-up prints the cuInit line
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


SKIP_BAD_ROWS_HINT = "pass --skip-bad-rows to drop such rows"
"""What a command that has --skip-bad-rows adds to a bad-row error."""


FLAGS_NAMED_OTHERWISE = {"safe_mode": "--unsafe", "model_options": "--model-option"}
"""Library parameters whose flag has another name: ``--unsafe`` sets ``safe_mode=False``, each
``--model-option`` one of ``model_options``."""


def flag_for(parser, parameter):
    """The long option of ``parser`` that sets ``parameter`` (``"--time-budget"``), else None."""
    if parser is None or not parameter:
        return None
    for action in parser._actions:
        if action.dest == parameter and action.option_strings:
            return max(action.option_strings, key=len)
    other = FLAGS_NAMED_OTHERWISE.get(parameter)
    return other if other in parser._option_string_actions else None


def error_line(exc, *, parser=None, hints=None):
    """The one line a script prints for a :class:`FerError`.

    Why the flag: library errors name the parameter to change, never a flag
    (``time_budget must be >= 0 minutes. Received: time_budget=-1``); a user
    of the command line needs the flag, so where ``parser`` has an option
    for the error's ``parameter`` the line starts with it
    (``error: --time-budget: time_budget must be ...``). ``hints``: see
    :func:`run_cli`.
    """
    parameter = getattr(exc, "parameter", None)
    flag = flag_for(parser, parameter)
    hint = next((text for kind, text in (hints or {}).items() if isinstance(exc, kind)), None)
    text = _setting_as_flag(str(exc), parser, parameter, flag) if flag else str(exc)
    return "error: " + (f"{flag}: " if flag else "") + text + (f" ({hint})" if hint else "")


def _setting_as_flag(text, parser, parameter, flag):
    """``text`` with the library's spelling of what a switch sets (``pass overwrite=True``,
    ``safe_mode=False``) written as the switch itself (``pass --overwrite``, ``--unsafe``)."""
    action = parser._option_string_actions[flag]
    if action.nargs != 0 or not isinstance(action.const, bool):
        return text  # not an on/off switch: the parameter's value is the user's to choose
    value = action.const if action.dest == parameter else not action.const  # --unsafe sets safe_mode=False
    return text.replace(f"{parameter}={value}", flag)


def run_cli(job, *, hints=None, parser=None):
    """Run ``job()``; map user errors to exit codes. Returns the exit code.

    ``hints``: ``{error class: sentence}`` appended to such an error's line,
    for advice only this command can give (its own flags): library errors
    name no flag. ``parser``: the script's, so an error names the flag of
    the parameter it blames (:func:`error_line`).
    """
    try:
        result = job()
    except FerError as exc:
        print(error_line(exc, parser=parser, hints=hints), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return result if isinstance(result, int) else 0


def skipped_line(skipped):
    """The line a script with ``--unsafe`` prints for a file that did not become a member.

    The library's reason names the parameter (``safe_mode=False``); a file
    refused in safe mode also gets the flag that loads it.
    """
    return f"  skipped {skipped}" + (" (--unsafe loads it)" if skipped.parameter == "safe_mode" else "")


REFIT_CALIBRATION = "python test_ensemble_model.py --models-dir {folder} --calibrate PublicTest ..."
"""The command that refits a models folder's temperatures.json."""


def calibration_note(note, folder, applied):
    """The library's note on ``folder``'s temperatures.json; where it was not applied, with the
    command that refits it (the library names no script or flag)."""
    return note if applied else f"{note} ({REFIT_CALIBRATION.format(folder=folder)})"


WEIGHTS_CHOICES = ("auto", "uniform")
"""The words ``--weights`` takes besides a file's path."""


def add_weights_argument(group):
    """``--weights auto|uniform|FILE``, shared by every script that combines members."""
    group.add_argument("--weights", default="auto", metavar="auto|uniform|FILE",
                       help="auto: the calibration shipped beside the members (temperatures.json in the models "
                       "folder, when it names exactly the members loaded; the plain mean otherwise); uniform: "
                       'the plain mean; FILE: weights and/or temperatures JSON {"weights": {"model_1.h5": 0.6, '
                       '...}}, as test_ensemble_model.py writes them (default: %(default)s)')


def weights_file(args):
    """The file ``--weights`` names, or None for ``auto`` and ``uniform``."""
    return None if args.weights in WEIGHTS_CHOICES else args.weights


def apply_weights(ensemble, args, folder):
    """Weight and calibrate ``ensemble`` as ``--weights`` says; returns the line to print about
    ``folder``'s temperatures.json, or None.

    ``auto`` applies that file (``folder``: the models folder the members came from, None when
    they were named file by file); a FILE is checked against the members at once, so one fitted
    for other members fails before any face is read.
    """
    from fer_keras import ensemble as ens

    if args.weights == "uniform":
        ensemble.weights, ensemble.temperatures = None, None
        return None
    if args.weights == "auto":
        if not folder:
            return None
        ensemble.temperatures, message = ens.folder_temperatures(folder, ensemble.members)
        return calibration_note(message, folder, ensemble.temperatures is not None) if message else None
    ensemble.weights, ensemble.temperatures = ens.read_weights_file(args.weights)
    ensemble.weights_, ensemble.temperatures_  # noqa: B018 - name every member, or fail now
    return None


def check_weights_file(args):
    """Refuse a ``--weights`` FILE that is not there, before any model loads (seconds)."""
    from fer_keras.errors import ConfigError

    path = weights_file(args)
    if path is not None and not Path(path).is_file():
        raise ConfigError(f"{path}: no such file (give auto, uniform or a JSON weights file)", parameter="weights")


@contextlib.contextmanager
def plain_warnings():
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


def add_face_crop_arguments(group):
    """The flags of how a detector searches and crops, shared by ``predict.py`` and ``serve.py``:
    ``--no-align``, ``--min-face``, ``--min-neighbors`` (haar), ``--no-hog-proposals`` (mtcnn), ``--margin``;
    each defaults to None (or off): the detector's own default."""
    from fer_keras.faces.align import LEVEL_ABOVE

    group.add_argument("--no-align", action="store_true",
                       help="do not rotate faces so the eyes are level (by default mtcnn's faces tilted more than "
                       f"{LEVEL_ABOVE:g} degrees are; haar has no landmarks and never aligns)")
    group.add_argument("--min-face", type=int, default=None, metavar="PX",
                       help="smallest face side searched for, in pixels (default: 24 haar, 32 mtcnn)")
    group.add_argument("--min-neighbors", type=int, default=None, metavar="N",
                       help="haar: detections a face needs; lower finds more faces and more false ones "
                       "(default: 5)")
    group.add_argument("--no-hog-proposals", action="store_true",
                       help="mtcnn: MTCNN alone, without the boxes of dlib's HOG detector that its last stage "
                       "judges; about 100 ms less CPU per 640x480 picture, finds fewer faces (BENCHMARKS.md)")
    group.add_argument("--margin", type=float, default=None, metavar="FRACTION",
                       help="crop the box grown by this fraction on each side instead of FER2013's measured "
                       "framing (default: measured)")


def add_tta_argument(group):
    """``--tta [MODE]``: plain ``--tta`` is the mirror image, as before; ``--tta tencrop`` the crop recipe's."""
    group.add_argument("--tta", nargs="?", const="flip", default="none", choices=TTA_MODES, metavar="MODE",
                       help="test-time augmentation: average each member over views of the face. flip (what a "
                       "bare --tta means): the face and its mirror image; tencrop: the four corner and the "
                       "centre crops, each mirrored, for members that crop their input (-o crop=44), flip for "
                       "the others (%(choices)s; default: %(default)s)")
