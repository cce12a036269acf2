"""fer_keras: facial emotion recognition with Keras 3.

Train FER2013 models, evaluate ensembles of them, and find the emotions of
faces in photos, videos and webcams. One line each::

    import fer_keras

    fer_keras.detect_emotions("photo.jpg")        # [{"box", "label", "confidence", "probabilities"}, ...]
    ens = fer_keras.Ensemble.from_dir("models")   # every model file of a folder, combined
    fer_keras.train(model="mini_xception", csv="data/fer2013.csv", epochs=5)   # -> models/model_<i>.h5

The package is laid out as the pipeline (ARCHITECTURE.md): ``fer_keras.data``
→ ``fer_keras.models`` → ``fer_keras.ensemble`` / ``fer_keras.training`` →
``fer_keras.inference`` / ``fer_keras.export`` → ``fer_keras.serve``, with ``fer_keras.cli`` on top.
``import fer_keras`` imports none of them: each name above loads its stage
(and TensorFlow) when it is first used.
"""

import importlib
import importlib.abc
import importlib.util
import sys
import types
import warnings

from fer_keras.constants import CLASS_NAMES, INPUT_SHAPE, NUM_CLASSES

__version__ = "0.1.0"

_API = {
    "Ensemble": "fer_keras.ensemble",
    "TrainConfig": "fer_keras.training",
    "detect_emotions": "fer_keras.inference",
    "load_fer2013": "fer_keras.data",
    "train": "fer_keras.training",
}
"""The one-line API: name → the stage package that defines it."""

_STAGES = ("cli", "data", "ensemble", "export", "faces", "inference", "models", "serve", "training")

_MOVED = {
    "fer_keras.annotate": "fer_keras.inference.annotate",
    "fer_keras.augment": "fer_keras.training.augment",
    "fer_keras.calibration": "fer_keras.ensemble.calibration",
    "fer_keras.datasets": "fer_keras.data",
    "fer_keras.distill": "fer_keras.training.distill",
    "fer_keras.distributed": "fer_keras.training.distributed",
    "fer_keras.gradcam": "fer_keras.inference.gradcam",
    "fer_keras.html_report": "fer_keras.ensemble.html",
    "fer_keras.model_card": "fer_keras.cli.model_card",
    "fer_keras.model_io": "fer_keras.models.model_io",
    "fer_keras.precision": "fer_keras.training.precision",
    "fer_keras.predict": "fer_keras.inference",
    "fer_keras.preprocess": "fer_keras.data",
    "fer_keras.report": ("fer_keras.plots", "fer_keras.tables"),
    "fer_keras.selection": "fer_keras.ensemble.selection",
    "fer_keras.stats": "fer_keras.ensemble.stats",
    "fer_keras.synthetic": "fer_keras.data.synthetic",
    "fer_keras.tta": "fer_keras.ensemble.tta",
}
"""Where the flat modules of fer_keras 0.1 went, so code written against them still imports
(``from fer_keras.model_io import read_metadata``), with a DeprecationWarning naming the new place.
A module split in two (``report``: figures and text tables) imports as one module holding both.
``fer_keras.train`` is now the :func:`train` function; its module is ``fer_keras.training``."""


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds an old module path of :data:`_MOVED` and hands out the module at its new place."""

    def __init__(self):
        self._own_specs = {}

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in _MOVED:
            return None
        new = _MOVED[fullname]  # the new file as origin: `python -m` puts it in sys.argv[0]
        origin = None if isinstance(new, tuple) else importlib.util.find_spec(new).origin
        return importlib.util.spec_from_loader(fullname, self, origin=origin)

    def create_module(self, spec):
        new = _MOVED[spec.name]
        parts = new if isinstance(new, tuple) else (new,)
        warnings.warn(f"{spec.name} moved to {' and '.join(parts)}; import it from there", DeprecationWarning,
                      stacklevel=2)
        if isinstance(new, tuple):  # split: a module of its own with the names of every part
            module = types.ModuleType(spec.name)
            for part in parts:
                module.__dict__.update((k, v) for k, v in vars(importlib.import_module(part)).items()
                                       if not k.startswith("__"))
            return module
        module = importlib.import_module(new)
        self._own_specs[spec.name] = module.__spec__
        return module

    def exec_module(self, module):
        # Nothing to run: the module at its new place is already executed. The import system has
        # just given an aliased module the old name's spec; it keeps its own.
        module.__spec__ = self._own_specs.get(module.__spec__.name, module.__spec__)

    def get_code(self, fullname):
        """The code of the module at its new place, so ``python -m fer_keras.model_card`` still runs."""
        spec = importlib.util.find_spec(_MOVED[fullname])
        return spec.loader.get_code(spec.name)


sys.meta_path.insert(0, _MovedModules())  # before any other finder: these names exist nowhere else


def __getattr__(name):
    """Load the one-line API and the stage packages on first use (PEP 562): no TensorFlow at import."""
    if name in _API:
        value = getattr(importlib.import_module(_API[name]), name)
    elif name in _STAGES or f"fer_keras.{name}" in _MOVED:
        value = importlib.import_module(f"fer_keras.{name}")
    else:
        raise AttributeError(f"module 'fer_keras' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_API) | set(_STAGES))


__all__ = ["CLASS_NAMES", "INPUT_SHAPE", "NUM_CLASSES", "Ensemble", "TrainConfig", "__version__", "detect_emotions",
           "load_fer2013", "train"]
