"""Model registry: builders registered by name, built by name (timm-style).

A builder is a plain function ``fn(*, num_classes, **options) -> keras.Model``
whose model takes raw grey faces (48x48x1, 0..255) and returns float32 softmax
probabilities in FER2013 order. :func:`build` records the name and options on
the model so a saved file can say how to rebuild itself.
"""

from __future__ import annotations

import contextlib
import inspect

from fer_keras.constants import CLASS_NAMES, CLASS_NAMES_8, NUM_CLASSES
from fer_keras.errors import ConfigError
from fer_keras.models.preprocessing import checked_crop

_BUILDERS = {}


def register(fn):
    """Register ``fn`` under its own name."""
    if fn.__name__ in _BUILDERS:
        raise ValueError(f"model {fn.__name__!r} registered twice")
    _BUILDERS[fn.__name__] = fn
    return fn


def available():
    """Names of all registered models, sorted."""
    return sorted(_BUILDERS)


def builder(name):
    """The builder function registered as ``name``."""
    try:
        return _BUILDERS[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; available: {', '.join(available())}") from None


def options_of(name):
    """The builder's options and their defaults (for help texts and model cards); ``num_classes``
    is not one: the data decides it (``TrainConfig.num_classes``)."""
    params = inspect.signature(builder(name)).parameters
    return {k: p.default for k, p in params.items() if p.kind is p.KEYWORD_ONLY and k != "num_classes"}


def check_options(name, options):
    """Raise ConfigError for an unknown model or option (options are never ignored), or a value
    a builder would choke on or silently misuse (:func:`_check_value`)."""
    known = options_of(name)
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ConfigError(
            f"model {name!r} has no option(s) {', '.join(unknown)}; options: {', '.join(known) or 'none'}"
        )
    for key, value in options.items():
        _check_value(name, key, value, known[key])
    return known


def _check_value(name, key, value, default):
    """A value of the default's type, and in range: a dropout in [0, 1), a size or width
    above 0 (``width=-1`` builds a 919-parameter model without a word), a count >= 0."""
    def number(x):
        return isinstance(x, (int, float)) and not isinstance(x, bool)

    where = f"model {name!r} option {key}={value!r}"
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected True or False")
        return
    if key == "weights" and isinstance(value, str) and value != "imagenet":
        _check_weights_file(value)
    if key == "crop":
        checked_crop(value)
        return
    if not number(default):  # a name, a path or None: the builder checks it
        return
    if not number(value) or (isinstance(default, int) and value != int(value)):
        kind = "a whole number" if isinstance(default, int) else "a number"
        raise ConfigError(f"{where}: expected {kind} like the default {default!r}")
    if "dropout" in key and not 0 <= value < 1:
        raise ConfigError(f"{where}: a dropout rate must be in [0, 1)")
    if "dropout" not in key and default > 0 and not value > 0:
        raise ConfigError(f"{where}: must be above 0")
    if default == 0 and value < 0:
        raise ConfigError(f"{where}: must be 0 or more")


HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _check_weights_file(path):
    """A local keras.applications weights file must exist and be HDF5 (checked before any work)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(HDF5_SIGNATURE))
    except OSError as exc:
        raise ConfigError(f"weights {path}: cannot read ({exc.strerror or exc})", parameter="weights") from None
    if head != HDF5_SIGNATURE:
        raise ConfigError(f"weights {path}: not an HDF5 weights file (.h5)", parameter="weights")


@contextlib.contextmanager
def _pretrained_weights_errors(name, weights):
    """One-line ConfigErrors for the ``weights`` of a model built on keras.applications.

    Why: Keras reports a download that fails offline as a bare "URL fetch
    failure", and a text file or another network's weights as a traceback
    from deep inside h5py or the weight loader.
    """
    try:
        yield
    except ConfigError:
        raise
    except ValueError as exc:
        if not isinstance(weights, str) or weights == "imagenet":
            raise
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ConfigError(f"weights {weights}: does not fit {name}'s ImageNet base ({reason})",
                          parameter="weights") from None
    except Exception as exc:
        if weights != "imagenet" or "URL fetch failure" not in str(exc):
            raise
        raise ConfigError(f"{name}: the ImageNet weights could not be downloaded (offline?); download the "
                          "keras.applications *_notop.h5 file elsewhere and pass its path as weights",
                          parameter="weights") from None


def _class_names(num_classes):
    """FER2013's names for 7 classes, FER+/AffectNet-8's for 8; None (unnamed) otherwise."""
    for names in (CLASS_NAMES, CLASS_NAMES_8):
        if num_classes == len(names):
            return list(names)
    return None


def build(name, *, num_classes=NUM_CLASSES, **options):
    """Build registered model ``name``; unknown options are an error, not ignored."""
    known = check_options(name, options)
    with _pretrained_weights_errors(name, options.get("weights", known.get("weights"))):
        model = builder(name)(num_classes=num_classes, **options)
    resolved = {k: v for k, v in known.items() if k != "num_classes"}
    resolved.update(options)
    model.fer_metadata = {
        "architecture": name,
        "options": resolved,
        "num_classes": num_classes,
        "class_names": _class_names(num_classes),
    }
    return model
