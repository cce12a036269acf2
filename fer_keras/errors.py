"""The toolkit's own error types.

Scripts catch :class:`FerError` and print its message as one line with a
non-zero exit code; anything else is a bug and keeps its traceback.
"""


class FerError(Exception):
    """Base class for every error fer_keras reports to a user."""


class DataError(FerError, ValueError):
    """A dataset file or folder is missing, malformed or empty."""


class ModelFileError(FerError):
    """A model file cannot be loaded or does not fit the FER contract."""


class ConfigError(FerError, ValueError):
    """Options that contradict each other or name something that does not exist."""
