"""Predictions on pictures, folders, videos and (fake) webcams, Grad-CAM and the predict CLI, on tiny models."""

import csv
import json
import stat

import cv2
import numpy as np
import pytest

from fer_keras.cli import predict_cli
from fer_keras.constants import CLASS_NAMES
from fer_keras.ensemble import Ensemble, load_members
from fer_keras.errors import OutputExistsError
from fer_keras.inference import FacePredictor, OutputFolder, demo_image
from fer_keras.inference.faces import Box, FaceDetector, crop_faces, expand_box
from fer_keras.inference.gradcam import GradCAM, face_gradcam, find_target_layer
from fer_keras.models import model_io


class FakeCapture:
    """A cv2.VideoCapture stand-in: gives ``frames``, then (False, None)."""

    def __init__(self, frames, opened=True):
        self.frames, self.opened, self.released = list(frames), opened, False

    def isOpened(self):
        return self.opened

    def read(self):
        return (True, self.frames.pop(0)) if self.frames else (False, None)

    def release(self):
        self.released = True


@pytest.fixture(scope="module")
def models_dir(tiny_models_dir):
    """A models folder holding one tiny Flatten → Dense(7, softmax) member."""
    return tiny_models_dir


@pytest.fixture(scope="module")
def conv_model_file(tmp_path_factory):
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    inputs = keras.Input((48, 48, 1))
    x = layers.Rescaling(1 / 255)(inputs)
    x = layers.Conv2D(4, 3, activation="relu", name="conv_a")(x)
    x = layers.MaxPooling2D()(x)
    x = layers.Conv2D(6, 3, activation="relu", name="conv_b")(x)
    x = layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, layers.Dense(7, activation="softmax")(x))
    return model_io.save_model(model, tmp_path_factory.mktemp("conv") / "conv.h5")


@pytest.fixture(scope="module")
def predictor(models_dir):
    members, _ = load_members(models_dir)
    return FacePredictor(Ensemble(members))


