"""The FastAPI application: the page, the REST API and the guards in front of them.

    from fer_keras.ensemble import Ensemble
    from fer_keras.serve import create_app

    app = create_app(Ensemble.from_dir("models"))
    # uvicorn.run(app, host="127.0.0.1", port=8000)

Every picture is read from memory: no client input becomes a path and
nothing is written to disk (Starlette spools multipart uploads over 1 MB to
a file in the system's temp dir while the request lasts). Before a picture
is decoded, the request body is capped at :data:`MAX_UPLOAD_BYTES` (413), its
first bytes must say JPEG, PNG or WebP (415) and its header may declare at
most :data:`MAX_PIXELS` pixels (400: a decompression bomb is never
decoded). A picture that still cannot be decoded is a 400; every refusal is
``{"error": "..."}``, never a traceback.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import threading
import time
from importlib import resources

import numpy as np
from fastapi import File, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from fer_keras.constants import CLASS_NAMES, IMAGE_SIZE
from fer_keras.errors import InputError
from fer_keras.faces import DEFAULT_DETECTOR, build_detector, decode_image
from fer_keras.inference import FacePredictor
from fer_keras.inference.annotate import draw_faces
from fer_keras.serve.batching import MicroBatcher, SerialEnsemble
from fer_keras.serve.schemas import Error, Face, Health, LiveFrame, Prediction

MAX_UPLOAD_BYTES = 10 * 1024 * 1024
"""The largest request body accepted (413 above)."""

MAX_PIXELS = 40_000_000
"""The most pixels a picture's header may declare (a 40 MP photo); larger is refused before decoding."""

ANNOTATED_QUALITY = 85
"""JPEG quality of the annotated picture returned with ``?annotate=true``."""

SIGNATURES = {"image/jpeg": (b"\xff\xd8\xff",), "image/png": (b"\x89PNG\r\n\x1a\n",)}
"""The first bytes of each accepted format (WebP: ``RIFF....WEBP``, checked apart)."""

log = logging.getLogger("fer_keras.serve")


class PayloadTooLarge(HTTPException):
    """Raised while a body is read once it passes the limit. An HTTPException, so FastAPI's body parsing
    lets it through as it is (it turns other exceptions into a 400)."""

    def __init__(self, limit):
        super().__init__(413, f"request body over {limit // (1024 * 1024)} MB")


class BodyLimit:
    """ASGI middleware: a body over ``max_bytes`` is a 413, by its Content-Length before anything is
    read, or as it streams in (chunked uploads declare no length)."""

    def __init__(self, app, max_bytes):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            status, text = (413, PayloadTooLarge(self.max_bytes).detail) if length.isdigit() else \
                (400, "bad Content-Length")
            return await JSONResponse({"error": text}, status_code=status)(scope, receive, send)
        received = 0

        async def limited():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise PayloadTooLarge(self.max_bytes)
            return message

        await self.app(scope, limited, send)


def sniff(data):
    """The media type of a picture's bytes (``image/jpeg``, ``image/png``, ``image/webp``), or None."""
    head = bytes(data[:16])
    for media, prefixes in SIGNATURES.items():
        if head.startswith(prefixes):
            return media
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


def decode_upload(data, *, max_pixels=MAX_PIXELS):
    """BGR image from an uploaded picture's bytes; raises HTTPException 415 / 400 with the reason."""
    if not data:
        raise HTTPException(400, "empty upload: send a JPEG, PNG or WebP picture")
    media = sniff(data)
    if media is None:
        raise HTTPException(415, "not a JPEG, PNG or WebP picture")
    try:
        return decode_image(data, name="the picture", max_pixels=max_pixels)
    except InputError as exc:
        raise HTTPException(400, str(exc)) from None


def face_json(face, class_names):
    return Face(box=list(face.box.as_tuple()), label=face.label, confidence=float(face.confidence),
                probabilities={name: float(p) for name, p in zip(class_names, face.probs)})


class _Engine:
    """One ensemble shared by every request thread, each thread with its own face detector (OpenCV's
    cascade is not safe to share between threads) and predictor."""

    def __init__(self, shared, detector_factory, *, tta, warm_up=True):
        self.shared, self.detector_factory, self.tta = shared, detector_factory, tta
        self._local = threading.local()
        self.detector_factory()  # a bad detector option fails here, at start-up
        if warm_up:
            self.warm_up()

    def warm_up(self):
        """Trace the models now, not in the first requests: Keras traces a batch of 1 and then one of any
        other size (a second trace generalises the batch dimension, so no later size traces again)."""
        for n in (1, 2):
            self.shared.predict_proba(np.zeros((n, IMAGE_SIZE, IMAGE_SIZE, 1), np.uint8), tta=self.tta)

    @property
    def member_names(self):
        return [m.name for m in self.shared.members]

    @property
    def predictor(self):
        predictor = getattr(self._local, "predictor", None)
        if predictor is None:
            predictor = self._local.predictor = FacePredictor(
                self.shared, self.detector_factory(), tta=self.tta, class_names=self.shared.class_names)
        return predictor


def _static_dir():
    return resources.files("fer_keras.serve") / "static"


