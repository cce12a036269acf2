"""Knowledge distillation: target arithmetic, the cached teacher, and a student trained end to end."""

import shutil
from pathlib import Path

import numpy as np
import pytest
from tests.training.test_train import tiny_config

from fer_keras import ensemble as ens
from fer_keras.constants import CLASS_NAMES
from fer_keras.errors import ConfigError
from fer_keras.models import model_io
from fer_keras.training import distill, train


def test_soften_flattens_and_keeps_the_ranking():
    """Check that T = 1 is the identity, T > 1 flattens, the argmax survives and rows sum to 1."""
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    np.testing.assert_allclose(distill.soften(p, 1.0), p, atol=1e-6)
    soft = distill.soften(p, 4.0)
    np.testing.assert_allclose(soft.sum(axis=1), 1, atol=1e-6)
    assert (soft.argmax(1) == p.argmax(1)).all() and soft.max() < p.max()
    # By hand: p^(1/2) renormalised.
    expected = np.sqrt(p[0]) / np.sqrt(p[0]).sum()
    np.testing.assert_allclose(distill.soften(p, 2.0)[0], expected, atol=1e-6)
    with pytest.raises(ConfigError):
        distill.soften(p, 0)


def test_targets_mix_teacher_and_label():
    """Check that alpha 1 is the teacher, alpha 0 the one-hot label, and shapes are checked."""
    teacher = np.array([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]])
    labels = np.array([1, 2])
    np.testing.assert_allclose(distill.distillation_targets(teacher, labels, alpha=1, temperature=1,
                                                            num_classes=3), teacher, atol=1e-6)
    np.testing.assert_allclose(distill.distillation_targets(teacher, labels, alpha=0, temperature=1,
                                                            num_classes=3), np.eye(3)[labels])
    mixed = distill.distillation_targets(teacher, labels, alpha=0.5, temperature=1, num_classes=3)
    np.testing.assert_allclose(mixed[0], [0.3, 0.65, 0.05], atol=1e-6)
    with pytest.raises(ConfigError, match="student needs 7"):
        distill.distillation_targets(teacher, labels, alpha=0.5, temperature=1, num_classes=7)


@pytest.fixture(scope="module")
def teacher_dir(learnable_csv, tmp_path_factory):
    """A trained tiny teacher in its own models folder."""
    tmp = tmp_path_factory.mktemp("teacher")
    train(tiny_config(learnable_csv, tmp, epochs=3), verbose=0)
    return tmp / "models"


