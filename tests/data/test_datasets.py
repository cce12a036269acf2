"""FER+, RAF-DB, AffectNet and CK+ readers on tiny copies of their official layouts."""

import numpy as np
import pytest
from PIL import Image

from fer_keras import data as datasets
from fer_keras.constants import CLASS_NAMES, CLASS_NAMES_8, INPUT_SHAPE, PIXELS_PER_IMAGE
from fer_keras.data import labels
from fer_keras.errors import ConfigError, DataError

# --------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------


def save_image(path, grey=128, size=(100, 100), mode="RGB", box=None):
    """A flat image of brightness ``grey`` (a white ``box`` on black when given)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if box is None:
        img = Image.new(mode, size, (grey,) * 3 if mode == "RGB" else grey)
    else:
        img = Image.new(mode, size, (0,) * 3 if mode == "RGB" else 0)
        x, y, w, h = box
        img.paste((255,) * 3 if mode == "RGB" else 255, (x, y, x + w, y + h))
    img.save(path)
    return path


def brightness(split):
    return split.x.reshape(len(split), -1).mean(axis=1)


FERPLUS_HEADER = "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF"
# Votes: neutral happiness surprise sadness anger disgust fear contempt unknown NF
FERPLUS_ROWS = [
    ("Training", "fer0000000.png", "10,0,0,0,0,0,0,0,0,0"),  # 0 neutral
    ("Training", "fer0000001.png", "0,6,4,0,0,0,0,0,0,0"),  # 1 happy
    ("Training", "", "0,0,0,0,0,0,0,0,0,10"),  # 2 removed by FER+
    ("Training", "fer0000002.png", "0,0,0,0,4,0,0,0,6,0"),  # 3 unknown wins
    ("Training", "fer0000003.png", "0,0,0,0,0,0,3,0,0,7"),  # 4 NF wins
    ("Training", "fer0000004.png", "0,0,0,5,5,0,0,0,0,0"),  # 5 tie sad/anger
    ("Training", "fer0000005.png", "0,0,0,0,0,4,0,6,0,0"),  # 6 contempt wins
    ("Training", "fer0000006.png", "0,0,8,0,2,0,0,0,0,0"),  # 7 surprise
    ("PublicTest", "fer0000007.png", "0,0,0,0,9,0,0,1,0,0"),  # 8 anger
    ("PublicTest", "fer0000008.png", "0,0,0,0,0,3,7,0,0,0"),  # 9 fear
    ("PrivateTest", "fer0000009.png", "0,0,0,10,0,0,0,0,0,0"),  # 10 sad
    ("PrivateTest", "fer0000010.png", "0,0,0,0,0,0,0,0,0,0"),  # 11 no votes
]


def write_fer2013(path, usages, labels=None):
    """fer2013.csv whose row ``i`` is a flat face of brightness ``i``."""
    lines = ["emotion,pixels,Usage"]
    for i, usage in enumerate(usages):
        lines.append(f"{(labels or [0] * len(usages))[i]},{' '.join([str(i)] * PIXELS_PER_IMAGE)},{usage}")
    path.write_text("\n".join(lines) + "\n")
    return path


def write_ferplus(tmp_path, rows=FERPLUS_ROWS, header=FERPLUS_HEADER):
    plus = tmp_path / "fer2013new.csv"
    plus.write_text("\n".join([header] + [f"{u},{n},{v}" for u, n, v in rows]) + "\n")
    fer = write_fer2013(tmp_path / "fer2013.csv", [u for u, _, _ in FERPLUS_ROWS])
    return plus, fer


def write_rafdb(root, lines, images):
    """``EmoLabel/list_patition_label.txt`` and ``Image/aligned/<name>`` (name → grey)."""
    (root / "EmoLabel").mkdir(parents=True)
    (root / "EmoLabel" / "list_patition_label.txt").write_text("\n".join(lines) + "\n")
    for name, grey in images.items():
        save_image(root / "Image" / "aligned" / name, grey)
    return root


RAF_LINES = ["train_00001.jpg 1", "train_00002.jpg 4", "train_00003.jpg 6", "test_0001.jpg 7", "test_0002.jpg 3"]
RAF_IMAGES = {"train_00001_aligned.jpg": 40, "train_00002_aligned.jpg": 80, "train_00003_aligned.jpg": 120,
              "test_0001_aligned.jpg": 160, "test_0002.jpg": 200}  # the last one under its plain name


# --------------------------------------------------------------------------
# Label maps
# --------------------------------------------------------------------------


def test_label_map_table_is_documented():
    """Check that the module docstring shows the label maps exactly as the dicts define them."""
    assert labels.label_map_table() in labels.__doc__
    assert CLASS_NAMES_8 == CLASS_NAMES + ("contempt",)
    assert datasets.CONTEMPT == 7


def test_label_maps_cover_every_fer_class_once():
    """Check that each map sends its 7 emotions onto the 7 FER2013 indices, contempt onto 7."""
    assert sorted(datasets.RAFDB_LABEL_MAP.values()) == list(range(7))
    kept = [v for v in datasets.AFFECTNET_LABEL_MAP.values() if v is not None]
    assert sorted(kept) == list(range(8))
    assert sorted(datasets.CKPLUS_LABEL_MAP.values()) == list(range(8))
    assert sorted(v for v in datasets.FERPLUS_LABEL_MAP.values() if v is not None) == list(range(8))
    for name, index in datasets.CKPLUS_LABEL_MAP.items():
        assert CLASS_NAMES_8[index].startswith(name[:3])


# --------------------------------------------------------------------------
# FER+
# --------------------------------------------------------------------------


def test_ferplus_majority_drops_and_counts(tmp_path):
    """Check that majority mode keeps plurality winners and counts removed, unknown, NF, tie, contempt rows."""
    plus, fer = write_ferplus(tmp_path)
    ds = datasets.load_ferplus(plus, fer, cache=False)
    assert list(ds.splits) == ["Training", "PublicTest", "PrivateTest"]
    assert ds.dropped == {"removed": 1, "no_votes": 1, "tie": 1, "unknown": 1, "not_face": 1, "contempt": 1}
    train = ds["Training"]
    assert train.x.dtype == np.uint8 and train.x.shape == (3,) + INPUT_SHAPE
    assert train.y.dtype == np.int64
    assert train.y.tolist() == [6, 3, 5]  # neutral, happy, surprise
    assert train.x[:, 0, 0, 0].tolist() == [0, 1, 7]  # faces joined by row order
    assert ds["PublicTest"].y.tolist() == [0, 2]
    assert ds["PrivateTest"].y.tolist() == [4]
    assert ds.files["Training"] == ["fer0000000.png", "fer0000001.png", "fer0000006.png"]
    assert ds.class_names == CLASS_NAMES
    assert "dropped" in ds.summary() and "tie 1" in ds.summary()


def test_ferplus_majority_8_classes_keeps_contempt_as_7(tmp_path):
    """Check that with 8 classes a contempt winner is kept as index 7."""
    plus, fer = write_ferplus(tmp_path)
    ds = datasets.load_ferplus(plus, fer, num_classes=8, cache=False)
    assert ds["Training"].y.tolist() == [6, 3, 7, 5]
    assert ds["Training"].x[:, 0, 0, 0].tolist() == [0, 1, 6, 7]
    assert "contempt" not in ds.dropped
    assert ds.class_names == CLASS_NAMES_8


def test_ferplus_probability_soft_targets_sum_to_one(tmp_path):
    """Check that probability mode gives normalised votes over the kept classes."""
    plus, fer = write_ferplus(tmp_path)
    ds = datasets.load_ferplus(plus, fer, mode="probability", cache=False)
    assert ds.dropped == {"removed": 1, "no_votes": 1}
    train = ds["Training"]
    assert isinstance(train, datasets.SoftSplit)
    assert train.soft.shape == (7, 7) and train.soft.dtype == np.float32
    np.testing.assert_allclose(train.soft.sum(axis=1), 1.0, rtol=1e-6)
    assert train.x[:, 0, 0, 0].tolist() == [0, 1, 3, 4, 5, 6, 7]
    np.testing.assert_allclose(train.soft[1], [0, 0, 0, 0.6, 0, 0.4, 0])  # happiness 6, surprise 4
    np.testing.assert_allclose(train.soft[2], [1, 0, 0, 0, 0, 0, 0])  # unknown votes not counted
    np.testing.assert_allclose(train.soft[4], [0.5, 0, 0, 0, 0.5, 0, 0])  # tie kept as a distribution
    assert train.y.tolist() == [6, 3, 0, 2, 0, 1, 5]
    np.testing.assert_allclose(datasets.soft_targets(train), train.soft)


def test_ferplus_probability_8_classes(tmp_path):
    """Check that 8-class soft targets put contempt votes in column 7."""
    plus, fer = write_ferplus(tmp_path)
    ds = datasets.load_ferplus(plus, fer, mode="probability", num_classes=8, cache=False)
    soft = ds["Training"].soft
    assert soft.shape[1] == 8
    np.testing.assert_allclose(soft[5], [0, 0.4, 0, 0, 0, 0, 0, 0.6])
    assert ds["Training"].y[5] == 7
    np.testing.assert_allclose(ds["PublicTest"].soft[0], [0.9, 0, 0, 0, 0, 0, 0, 0.1])


def test_ferplus_row_count_mismatch(tmp_path):
    """Check that a fer2013.csv with another row count is a DataError naming both files and counts."""
    plus, _ = write_ferplus(tmp_path)
    short = write_fer2013(tmp_path / "short.csv", [u for u, _, _ in FERPLUS_ROWS[:-1]])
    with pytest.raises(DataError, match=r"fer2013new\.csv has 12 data rows but .*short\.csv has 11"):
        datasets.load_ferplus(plus, short, cache=False)


def test_ferplus_usage_disagreement(tmp_path):
    """Check that rows whose Usage differs between the files are reported with the line."""
    rows = list(FERPLUS_ROWS)
    rows[7] = ("PublicTest",) + rows[7][1:]
    plus, fer = write_ferplus(tmp_path, rows)
    with pytest.raises(DataError, match=r"fer2013new\.csv:9: Usage is 'PublicTest' but row 8 .* is 'Training'"):
        datasets.load_ferplus(plus, fer, cache=False)


@pytest.mark.parametrize("change, message", [
    (lambda r: (r[0], r[1], "1,2,x,0,0,0,0,0,0,0"), r":4: vote count 'surprise' is 'x'"),
    (lambda r: (r[0], r[1], "1,2,0,0,0,0,0,0,0"), r":4: expected 12 comma-separated fields, found 11"),
    (lambda r: ("Train", r[1], r[2]), r":4: Usage is 'Train'"),
])
def test_ferplus_malformed_rows(tmp_path, change, message):
    """Check that a bad vote, field count or Usage names fer2013new.csv and the line."""
    rows = list(FERPLUS_ROWS)
    rows[2] = change(rows[2])
    plus, fer = write_ferplus(tmp_path, rows)
    with pytest.raises(DataError, match=message):
        datasets.load_ferplus(plus, fer, cache=False)


def test_ferplus_unknown_column_and_bad_mode(tmp_path):
    """Check that an unexpected vote column and a bad mode are refused."""
    plus, fer = write_ferplus(tmp_path, header=FERPLUS_HEADER.replace("contempt", "bored"))
    with pytest.raises(DataError, match=r"fer2013new\.csv:1: unknown column\(s\) 'bored'"):
        datasets.load_ferplus(plus, fer, cache=False)
    with pytest.raises(ConfigError, match="mode must be"):
        datasets.load_ferplus(plus, fer, mode="soft")
    with pytest.raises(ConfigError, match="num_classes must be 7"):
        datasets.load_ferplus(plus, fer, num_classes=10)


# --------------------------------------------------------------------------
# RAF-DB
# --------------------------------------------------------------------------


def test_rafdb_maps_labels_and_splits(tmp_path):
    """Check that RAF labels map onto FER order (1 Surprise → 5) and train_/test_ onto Training/PublicTest."""
    root = write_rafdb(tmp_path / "basic", RAF_LINES, RAF_IMAGES)
    ds = datasets.load_rafdb(root)
    assert list(ds.splits) == ["Training", "PublicTest"]
    train, test = ds["Training"], ds["PublicTest"]
    assert train.x.shape == (3,) + INPUT_SHAPE and train.x.dtype == np.uint8
    assert train.y.tolist() == [5, 3, 0]  # Surprise, Happiness, Anger
    assert test.y.tolist() == [6, 1]  # Neutral, Disgust
    np.testing.assert_allclose(brightness(train), [40, 80, 120], atol=3)
    np.testing.assert_allclose(brightness(test), [160, 200], atol=3)
    assert ds.files["PublicTest"][1].endswith("Image/aligned/test_0002.jpg")
    assert ds.dropped == {}


@pytest.mark.parametrize("line, message", [
    ("train_00002.jpg 8", r"list_patition_label\.txt:2: label '8' of train_00002\.jpg is not a RAF-DB basic label"),
    ("train_00002.jpg", r"list_patition_label\.txt:2: expected '<image name> <label 1\.\.7>'"),
    ("train_00002.jpg happy", r"list_patition_label\.txt:2: label 'happy'"),
    ("val_00002.jpg 4", r":2: image name 'val_00002\.jpg' starts with neither"),
])
def test_rafdb_malformed_label_lines(tmp_path, line, message):
    """Check that a bad label, a one-field line or an unknown prefix names the label file and line."""
    lines = list(RAF_LINES)
    lines[1] = line
    root = write_rafdb(tmp_path / "basic", lines, RAF_IMAGES)
    with pytest.raises(DataError, match=message):
        datasets.load_rafdb(root)


def test_rafdb_missing_image(tmp_path):
    """Check that a missing image is an error naming the line, or skipped and counted on request."""
    images = dict(RAF_IMAGES)
    del images["train_00003_aligned.jpg"]
    root = write_rafdb(tmp_path / "basic", RAF_LINES, images)
    with pytest.raises(DataError, match=r"list_patition_label\.txt:3: no image for train_00003\.jpg"):
        datasets.load_rafdb(root)
    with pytest.warns(UserWarning, match="skipped 1 missing or unreadable"):
        ds = datasets.load_rafdb(root, on_bad_images="skip")
    assert ds.dropped == {"bad_image": 1}
    assert ds["Training"].y.tolist() == [5, 3]


def test_rafdb_missing_layout(tmp_path):
    """Check that a folder without the label file says which layout is expected."""
    with pytest.raises(DataError, match="no EmoLabel/list_patition_label.txt"):
        datasets.load_rafdb(tmp_path)


# --------------------------------------------------------------------------
# AffectNet
# --------------------------------------------------------------------------


def write_affectnet_folders(root):
    save_image(root / "train" / "anger" / "a.jpg", 30, (64, 64))
    save_image(root / "train" / "contempt" / "b.jpg", 60, (64, 64))
    save_image(root / "train" / "happy" / "c.jpg", 90, (64, 64))
    save_image(root / "val" / "0" / "d.jpg", 120, (64, 64))  # AffectNet index 0: Neutral
    save_image(root / "val" / "7" / "e.jpg", 150, (64, 64))  # 7: Contempt
    save_image(root / "val" / "6" / "f.png", 180, (64, 64))  # 6: Anger
    return root


def test_affectnet_folders_7_classes(tmp_path):
    """Check that class folders by name or AffectNet index map onto FER order and contempt is dropped."""
    ds = datasets.load_affectnet(write_affectnet_folders(tmp_path / "affectnet"))
    assert list(ds.splits) == ["Training", "PublicTest"]
    assert ds["Training"].y.tolist() == [0, 3]
    assert ds["PublicTest"].y.tolist() == [6, 0]  # folder 0 (Neutral) → 6, folder 6 (Anger) → 0
    np.testing.assert_allclose(brightness(ds["PublicTest"]), [120, 180], atol=3)
    assert ds.dropped == {"contempt": 2}


def test_affectnet_folders_8_classes(tmp_path):
    """Check that AffectNet-8 keeps contempt, by name or index 7, as FER index 7."""
    ds = datasets.load_affectnet(write_affectnet_folders(tmp_path / "affectnet"), num_classes=8)
    assert ds["Training"].y.tolist() == [0, 7, 3]
    assert sorted(ds["PublicTest"].y.tolist()) == [0, 6, 7]
    assert ds.dropped == {}
    assert ds.class_names == CLASS_NAMES_8


def test_affectnet_unknown_class_folder(tmp_path):
    """Check that an unknown class folder is a DataError naming it."""
    root = write_affectnet_folders(tmp_path / "affectnet")
    save_image(root / "train" / "bored" / "x.jpg", 10, (64, 64))
    with pytest.raises(DataError, match=r"train/bored: unknown class folder 'bored'"):
        datasets.load_affectnet(root)


OFFICIAL_HEADER = ("subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,"
                   "expression,valence,arousal")


def write_affectnet_official(root, expressions=(0, 1, 6, 7, 8, 9, 10), val=(3,)):
    """training.csv/validation.csv with images under Manually_Annotated_Images/<n>/<hash>.jpg."""
    images = root / "Manually_Annotated_Images"

    def rows(codes, start):
        out = [OFFICIAL_HEADER]
        for i, code in enumerate(codes, start):
            rel = f"{i}/{i:040x}.jpg"
            save_image(images / rel, size=(80, 60), box=(20, 10, 30, 40))
            out.append(f'{rel},20,10,30,40,"1.0;2.0;3.0",{code},0.5,-0.2')
        return "\n".join(out) + "\n"

    (root / "training.csv").write_text(rows(expressions, 0))
    (root / "validation.csv").write_text(rows(val, 100))
    return root


def test_affectnet_official_csv(tmp_path):
    """Check that the official CSVs map expressions, drop 8/9/10 and contempt, and crop the face box."""
    root = write_affectnet_official(tmp_path / "affectnet")
    ds = datasets.load_affectnet(root)
    assert ds["Training"].y.tolist() == [6, 3, 0]
    assert ds["PublicTest"].y.tolist() == [5]
    assert ds.dropped == {"contempt": 1, "none": 1, "uncertain": 1, "no_face": 1}
    assert brightness(ds["Training"]).min() > 240  # only the white face box is left
    ds8 = datasets.load_affectnet(root, num_classes=8)
    assert ds8["Training"].y.tolist() == [6, 3, 0, 7]


def test_affectnet_official_bad_expression(tmp_path):
    """Check that an expression outside 0..10 names the CSV line and the label."""
    root = write_affectnet_official(tmp_path / "affectnet", expressions=(0, 11))
    with pytest.raises(DataError, match=r"training\.csv:3: label '11' is not an AffectNet label"):
        datasets.load_affectnet(root)


def test_affectnet_kaggle_csv(tmp_path):
    """Check that a Kaggle 'pth,label' CSV with class names and no split is split 80/10/10 per class."""
    root = tmp_path / "kaggle"
    lines = [",pth,label,relFCs"]
    for i in range(10):
        for name, grey in (("anger", 50), ("surprise", 200)):
            save_image(root / name / f"image{i:07d}.jpg", grey, (32, 32))
            lines.append(f"{len(lines) - 1},{name}/image{i:07d}.jpg,{name},0.9")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    ds = datasets.load_affectnet(root / "labels.csv")
    assert {u: len(s) for u, s in ds.splits.items()} == {"Training": 16, "PublicTest": 2, "PrivateTest": 2}
    for split in ds.splits.values():
        assert sorted(set(split.y.tolist())) == [0, 5]
        np.testing.assert_allclose(brightness(split), np.where(split.y == 0, 50, 200), atol=3)


def test_affectnet_csv_errors(tmp_path):
    """Check that an unknown label name and a missing image name the CSV line."""
    root = tmp_path / "kaggle"
    save_image(root / "anger" / "a.jpg", 50, (32, 32))
    (root / "labels.csv").write_text("pth,label\nanger/a.jpg,anger\nanger/b.jpg,bored\n")
    with pytest.raises(DataError, match=r"labels\.csv:3: label 'bored' is not an AffectNet label"):
        datasets.load_affectnet(root, csv_files=root / "labels.csv")
    (root / "labels.csv").write_text("pth,label\nanger/a.jpg,anger\nanger/b.jpg,anger\n")
    with pytest.raises(DataError, match=r"labels\.csv:3: image 'anger/b\.jpg' not found"):
        datasets.load_affectnet(root, csv_files=[root / "labels.csv"])
    (root / "labels.csv").write_text("file_id,emotion_label\n1,2\n")
    with pytest.raises(DataError, match=r"labels\.csv:1: no image-path column \(found: file_id, emotion_label"):
        datasets.load_affectnet(root, csv_files=[root / "labels.csv"])


# --------------------------------------------------------------------------
# CK+
# --------------------------------------------------------------------------

CK_CLASSES = ("anger", "contempt", "disgust", "fear", "happy", "sadness", "surprise")


def write_ckplus(root, subjects=12, with_ids=True):
    """``<class>/S0xx_00y_000000zz.png``: each subject shows 2 expressions, 2 frames each."""
    n = 0
    for s in range(subjects):
        for k in range(2):
            cls = CK_CLASSES[(s + 3 * k) % len(CK_CLASSES)]
            for frame in range(2):
                name = f"S{s + 5:03d}_{k + 1:03d}_{frame + 10:08d}.png" if with_ids else f"img{n:04d}.png"
                save_image(root / cls / name, 20 + 10 * (n % 20), (48, 48), mode="L")
                n += 1
    return root


def subject(path):
    return path.rsplit("/", 1)[-1].split("_")[0]


def test_ckplus_folds_are_subject_independent(tmp_path):
    """Check that every fold keeps all faces of a subject together and covers every subject once."""
    root = write_ckplus(tmp_path / "ckplus")
    seen = []
    for fold in range(4):
        ds = datasets.load_ckplus(root, folds=4, fold=fold, seed=3)
        train = {subject(f) for f in ds.files["Training"]}
        test = {subject(f) for f in ds.files["PublicTest"]}
        assert train and test and not train & test
        seen += sorted(test)
    assert sorted(seen) == sorted({f"S{s + 5:03d}" for s in range(12)})


def test_ckplus_contempt_and_labels(tmp_path):
    """Check that contempt is dropped and counted for 7 classes and index 7 for 8, and folders map to FER order."""
    root = write_ckplus(tmp_path / "ckplus")
    ds = datasets.load_ckplus(root, folds=3, fold=0)
    n7 = sum(len(s) for s in ds.splits.values())
    assert ds.dropped == {"contempt": 48 - n7}
    assert ds.dropped["contempt"] > 0
    ds8 = datasets.load_ckplus(root, folds=3, fold=0, num_classes=8)
    all_y = np.concatenate([s.y for s in ds8.splits.values()])
    assert (all_y == 7).sum() == ds.dropped["contempt"]
    for usage, split in ds.splits.items():
        for f, y in zip(ds.files[usage], split.y):
            assert datasets.CKPLUS_LABEL_MAP[f.split("/")[-2]] == y


def test_ckplus_seeded_and_fold_checks(tmp_path):
    """Check that the folds depend only on the seed, and bad fold options are refused."""
    root = write_ckplus(tmp_path / "ckplus")
    a = datasets.load_ckplus(root, folds=5, fold=2, seed=7)
    b = datasets.load_ckplus(root, folds=5, fold=2, seed=7)
    assert a.files == b.files and a.checksum == b.checksum
    with pytest.raises(ConfigError, match="fold must be 0..4"):
        datasets.load_ckplus(root, folds=5, fold=5)
    with pytest.raises(DataError, match="only 12 subject"):
        datasets.load_ckplus(root, folds=13, fold=0)


def test_ckplus_without_subject_ids_warns(tmp_path):
    """Check that file names without subject ids give stratified folds and a warning."""
    root = write_ckplus(tmp_path / "ckplus", subjects=10, with_ids=False)
    with pytest.warns(UserWarning, match="NOT subject-independent"):
        ds = datasets.load_ckplus(root, folds=5, fold=0, num_classes=8)
    assert len(ds["PublicTest"]) == 8 and len(ds["Training"]) == 32


def test_ckplus_unknown_class_folder(tmp_path):
    """Check that an unknown class folder is a DataError naming it."""
    root = write_ckplus(tmp_path / "ckplus", subjects=3)
    save_image(root / "bored" / "S001_001_00000001.png", 10, (48, 48), mode="L")
    with pytest.raises(DataError, match=r"bored: unknown class folder 'bored'"):
        datasets.load_ckplus(root, folds=2)