@pytest.fixture(scope="module")
def grace():
    """matplotlib's bundled photo (BGR), halved to keep detection fast."""
    image = cv2.imread(str(demo_image()))
    return cv2.resize(image, (image.shape[1] // 2, image.shape[0] // 2), interpolation=cv2.INTER_AREA)


def no_face_picture():
    """A drawn picture with shapes and a gradient but no face."""
    image = np.tile(np.linspace(40, 200, 320, dtype=np.uint8), (240, 1))
    image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    cv2.rectangle(image, (30, 40), (120, 200), (0, 0, 255), -1)
    cv2.circle(image, (230, 120), 50, (255, 200, 0), -1)
    return image


def read_rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def run_cli(argv, capsys, **kwargs):
    code = predict_cli.main([str(a) for a in argv], prog="predict.py", **kwargs)
    out, err = capsys.readouterr()
    return code, out, err


def test_grace_hopper_has_a_face(predictor, grace):
    """Check that the bundled demo photo gives at least one face with 7 probabilities summing to 1."""
    faces = predictor.predict_image(grace)
    assert len(faces) >= 1
    face = faces[0]
    assert face.probs.shape == (7,) and face.probs.sum() == pytest.approx(1.0, abs=1e-5)
    assert face.label == CLASS_NAMES[int(np.argmax(face.probs))]
    assert face.confidence == pytest.approx(face.probs.max())
    assert face.face.shape == (48, 48) and face.face.dtype == np.uint8
    x, y, w, h = face.box.as_tuple()
    assert 0 <= x and 0 <= y and x + w <= grace.shape[1] and y + h <= grace.shape[0]


def test_crops_are_clipped_to_the_image():
    """Check that a margin is clipped at the picture's edges and crops are uint8 (N, 48, 48, 1)."""
    assert expand_box(Box(5, 10, 40, 20), 0.25, (100, 200)) == Box(0, 5, 55, 30)
    faces = crop_faces(np.zeros((60, 80, 3), np.uint8), [Box(0, 0, 30, 30), Box(50, 30, 30, 30)], margin=0.5)
    assert faces.shape == (2, 48, 48, 1) and faces.dtype == np.uint8
    assert crop_faces(np.zeros((60, 80), np.uint8), []).shape == (0, 48, 48, 1)


def test_picture_without_face(models_dir, tmp_path, capsys):
    """Check that a picture with no face gives no rows, a message and exit code 0."""
    picture = tmp_path / "shapes.png"
    cv2.imwrite(str(picture), no_face_picture())
    code, out, _ = run_cli(["--models-dir", models_dir, "--input", picture, "--out", tmp_path / "out"], capsys)
    assert code == 0
    assert "shapes.png: no face found" in out
    assert read_rows(tmp_path / "out" / "predictions.csv") == []
    assert (tmp_path / "out" / "shapes.annotated.png").is_file()


def test_no_detect_gives_one_row_per_picture(models_dir, tmp_path, capsys):
    """Check that --no-detect treats a 48x48 picture as one face covering it."""
    picture = tmp_path / "face.png"
    cv2.imwrite(str(picture), np.random.default_rng(0).integers(0, 255, (48, 48), dtype=np.uint8))
    code, _, _ = run_cli(["--models-dir", models_dir, "--input", picture, "--no-detect", "--out", tmp_path / "o"],
                         capsys)
    assert code == 0
    rows = read_rows(tmp_path / "o" / "predictions.csv")
    assert len(rows) == 1
    assert [rows[0][k] for k in ("x", "y", "w", "h")] == ["0", "0", "48", "48"]
    assert sum(float(rows[0][f"p_{c}"]) for c in CLASS_NAMES) == pytest.approx(1.0, abs=1e-4)
    annotated = cv2.imread(str(tmp_path / "o" / "face.annotated.png"))
    assert min(annotated.shape[:2]) >= 480  # small pictures are enlarged to stay legible


def test_folder_skips_what_is_not_a_picture(models_dir, grace, tmp_path, capsys):
    """Check that a text file named .jpg and a .txt are skipped with a message, the pictures processed."""
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    cv2.imwrite(str(folder / "a.png"), grace)
    (folder / "broken.jpg").write_text("not a picture")
    (folder / "notes.txt").write_text("hello")
    cv2.imwrite(str(folder / "sub" / "b.png"), grace)
    code, _, err = run_cli(["--models-dir", models_dir, "--input", folder, "--recursive", "--out", tmp_path / "o"],
                           capsys)
    assert code == 0
    assert "broken.jpg" in err and "notes.txt" in err
    rows = read_rows(tmp_path / "o" / "predictions.csv")
    assert {r["source"].replace("\\", "/").split("photos/")[1] for r in rows} == {"a.png", "sub/b.png"}
    assert (tmp_path / "o" / "a.annotated.png").is_file() and (tmp_path / "o" / "sub" / "b.annotated.png").is_file()
    doc = json.loads((tmp_path / "o" / "predictions.json").read_text())
    assert sorted(i["status"] for i in doc["inputs"]) == ["ok", "ok", "skipped", "skipped"]


def test_unreadable_picture_exits_2(models_dir, tmp_path, capsys):
    """Check that a single unreadable picture is a one-line message and exit code 2."""
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\x00garbage")
    code, _, err = run_cli(["--models-dir", models_dir, "--input", bad, "--out", tmp_path / "o"], capsys)
    assert code == 2
    assert "bad.jpg: not an image" in err and "Traceback" not in err


def test_video_every_second_frame(models_dir, grace, tmp_path, capsys):
    """Check that --every 2 on a 10-frame video analyses 5 frames and writes the video (with the usual
    permissions) and the timeline."""
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (grace.shape[1], grace.shape[0]))
    for _ in range(10):
        writer.write(grace)
    writer.release()
    out = tmp_path / "o"
    code, text, _ = run_cli(["--models-dir", models_dir, "--input", video, "--every", "2", "--out", out, "--quiet"],
                            capsys)
    assert code == 0
    rows = read_rows(out / "predictions.csv")
    assert sorted({int(r["frame"]) for r in rows}) == [0, 2, 4, 6, 8]
    assert [float(r["time_s"]) for r in rows if r["face"] == "1"] == [0.0, 0.2, 0.4, 0.6, 0.8]
    assert (out / "clip.timeline.png").stat().st_size > 0
    annotated = cv2.VideoCapture(str(out / "clip.annotated.mp4"))
    assert annotated.isOpened() and int(annotated.get(cv2.CAP_PROP_FRAME_COUNT)) == 10
    annotated.release()
    assert "5 frame(s) analysed of 10 read" in text
    # the video is as readable as the rows beside it (not mkstemp's owner-only 0600)
    mode = stat.S_IMODE((out / "clip.annotated.mp4").stat().st_mode)
    assert mode == stat.S_IMODE((out / "predictions.csv").stat().st_mode) and mode & stat.S_IRGRP


def test_empty_video_exits_2(models_dir, tmp_path, capsys):
    """Check that an empty video file is a clear message and exit code 2."""
    (tmp_path / "empty.mp4").write_bytes(b"")
    code, _, err = run_cli(["--models-dir", models_dir, "--input", tmp_path / "empty.mp4", "--out", tmp_path / "o"],
                           capsys)
    assert code == 2 and "empty.mp4" in err


def test_headless_webcam_with_a_fake_camera(models_dir, grace, tmp_path, capsys):
    """Check that the webcam path analyses every frame with --interval 0 and stops at --max-frames."""
    camera = FakeCapture([grace] * 5)
    out = tmp_path / "o"
    code, text, _ = run_cli(["--models-dir", models_dir, "--input", "webcam:1", "--interval", "0", "--max-frames",
                             "3", "--headless", "--out", out], capsys, open_capture=lambda index: camera)
    assert code == 0 and camera.released
    rows = read_rows(out / "predictions.csv")
    assert sorted({int(r["frame"]) for r in rows}) == [0, 1, 2]
    assert {r["source"] for r in rows} == {"webcam:1"}
    assert (out / "webcam1.annotated.mp4").is_file() and (out / "webcam1.timeline.png").is_file()
    assert "stopped by max-frames" in text


def test_webcam_defaults_to_the_distilled_member(models_dir, grace, tmp_path, capsys, monkeypatch):
    """Check that a webcam run without --models-dir uses only models/'s distilled member, the
    ensemble of the other members when --models-dir is given, and all of them with --include-distilled."""
    import shutil

    (tmp_path / "models").mkdir()
    shutil.copy(models_dir / "model_1.h5", tmp_path / "models" / "model_1.h5")
    model = model_io.load_model(models_dir / "model_1.h5")
    model_io.save_model(model, tmp_path / "models" / "model_2.h5", {"teacher": {"members": ["model_1.h5"]}})
    monkeypatch.chdir(tmp_path)
    argv = ["--input", "webcam", "--max-frames", "1", "--headless", "--interval", "0"]
    code, text, _ = run_cli([*argv, "--out", "o1"], capsys, open_capture=lambda index: FakeCapture([grace] * 2))
    assert code == 0 and "1 member(s)" in text and "model_2.h5, the member distilled" in text
    code, text, _ = run_cli([*argv, "--models-dir", "models", "--out", "o2"], capsys,
                            open_capture=lambda index: FakeCapture([grace] * 2))
    assert code == 0 and "1 member(s), 1 skipped" in text and "skipped model_2.h5: distilled" in text
    code, text, _ = run_cli([*argv, "--models-dir", "models", "--include-distilled", "--out", "o3"], capsys,
                            open_capture=lambda index: FakeCapture([grace] * 2))
    assert code == 0 and "2 member(s)" in text and "skipped" not in text


def test_weights_flag_chooses_the_calibration(models_dir, tmp_path):
    """Check that predict.py applies the folder's temperatures.json by default (--weights auto), the plain
    mean with --weights uniform, a FILE's weights and temperatures as given, and refuses a FILE fitted
    for other members before any picture is read."""
    import io
    import shutil

    from fer_keras.errors import ConfigError

    folder = tmp_path / "models"
    folder.mkdir()
    for name in ("model_1.h5", "model_3.h5"):
        shutil.copy(models_dir / "model_1.h5", folder / name)
    (folder / "temperatures.json").write_text(json.dumps({"temperatures": {"model_1.h5": 0.5, "model_3.h5": 0.6}}))

    def ensemble(*flags):
        args = predict_cli.build_parser("predict.py").parse_args(["--models-dir", str(folder), "--no-detect", *flags])
        return predict_cli.load_predictor(args, stdout=io.StringIO())[0].ensemble

    assert ensemble().temperatures == {"model_1.h5": 0.5, "model_3.h5": 0.6}
    uniform = ensemble("--weights", "uniform")
    assert uniform.temperatures is None and list(uniform.weights_) == [0.5, 0.5]
    given = tmp_path / "weights.json"
    given.write_text(json.dumps({"weights": {"model_1.h5": 1, "model_3.h5": 3}}))
    assert list(ensemble("--weights", str(given)).weights_) == [0.25, 0.75]
    given.write_text(json.dumps({"weights": {"model_1.h5": 1, "model_2.h5": 3}}))
    with pytest.raises(ConfigError, match="model_2.h5"):
        ensemble("--weights", str(given))


def test_a_missing_weights_file_is_said_before_the_models_load(tmp_path, capsys):
    """Check that a --weights FILE that is not there is one line naming the flag, even where the models
    could not load (an empty folder), and nothing is written."""
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli(["--models-dir", tmp_path / "empty", "--weights", tmp_path / "w.json",
                            "--out", tmp_path / "o"], capsys)
    assert code == 2 and err.strip() == f"error: --weights: {tmp_path / 'w.json'}: no such file (give auto, " \
        "uniform or a JSON weights file)"
    assert not (tmp_path / "o").exists()


def test_webcam_interval_and_stop(predictor, grace):
    """Check that with a long interval only the first frame is analysed, and should_stop ends the run."""
    result = predictor.run_webcam(0, open_capture=lambda i: FakeCapture([grace] * 4), interval=60, show=False)
    assert (len(result.frames), result.frames_read, result.stopped_by) == (1, 4, "end")
    result = predictor.run_webcam(0, open_capture=lambda i: FakeCapture([grace] * 4), interval=0, show=False,
                                  should_stop=lambda: True)
    assert (len(result.frames), result.stopped_by) == (1, "user")


def test_missing_input_is_said_before_the_models_load(tmp_path, capsys):
    """Check that an input that does not exist is the one error, even where the models could not load (an
    empty folder): a mistyped path is said at once, not after seconds of loading."""
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli(["--models-dir", tmp_path / "empty", "--input", tmp_path / "nope.jpg",
                            "--out", tmp_path / "o"], capsys)
    assert code == 2 and err.strip() == f"error: {tmp_path / 'nope.jpg'}: no such file or folder"
    assert not (tmp_path / "o").exists()


def test_missing_webcam_exits_2(models_dir, tmp_path, capsys):
    """Check that a camera that cannot be opened is a one-line message and exit code 2."""
    code, _, err = run_cli(["--models-dir", models_dir, "--input", "webcam", "--headless", "--out", tmp_path / "o"],
                           capsys, open_capture=lambda index: FakeCapture([], opened=False))
    assert code == 2
    assert "webcam:0: cannot open the camera" in err


def test_gradcam_map_shape_and_range(conv_model_file, grace, predictor):
    """Check that Grad-CAM on a tiny conv model gives a (48, 48) map in [0, 1] from its last conv layer."""
    (member,), _ = load_members(conv_model_file)
    assert [layer.name for layer in find_target_layer(member.model)] == ["conv_b"]
    face = predictor.predict_image(grace)[0].face
    cam, fer_class = face_gradcam(member, face, class_index=3)
    assert cam.shape == (48, 48) and cam.dtype == np.float32
    assert cam.min() >= 0.0 and cam.max() <= 1.0 and fer_class == 3


@pytest.fixture(scope="module")
def planted_model_file(tmp_path_factory):
    """A hand-set classifier: "happy" (3) is the brightness of the face's top-left quadrant only, "surprise" (5)
    the brightness anywhere. Its last conv layer ("conv", 1x1, 48x48) has one channel per rule."""
    import keras
    from keras import layers

    inputs = keras.Input((48, 48, 1))
    x = layers.Rescaling(1 / 255)(inputs)
    top_left = layers.ZeroPadding2D(((0, 24), (0, 24)))(layers.Cropping2D(((0, 24), (0, 24)))(x))
    conv = layers.Conv2D(2, 1, activation="relu", name="conv")
    features = conv(layers.Concatenate()([top_left, x]))
    dense = layers.Dense(7, activation="softmax")
    model = keras.Model(inputs, dense(layers.GlobalAveragePooling2D()(features)))
    conv.set_weights([np.eye(2, dtype="float32").reshape(1, 1, 2, 2), np.full(2, -0.5, "float32")])
    kernel = np.zeros((2, 7), "float32")
    kernel[0, 3] = kernel[1, 5] = 40.0
    dense.set_weights([kernel, np.zeros(7, "float32")])
    return model_io.save_model(model, tmp_path_factory.mktemp("planted") / "planted.h5")


def planted_face():
    """Dim noise, a bright square in the top-left quadrant and a larger, brighter one at the bottom right."""
    face = np.random.default_rng(0).integers(0, 60, (48, 48), dtype=np.uint8)
    face[6:14, 6:14] = 200
    face[30:44, 30:44] = 250
    return face


def test_gradcam_peaks_on_the_region_that_drives_the_class(planted_model_file):
    """Check that Grad-CAM of "happy" on the planted classifier is non-zero and lies on the top-left square
    (what drives that class), not on the brighter square, and that "surprise" (the top class) lights both."""
    (member,), _ = load_members(planted_model_file)
    face = planted_face()
    assert member.predict_proba(face[None, :, :, None]).argmax() == 5  # the explained class is not the top one
    cam, fer_class = face_gradcam(member, face, class_index=3)
    assert fer_class == 3 and cam.shape == (48, 48) and cam.max() == pytest.approx(1.0)
    peak = np.unravel_index(cam.argmax(), cam.shape)
    assert 6 <= peak[0] < 14 and 6 <= peak[1] < 14, peak
    assert cam[6:14, 6:14].min() > 0.5
    outside = cam.copy()
    outside[6:14, 6:14] = 0
    assert outside.max() < 0.05  # the bright square at the bottom right does not drive "happy"
    cam, fer_class = face_gradcam(member, face)  # default: the top class, "surprise"
    assert fer_class == 5
    assert cam[6:14, 6:14].min() > 0.2 and cam[30:44, 30:44].min() > 0.9 and cam[20:28, 0:48].max() < 0.05


def test_gradcam_descends_into_nested_models():
    """Check that the layer rule finds the last spatial layer inside a nested base model, and gradients flow."""
    import keras
    from keras import layers

    base_in = keras.Input((24, 24, 3))
    base = keras.Model(base_in, layers.Conv2D(5, 3, name="inner_conv")(layers.Conv2D(4, 3)(base_in)), name="base")
    inputs = keras.Input((48, 48, 1))
    x = layers.Concatenate()([inputs, inputs, inputs])
    x = base(layers.Resizing(24, 24)(x))
    model = keras.Model(inputs, layers.Dense(7, activation="softmax")(layers.GlobalAveragePooling2D()(x)))
    explainer = GradCAM(model)
    assert explainer.layer_name == "base/inner_conv"
    cam, _ = explainer(np.random.default_rng(0).uniform(0, 255, (1, 48, 48, 1)))
    assert cam.shape == (20, 20) and 0.0 <= cam.min() and cam.max() <= 1.0


def test_explain_writes_a_picture_per_face(conv_model_file, tmp_path, capsys):
    """Check that --explain writes one Grad-CAM picture per face of the demo photo (default input)."""
    code, out, _ = run_cli(["--model", conv_model_file, "--explain", "--out", tmp_path / "o"], capsys)
    assert code == 0 and "grace_hopper.jpg" in out
    rows = read_rows(tmp_path / "o" / "predictions.csv")
    assert len(rows) >= 1
    assert len(list((tmp_path / "o").glob("grace_hopper.face*.gradcam.png"))) == len(rows)


def test_cli_exit_codes_for_models(tmp_path, capsys):
    """Check that no models, missing .tflite/.onnx files and bad options are messages with exit code 2."""
    code, _, err = run_cli(["--models-dir", tmp_path, "--out", tmp_path / "o"], capsys)
    assert code == 2 and "has no trained models yet" in err and "--model FILE" in err
    assert "--models-dir PATH/models" in err and "demo.py" not in err  # demo.py's model lands in a temporary folder
    assert not (tmp_path / "o").exists()
    code, _, err = run_cli(["--model", tmp_path / "m.tflite", "--out", tmp_path / "o"], capsys)
    assert code == 2 and "m.tflite: no such file" in err
    code, _, err = run_cli(["--model", tmp_path / "m.onnx", "--out", tmp_path / "o"], capsys)
    assert code == 2 and "m.onnx: no such file" in err
    code, _, err = run_cli(["--model", tmp_path / "m.h5", "--every", "0"], capsys)
    assert code == 2 and "--every" in err


def test_refuses_to_overwrite_outputs(models_dir, tmp_path, capsys):
    """Check that a second run into the same folder is refused unless --overwrite."""
    picture = tmp_path / "face.png"
    cv2.imwrite(str(picture), np.full((48, 48), 128, np.uint8))
    argv = ["--models-dir", models_dir, "--input", picture, "--no-detect", "--out", tmp_path / "o"]
    assert run_cli(argv, capsys)[0] == 0
    code, _, err = run_cli(argv, capsys)
    assert code == 2 and "error: --overwrite: " in err and "pass --overwrite or choose" in err
    assert run_cli(argv + ["--overwrite"], capsys)[0] == 0
    folder = OutputFolder(tmp_path / "p")
    folder.claim("x", ".png").write_bytes(b"old")
    with pytest.raises(OutputExistsError, match="exists; pass overwrite=True"):
        OutputFolder(tmp_path / "p").claim("x", ".png")


def test_detector_rejects_bad_options():
    """Check that impossible detector settings are refused with the option's name."""
    from fer_keras.errors import ConfigError

    with pytest.raises(ConfigError, match="Received: scale_factor=1.0"):
        FaceDetector(scale_factor=1.0)
    with pytest.raises(ConfigError, match="Received: margin=2"):
        FaceDetector(margin=2)


def test_detecting_on_a_smaller_copy_finds_the_same_face():
    """Check that detect_side=320 finds the demo face with a box close to the full-size one, in full-size pixels."""
    from fer_keras.inference import FaceDetector, demo_image, read_image

    image = read_image(demo_image())
    full = FaceDetector().detect(image)
    small = FaceDetector(detect_side=320).detect(image)
    assert len(full) == len(small) == 1
    for a, b in zip(full[0].as_tuple(), small[0].as_tuple()):
        assert abs(a - b) <= 0.1 * full[0].w


@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
def test_video_through_an_exported_tflite_or_onnx_file(fmt, models_dir, grace, tmp_path, capsys, monkeypatch):
    """Check that a video runs through a float32 .tflite / .onnx export of the tiny member in its own runtime
    (LiteRT / onnxruntime: its backend is called once per analysed frame with faces) and gives the frames,
    faces and probabilities the Keras member gives."""
    from fer_keras import export
    from fer_keras.export import runtime

    if fmt == "tflite":
        pytest.importorskip("ai_edge_litert")
    else:
        pytest.importorskip("onnxruntime")
        pytest.importorskip("tf2onnx")
    members, _ = load_members(models_dir)
    fused = export.fuse(members)
    exported = tmp_path / f"fer.{fmt}"
    if fmt == "tflite":
        export.export_tflite(fused, exported, "float32")
    else:
        export.export_onnx(fused, exported)
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (grace.shape[1], grace.shape[0]))
    for _ in range(4):
        writer.write(grace)
    writer.release()

    backend = {"tflite": runtime.TFLiteBackend, "onnx": runtime.OnnxBackend}[fmt]
    calls, run = [], backend.run

    def counting_run(self, x):
        calls.append(len(x))
        return run(self, x)

    monkeypatch.setattr(backend, "run", counting_run)
    code, _, err = run_cli(["--model", exported, "--input", video, "--every", "2", "--out", tmp_path / "rt", "--quiet"],
                           capsys)
    assert code == 0, err
    monkeypatch.undo()
    code, _, err = run_cli(["--models-dir", models_dir, "--input", video, "--every", "2", "--out", tmp_path / "k",
                            "--quiet"], capsys)
    assert code == 0, err
    got, want = read_rows(tmp_path / "rt" / "predictions.csv"), read_rows(tmp_path / "k" / "predictions.csv")
    assert len(got) == len(want) >= 2 and sorted({int(r["frame"]) for r in got}) == [0, 2]
    assert len(calls) >= 2 and sum(calls) >= len(got)  # the exported file answered, not a Keras fallback
    for g, w in zip(got, want):
        assert (g["frame"], g["face"], g["label"]) == (w["frame"], w["face"], w["label"])
        for c in CLASS_NAMES:
            assert float(g[f"p_{c}"]) == pytest.approx(float(w[f"p_{c}"]), abs=1e-4)
    assert (tmp_path / "rt" / "clip.annotated.mp4").stat().st_size > 0


