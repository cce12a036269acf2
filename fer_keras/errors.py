"""The toolkit's own error types: one hierarchy, in one place.

Scripts catch :class:`FerError` and print its message as one line with a
non-zero exit code; anything else is a bug and keeps its traceback. Every
error a user can fix derives from it, whichever stage raises it.
"""

import os


class FerError(Exception):
    """Base class for every error fer_keras reports to a user.

    ``parameter``: the argument or config field the user should change
    (``"time_budget"``), where one is to blame. Library messages name
    parameters, never command-line flags (only :mod:`fer_keras.cli` knows
    those); a script that has a flag for ``parameter`` names it too.
    """

    def __init__(self, *args, parameter=None):
        super().__init__(*args)
        self.parameter = parameter


class DataError(FerError, ValueError):
    """A dataset file or folder is missing, malformed or empty."""


class BadRowError(DataError):
    """A malformed row of a CSV; ``on_bad_rows="skip"`` drops such rows instead.

    Its own type so that each command can say how *it* skips rows (or that
    it cannot): the message itself names no command-line flag.
    """


class ModelFileError(FerError):
    """A model file cannot be loaded or does not fit the FER contract."""


class ConfigError(FerError, ValueError):
    """Options that contradict each other or name something that does not exist."""


class InputError(FerError):
    """An image, video or camera that cannot be read."""


class OutputExistsError(FerError):
    """An output file exists and ``overwrite`` was not given."""


class MissingPackageError(FerError):
    """An optional converter or runtime is not installed."""


class WriteError(FerError, OSError):
    """A file could not be written (disk full, read-only folder, no permission ...).

    Both a :class:`FerError` (scripts print it as one line, exit code 2) and an
    :class:`OSError` (callers that catch OSError keep working). Names the final
    file, never the temporary one.
    """

    def __init__(self, path, exc):
        reason = exc.strerror or (os.strerror(exc.errno) if exc.errno else "") or str(exc).strip()
        reason = (reason.splitlines() or [type(exc).__name__])[0][:300]
        super().__init__(exc.errno, reason, str(path))

    def __str__(self):
        return f"cannot write {self.filename}: {self.strerror}"


def one_line(exc, limit=300):
    """The first line of an exception's message (else its type), at most ``limit`` characters:
    converters and runtimes raise pages of text, the CLI prints one line."""
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:limit]


SEED_MAX = 2**32 - 1
"""The largest seed NumPy's legacy seeding (``np.random.seed``, called by
``keras.utils.set_random_seed``) accepts; ``default_rng`` refuses negatives."""


def check_seed(seed, name="seed"):
    """Raise :class:`ConfigError` unless ``0 <= seed <= SEED_MAX``; ``name``: the parameter's.

    Why: outside that range NumPy raises a ValueError deep inside a run,
    after output folders exist, and it reads as a traceback.
    """
    if not 0 <= seed <= SEED_MAX:
        raise ConfigError(f"{name} must be an integer from 0 to {SEED_MAX} (2**32 - 1). Received: {name}={seed}",
                          parameter=name)
