"""Model files from strangers: the default loading path never runs code from the file.

Each hostile file carries a payload that writes a marker file when it runs.
Loading through ``model_io.load_model``, ``test_ensemble_model.py`` and
``predict.py`` must refuse or skip it with a clear reason, and the marker must
never appear. ``--unsafe`` (``safe_mode=False``) is the one way to run it, and
the tests show that it then really does run: the payloads are live.
"""

import json
import zipfile

import numpy as np
import pytest
from tests.reliability.conftest import lambda_payload_model, one_error_line, pickle_payload, png_bytes

from fer_keras import data
from fer_keras.cli import ensemble_cli, predict_cli
from fer_keras.ensemble import load_members
from fer_keras.errors import ModelFileError
from fer_keras.models import model_io


@pytest.fixture(params=[".h5", ".keras"])
def hostile(request, tmp_path):
    """``(model file, marker)``: a 7-way model whose Lambda layer writes ``marker`` when called."""
    marker = tmp_path / f"marker{request.param}.txt"
    model = lambda_payload_model(marker)
    assert marker.exists()  # building the model called the layer: the payload is live
    marker.unlink()
    path = model_io.save_model(model, tmp_path / "members" / f"model_1{request.param}")
    marker.unlink(missing_ok=True)
    return path, marker


@pytest.fixture
def picture(tmp_path):
    path = tmp_path / "face.png"
    path.write_bytes(png_bytes(np.full((48, 48), 128, np.uint8)))
    return path


def test_load_model_refuses_the_lambda_payload(hostile):
    """Check that model_io.load_model (default: safe mode) refuses the file naming the Lambda layer,
    and the payload never ran."""
    path, marker = hostile
    with pytest.raises(ModelFileError, match=rf"{path.name}: cannot load \(contains a Lambda layer.*safe_mode=False"):
        model_io.load_model(path)
    assert not marker.exists()
    assert model_io.read_metadata(path)["class_names"][0] == "angry"  # metadata is data, read without code
    assert not marker.exists()


def test_ensemble_cli_skips_the_payload_and_strict_refuses_it(hostile, good_models, synthetic_csv, tmp_path, capsys):
    """Check that test_ensemble_model.py skips the hostile member with its reason (exit 0 with a good
    member beside it), exits 2 alone or with --strict, and the payload never ran."""
    path, marker = hostile
    base = ["--csv", str(synthetic_csv), "--bootstrap", "0", "--quiet"]
    code = ensemble_cli.main(base + ["--models-dir", str(good_models), "--model", str(path),
                                     "--out", str(tmp_path / "a")], prog="test_ensemble_model.py")
    out, err = capsys.readouterr()
    assert code == 0, err
    assert f"skipped {path.name}: contains a Lambda layer" in out
    assert "safe_mode=False only for files you trust (--unsafe loads it)" in out
    code = ensemble_cli.main(base + ["--model", str(path), "--out", str(tmp_path / "b")], prog="test_ensemble_model.py")
    assert code == 2
    one_error_line(capsys.readouterr().err, "error: --unsafe: no usable model files", "Lambda")
    code = ensemble_cli.main(base + ["--models-dir", str(good_models), "--model", str(path), "--strict",
                                     "--out", str(tmp_path / "c")], prog="test_ensemble_model.py")
    assert code == 2
    one_error_line(capsys.readouterr().err, f"error: --strict: {path}", "Lambda", "(--strict: no file may be skipped)")
    assert not marker.exists()


def test_predict_cli_refuses_the_payload(hostile, picture, tmp_path, capsys):
    """Check that predict.py with the hostile file as its only member exits 2 naming the reason,
    and the payload never ran."""
    path, marker = hostile
    code = predict_cli.main(["--model", str(path), "--input", str(picture), "--no-detect",
                             "--out", str(tmp_path / "out")], prog="predict.py")
    assert code == 2
    one_error_line(capsys.readouterr().err, path.name, "Lambda")
    assert not marker.exists()
    assert not (tmp_path / "out" / "predictions.csv").exists()


def test_unsafe_is_the_only_way_and_the_payload_is_live(hostile, picture, tmp_path, capsys):
    """Check that --unsafe (safe_mode=False) does load the file, and that doing so runs the payload:
    the files above really were hostile, and the refusals really protected."""
    path, marker = hostile
    members, skipped = load_members([path], safe_mode=False)
    assert len(members) == 1 and not skipped
    assert marker.exists()
    marker.unlink()
    code = predict_cli.main(["--model", str(path), "--input", str(picture), "--no-detect", "--unsafe",
                             "--out", str(tmp_path / "out")], prog="predict.py")
    assert code == 0, capsys.readouterr().err
    assert marker.exists()


def _with_config(source, target, edit):
    """Copy a .keras file, passing its config.json through ``edit(dict)``."""
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w") as zout:
        for item in zin.infolist():
            content = zin.read(item.filename)
            if item.filename == "config.json":
                config = json.loads(content)
                edit(config)
                content = json.dumps(config).encode()
            zout.writestr(item, content)
    return target


def _layers(config):
    return config["config"]["layers"]


