"""What every fer_keras script does around its real work.

Errors the user can fix (:class:`fer_keras.errors.FerError`) become one line on
stderr and exit code 2; Ctrl+C exits 130; anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

import os
import sys


def quiet_tensorflow():
    """Silence TensorFlow's C++ start-up chatter (set before TF is imported)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")


def run_cli(job):
    """Run ``job()``; map user errors to exit codes. Returns the exit code."""
    from fer_keras.errors import FerError

    try:
        result = job()
    except FerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return result if isinstance(result, int) else 0