def test_detector_flags_choose_the_detector_and_alignment(models_dir, grace, tmp_path, capsys):
    """Check that --detector haar finds the face, says that it cannot align, and records its settings;
    mtcnn records alignment on, --no-align off."""
    picture = tmp_path / "grace.png"
    cv2.imwrite(str(picture), grace)
    seen = {}
    for flags in (["--detector", "haar"], [], ["--no-align"]):
        out_dir = tmp_path / f"out{len(seen)}"
        code, out, err = run_cli(["--models-dir", models_dir, "--input", picture, "--out", out_dir, *flags], capsys)
        assert code == 0, err
        assert ("no eye landmarks" in out) == (flags[:1] == ["--detector"])
        detector = json.loads((out_dir / "predictions.json").read_text())["detector"]
        seen[" ".join(flags)] = (detector["detector"], detector["align"], len(read_rows(out_dir / "predictions.csv")))
    assert seen == {"--detector haar": ("haar", False, 1), "": ("mtcnn", True, 1), "--no-align": ("mtcnn", False, 1)}


@pytest.mark.parametrize("flags, message", [
    (["--scale-factor", "1.2"], "--scale-factor: only for --detector haar (this run uses mtcnn)"),
    (["--track-every", "5"], "--track-every must be at least 1, and is for a webcam analysing every frame"),
    (["--detector", "haar", "--no-hog-proposals"], "--no-hog-proposals: only for --detector mtcnn (this run uses haar)"),
    (["--detector", "yunet"], "invalid choice: 'yunet'"),
])
def test_detector_flags_that_do_not_fit_are_refused(flags, message, models_dir, tmp_path, capsys):
    """Check that a Haar-only flag with MTCNN, tracking on a picture and an unknown detector are refused."""
    try:
        code, _, err = run_cli(["--models-dir", models_dir, "--out", tmp_path / "o", *flags], capsys)
    except SystemExit as exc:  # argparse refuses unknown choices itself
        code, err = exc.code, capsys.readouterr().err
    assert code == 2 and message in err


