"""The new dataset readers wired into training, fine-tuning and the ensemble tester.

Tiny synthetic copies of the official layouts (RAF-DB, FER+, AffectNet); every
face shows a bright band at the rows of its class, so an "oracle" model that
reads the bands is exactly right and the figures can be asserted.
"""

import json

import numpy as np
import pytest
from PIL import Image
from tests.conftest import band_face

from fer_keras import models
from fer_keras.cli import ensemble_cli, train_cli
from fer_keras.constants import CLASS_NAMES, CLASS_NAMES_8, PIXELS_PER_IMAGE
from fer_keras.errors import ConfigError, FerError
from fer_keras.models import model_io
from fer_keras.training import engine as fer_train

TINY = ["-o", "width=0.125", "-o", "dense_units=32", "--batch-size", "8", "--epochs", "1", "--augment", "none",
        "--precision", "float32", "--warmup-steps", "0", "--lr", "0.01", "--quiet"]
RAF_LABEL = {0: 6, 1: 3, 2: 2, 3: 4, 4: 5, 5: 1, 6: 7}  # FER2013 index → RAF-DB basic label
FOLDER_NAME = {0: "anger", 1: "disgust", 2: "fear", 3: "happy", 4: "sad", 5: "surprise", 6: "neutral",
               7: "contempt"}
FERPLUS_HEADER = "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF"
FERPLUS_COLUMN = {6: 0, 3: 1, 5: 2, 4: 3, 0: 4, 1: 5, 2: 6, 7: 7}  # FER2013 index → vote column


# --------------------------------------------------------------------------
# Fixtures: official layouts, band faces
# --------------------------------------------------------------------------


def save_face(path, img):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img, mode="L").save(path)


def write_rafdb(root, per_class=(3, 1), seed=0):
    """RAF-DB basic: EmoLabel/list_patition_label.txt and Image/aligned/<name>_aligned.jpg."""
    rng = np.random.default_rng(seed)
    lines = []
    for prefix, n in zip(("train", "test"), per_class):
        for i in range(n * 7):
            label = i % 7
            name = f"{prefix}_{i + 1:05d}.jpg"
            lines.append(f"{name} {RAF_LABEL[label]}")
            save_face(root / "Image" / "aligned" / name.replace(".jpg", "_aligned.jpg"), band_face(label, rng))
    (root / "EmoLabel").mkdir(parents=True)
    (root / "EmoLabel" / "list_patition_label.txt").write_text("\n".join(lines) + "\n")
    return root


def write_affectnet(root, splits=(("train", 3), ("val", 1)), classes=8, seed=0):
    """AffectNet image folders ``<split>/<class name>/*.png``, ``n`` faces per class."""
    rng = np.random.default_rng(seed)
    for split, n in splits:
        for label in range(classes):
            for i in range(n):
                save_face(root / split / FOLDER_NAME[label] / f"{i}.png", band_face(label, rng))
    return root


def write_ferplus(folder, n_train=28, n_val=14, seed=0):
    """fer2013.csv (band faces) and fer2013new.csv: 7 votes for the face's class, 3 spread elsewhere."""
    rng = np.random.default_rng(seed)
    fer, plus = ["emotion,pixels,Usage"], [FERPLUS_HEADER]
    for usage, n in (("Training", n_train), ("PublicTest", n_val)):
        for i in range(n):
            label = i % 7
            fer.append(f"{label},{' '.join(map(str, band_face(label, rng).ravel()))},{usage}")
            votes = [0] * 10
            votes[FERPLUS_COLUMN[label]] = 7
            votes[FERPLUS_COLUMN[(label + 1) % 7]] = 3
            plus.append(f"{usage},fer{len(plus):07d}.png,{','.join(map(str, votes))}")
    (folder / "fer2013.csv").write_text("\n".join(fer) + "\n")
    (folder / "fer2013new.csv").write_text("\n".join(plus) + "\n")
    assert len(fer) - 1 == len(plus) - 1 and len(fer[1].split(",")[1].split()) == PIXELS_PER_IMAGE
    return folder / "fer2013.csv", folder / "fer2013new.csv"


def run_train(tmp_path, *args):
    return train_cli.main([*args, *TINY, "--models-dir", str(tmp_path / "m"), "--run-dir", str(tmp_path / "r")],
                          prog="train.py", defaults={"model": "vgg16"})


def tiny_config(**overrides):
    values = dict(model="vgg16", model_options={"width": 0.125, "dense_units": 32}, precision="float32")
    values.update(overrides)
    return fer_train.TrainConfig(**values)