def create_app(ensemble, *, live_ensemble=None, detector_factory=None, live_detector_factory=None,
               batching=True, tta=False, max_upload_bytes=MAX_UPLOAD_BYTES, max_pixels=MAX_PIXELS):
    """The FastAPI app serving ``ensemble``.

    Args:
      ensemble: the :class:`~fer_keras.ensemble.Ensemble` behind ``/api/predict``, loaded once.
      live_ensemble: the one behind ``/api/live`` (the webcam view): a small fast member
        (default: ``ensemble``).
      detector_factory: a zero-argument callable returning a face detector (a
        :class:`~fer_keras.faces.Detector`); called once per request thread.
        Default: :data:`~fer_keras.faces.DEFAULT_DETECTOR`, full size.
      live_detector_factory: the same for webcam frames (default: Haar on a 320-pixel copy).
      batching: concurrent requests share batches (:class:`MicroBatcher`) or run one at a time.
      tta: a test-time augmentation mode for ``/api/predict``.
      max_upload_bytes, max_pixels: the limits above which a picture is refused.
    """
    detector_factory = detector_factory or (lambda: build_detector(DEFAULT_DETECTOR))
    live_detector_factory = live_detector_factory or (lambda: build_detector("haar", detect_side=320))
    def shared(models):
        return MicroBatcher(models) if batching else SerialEnsemble(models)

    engine = _Engine(shared(ensemble), detector_factory, tta=tta)
    live = _Engine(engine.shared if live_ensemble is None else shared(live_ensemble), live_detector_factory,
                   tta=False, warm_up=live_ensemble is not None or bool(tta))
    class_names = list(getattr(ensemble, "class_names", CLASS_NAMES))

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        engine.shared.close()
        live.shared.close()

    # FastAPIOffline: FastAPI whose /docs page (Swagger UI) loads its script from the app itself
    # (fastapi-offline ships it), not from a CDN: the docs work offline, as the page does. No /redoc:
    # ReDoc still fetches its logo from the internet.
    app = FastAPIOffline(title="fer_keras", version="0.1.0", lifespan=lifespan, redoc_url=None,
                         description="Facial emotion recognition: the faces in a picture and their emotions "
                         f"({', '.join(class_names)}). Pictures: JPEG, PNG or WebP, at most "
                         f"{max_upload_bytes // (1024 * 1024)} MB and {max_pixels / 1e6:g} megapixels.")
    app.add_middleware(BodyLimit, max_bytes=max_upload_bytes)
    app.state.engine, app.state.live = engine, live

    @app.exception_handler(HTTPException)
    async def http_error(request, exc):
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request, exc):  # e.g. no `image` field: the same {"error"} shape as the rest
        problems = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors())
        return JSONResponse({"error": problems or "invalid request"}, status_code=422)

    @app.exception_handler(Exception)
    async def server_error(request, exc):  # a bug: logged here, never shown to the client
        log.exception("error in %s %s", request.method, request.url.path)
        return JSONResponse({"error": "internal error (see the server's log)"}, status_code=500)

    refusals = {code: {"model": Error} for code in (400, 413, 415, 422)}

    @app.get("/", include_in_schema=False)
    def page():
        return FileResponse(str(_static_dir() / "index.html"), media_type="text/html")

    app.mount("/static", StaticFiles(directory=str(_static_dir())), name="static")

    @app.get("/api/health", response_model=Health)
    def health():
        """The server is up; which models answer."""
        return Health(status="ok", members=engine.member_names, live_members=live.member_names,
                      classes=class_names, micro_batching=batching)

    @app.post("/api/predict", response_model=Prediction, responses=refusals)
    def predict(image: UploadFile = File(description="a JPEG, PNG or WebP picture"),
                annotate: bool = Query(False, description="also return the picture with the faces drawn on it")):
        """The faces in a picture and their emotions, left to right (the whole ensemble)."""
        start = time.perf_counter()
        picture = decode_upload(image.file.read(), max_pixels=max_pixels)
        faces = engine.predictor.predict_image(picture)
        annotated = None
        if annotate:
            annotated = _jpeg_data_url(draw_faces(picture, faces, class_names,
                                                  caption=None if faces else "no face found"))
        return Prediction(faces=[face_json(f, class_names) for f in faces], members=engine.member_names,
                          seconds=round(time.perf_counter() - start, 4), width=picture.shape[1],
                          height=picture.shape[0], annotated=annotated)

    @app.post("/api/live", response_model=LiveFrame, responses=refusals,
              openapi_extra={"requestBody": {"required": True, "content": {
                  "image/jpeg": {"schema": {"type": "string", "format": "binary"}}}}})
    async def live_frame(request: Request):
        """One webcam frame (the request body: a JPEG, PNG or WebP picture) → its faces, by the live member."""
        start = time.perf_counter()
        body = await request.body()

        def work():
            picture = decode_upload(body, max_pixels=max_pixels)
            faces = live.predictor.predict_image(picture)
            return LiveFrame(faces=[face_json(f, class_names) for f in faces], width=picture.shape[1],
                             height=picture.shape[0], seconds=round(time.perf_counter() - start, 4))

        return await run_in_threadpool(work)

    return app


def _jpeg_data_url(image):
    import cv2

    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, ANNOTATED_QUALITY])
    return "data:image/jpeg;base64," + base64.b64encode(encoded.tobytes()).decode("ascii")