@pytest.fixture(scope="module")
def student_run(learnable_csv, teacher_dir, tmp_path_factory):
    """A tiny student taught by ``teacher_dir``, trained with a spy on ``Model.fit`` that reads one epoch of
    the training dataset it is given: the target rows the loss is computed against."""
    import keras

    tmp = tmp_path_factory.mktemp("student")
    config = tiny_config(learnable_csv, tmp, teacher=str(teacher_dir), distill_alpha=0.8, distill_temperature=2.0,
                         model_options={"width": 0.125, "dense_units": 64})
    fit, seen = keras.Model.fit, []

    def spying_fit(self, *args, **kwargs):
        dataset = args[0] if args else kwargs["x"]
        seen.append(np.concatenate([np.asarray(targets) for _, targets in dataset]))
        return fit(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(keras.Model, "fit", spying_fit)
        model_file = Path(train(config, verbose=0)["model_file"])
    return {"tmp": tmp, "model_file": model_file, "fit_targets": seen}


@pytest.fixture(scope="module")
def student(student_run):
    """The student's training folder and model file."""
    return student_run["tmp"], student_run["model_file"]


def test_teacher_targets_reach_the_loss(learnable_csv, teacher_dir, student_run):
    """Check that the rows fit() trains on are 0.8 x the teacher's probabilities (flip TTA) softened at T = 2
    plus 0.2 x the one-hot label, worked out here from the teacher file, not the hard labels."""
    from fer_keras.data import load_fer2013

    (targets,) = student_run["fit_targets"]  # one fit() call, one epoch of its batches
    split = load_fer2013(learnable_csv)["Training"]
    members, _ = ens.load_members(teacher_dir)
    teacher = ens.Ensemble(members).predict_proba(split.x, tta=True)
    powered = teacher ** (1 / 2.0)
    expected = 0.8 * powered / powered.sum(axis=1, keepdims=True) + 0.2 * np.eye(7)[split.y]
    assert targets.shape[1] == 7 and len(targets) == len(split) // 16 * 16  # shuffled, last part-batch dropped
    # Each row fit() saw is one face's expected target, each face at most once. Faces the teacher is sure
    # of can share a target row, so rows are assigned to distinct faces (an optimal matching), not to
    # the nearest face each.
    from scipy.optimize import linear_sum_assignment

    distance = np.abs(targets[:, None, :] - expected[None, :, :]).max(axis=2)
    rows, faces = linear_sum_assignment(distance)
    assert len(set(faces.tolist())) == len(targets) and distance[rows, faces].max() < 1e-5
    assert not np.isin(targets, (0.0, 1.0)).all()  # soft rows, not one-hot labels


@pytest.mark.slow
def test_student_learns_from_teacher_and_records_it(teacher_dir, student):
    """Check that a student trains on the teacher's cached probabilities and names its teacher."""
    tmp, student_file = student
    meta = model_io.read_metadata(student_file)
    assert meta["teacher"]["members"] == ["model_1.h5"] and meta["teacher"]["tta"] is True
    assert 0 <= meta["teacher"]["training_agreement"] <= 1
    assert meta["recipe"]["teacher"] == str(teacher_dir) and meta["recipe"]["distill_alpha"] == 0.8
    cached = tmp / "run" / distill.TEACHER_PROBS_FILE
    with np.load(cached) as stored:
        probs = stored["probs"]
    assert probs.shape == (140, 7)
    np.testing.assert_allclose(probs.sum(axis=1), 1, atol=1e-5)


@pytest.mark.slow
def test_a_folders_student_is_set_aside_unless_asked_for(teacher_dir, student, tmp_path):
    """Check that a distilled file in a members folder neither votes nor teaches while its teachers are
    there, that --include-distilled or naming the file makes it a member, and that it votes once its
    teacher has left the folder."""
    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copy(teacher_dir / "model_1.h5", folder / "model_1.h5")
    shutil.copy(student[1], folder / "model_2.h5")
    members, skipped = ens.load_members(folder, strict=True)
    assert [m.name for m in members] == ["model_1.h5"]
    assert [(s.path.name, s.reason) for s in skipped] == [("model_2.h5", ens.DISTILLED_REASON)]
    members, skipped = ens.load_members(folder, include_distilled=True)
    assert [m.name for m in members] == ["model_1.h5", "model_2.h5"] and not skipped
    members, skipped = ens.load_members([folder / "model_2.h5"])
    assert [m.name for m in members] == ["model_2.h5"] and not skipped
    # Its teacher retired (only another member left beside it): the student is the one holder of what
    # the teacher knew, so it votes.
    assert members[0].teachers == ["model_1.h5"]
    retired = tmp_path / "retired"
    retired.mkdir()
    shutil.copy(teacher_dir / "model_1.h5", retired / "model_3.h5")
    shutil.copy(student[1], retired / "model_2.h5")
    members, skipped = ens.load_members(retired, strict=True)
    assert [m.name for m in members] == ["model_2.h5", "model_3.h5"] and not skipped
    faces = np.zeros((2, 48, 48, 1), np.uint8)
    _, info = distill.teacher_probabilities(folder, faces, class_names=CLASS_NAMES, verbose=0)
    assert info["members"] == ["model_1.h5"]


@pytest.mark.slow
def test_cached_teacher_probabilities_are_reused_and_invalidated(learnable_csv, teacher_dir, tmp_path):
    """Check that the cache answers without the teacher for the same faces, and refreshes for new faces."""
    faces = np.random.default_rng(0).integers(0, 256, (10, 48, 48, 1), dtype=np.uint8)
    names = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
    first, _ = distill.teacher_probabilities(teacher_dir, faces, class_names=names, cache_dir=tmp_path, verbose=0)
    # Poison the cache's probabilities under the same key: a hit returns them unchanged.
    with np.load(tmp_path / distill.TEACHER_PROBS_FILE) as stored:
        key = stored["key"]
    np.savez(tmp_path / distill.TEACHER_PROBS_FILE, probs=np.zeros_like(first), key=key)
    hit, _ = distill.teacher_probabilities(teacher_dir, faces, class_names=names, cache_dir=tmp_path, verbose=0)
    assert not hit.any()
    other, _ = distill.teacher_probabilities(teacher_dir, faces[::-1], class_names=names, cache_dir=tmp_path,
                                             verbose=0)
    np.testing.assert_allclose(other, first[::-1], atol=1e-5)


@pytest.mark.slow
def test_teacher_in_a_log_file_prints_one_line_and_no_progress_bar(teacher_dir, capsys):
    """Check that verbose=2 (train.py writing to a log, or --quiet) keeps tqdm's bars out of the log."""
    faces = np.zeros((3, 48, 48, 1), np.uint8)
    distill.teacher_probabilities(teacher_dir, faces, class_names=CLASS_NAMES, verbose=2)
    out, err = capsys.readouterr()
    assert "predict 3 training faces" in out
    assert "img/s" not in err and "%|" not in err
    distill.teacher_probabilities(teacher_dir, faces, class_names=CLASS_NAMES, verbose=1)
    assert "%|" in capsys.readouterr().err


@pytest.mark.slow
def test_teacher_with_another_class_set_is_refused(teacher_dir):
    """Check that a 7-way teacher cannot teach an 8-way student."""
    faces = np.zeros((2, 48, 48, 1), np.uint8)
    with pytest.raises(ConfigError, match="the student learns 8"):
        distill.teacher_probabilities(teacher_dir, faces, class_names=tuple("abcdefgh"), verbose=0)


def test_bad_teacher_options_are_config_errors(learnable_csv, tmp_path):
    """Check that a missing teacher, alpha outside [0, 1] and class weighting are refused up front."""
    with pytest.raises(ConfigError, match="no such folder"):
        tiny_config(learnable_csv, tmp_path, teacher=str(tmp_path / "nope")).validate()
    with pytest.raises(ConfigError, match="distill_alpha must be in .*Received: distill_alpha=1.5"):
        tiny_config(learnable_csv, tmp_path, teacher=str(tmp_path), distill_alpha=1.5).validate()
    with pytest.raises(ConfigError, match="class_weight='balanced' is not supported with a teacher"):
        tiny_config(learnable_csv, tmp_path, teacher=str(tmp_path), class_weight="balanced").validate()