def test_webcam_analysing_every_frame_tracks_between_detections(models_dir, grace, tmp_path, capsys):
    """Check that a webcam with --interval 0 runs MTCNN on a 320-pixel copy every 10th frame with tracking
    between (the measured default), and with an interval searches every analysed frame."""
    from fer_keras.faces import Tracker

    base = ["--models-dir", str(models_dir), "--input", "webcam", "--out", str(tmp_path / "o")]
    args = predict_cli.build_parser().parse_args(base + ["--interval", "0"])
    detector = predict_cli.build_face_detector(args)
    assert isinstance(detector, Tracker) and detector.every == 10
    assert (detector.detector.name, detector.detector.detect_side) == ("mtcnn", 320)
    args = predict_cli.build_parser().parse_args(base)
    detector = predict_cli.build_face_detector(args)
    assert not isinstance(detector, Tracker) and detector.detect_side == 320
    args = predict_cli.build_parser().parse_args(base[:-4] + ["--input", "photo.jpg"])
    assert predict_cli.build_face_detector(args).detect_side == 0


def test_hog_proposals_are_on_unless_turned_off():
    """Check that pictures and the webcam get MTCNN with HOG proposals, and --no-hog-proposals gives MTCNN alone."""
    for flags in (["--input", "photo.jpg"], ["--input", "webcam", "--interval", "0"]):
        detector = predict_cli.build_face_detector(predict_cli.build_parser().parse_args(flags))
        assert detector.get_config()["hog_proposals"] is True
        detector = predict_cli.build_face_detector(predict_cli.build_parser().parse_args(flags + ["--no-hog-proposals"]))
        assert detector.get_config()["hog_proposals"] is False