# --------------------------------------------------------------------------
# Training on the new datasets
# --------------------------------------------------------------------------


@pytest.mark.slow
def test_train_one_epoch_on_rafdb_layout(tmp_path):
    """Check that --dataset rafdb trains from the official layout and records the dataset in the model."""
    root = write_rafdb(tmp_path / "basic")
    assert run_train(tmp_path, "--dataset", "rafdb", "--data-root", str(root)) == 0
    meta = model_io.read_metadata(tmp_path / "m" / "model_1.h5")
    assert meta["dataset"]["name"] == "rafdb" and meta["dataset"]["file"] == "basic"
    assert len(meta["dataset"]["sha256"]) == 64 and meta["dataset"]["targets"] == "hard"
    assert meta["class_names"] == list(CLASS_NAMES) and meta["recipe"]["dataset"] == "rafdb"
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert config["dataset"] == "rafdb" and config["data_root"] == str(root)


@pytest.mark.slow
def test_ferplus_probability_trains_on_soft_targets(tmp_path, monkeypatch):
    """Check that FER+ probability mode feeds the vote distributions to the loss, not one-hot labels."""
    csv, labels = write_ferplus(tmp_path)
    seen = []
    original = fer_train.make_dataset

    def spy(x, y, **kwargs):
        seen.append(np.asarray(y))
        return original(x, y, **kwargs)

    monkeypatch.setattr(fer_train, "make_dataset", spy)
    assert run_train(tmp_path, "--dataset", "ferplus", "--csv", str(csv), "--ferplus-labels", str(labels),
                     "--ferplus-mode", "probability") == 0
    (targets,) = seen
    assert targets.shape == (28, 7) and targets.dtype == np.float32
    np.testing.assert_allclose(sorted(targets[0])[-2:], [0.3, 0.7], rtol=1e-6)
    meta = model_io.read_metadata(tmp_path / "m" / "model_1.h5")
    assert meta["dataset"]["name"] == "ferplus" and meta["dataset"]["mode"] == "probability"
    assert meta["dataset"]["targets"] == "soft" and meta["dataset"]["faces_file"] == "fer2013.csv"


def test_soft_targets_refuse_class_weights(tmp_path, capsys):
    """Check that class weights or balanced data with soft targets are a clear one-line error."""
    csv, labels = write_ferplus(tmp_path)
    base = ["--dataset", "ferplus", "--csv", str(csv), "--ferplus-labels", str(labels), "--ferplus-mode",
            "probability"]
    assert run_train(tmp_path, *base, "--class-weight", "balanced") == 2
    assert "error: --class-weight: class_weight='balanced' is not supported with ferplus_mode='probability'" \
        in capsys.readouterr().err
    assert run_train(tmp_path, *base, "--balanced-data") == 2
    assert "error: --balanced-data: balanced_data is not supported" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--dataset", "rafdb"], "needs data_root"),
    (["--dataset", "ferplus"], "needs ferplus_labels"),
    (["--dataset", "rafdb", "--data-root", "x", "--num-classes", "8"],
     "'rafdb' has 7 classes.*Received: num_classes=8"),
    (["--num-classes", "8"], "'fer2013' has 7 classes"),
    (["--freeze-layers", "2", "--freeze-until", "block1_1_conv"], "not both"),
])
def test_dataset_options_are_checked(args, message):
    """Check that missing or contradictory dataset options are ConfigErrors naming the fix."""
    values = {a.lstrip("-").replace("-", "_"): v for a, v in zip(args[::2], args[1::2])}
    values = {k: int(v) if k in ("num_classes", "freeze_layers") else v for k, v in values.items()}
    with pytest.raises(ConfigError, match=message):
        tiny_config(**values).validate()


@pytest.mark.slow
def test_eight_class_model_from_a_seven_class_init(tmp_path, capsys):
    """Check that AffectNet-8 trains an 8-way model from a 7-way --init, with 8 class names and 8-way metrics."""
    seven = models.build("vgg16", width=0.125, dense_units=32)
    init = model_io.save_model(seven, tmp_path / "seven.h5")
    root = write_affectnet(tmp_path / "affectnet")
    assert run_train(tmp_path, "--dataset", "affectnet", "--data-root", str(root), "--num-classes", "8",
                     "--init", str(init)) == 0
    assert "has 7 classes, this run 8" in capsys.readouterr().out
    meta = model_io.read_metadata(tmp_path / "m" / "model_1.h5")
    assert meta["class_names"] == list(CLASS_NAMES_8) and meta["num_classes"] == 8
    assert meta["dataset"]["num_classes"] == 8
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert list(summary["per_class_f1"]) == list(CLASS_NAMES_8) and summary["num_classes"] == 8
    model = model_io.load_model(tmp_path / "m" / "model_1.h5")
    assert model.outputs[0].shape[-1] == 8


