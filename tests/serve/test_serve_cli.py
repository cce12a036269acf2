"""serve.py's command line: the models it loads, the address it binds, one-line errors and exit 2."""

import pytest
from fastapi.testclient import TestClient

from fer_keras.cli import serve_cli


def serve(argv, capsys):
    """Run the CLI with a fake server; returns (exit code, what it would serve, stdout, stderr)."""
    served = {}

    def run_server(app, host, port):
        served.update(app=app, host=host, port=port)

    code = serve_cli.main(argv, prog="serve.py", run_server=run_server)
    out, err = capsys.readouterr()
    return code, served, out, err


def test_serves_the_models_folder_on_localhost_by_default(tiny_models, capsys):
    """Check that the default address is 127.0.0.1:8000, with no warning, and the folder's members load."""
    code, served, out, err = serve(["--models-dir", str(tiny_models)], capsys)
    assert code == 0 and (served["host"], served["port"]) == ("127.0.0.1", 8000)
    assert err == ""
    assert "serving on http://127.0.0.1:8000/" in out and "model_1.h5" in out
    with TestClient(served["app"]) as client:
        health = client.get("/api/health").json()
    assert health["members"] == ["model_1.h5"] and health["live_members"] == ["model_1.h5"]


def test_a_distilled_member_runs_the_live_view(tiny_models, tmp_path, capsys):
    """Check that the folder's distilled member answers /api/live while the others form the ensemble."""
    import shutil

    import keras

    from fer_keras.models import model_io

    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copy(tiny_models / "model_1.h5", folder / "model_1.h5")
    model_io.save_model(keras.models.load_model(tiny_models / "model_1.h5", compile=False), folder / "model_2.h5",
                        metadata={"teacher": {"members": ["model_1.h5"]}})
    code, served, out, _ = serve(["--models-dir", str(folder), "--no-batching"], capsys)
    assert code == 0
    with TestClient(served["app"]) as client:
        health = client.get("/api/health").json()
    assert (health["members"], health["live_members"], health["micro_batching"]) == (
        ["model_1.h5"], ["model_2.h5"], False)
    assert "model_2.h5, the member distilled from the ensemble" in out
    assert "own temperature" not in out  # no calibration file: raw probabilities


def test_the_live_member_gets_its_own_temperature(tiny_models, tmp_path, capsys):
    """Check that the live view's lone member is calibrated by its own temperature from the folder's file
    (the stored one divided by the shared factor), while /api/predict's members get theirs as stored."""
    import json
    import shutil

    import keras

    from fer_keras.models import model_io

    folder = tmp_path / "models"
    folder.mkdir()
    for name in ("model_1.h5", "model_3.h5"):
        shutil.copy(tiny_models / "model_1.h5", folder / name)
    model_io.save_model(keras.models.load_model(tiny_models / "model_1.h5", compile=False), folder / "model_2.h5",
                        metadata={"teacher": {"members": ["model_1.h5"]}})
    (folder / "temperatures.json").write_text(json.dumps({
        "temperatures": {"model_1.h5": 0.5, "model_2.h5": 0.8, "model_3.h5": 0.6}, "shared_scale": 0.5}))
    code, served, out, _ = serve(["--models-dir", str(folder), "--no-batching", "--live-model",
                                  str(folder / "model_2.h5")], capsys)
    assert code == 0 and "model_2.h5's own temperature, 1.600" in out


def _calibrated_folder(tiny_models, tmp_path):
    """A models folder of two members, a distilled third, and a temperatures.json for the two."""
    import json
    import shutil

    import keras

    from fer_keras.models import model_io

    folder = tmp_path / "models"
    folder.mkdir()
    for name in ("model_1.h5", "model_3.h5"):
        shutil.copy(tiny_models / "model_1.h5", folder / name)
    model_io.save_model(keras.models.load_model(tiny_models / "model_1.h5", compile=False), folder / "model_4.h5",
                        metadata={"teacher": {"members": ["model_1.h5", "model_3.h5"]}})
    (folder / "temperatures.json").write_text(json.dumps({
        "temperatures": {"model_1.h5": 0.5, "model_3.h5": 0.6}, "shared_scale": 0.5,
        "alone": {"model_4.h5": 0.7}}))
    return folder


def _load(argv):
    import io

    args = serve_cli.build_parser("serve.py", None).parse_args(argv)
    out = io.StringIO()
    ensemble, live = serve_cli.load_models(args, stdout=out)
    return ensemble, live, out.getvalue()


def test_weights_flag_chooses_the_calibration(tiny_models, tmp_path):
    """Check that --weights auto applies the folder's temperatures.json (and the live member's own
    temperature), uniform turns both off, and a FILE gives its weights and temperatures to /api/predict."""
    import json

    folder = _calibrated_folder(tiny_models, tmp_path)
    ensemble, live, out = _load(["--models-dir", str(folder)])
    assert ensemble.temperatures == {"model_1.h5": 0.5, "model_3.h5": 0.6} and live.temperatures == [0.7]
    assert "calibrated by" in out

    ensemble, live, out = _load(["--models-dir", str(folder), "--weights", "uniform"])
    assert ensemble.temperatures is None and ensemble.weights is None and live.temperatures is None
    assert "calibrated by" not in out

    weights = tmp_path / "weights.json"
    weights.write_text(json.dumps({"weights": {"model_1.h5": 3, "model_3.h5": 1},
                                   "temperatures": {"model_1.h5": 2.0, "model_3.h5": 1.0}}))
    ensemble, _, _ = _load(["--models-dir", str(folder), "--weights", str(weights)])
    assert list(ensemble.weights_) == [0.75, 0.25] and list(ensemble.temperatures_) == [2.0, 1.0]


