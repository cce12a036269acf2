"""The REST API: answers, its schema, and every kind of bad input refused with a JSON 4xx, never a 5xx."""

import base64
import struct
import threading
import zlib

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from fer_keras.constants import CLASS_NAMES
from fer_keras.serve import MAX_UPLOAD_BYTES, MicroBatcher, SerialEnsemble, create_app


@pytest.fixture(scope="module")
def client(tiny_ensemble):
    with TestClient(create_app(tiny_ensemble), raise_server_exceptions=False) as c:
        yield c


def post_picture(client, data, *, name="photo.jpg", media="image/jpeg", query=""):
    return client.post(f"/api/predict{query}", files={"image": (name, data, media)})


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def huge_png(width=20000, height=20000):
    """A 100-byte PNG whose header declares ``width`` x ``height`` grey pixels (400 MB decoded)."""
    header = png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + header + png_chunk(b"IDAT", zlib.compress(b"\0" * 4096)) + png_chunk(b"IEND", b"")


def test_health_names_the_members_and_classes(client):
    """Check that /api/health says ok and names the members, the live members and the classes."""
    body = client.get("/api/health").json()
    assert body == {"status": "ok", "members": ["model_1.h5"], "live_members": ["model_1.h5"],
                    "classes": list(CLASS_NAMES), "micro_batching": True}


def test_predict_finds_the_face_with_probabilities(client, face_jpeg):
    """Check that a 640x480 JPEG with one face gives one face: a box around it, a label, probabilities."""
    response = post_picture(client, face_jpeg)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"faces", "members", "seconds", "width", "height", "annotated"}
    assert (body["width"], body["height"], body["members"], body["annotated"]) == (640, 480, ["model_1.h5"], None)
    [face] = body["faces"]
    x, y, w, h = face["box"]
    assert 200 < x + w / 2 < 440 and 60 < y + h / 2 < 300 and w > 100  # the face in the middle of the frame
    assert list(face["probabilities"]) == list(CLASS_NAMES)
    assert sum(face["probabilities"].values()) == pytest.approx(1, abs=1e-5)
    assert face["label"] == max(face["probabilities"], key=face["probabilities"].get)
    assert face["confidence"] == pytest.approx(face["probabilities"][face["label"]])


@pytest.mark.parametrize("fmt", [".png", ".webp"])
def test_png_and_webp_are_read_too(client, frame, fmt):
    """Check that PNG and WebP pictures are accepted and give the same face."""
    data = cv2.imencode(fmt, frame)[1].tobytes()
    response = post_picture(client, data, name="p" + fmt, media="image/" + fmt[1:])
    assert response.status_code == 200 and len(response.json()["faces"]) == 1