# --------------------------------------------------------------------------
# Fine-tuning: another head, frozen layers
# --------------------------------------------------------------------------


def test_init_into_more_classes_copies_backbone_and_reinitialises_head(tmp_path):
    """Check that --init of a 7-way file into 8 classes copies every conv kernel and builds a fresh 8-way head."""
    import keras

    keras.utils.set_random_seed(3)
    source = models.build("vgg16", width=0.125, dense_units=32)
    path = model_io.save_model(source, tmp_path / "seven.h5")
    keras.utils.set_random_seed(4)
    model = fer_train.build_model(tiny_config(init=str(path), num_classes=8), 8)
    np.testing.assert_array_equal(model.get_layer("block1_1_conv").get_weights()[0],
                                  source.get_layer("block1_1_conv").get_weights()[0])
    np.testing.assert_array_equal(model.get_layer("block5_3_conv").get_weights()[0],
                                  source.get_layer("block5_3_conv").get_weights()[0])
    head, old_head = model.get_layer("predictions_logits"), source.get_layer("predictions_logits")
    units = old_head.get_weights()[0].shape[0]
    assert head.get_weights()[0].shape == (units, 8) and old_head.get_weights()[0].shape == (units, 7)
    assert not np.allclose(head.get_weights()[0][:, :7], old_head.get_weights()[0])
    # Same number of classes: every weight, head included, is the file's.
    same = fer_train.build_model(tiny_config(init=str(path)), 7)
    np.testing.assert_array_equal(same.get_layer("predictions_logits").get_weights()[0], old_head.get_weights()[0])


def test_freeze_layers_keeps_early_weights_through_a_step():
    """Check that --freeze-layers N leaves the first N weighted layers unchanged by a training step."""
    import keras

    keras.utils.set_random_seed(0)
    model = fer_train.build_model(tiny_config(freeze_layers=2), 7)
    frozen = [layer.name for layer in model.layers if layer.weights][:3]
    assert frozen[:2] == ["block1_1_conv", "block1_1_bn"]
    before = {name: [w.copy() for w in model.get_layer(name).get_weights()] for name in frozen}
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="categorical_crossentropy")
    x = np.random.default_rng(0).integers(0, 255, (8, 48, 48, 1)).astype("float32")
    model.train_on_batch(x, np.eye(7, dtype="float32")[np.arange(8) % 7])
    for name in frozen[:2]:
        for old, new in zip(before[name], model.get_layer(name).get_weights()):
            np.testing.assert_array_equal(old, new)
    assert not np.array_equal(before[frozen[2]][0], model.get_layer(frozen[2]).get_weights()[0])


def test_freeze_until_names_a_layer():
    """Check that --freeze-until freezes up to the named layer and an unknown name is a ConfigError."""
    model = fer_train.build_model(tiny_config(freeze_until="block1_2_bn"), 7)
    weighted = [layer for layer in model.layers if layer.weights]
    assert [layer.trainable for layer in weighted[:5]] == [False] * 4 + [True]
    with pytest.raises(ConfigError, match="no layer with weights of that name"):
        fer_train.build_model(tiny_config(freeze_until="nope"), 7)
    with pytest.raises(ConfigError, match="nothing to train"):
        fer_train.build_model(tiny_config(freeze_layers=999), 7)


# --------------------------------------------------------------------------
# Ensemble tester on 8-class data
# --------------------------------------------------------------------------


def oracle(num_classes, path, class_names=None):
    """A Dense model whose logit for class c is the brightness of band c (exactly right on band faces)."""
    import keras
    from keras import layers

    kernel = np.zeros((48 * 48, num_classes), np.float32)
    for c in range(num_classes):
        mask = np.zeros((48, 48), np.float32)
        mask[c * 6: c * 6 + 6] = 0.01
        kernel[:, c] = mask.ravel()
    model = keras.Sequential([keras.Input((48, 48, 1)), layers.Flatten(),
                              layers.Dense(num_classes, activation="softmax")])
    model.layers[-1].set_weights([kernel, np.zeros(num_classes, np.float32)])
    return model_io.save_model(model, path, {"class_names": list(class_names or CLASS_NAMES_8[:num_classes])})