@pytest.mark.parametrize("module, name", [("os", "system"), ("subprocess", "getoutput"), ("builtins", "exec"),
                                          ("keras.utils", "get_file")])
def test_keras_config_naming_a_python_function_is_refused(module, name, tmp_path, monkeypatch):
    """Check that a .keras file whose config points an activation (a function Keras would call) at
    os.system, subprocess, exec or get_file is refused in safe mode, and the function never ran: it is
    replaced by one that writes a marker file when called, wherever Keras could look it up."""
    import importlib

    import keras
    from keras import layers

    marker = tmp_path / "marker.txt"

    def payload(*args, **kwargs):
        marker.write_text(f"{module}.{name} ran")
        return args[0] if args else None

    for where in {importlib.import_module(module), keras.activations}:
        monkeypatch.setattr(where, name, payload, raising=False)
    getattr(importlib.import_module(module), name)("probe")
    assert marker.exists()  # the payload is live where the name resolves
    marker.unlink()

    plain = keras.Sequential([keras.Input((48, 48, 1)), layers.Flatten(), layers.Dense(7, activation="softmax")])
    source = model_io.save_model(plain, tmp_path / "plain.keras")

    def point_activation(config):
        dense = next(layer for layer in _layers(config) if layer["class_name"] == "Dense")
        dense["config"]["activation"] = {"module": module, "class_name": "function", "config": name,
                                         "registered_name": name}

    path = _with_config(source, tmp_path / f"{name}.keras", point_activation)
    try:
        model_io.load_model(path)
        refusal = "loaded"
    except ModelFileError as exc:
        refusal = str(exc)
    assert not marker.exists(), "the function named in the file ran"
    assert f"{path.name}: cannot load" in refusal


def test_pickle_disguised_as_a_model_is_never_unpickled(tmp_path):
    """Check that a pickle named .h5 / .keras, loaded directly or as a member, is refused as not a
    model file, and its payload never ran."""
    marker = tmp_path / "marker.txt"
    for suffix in (".h5", ".keras"):
        path = pickle_payload(tmp_path / f"model{suffix}", marker)
        with pytest.raises(ModelFileError, match="not a readable Keras model file"):
            model_io.load_model(path)
        with pytest.raises(ModelFileError, match="corrupt, truncated or not a Keras model file"):
            load_members([path], strict=True)
    assert not marker.exists()


def test_pickled_csv_cache_is_never_unpickled(synthetic_csv, tmp_path):
    """Check that a parsed-CSV cache replaced by one holding a pickled object (shared data folders are
    writable by others) is ignored, not unpickled, and the CSV is parsed again."""
    import pickle

    from tests.reliability.conftest import _WriteMarker

    csv = tmp_path / "faces.csv"
    csv.write_bytes(synthetic_csv.read_bytes())
    expected = data.load_fer2013(csv, cache=False)
    marker = tmp_path / "marker.txt"
    cache = csv.with_name(csv.name + ".fer_keras.npz")
    np.savez(cache, key=np.array([_WriteMarker(marker)], dtype=object), checksum=np.array("x"),
             usages=np.array(["Training"]))
    pickle.loads(pickle.dumps(_WriteMarker(tmp_path / "probe")))
    assert (tmp_path / "probe").exists()  # the payload is live
    got = data.load_fer2013(csv)
    assert not marker.exists()
    assert got.checksum == expected.checksum
    np.testing.assert_array_equal(got["Training"].x, expected["Training"].x)


@pytest.mark.parametrize("entry, content", [
    ("fer_keras.json", b"\xff\xfe not utf-8"),
    ("fer_keras.json", b"[1, 2, 3]"),
    ("fer_keras.json", b"{\"class_names\": "),
])
def test_broken_metadata_is_a_clear_error(entry, content, tmp_path):
    """Check that a .keras file whose fer_keras metadata is not UTF-8, not an object, or cut short is a
    ModelFileError naming the file (skipped as a member), not a crash."""
    import keras
    from keras import layers

    plain = keras.Sequential([keras.Input((48, 48, 1)), layers.Flatten(), layers.Dense(7, activation="softmax")])
    source = model_io.save_model(plain, tmp_path / "plain.keras")
    path = tmp_path / "broken.keras"
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(path, "w") as zout:
        for item in zin.infolist():
            zout.writestr(item, content if item.filename == entry else zin.read(item.filename))
    with pytest.raises(ModelFileError, match=r"broken.keras: "):
        model_io.read_metadata(path)
    members, skipped = load_members([source, path])
    assert len(members) == 1 and [s.path.name for s in skipped] == ["broken.keras"]


def test_zip_bomb_config_is_refused_before_unpacking(tmp_path, monkeypatch):
    """Check that a .keras file whose config.json would unpack to more than the limit is refused from its
    directory entry, before anything is unpacked."""
    monkeypatch.setattr(model_io, "MAX_CONFIG_BYTES", 1 << 20)
    path = tmp_path / "bomb.keras"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("config.json", b" " * (2 << 20))  # compresses to a few KB
        zf.writestr("metadata.json", b"{}")
    assert path.stat().st_size < 100_000
    with pytest.raises(ModelFileError, match=r"bomb.keras: its config.json unpacks to 2,097,152 bytes"):
        model_io.load_model(path)
