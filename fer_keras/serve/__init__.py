"""The serving stage: a local web app and REST API over the inference stage.

:func:`create_app` builds the FastAPI application: the page at ``/`` (the
browser's webcam, live boxes and emotions, a photo upload), ``POST
/api/predict`` (a picture → its faces as JSON), ``POST /api/live`` (a webcam
frame, run by the small distilled member), ``GET /api/health`` and the OpenAPI
schema at ``/openapi.json``. :mod:`~fer_keras.serve.batching` lets concurrent
requests share one ensemble; :mod:`~fer_keras.serve.schemas` holds the response
models the schema documents; ``static/`` the page (plain JS, no build step,
nothing loaded from another site).

This stage imports inference, ensemble and models; never the CLI, which owns
the flags (``serve.py``, :mod:`fer_keras.cli.serve_cli`).
"""

from fer_keras.serve.app import MAX_PIXELS, MAX_UPLOAD_BYTES, create_app
from fer_keras.serve.batching import MicroBatcher, SerialEnsemble

__all__ = ["MAX_PIXELS", "MAX_UPLOAD_BYTES", "MicroBatcher", "SerialEnsemble", "create_app"]