@pytest.fixture(scope="module")
def eight_class_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("affectnet8")
    write_affectnet(root, splits=(("test", 2),))  # 16 faces, 2 of them contempt → PrivateTest
    zoo = tmp_path_factory.mktemp("zoo")
    return root, {"eight": oracle(8, zoo / "eight.h5"), "eight_b": oracle(8, zoo / "eight_b.keras"),
                  "seven": oracle(7, zoo / "seven.h5")}


def ensemble_args(root, out, *members, extra=()):
    args = ["--dataset", "affectnet", "--data-root", str(root), "--num-classes", "8", "--out", str(out),
            "--quiet", "--bootstrap", "20", *extra]
    for m in members:
        args += ["--model", str(m)]
    return args


def test_ensemble_eight_way_members_on_eight_class_data(eight_class_data, tmp_path):
    """Check that 8-way members evaluate 8-class data: 8 classes in report.json, the dataset named."""
    root, zoo = eight_class_data
    out = tmp_path / "r"
    assert ensemble_cli.main(ensemble_args(root, out, zoo["eight"], zoo["eight_b"])) == 0
    doc = json.loads((out / "report.json").read_text())
    assert doc["classes"] == list(CLASS_NAMES_8) and doc["dataset"] == "affectnet"
    assert doc["usage"] == "PrivateTest" and doc["n_samples"] == 16 and doc["csv"] is None
    assert doc["ensemble"]["accuracy"] == 1.0
    assert doc["ensemble"]["per_class"]["contempt"]["support"] == 2
    assert len(doc["ensemble"]["confusion_matrix"]) == 8


def test_ensemble_refuses_mixed_class_sets_without_a_class_map(eight_class_data, tmp_path, capsys):
    """Check that a 7-way member on 8-class data (and 8-way on 7-class data) exits 2 naming --class-map."""
    root, zoo = eight_class_data
    assert ensemble_cli.main(ensemble_args(root, tmp_path / "a", zoo["eight"], zoo["seven"])) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --class-map: ") and "refusing to mix" in err and err.count("\n") == 1
    assert "class_map='drop-contempt'" in err
    seven_class_data = ensemble_args(root, tmp_path / "b", zoo["eight"])
    seven_class_data[seven_class_data.index("8")] = "7"
    assert ensemble_cli.main(seven_class_data) == 2
    assert "num_classes=8" in capsys.readouterr().err


def test_ensemble_drop_contempt_evaluates_the_shared_classes(eight_class_data, tmp_path, capsys):
    """Check that --class-map drop-contempt evaluates 7-way and 8-way members on the 7 classes, contempt faces out."""
    root, zoo = eight_class_data
    out = tmp_path / "r"
    assert ensemble_cli.main(ensemble_args(root, out, zoo["eight"], zoo["seven"],
                                           extra=["--class-map", "drop-contempt"])) == 0
    assert "2 contempt face(s) left out" in capsys.readouterr().out
    doc = json.loads((out / "report.json").read_text())
    assert doc["classes"] == list(CLASS_NAMES) and doc["n_samples"] == 14
    assert doc["class_map"] == {"name": "drop-contempt", "contempt_faces_dropped": 2, "members_8_way": ["eight.h5"]}
    assert doc["ensemble"]["accuracy"] == 1.0 and [m["accuracy"] for m in doc["members"]] == [1.0, 1.0]


def test_drop_contempt_renormalises():
    """Check that dropping contempt renormalises the other 7 columns (uniform when nothing is left)."""
    from fer_keras.ensemble import drop_contempt

    probs = np.array([[0.1, 0, 0, 0.3, 0, 0, 0.1, 0.5], [0, 0, 0, 0, 0, 0, 0, 1.0]], np.float32)
    out = drop_contempt(probs)
    np.testing.assert_allclose(out[0], [0.2, 0, 0, 0.6, 0, 0, 0.2])
    np.testing.assert_allclose(out[1], np.full(7, 1 / 7))


def test_library_ensemble_refuses_mixed_members(eight_class_data):
    """Check that Ensemble() itself refuses 7-way plus 8-way members unless class_map='drop-contempt'."""
    from fer_keras import ensemble as ens

    _, zoo = eight_class_data
    members, _ = ens.load_members([zoo["eight"], zoo["seven"]], class_counts=ens.CLASS_COUNTS)
    with pytest.raises(FerError, match="refusing to mix"):
        ens.Ensemble(members)
    assert ens.Ensemble(members, class_map="drop-contempt").class_names == CLASS_NAMES
    # Default loading (predict, export) still accepts 7-way members only.
    loaded, skipped = ens.load_members([zoo["eight"], zoo["seven"]])
    assert [m.name for m in loaded] == ["seven.h5"] and "7-way" in skipped[0].reason
