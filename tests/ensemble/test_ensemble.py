"""Ensemble tester: members of every kind, combining, reports and the CLI, on tiny models."""

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from tests.conftest import band_face

from fer_keras import ensemble as ens
from fer_keras.cli import ensemble_cli
from fer_keras.constants import CLASS_NAMES
from fer_keras.errors import ConfigError, ModelFileError
from fer_keras.models import model_io

# PrivateTest of tiny_csv (tests/conftest.py): 3 correct faces per class, plus faces whose band
# shows another class (CONFUSIONS, true → shown): the oracle model's confusion matrix is known exactly.
EXPECTED_CM = np.diag([3] * 7) + np.array(
    [[1 if (t, p) == (0, 2) else 0 for p in range(7)] for t in range(7)]) * 2
EXPECTED_CM[4, 6] = 1
EXPECTED_CM[5, 3] = 1


@pytest.fixture(scope="module")
def faces(tiny_csv):
    from fer_keras.data import load_fer2013

    return load_fer2013(tiny_csv)


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """Tiny model files of every kind a members folder may hold, built once."""
    import keras
    from keras import layers

    root = tmp_path_factory.mktemp("zoo")
    keras.utils.set_random_seed(0)
    files = {}

    # Oracle: logit of class c = brightness of band c (fer_keras file: raw 0..255 input).
    kernel = np.zeros((48 * 48, 7), np.float32)
    for c in range(7):
        mask = np.zeros((48, 48), np.float32)
        mask[c * 6: c * 6 + 6] = 0.01
        kernel[:, c] = mask.ravel()
    oracle = keras.Sequential([keras.Input((48, 48, 1)), layers.Flatten(), layers.Dense(7, activation="softmax")])
    oracle.layers[-1].set_weights([kernel, np.zeros(7, np.float32)])
    files["oracle"] = model_io.save_model(oracle, root / "oracle.h5")

    rand = keras.Sequential([keras.Input((48, 48, 1)), layers.Rescaling(1 / 255),
                             layers.Conv2D(2, 3, strides=4, activation="relu"), layers.Flatten(),
                             layers.Dense(7, activation="softmax")])
    files["rand"] = model_io.save_model(rand, root / "rand.h5")
    files["rand_copy"] = model_io.save_model(rand, root / "rand_copy.keras")

    # Foreign RGB 64x64 model expecting [-1, 1], classes listed in reverse order (sidecar).
    rgb = keras.Sequential([keras.Input((64, 64, 3)), layers.Conv2D(2, 3, strides=4, activation="relu"),
                            layers.GlobalAveragePooling2D(), layers.Dense(7, activation="softmax")])
    rgb.save(root / "rgb64.keras")
    (root / "rgb64.json").write_text(json.dumps({"input_scale": "-1-1", "class_names": list(CLASS_NAMES)[::-1]}))
    files["rgb64"] = root / "rgb64.keras"

    plain = keras.Sequential([keras.Input((48, 48, 1)), layers.Flatten(), layers.Dense(7, activation="softmax")])
    plain.save(root / "plain.h5")
    files["plain"] = root / "plain.h5"
    shutil.copy(root / "plain.h5", root / "badclasses.h5")
    (root / "badclasses.json").write_text(json.dumps({"input_scale": "0-1", "class_names": list("abcdefg")}))
    files["badclasses"] = root / "badclasses.h5"

    lam = keras.Sequential([keras.Input((48, 48, 1)), layers.Lambda(lambda v: v / 255.0), layers.Flatten(),
                            layers.Dense(7, activation="softmax")])
    lam.save(root / "lam.keras")
    files["lambda"] = root / "lam.keras"

    ten = keras.Sequential([keras.Input((48, 48, 1)), layers.Flatten(), layers.Dense(10, activation="softmax")])
    ten.save(root / "ten.h5")
    files["ten"] = root / "ten.h5"

    (root / "corrupt.h5").write_bytes(b"not a model at all" * 20)
    files["corrupt"] = root / "corrupt.h5"
    data = (root / "rand_copy.keras").read_bytes()
    (root / "truncated.keras").write_bytes(data[: len(data) // 2])
    files["truncated"] = root / "truncated.keras"
    return files


@pytest.fixture(scope="module")
def members(zoo):
    loaded, skipped = ens.load_members([zoo["oracle"], zoo["rand"], zoo["rand_copy"], zoo["rgb64"]])
    assert not skipped
    return {m.path.stem: m for m in loaded}


def models_dir(tmp_path, zoo, *names):
    folder = tmp_path / "models"
    folder.mkdir()
    for name in names:
        shutil.copy(zoo[name], folder / zoo[name].name)
    return folder


# --------------------------------------------------------------------------
# Members
# --------------------------------------------------------------------------


def test_find_model_files_natural_order(tmp_path):
    """Check that members are listed in natural order and hidden/other files are ignored."""
    for name in ("model_10.h5", "model_2.keras", "model_1.h5", ".tmp-abc-model_4.h5", "notes.txt", "model_3.json"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in ens.find_model_files(tmp_path)] == ["model_1.h5", "model_2.keras", "model_10.h5"]


def test_bad_files_are_skipped_with_one_line_reasons(zoo):
    """Check that corrupt, truncated, Lambda, wrong-size and wrong-class files are skipped, each with a reason."""
    bad = ["corrupt", "truncated", "lambda", "ten", "badclasses"]
    loaded, skipped = ens.load_members([zoo["oracle"]] + [zoo[k] for k in bad])
    assert [m.name for m in loaded] == ["oracle.h5"]
    reasons = {s.path.name: s.reason for s in skipped}
    assert list(reasons) == ["corrupt.h5", "truncated.keras", "lam.keras", "ten.h5", "badclasses.h5"]
    assert all("\n" not in r for r in reasons.values())
    assert "corrupt, truncated or not a Keras model file" in reasons["corrupt.h5"]
    assert "corrupt, truncated or not a Keras model file" in reasons["truncated.keras"]
    assert "Lambda" in reasons["lam.keras"] and "safe_mode=False" in reasons["lam.keras"]
    assert "7-way" in reasons["ten.h5"]
    assert "not the FER2013 classes" in reasons["badclasses.h5"]


def test_strict_and_empty_raise(zoo, tmp_path):
    """Check that strict mode fails on the first skip, that no members left is an error, and that a missing
    folder is called a folder."""
    with pytest.raises(ModelFileError, match=r"corrupt.h5.*\(strict=True: "):
        ens.load_members([zoo["oracle"], zoo["corrupt"]], strict=True)
    with pytest.raises(ModelFileError, match="no usable model files.*corrupt"):
        ens.load_members([zoo["corrupt"]])
    with pytest.raises(ModelFileError, match="no usable model files"):
        ens.load_members(tmp_path)
    with pytest.raises(ModelFileError, match=r"mdoels: no such folder$"):  # a typo in a folder's name
        ens.load_members(tmp_path / "mdoels")
    with pytest.raises(ModelFileError, match=r"model_9.h5: no such file"):
        ens.load_members(tmp_path / "model_9.h5")


def test_unsafe_mode_loads_lambda_model(zoo, faces):
    """Check that a Lambda model, skipped in safe mode, loads and predicts with safe_mode=False."""
    with pytest.warns(UserWarning, match="assuming 0-1"):
        loaded, skipped = ens.load_members([zoo["lambda"]], safe_mode=False)
    assert not skipped
    probs = loaded[0].predict_proba(faces["PrivateTest"].x[:5])
    assert probs.shape == (5, 7) and np.allclose(probs.sum(axis=1), 1, atol=1e-5)


def test_foreign_file_without_metadata_warns_default_scale(zoo):
    """Check that a file with neither metadata nor sidecar is assumed 0-1, with a warning."""
    with pytest.warns(UserWarning, match="assuming 0-1"):
        member = ens.Member.from_file(zoo["plain"])
    assert member.adapter.scale == "0-1" and member.adapter.source == "defaults"


def test_metadata_and_sidecar_drive_the_adapter(members):
    """Check that fer_keras files take raw 0-255 and a sidecar sets scale, size, colour and class order."""
    assert members["oracle"].adapter.scale == "0-255"
    assert members["oracle"].adapter.class_order is None
    rgb = members["rgb64"].adapter
    assert (rgb.height, rgb.width, rgb.channels, rgb.scale) == (64, 64, 3, "-1-1")
    assert rgb.class_order == (6, 5, 4, 3, 2, 1, 0)
    assert rgb.source == "sidecar rgb64.json"


def test_file_written_by_keras2_loads_and_predicts_the_same(tmp_path):
    """Check that a tf.keras (Keras 2) .h5 with a sidecar is a member giving Keras 2's own outputs."""
    fixtures = Path(__file__).resolve().parents[1] / "fixtures"
    shutil.copy(fixtures / "tf_keras2_model.h5", tmp_path / "old.h5")
    (tmp_path / "old.json").write_text(json.dumps({"input_scale": "0-255"}))
    members, skipped = ens.load_members(tmp_path)
    assert skipped == [] and members[0].adapter.source == "sidecar old.json"
    probs = members[0].predict_proba(np.load(fixtures / "tf_keras2_faces.npy"))
    assert np.allclose(probs, np.load(fixtures / "tf_keras2_probs.npy"), atol=1e-6)


def test_rgb_member_is_resized_scaled_and_reordered(members, faces):
    """Check that a 64x64 RGB [-1,1] member equals resizing, RGB, scaling and reordering by hand."""
    import tensorflow as tf

    x = faces["PrivateTest"].x[:6]
    manual = tf.image.resize(x.astype(np.float32), (64, 64), method="bilinear").numpy()
    manual = np.repeat(manual, 3, axis=-1) / 127.5 - 1
    expected = members["rgb64"].model.predict_on_batch(manual)[:, ::-1]
    assert np.allclose(members["rgb64"].predict_proba(x), expected, atol=1e-6)


def test_tta_averages_face_and_mirror(members, faces):
    """Check that TTA is the mean of the prediction on the face and on its mirror image."""
    x = faces["PrivateTest"].x[:9]
    m = members["rand"]
    expected = (m.predict_proba(x) + m.predict_proba(x[:, :, ::-1])) / 2
    assert np.allclose(m.predict_proba(x, tta=True, batch_size=4), expected, atol=1e-6)


# --------------------------------------------------------------------------
# Combining
# --------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["mean", "geometric", "vote"])
def test_model_and_its_copy_equal_the_model(members, faces, method):
    """Check that an ensemble of a model (.h5) and its exact copy (.keras) equals the single model."""
    x = faces["PrivateTest"].x
    single = members["rand"].predict_proba(x)
    pair = ens.Ensemble([members["rand"], members["rand_copy"]], method=method)
    assert np.array_equal(pair.predict(x), single.argmax(axis=1))
    if method != "vote":
        assert np.allclose(pair.predict_proba(x), single, atol=1e-6)


def test_combine_probas_by_hand():
    """Check mean, geometric mean and weighted vote on a hand-computed example."""
    a = np.array([[[0.6, 0.4]], [[0.2, 0.8]], [[0.5, 0.5]]])  # 3 members, 1 sample, 2 classes
    assert np.allclose(ens.combine_probas(a[:2]), [[0.4, 0.6]])
    assert np.allclose(ens.combine_probas(a[:2], [3, 1]), [[0.5, 0.5]])
    g = np.sqrt([0.6 * 0.2, 0.4 * 0.8])
    assert np.allclose(ens.combine_probas(a[:2], method="geometric"), [g / g.sum()])
    vote = ens.combine_probas(a[:2], [0.7, 0.3], method="vote")
    assert vote.argmax() == 0 and np.isclose(vote[0, 0], 0.7, atol=1e-5)
    with pytest.raises(ConfigError, match="non-negative"):
        ens.combine_probas(a, [1, -1, 1])


def test_fit_weights_exact_optimum():
    """Check that fitted weights are 1/2-1/2 when each member gets one face, and 1-0 for a perfect member."""
    split = np.array([[[1.0, 0.0], [1.0, 0.0]], [[0.0, 1.0], [0.0, 1.0]]])  # members A, B over 2 faces
    assert np.allclose(ens.fit_weights(split, [0, 1]), [0.5, 0.5], atol=1e-4)
    perfect = np.array([[[1.0, 0.0], [0.0, 1.0]], [[0.5, 0.5], [0.5, 0.5]]])
    w = ens.fit_weights(perfect, [0, 1])
    assert w[0] > 0.999 and np.isclose(w.sum(), 1)


def test_weights_mapping_and_cache(members, faces):
    """Check that name-keyed weights select members, missing names fail, and predictions are cached."""
    x = faces["PrivateTest"].x
    pair = ens.Ensemble([members["oracle"], members["rand"]], weights={"oracle.h5": 1, "rand.h5": 0})
    assert np.allclose(pair.predict_proba(x), members["oracle"].predict_proba(x), atol=1e-6)
    assert pair.member_probas(x) is pair.member_probas(x)
    assert pair.member_probas_.shape == (2, len(x), 7)
    with pytest.raises(ConfigError, match="no weight for rand.h5"):
        _ = ens.Ensemble([members["oracle"], members["rand"]], weights={"oracle.h5": 1}).weights_


def test_evaluate_confusion_matrix_by_hand(members, faces):
    """Check the oracle's confusion matrix, accuracy and score against the hand-made split."""
    split = faces["PrivateTest"]
    oracle = ens.Ensemble([members["oracle"]])
    report = ens.evaluate(oracle, split.x, split.y, context={"csv": "tiny.csv", "usage": "PrivateTest"})
    assert np.array_equal(report.metrics["confusion_matrix"], EXPECTED_CM)
    assert report.metrics["accuracy"] == pytest.approx(21 / 25)
    assert oracle.score(split.x, split.y) == pytest.approx(21 / 25)
    assert report.member_metrics[0]["accuracy"] == pytest.approx(21 / 25)


# --------------------------------------------------------------------------
# Reports and the command line
# --------------------------------------------------------------------------


def test_cli_writes_report_and_refuses_to_overwrite(tiny_csv, zoo, tmp_path, capsys):
    """Check that the CLI prints the tables, writes every file with the report.json schema, and refuses a second run."""
    folder = models_dir(tmp_path, zoo, "oracle", "rand", "corrupt")
    out = tmp_path / "report"
    argv = ["--csv", str(tiny_csv), "--models-dir", str(folder), "--out", str(out), "--quiet"]
    assert ensemble_cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "ensemble (mean)" in printed and "skipped corrupt.h5" in printed and "disgust" in printed
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == sorted(ens.REPORT_FILES)

    doc = json.loads((out / "report.json").read_text())
    assert {"csv", "usage", "n_samples", "classes", "method", "tta", "ensemble", "members"} <= set(doc)
    assert doc["usage"] == "PrivateTest" and doc["n_samples"] == 25 and doc["classes"] == list(CLASS_NAMES)
    assert doc["method"] == "mean" and doc["tta"] is False
    assert {"accuracy", "macro_f1", "weighted_f1", "precision_macro", "recall_macro", "per_class",
            "confusion_matrix"} <= set(doc["ensemble"])
    assert set(doc["ensemble"]["per_class"]["fear"]) == {"precision", "recall", "f1", "support"}
    assert [m["file"].rsplit("/", 1)[-1] for m in doc["members"]] == ["oracle.h5", "rand.h5", "corrupt.h5"]
    assert doc["members"][0]["accuracy"] == pytest.approx(21 / 25) and doc["members"][0]["skipped"] is None
    assert doc["members"][2]["accuracy"] is None and "corrupt" in doc["members"][2]["skipped"]

    with open(out / "predictions.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 25 and rows[0]["index"] == "0"
    assert np.isclose(sum(float(rows[0][f"p_{c}"]) for c in CLASS_NAMES), 1, atol=1e-4)

    assert ensemble_cli.main(argv) == 2
    assert "already holds report.json" in capsys.readouterr().err
    assert ensemble_cli.main(argv + ["--overwrite", "--tta", "--method", "vote"]) == 0
    doc = json.loads((out / "report.json").read_text())
    assert doc["tta"] is True and doc["method"] == "vote"


def test_cli_oracle_confusion_matrix(tiny_csv, zoo, tmp_path):
    """Check that the CLI's report.json holds the hand-checkable confusion matrix of a single --model."""
    out = tmp_path / "r"
    assert ensemble_cli.main(["--csv", str(tiny_csv), "--model", str(zoo["oracle"]), "--out", str(out),
                              "--quiet"]) == 0
    doc = json.loads((out / "report.json").read_text())
    assert doc["ensemble"]["confusion_matrix"] == EXPECTED_CM.tolist()
    assert doc["ensemble"]["per_class"]["angry"]["support"] == 5


def test_cli_scores_the_faces_the_training_split_does_not_hold(zoo, tmp_path, capsys):
    """Check that faces pixel-identical to Training faces are counted, and that every model is also scored
    without them: FER2013's PublicTest shares 280 faces with Training, which memorising models get right."""
    from tests.conftest import write_band_csv

    from fer_keras.data import seen_in

    path = write_band_csv(tmp_path / "overlap.csv", [(k, k, "Training") for k in range(7)]
                          + [(k, k, "PrivateTest") for k in range(7)])
    lines = path.read_text().splitlines()
    copies = [lines[1].replace(",Training", ",PrivateTest"),  # the angry face, labelled angry again
              "6" + lines[2][1:].replace(",Training", ",PrivateTest")]  # the disgust face, labelled neutral
    path.write_text("\n".join(lines + copies) + "\n")
    out = tmp_path / "r"
    assert ensemble_cli.main(["--csv", str(path), "--model", str(zoo["oracle"]), "--out", str(out), "--quiet",
                              "--bootstrap", "50"]) == 0
    overlap = json.loads((out / "report.json").read_text())["overlap"]
    assert (overlap["reference"], overlap["faces"], overlap["rest"]) == ("Training", 2, 7)
    assert overlap["ensemble"]["accuracy_seen"] == 0.5 and overlap["ensemble"]["accuracy_rest"] == 1.0
    assert overlap["members"]["oracle.h5"]["accuracy_rest"] == 1.0
    assert "faces also in Training" in capsys.readouterr().out
    faces = np.arange(3 * 4, dtype=np.uint8).reshape(3, 2, 2, 1)
    assert seen_in(faces, faces[[1, 1]]).tolist() == [False, True, False]


def test_cli_strict_and_no_members_exit_2(tiny_csv, zoo, tmp_path, capsys):
    """Check that --strict with a bad file, and a folder with no usable model, exit 2 with one line."""
    folder = models_dir(tmp_path, zoo, "oracle", "ten")
    base = ["--csv", str(tiny_csv), "--quiet"]
    assert ensemble_cli.main(base + ["--models-dir", str(folder), "--strict", "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "ten.h5" in err and err.count("\n") == 1
    empty = tmp_path / "empty"
    empty.mkdir()
    assert ensemble_cli.main(base + ["--models-dir", str(empty), "--out", str(tmp_path / "b")]) == 2
    assert "no usable model files" in capsys.readouterr().err


def test_cli_fit_weights(tiny_csv, zoo, tmp_path, capsys):
    """Check that --fit-weights refuses the evaluated split and otherwise writes weights that favour the oracle."""
    folder = models_dir(tmp_path, zoo, "oracle", "rand")
    base = ["--csv", str(tiny_csv), "--models-dir", str(folder), "--quiet"]
    assert ensemble_cli.main(base + ["--fit-weights", "PrivateTest", "--out", str(tmp_path / "a")]) == 2
    assert "is the evaluated split" in capsys.readouterr().err
    out = tmp_path / "b"
    assert ensemble_cli.main(base + ["--fit-weights", "PublicTest", "--out", str(out)]) == 0
    weights = json.loads((out / "weights.json").read_text())["weights"]
    assert weights["oracle.h5"] > 0.99 and sum(weights.values()) == pytest.approx(1)
    # The written file is a valid --weights file.
    assert ensemble_cli.main(base + ["--weights", str(out / "weights.json"), "--out", str(tmp_path / "c")]) == 0
    doc = json.loads((tmp_path / "c" / "report.json").read_text())
    assert doc["weights"]["oracle.h5"] == pytest.approx(weights["oracle.h5"])


def test_cli_image_folder(zoo, tmp_path):
    """Check that --images evaluates an image-folder dataset (class folders → PrivateTest)."""
    from PIL import Image

    rng = np.random.default_rng(1)
    for k, name in enumerate(CLASS_NAMES):
        (tmp_path / "faces" / name).mkdir(parents=True)
        Image.fromarray(band_face(k, rng).astype(np.uint8)).save(tmp_path / "faces" / name / "a.png")
    out = tmp_path / "r"
    assert ensemble_cli.main(["--images", str(tmp_path / "faces"), "--model", str(zoo["oracle"]),
                              "--out", str(out), "--quiet"]) == 0
    doc = json.loads((out / "report.json").read_text())
    assert doc["images"].endswith("faces") and doc["csv"] is None
    assert doc["usage"] == "PrivateTest" and doc["ensemble"]["accuracy"] == 1.0


def test_unregistered_custom_layer_is_named_in_the_reason(tmp_path):
    """Check that a file needing an unregistered custom layer is skipped with the layer's name."""
    import keras
    from keras import layers

    @keras.saving.register_keras_serializable(package="fer_test")
    class Doubler(layers.Layer):
        def call(self, x):
            return x * 2.0

    model = keras.Sequential([keras.Input((48, 48, 1)), Doubler(), layers.Flatten(), layers.Dense(7)])
    model.save(tmp_path / "custom.keras")
    del keras.saving.get_custom_objects()["fer_test>Doubler"]
    with pytest.raises(ModelFileError, match=r"custom.keras: .*custom layer or object \(fer_test>Doubler\)"):
        ens.load_members([tmp_path / "custom.keras"], strict=True)