def test_include_distilled_adds_the_student_to_the_ensemble(tiny_models, tmp_path):
    """Check that --include-distilled makes the distilled member vote in /api/predict; the folder's
    temperatures.json, fitted without it, is then left out with a note saying how to refit it."""
    folder = _calibrated_folder(tiny_models, tmp_path)
    ensemble, _, out = _load(["--models-dir", str(folder)])
    assert [m.name for m in ensemble.members] == ["model_1.h5", "model_3.h5"]
    ensemble, _, out = _load(["--models-dir", str(folder), "--include-distilled"])
    assert [m.name for m in ensemble.members] == ["model_1.h5", "model_3.h5", "model_4.h5"]
    assert ensemble.temperatures is None and "not applied" in out and "--calibrate PublicTest" in out


def test_a_weights_file_for_other_members_is_refused(tiny_models, tmp_path, capsys):
    """Check that a --weights FILE naming files that are not the members stops with one line and exit 2."""
    import json

    folder = _calibrated_folder(tiny_models, tmp_path)
    weights = tmp_path / "weights.json"
    weights.write_text(json.dumps({"weights": {"model_9.h5": 1.0}}))
    code, served, _, err = serve(["--models-dir", str(folder), "--weights", str(weights)], capsys)
    assert code == 2 and served == {}
    assert err.startswith("error: ") and "model_9.h5" in err and len(err.strip().splitlines()) == 1, err


def test_a_public_address_is_served_with_a_warning(tiny_models, capsys):
    """Check that --host 0.0.0.0 is honoured and warned about on stderr."""
    code, served, _, err = serve(["--models-dir", str(tiny_models), "--host", "0.0.0.0", "--port", "8123"], capsys)
    assert code == 0 and (served["host"], served["port"]) == ("0.0.0.0", 8123)
    assert err.startswith("warning: --host 0.0.0.0 serves the models to every machine")
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("argv, message", [
    (["--models-dir", "no/such/folder"], "error: no/such/folder/ does not exist"),
    (["--port", "70000"], "error: --port 70000: a port is 0..65535"),
    (["--min-face", "0"], "error: --min-face: min_face must be at least 12 pixels"),
    (["--detect-side", "-1"], "error: --detect-side: detect_side must be 0 (full size) or a number of pixels"),
    (["--live-model", "nope.h5"], "error: --live-model nope.h5: no such file"),
    (["--weights", "nope.json"], "error: --weights: nope.json: no such file"),
])
def test_bad_options_are_one_line_errors_with_exit_2(argv, message, tiny_models, capsys):
    """Check that a missing folder or a bad value stops with one line on stderr and exit code 2, serving nothing."""
    argv = argv if argv[0] == "--models-dir" else ["--models-dir", str(tiny_models)] + argv
    code, served, _, err = serve(argv, capsys)
    assert code == 2 and served == {}
    assert err.startswith(message) and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("argv", [["--detector", "retinaface"], ["--port", "http"], ["--bogus"]])
def test_unknown_flags_and_values_exit_2(argv, capsys):
    """Check that argparse refuses unknown flags and choices with exit code 2 and an error line."""
    with pytest.raises(SystemExit) as stop:
        serve_cli.main(argv, prog="serve.py", run_server=lambda *a: None)
    assert stop.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("serve.py: error:")


def test_help_shows_examples_and_the_api():
    """Check that --help gives examples, a curl call and the endpoints (tests/cli/test_scripts.py runs serve.py
    --help itself)."""
    text = serve_cli.build_parser("serve.py").format_help()
    for part in ("--models-dir", "--live-model", "--no-batching", "curl -F image=@photo.jpg", "POST /api/predict",
                 "/openapi.json", "exit codes"):
        assert part in text, part


def test_detector_flags_reach_the_picture_and_live_detectors(tiny_models, capsys):
    """Check that the face-detection flags configure both detectors; webcam frames are searched at 320 px."""
    code, served, _, _ = serve(["--models-dir", str(tiny_models), "--detect-side", "480", "--min-face", "40",
                                "--margin", "0.2"], capsys)
    assert code == 0
    pictures, live = served["app"].state.engine.detector_factory(), served["app"].state.live.detector_factory()
    assert (pictures.detect_side, pictures.min_face, pictures.margin) == (480, 40, 0.2)
    assert (live.detect_side, live.min_face, live.margin) == (serve_cli.LIVE_DETECT_SIDE, 40, 0.2)


def test_no_hog_proposals_reaches_the_mtcnn_detector_only(tiny_models, capsys):
    """Check that --no-hog-proposals turns the HOG proposals off in the pictures' MTCNN (on by default),
    and is refused when no detector is MTCNN."""
    code, served, _, _ = serve(["--models-dir", str(tiny_models)], capsys)
    assert code == 0 and served["app"].state.engine.detector_factory().hog_proposals is True
    code, served, _, _ = serve(["--models-dir", str(tiny_models), "--no-hog-proposals"], capsys)
    assert code == 0 and served["app"].state.engine.detector_factory().hog_proposals is False
    code, _, _, err = serve(["--models-dir", str(tiny_models), "--detector", "haar", "--no-hog-proposals"], capsys)
    assert code == 2 and "--no-hog-proposals: only for the mtcnn detector" in err