def test_annotate_returns_the_picture_with_the_face_drawn(client, face_jpeg, frame):
    """Check that ?annotate=true returns a JPEG data URL of the picture, changed where the box is drawn."""
    body = post_picture(client, face_jpeg, query="?annotate=true").json()
    prefix = "data:image/jpeg;base64,"
    assert body["annotated"].startswith(prefix)
    picture = cv2.imdecode(np.frombuffer(base64.b64decode(body["annotated"][len(prefix):]), np.uint8), 1)
    assert picture.shape[0] == 480 and picture.shape[1] >= 640
    x, y, w, h = body["faces"][0]["box"]
    edge = picture[y + h // 2, x - 2: x + 3].astype(int) - frame[y + h // 2, x - 2: x + 3].astype(int)
    assert np.abs(edge).max() > 60  # the box's left edge


def test_live_takes_a_raw_jpeg_body(client, face_jpeg):
    """Check that /api/live reads a frame sent as the request body and finds its face."""
    response = client.post("/api/live", content=face_jpeg, headers={"content-type": "image/jpeg"})
    assert response.status_code == 200
    assert len(response.json()["faces"]) == 1 and response.json()["width"] == 640


def test_openapi_schema_documents_the_responses(client):
    """Check that /openapi.json documents the endpoints and the response models."""
    schema = client.get("/openapi.json").json()
    assert {"/api/predict", "/api/live", "/api/health"} <= set(schema["paths"])
    ok = schema["paths"]["/api/predict"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok["$ref"].endswith("/Prediction")
    assert {"Face", "Prediction", "Health", "Error"} <= set(schema["components"]["schemas"])


def test_page_and_assets_are_served(client):
    """Check that the page and its script and style come from the app itself (no other site)."""
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    for asset in ("/static/app.js", "/static/style.css"):
        assert client.get(asset).status_code == 200
    assert "https://" not in page.text and "//cdn" not in page.text


# === Refusals ===

@pytest.mark.parametrize("chunked", [False, "raw", "form"], ids=["content-length", "chunked", "chunked-form"])
def test_upload_over_10_mb_is_413(client, chunked):
    """Check that a body over 10 MB is a 413 with a JSON error, whether or not it declares its length,
    raw or as a multipart form."""
    data = b"\xff\xd8\xff" + bytes(MAX_UPLOAD_BYTES)

    def chunks(body):
        return iter([body[i:i + 2 ** 20] for i in range(0, len(body), 2 ** 20)])

    if chunked == "raw":
        response = client.post("/api/live", content=chunks(data), headers={"content-type": "image/jpeg"})
    elif chunked == "form":
        head = (b'--b0undary\r\nContent-Disposition: form-data; name="image"; filename="p.jpg"\r\n'
                b"Content-Type: image/jpeg\r\n\r\n")
        response = client.post("/api/predict", content=chunks(head + data + b"\r\n--b0undary--\r\n"),
                               headers={"content-type": "multipart/form-data; boundary=b0undary"})
    else:
        response = post_picture(client, data)
    assert response.status_code == 413
    assert "10 MB" in response.json()["error"]


def test_a_declared_length_over_the_limit_is_refused_unread():
    """Check that a Content-Length over the limit is a 413 before the body is read or the app runs."""
    import asyncio

    from fer_keras.serve.app import BodyLimit

    calls, sent = [], []

    async def app(scope, receive, send):
        calls.append("app")

    async def receive():
        calls.append("receive")
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/api/predict",
             "headers": [(b"content-length", str(MAX_UPLOAD_BYTES + 1).encode())]}
    asyncio.run(BodyLimit(app, MAX_UPLOAD_BYTES)(scope, receive, send))
    assert calls == [] and sent[0]["status"] == 413


def test_corrupt_pictures_are_refused_with_json(client, frame, face_jpeg):
    """Check that non-pictures are 415 and broken ones 400, each with a one-line JSON error."""
    png = cv2.imencode(".png", frame)[1].tobytes()
    cases = {
        "text": (b"hello, this is not a picture", 415),
        "pdf": (b"%PDF-1.4 fake", 415),
        "empty": (b"", 400),
        "jpeg magic, garbage": (b"\xff\xd8\xff\xe0" + bytes(range(256)) * 40, 400),
        "truncated jpeg": (face_jpeg[: len(face_jpeg) // 2], 400),
        "truncated png": (png[: len(png) // 2], 400),
        "png header only": (png[:60], 400),
    }
    for name, (data, status) in cases.items():
        response = post_picture(client, data)
        assert response.status_code == status, name
        assert response.headers["content-type"] == "application/json", name
        error = response.json()["error"]
        assert error and "\n" not in error and "Traceback" not in error, name


def test_a_request_without_the_image_field_is_a_json_422(client, face_jpeg):
    """Check that a form without `image`, or a bad query value, is a 422 whose error names the problem."""
    response = client.post("/api/predict", files={"picture": ("a.jpg", face_jpeg, "image/jpeg")})
    assert response.status_code == 422 and "image" in response.json()["error"]
    response = post_picture(client, face_jpeg, query="?annotate=maybe")
    assert response.status_code == 422 and "annotate" in response.json()["error"]


def test_a_decompression_bomb_is_refused_before_decoding(client, monkeypatch):
    """Check that a small PNG declaring 20000x20000 pixels is a 400 and is never handed to a decoder."""
    def must_not_decode(*args, **kwargs):
        raise AssertionError("decoded")

    monkeypatch.setattr(cv2, "imdecode", must_not_decode)
    data = huge_png()
    assert len(data) < 200
    response = post_picture(client, data, name="bomb.png", media="image/png")
    assert response.status_code == 400
    assert "too large to decode safely" in response.json()["error"]


def test_a_path_as_file_name_never_reaches_the_file_system(client, face_jpeg, tmp_path, monkeypatch):
    """Check that a file name like ../../etc/passwd is neither opened nor written nor echoed."""
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    opened = []
    real_open = open

    def spy_open(file, *args, **kwargs):
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", spy_open)
    for name in ("../../etc/passwd", "../../probe.jpg", "/etc/passwd"):
        response = post_picture(client, face_jpeg, name=name)
        assert response.status_code == 200 and "passwd" not in response.text
        refused = post_picture(client, b"root:x:0:0:root:/root:/bin/bash\n", name=name, media="text/plain")
        assert refused.status_code == 415 and "passwd" not in refused.text
    assert not [f for f in opened if "passwd" in f or "probe" in f]
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "b"]


def test_a_bug_is_a_json_500_without_a_traceback(tiny_ensemble, face_jpeg):
    """Check that an unexpected error inside the models answers a JSON 500 that shows no traceback."""
    class Broken:
        members, class_names = tiny_ensemble.members, tiny_ensemble.class_names
        calls = 0

        def predict_proba(self, faces, tta=False):
            Broken.calls += 1
            if Broken.calls > 2:  # the two warm-up calls pass
                raise ValueError("secret internal detail")
            return tiny_ensemble.predict_proba(faces, tta=tta)

    with TestClient(create_app(Broken()), raise_server_exceptions=False) as client:
        response = post_picture(client, face_jpeg)
    assert response.status_code == 500
    assert response.json() == {"error": "internal error (see the server's log)"}


# === Sharing the ensemble ===

class SlowEnsemble:
    """Probabilities that encode each face's first pixel, after a pause per call (so requests queue);
    counts the calls running at once."""

    members, class_names = [], CLASS_NAMES

    def __init__(self):
        self.batch_sizes, self.running, self.most_at_once = [], 0, 0

    def predict_proba(self, faces, tta=False):
        self.batch_sizes.append(len(faces))
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        threading.Event().wait(0.05)
        self.running -= 1
        out = np.zeros((len(faces), 7))
        out[:, 0] = faces[:, 0, 0, 0]
        return out


def test_micro_batcher_runs_concurrent_requests_together():
    """Check that 8 concurrent callers get their own answers from fewer batches than callers."""
    slow = SlowEnsemble()
    batcher = MicroBatcher(slow)
    results = {}

    def call(i):
        faces = np.full((1 + i % 3, 48, 48, 1), i, np.uint8)
        results[i] = batcher.predict_proba(faces)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    batcher.close()
    assert all(results[i].shape == (1 + i % 3, 7) and (results[i][:, 0] == i).all() for i in range(8))
    assert sum(slow.batch_sizes) == sum(1 + i % 3 for i in range(8))
    assert len(slow.batch_sizes) < 8 and batcher.batches == len(slow.batch_sizes)


def test_micro_batcher_hands_an_error_to_its_caller_and_keeps_serving():
    """Check that a failing batch raises in the callers' threads and the next request is still served."""
    class Flaky(SlowEnsemble):
        def predict_proba(self, faces, tta=False):
            if not self.batch_sizes:
                self.batch_sizes.append(0)
                raise ValueError("once")
            return super().predict_proba(faces, tta)

    batcher = MicroBatcher(Flaky())
    with pytest.raises(ValueError, match="once"):
        batcher.predict_proba(np.ones((1, 48, 48, 1), np.uint8))
    assert batcher.predict_proba(np.full((2, 48, 48, 1), 3, np.uint8))[:, 0].tolist() == [3, 3]
    batcher.close()


def test_serial_ensemble_never_runs_two_requests_at_once():
    """Check that without batching each request runs alone and in full."""
    slow = SlowEnsemble()
    serial = SerialEnsemble(slow)
    threads = [threading.Thread(target=serial.predict_proba, args=(np.zeros((2, 48, 48, 1), np.uint8),))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert slow.batch_sizes == [2, 2, 2, 2] and slow.most_at_once == 1


def test_only_the_worker_thread_touches_the_ensemble():
    """Check that every call, one with no faces included, runs in the micro-batcher's own thread."""
    class Recording(SlowEnsemble):
        threads = set()

        def predict_proba(self, faces, tta=False):
            Recording.threads.add(threading.current_thread().name)
            return super().predict_proba(faces, tta)

    batcher = MicroBatcher(Recording())
    assert batcher.predict_proba(np.zeros((0, 48, 48, 1), np.uint8)).shape == (0, 7)
    assert batcher.predict_proba(np.zeros((1, 48, 48, 1), np.uint8)).shape == (1, 7)
    batcher.close()
    assert Recording.threads == {"fer-micro-batcher"}
