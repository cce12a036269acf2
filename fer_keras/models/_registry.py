"""Model registry: builders registered by name, built by name (timm-style).

A builder is a plain function ``fn(*, num_classes, **options) -> keras.Model``
whose model takes raw grey faces (48x48x1, 0..255) and returns float32 softmax
probabilities in FER2013 order. :func:`build` records the name and options on
the model so a saved file can say how to rebuild itself.
"""

from __future__ import annotations

import inspect

from fer_keras.constants import CLASS_NAMES, CLASS_NAMES_8, NUM_CLASSES
from fer_keras.errors import ConfigError

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
    """The builder's options and their defaults (for --help and model cards)."""
    params = inspect.signature(builder(name)).parameters
    return {k: p.default for k, p in params.items() if p.kind is p.KEYWORD_ONLY}


def check_options(name, options):
    """Raise ConfigError for an unknown model or option (options are never ignored)."""
    known = options_of(name)
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ConfigError(
            f"model {name!r} has no option(s) {', '.join(unknown)}; options: {', '.join(known) or 'none'}"
        )
    return known


def _class_names(num_classes):
    """FER2013's names for 7 classes, FER+/AffectNet-8's for 8; None (unnamed) otherwise."""
    for names in (CLASS_NAMES, CLASS_NAMES_8):
        if num_classes == len(names):
            return list(names)
    return None


def build(name, *, num_classes=NUM_CLASSES, **options):
    """Build registered model ``name``; unknown options are an error, not ignored."""
    known = check_options(name, options)
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