def test_camera_video_keeps_the_stream_clock():
    """Check that a camera's annotated video holds each analysed picture until the next one's time: analysed
    10 times a second into a 30 frames/s video, each picture fills three frames (one each played 3x too fast)."""
    import contextlib

    from fer_keras.inference.stream import analyse_frames

    class Predictor:
        def predict_image(self, frame):
            return []

    written = []

    class Sink:
        @contextlib.contextmanager
        def video(self, stem, fps):
            yield type("Writer", (), {"write": lambda self, picture: written.append(int(picture[0, 0, 0]))})()

    frames = iter(np.full((5, 8, 8, 3), np.arange(5)[:, None, None, None], np.uint8))

    def read():
        frame = next(frames, None)
        return frame is not None, frame

    result, _ = analyse_frames(Predictor(), read, source="cam", fps=30.0,
                               due=lambda index, seconds: True, time_of=lambda index: index / 10, sink=Sink())
    assert result.frames_read == 5 and len(result.frames) == 5
    assert written == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4]


def test_probability_panels_cover_no_face_and_no_other_panel():
    """Check that in a row of faces each panel goes to the first side that covers no face and no panel
    placed before it: right of each box, the panels of the first two covered their neighbours' faces."""
    from fer_keras.inference.annotate import _overlap, panel_origins

    boxes = [(50, 200, 150, 150), (260, 200, 150, 150), (470, 200, 150, 150)]
    origins = panel_origins(boxes, 200, 150, 1000, 600, 6)
    assert origins == [(50, 356), (260, 356), (626, 200)]  # below, below, right
    panels = [(*origin, 200, 150) for origin in origins]
    for i, panel in enumerate(panels):
        assert all(_overlap(panel, other) == 0 for other in boxes + panels[:i] + panels[i + 1:])
    assert panel_origins([(0, 0, 1000, 600)], 200, 150, 1000, 600, 6) == [None]  # a face filling the picture
