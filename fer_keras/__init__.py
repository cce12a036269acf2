"""fer_keras: facial emotion recognition with Keras 3.

Train FER2013 models, evaluate ensembles of them, and find the emotions of
faces in photos, videos and webcams. Submodules are imported on demand so
``import fer_keras`` stays fast: ``fer_keras.data``, ``fer_keras.models``,
``fer_keras.train``, ``fer_keras.ensemble``, ``fer_keras.predict``.
"""

__version__ = "0.1.0"

from fer_keras.constants import CLASS_NAMES, INPUT_SHAPE, NUM_CLASSES  # noqa: E402

__all__ = ["CLASS_NAMES", "INPUT_SHAPE", "NUM_CLASSES", "__version__"]
