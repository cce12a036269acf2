"""Calibration, bootstrap intervals, McNemar, greedy selection and the report they feed: known answers."""

import csv
import json

import numpy as np
import pytest

from fer_keras import data
from fer_keras import ensemble as ens
from fer_keras.cli import ensemble_cli
from fer_keras.ensemble import Ensemble, calibration, member_keys, selection, stats
from fer_keras.errors import ConfigError
from fer_keras.models import model_io


def softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def sample_labels(probs, rng):
    """One label per row drawn from that row's distribution."""
    u = rng.random((len(probs), 1))
    return np.minimum((probs.cumsum(axis=1) < u).sum(axis=1), probs.shape[1] - 1)


# --------------------------------------------------------------------------
# Calibration
# --------------------------------------------------------------------------


def test_ece_near_zero_for_a_calibrated_source():
    """Check that labels drawn from the predicted distribution give ECE < 0.02, and sharpening it raises the ECE."""
    rng = np.random.default_rng(0)
    probs = softmax(rng.normal(0, 2, (20000, 7)))
    y = sample_labels(probs, rng)
    assert calibration.expected_calibration_error(y, probs) < 0.02
    assert calibration.expected_calibration_error(y, calibration.apply_temperature(probs, 0.4)) > 0.1


def test_ece_and_brier_by_hand():
    """Check ECE, Brier and the reliability bins on a two-face example computed by hand."""
    probs = np.array([[0.9, 0.1], [0.6, 0.4]])
    y = np.array([0, 1])
    assert calibration.expected_calibration_error(y, probs) == pytest.approx((0.1 + 0.6) / 2)
    assert calibration.brier_score(y, probs) == pytest.approx(((0.01 + 0.01) + (0.36 + 0.36)) / 2)
    bins = calibration.reliability_bins(y, probs)
    assert sum(bins["count"]) == 2 and bins["count"][13] == 1 and bins["count"][8] == 1
    assert bins["accuracy"][13] == 1.0 and bins["accuracy"][8] == 0.0 and bins["accuracy"][0] is None
    assert calibration.entropy([[1.0, 0.0], [0.5, 0.5]]) == pytest.approx([0, np.log(2)])


@pytest.mark.parametrize("t0", [0.5, 2.5])
def test_temperature_scaling_recovers_a_known_temperature(t0):
    """Check that fitting on softmax(logits * t0) with labels from softmax(logits) finds T within 10% of t0."""
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 1.5, (20000, 7))
    y = sample_labels(softmax(logits), rng)
    distorted = softmax(logits * t0)
    t = calibration.fit_temperature(distorted, y)
    assert t == pytest.approx(t0, rel=0.1)
    restored = calibration.apply_temperature(distorted, t0)
    assert np.allclose(restored, softmax(logits), atol=1e-9)
    assert np.array_equal(calibration.apply_temperature(distorted, t).argmax(1), distorted.argmax(1))


# --------------------------------------------------------------------------
# Bootstrap and McNemar
# --------------------------------------------------------------------------


def test_bootstrap_interval_covers_the_true_accuracy_at_the_nominal_rate():
    """Check that 200 seeded simulations put the true accuracy inside the 95% interval 90-99% of the time."""
    rng = np.random.default_rng(2)
    true_acc, n, hits = 0.7, 400, 0
    for sim in range(200):
        correct = rng.random(n) < true_acc
        idx = stats.bootstrap_indices(n, 1000, seed=sim)
        low, high = stats.percentile_interval(stats.bootstrap_accuracy(correct, idx))
        hits += low <= true_acc <= high
    assert 0.90 <= hits / 200 <= 0.99


def test_vectorised_bootstrap_macro_f1_equals_sklearn():
    """Check that the bincount macro-F1 of each resample equals sklearn's f1_score(average='macro')."""
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(3)
    y = rng.integers(0, 7, 300)
    pred = np.where(rng.random(300) < 0.6, y, rng.integers(0, 7, 300))
    pred[pred == 1] = 0  # class 1 never predicted: F1 = 0 by zero_division
    idx = stats.bootstrap_indices(len(y), 6, seed=4)
    ours = stats.bootstrap_macro_f1(y, pred, idx, 7)
    for b in range(len(idx)):
        expected = f1_score(y[idx[b]], pred[idx[b]], average="macro", labels=np.arange(7), zero_division=0)
        assert ours[b] == pytest.approx(expected, abs=1e-12)
        assert f1_score(y[idx[b]], pred[idx[b]], average="macro", zero_division=0) == pytest.approx(ours[b])
    out = stats.bootstrap_intervals(y, {"a": pred}, n_classes=7, n_resamples=1000, seed=0)
    low, high = out["a"]["macro_f1"]
    assert low < f1_score(y, pred, average="macro") < high


def test_mcnemar_matches_a_hand_computed_exact_p_value():
    """Check that b=1, c=9 gives p = 2 * (1 + 10) / 2**10 and that no disagreement gives p = 1."""
    a = np.array([1] * 20 + [1] + [0] * 9 + [0] * 5, bool)  # 20 both right, b=1, c=9, 5 both wrong
    b = np.array([1] * 20 + [0] + [1] * 9 + [0] * 5, bool)
    assert stats.mcnemar_exact(a, b) == {"b": 1, "c": 9, "p_value": 0.021484375}
    assert stats.mcnemar_exact(b, a)["p_value"] == 0.021484375
    assert stats.mcnemar_exact(a, a) == {"b": 0, "c": 0, "p_value": 1.0}
    assert stats.binomial_two_sided_p(5, 10) == 1.0


# --------------------------------------------------------------------------
# Selection and diversity
# --------------------------------------------------------------------------


def noisy_member(y, accuracy, rng, confidence=0.7):
    """Probabilities putting ``confidence`` on the true class for ``accuracy`` of the faces, else on a wrong one."""
    n = len(y)
    top = np.where(rng.random(n) < accuracy, y, (y + rng.integers(1, 7, n)) % 7)
    p = np.full((n, 7), (1 - confidence) / 6)
    p[np.arange(n), top] = confidence
    return p


def test_greedy_selection_picks_the_best_first_and_never_a_constant():
    """Check that greedy selection starts with the clearly best member and never picks a constant predictor."""
    rng = np.random.default_rng(5)
    y = rng.integers(0, 7, 2000)
    constant = np.tile(np.eye(7)[0] * 0.9 + 0.1 / 7, (len(y), 1))
    probas = np.stack([noisy_member(y, 0.55, rng), constant, noisy_member(y, 0.85, rng),
                       noisy_member(y, 0.6, rng), noisy_member(y, 0.5, rng)])
    result = selection.greedy_selection(probas, y)
    assert result.order[0] == 2 and result.counts[2] == result.counts.max()
    assert result.counts[1] == 0 and result.excluded == [1]
    assert result.weights.sum() == pytest.approx(1)
    nll_result = selection.greedy_selection(probas, y, metric="nll")
    assert nll_result.order[0] == 2 and nll_result.counts[1] == 0


def test_disagreement_and_marginal_accuracy_by_hand():
    """Check the disagreement matrix, per-face disagreement and marginal accuracy on a 3-member example."""
    eye = np.eye(3)
    y = np.array([0, 1, 2, 0])
    a = eye[[0, 1, 2, 0]] * 0.8 + 0.2 / 3  # always right
    b = eye[[0, 1, 0, 1]] * 0.8 + 0.2 / 3  # right on faces 0, 1
    c = eye[[0, 2, 2, 1]] * 0.8 + 0.2 / 3  # right on faces 0, 2
    stack = np.stack([a, b, c])
    assert np.allclose(selection.disagreement_matrix(stack), [[0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]])
    ensemble = ens.combine_probas(stack)
    assert np.allclose(selection.face_disagreement(stack, ensemble), [0, 1 / 3, 1 / 3, 1 / 3])
    marginal = selection.marginal_accuracy(stack, y)
    full = np.mean(ensemble.argmax(1) == y)
    assert marginal[0]["change_without"] == pytest.approx(np.mean(ens.combine_probas(stack[1:]).argmax(1) == y) - full)
    assert selection.marginal_accuracy(stack[:1], y)[0]["change_without"] is None


def test_weights_file_holds_weights_temperatures_or_both(tmp_path):
    """Check that read_weights_file accepts weights, temperatures, both, or a bare mapping, and rejects bad ones."""
    cases = {"w.json": {"weights": {"a.h5": 1}}, "t.json": {"temperatures": {"a.h5": 1.5}},
             "both.json": {"weights": {"a.h5": 2}, "temperatures": {"a.h5": 0.5}}, "bare.json": {"a.h5": 3}}
    for name, doc in cases.items():
        (tmp_path / name).write_text(json.dumps(doc))
    assert ens.read_weights_file(tmp_path / "w.json") == ({"a.h5": 1.0}, None)
    assert ens.read_weights_file(tmp_path / "t.json") == (None, {"a.h5": 1.5})
    assert ens.read_weights_file(tmp_path / "both.json") == ({"a.h5": 2.0}, {"a.h5": 0.5})
    assert ens.read_weights(tmp_path / "bare.json") == {"a.h5": 3.0}
    assert ens.read_weights(tmp_path / "t.json") is None
    (tmp_path / "neg.json").write_text(json.dumps({"temperatures": {"a.h5": -1}}))
    with pytest.raises(ConfigError, match="positive"):
        ens.read_weights_file(tmp_path / "neg.json")


# --------------------------------------------------------------------------
# The command line on tiny saved models
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A folder with an oracle (reads the band), an under-confident oracle and a random model."""
    import keras
    from keras import layers

    root = tmp_path_factory.mktemp("models")
    keras.utils.set_random_seed(0)
    kernel = np.zeros((48 * 48, 7), np.float32)
    for c in range(7):
        mask = np.zeros((48, 48), np.float32)
        mask[c * 6: c * 6 + 6] = 0.01
        kernel[:, c] = mask.ravel()
    for name, scale in (("oracle", 1.0), ("soft", 0.0025)):
        model = keras.Sequential([keras.Input((48, 48, 1)), layers.Flatten(), layers.Dense(7, activation="softmax")])
        model.layers[-1].set_weights([kernel * scale, np.zeros(7, np.float32)])
        model_io.save_model(model, root / f"{name}.h5")
    rand = keras.Sequential([keras.Input((48, 48, 1)), layers.Rescaling(1 / 255),
                             layers.Conv2D(2, 3, strides=4, activation="relu"), layers.Flatten(),
                             layers.Dense(7, activation="softmax")])
    model_io.save_model(rand, root / "rand.h5")
    return root


def run_cli(tiny_csv, models, out, *extra):
    return ensemble_cli.main(["--csv", str(tiny_csv), "--models-dir", str(models), "--usage", "PrivateTest",
                              "--out", str(out), "--quiet", *extra])


def test_cli_calibrate_writes_temperatures_and_reports_ece(tiny_csv, models, tmp_path, capsys):
    """Check that --calibrate PublicTest writes temperatures.json, reports ECE before/after, and is readable back."""
    out = tmp_path / "cal"
    assert run_cli(tiny_csv, models, out, "--calibrate", "PublicTest") == 0
    printed = capsys.readouterr().out
    assert "temperatures fitted on PublicTest" in printed and "ECE before" in printed
    written = json.loads((out / "temperatures.json").read_text())
    temps = written["temperatures"]
    assert set(temps) == {"oracle.h5", "soft.h5", "rand.h5"} and temps["soft.h5"] < 1
    # What the model card reads: where it was fitted, the shared factor, ECE in and out of the fit split.
    assert written["fitted_on"]["usage"] == "PublicTest" and written["shared_scale"] > 0
    assert set(written["ece"]) == {"before", "after", "held_out_before", "held_out_after"}
    assert written["ece"]["after"] < written["ece"]["before"] and set(written["accuracy"]) == {"before", "after"}
    doc = json.loads((out / "report.json").read_text())
    scaling = doc["temperature_scaling"]
    assert scaling["fitted_on"] == "PublicTest" and scaling["temperatures"] == pytest.approx(temps)
    assert set(scaling["ece_before"]) == set(scaling["ece_after"]) == {"ensemble", *temps}
    assert scaling["ece_after"]["soft.h5"] < scaling["ece_before"]["soft.h5"]
    soft = next(m for m in doc["members"] if m["file"].endswith("soft.h5"))
    assert soft["temperature"] == pytest.approx(temps["soft.h5"]) and soft["ece"] == scaling["ece_after"]["soft.h5"]
    # The temperatures file is a --weights file: the same calibrated ensemble again.
    again = tmp_path / "again"
    assert run_cli(tiny_csv, models, again, "--weights", str(out / "temperatures.json"), "--bootstrap", "0") == 0
    doc2 = json.loads((again / "report.json").read_text())
    assert doc2["ensemble"]["ece"] == pytest.approx(doc["ensemble"]["ece"])
    assert doc2["ensemble"]["nll"] == pytest.approx(doc["ensemble"]["nll"])


def test_cli_refuses_to_calibrate_or_select_on_the_evaluated_split(tiny_csv, models, tmp_path, capsys):
    """Check that --calibrate or --select-on naming the evaluated split exits 2 with a clear message."""
    assert run_cli(tiny_csv, models, tmp_path / "a", "--calibrate", "PrivateTest") == 2
    assert "--calibrate PrivateTest is the evaluated split" in capsys.readouterr().err
    assert run_cli(tiny_csv, models, tmp_path / "b", "--select", "greedy", "--select-on", "PrivateTest") == 2
    assert "--select-on PrivateTest is the evaluated split" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_cli_greedy_selection_file_reads_back(tiny_csv, models, tmp_path, capsys):
    """Check that --select greedy writes selection.json (oracle first) that --weights reads back."""
    out = tmp_path / "sel"
    assert run_cli(tiny_csv, models, out, "--select", "greedy") == 0
    assert "greedy selection on PublicTest" in capsys.readouterr().out
    sel = json.loads((out / "selection.json").read_text())
    assert sel["order"][0] == "oracle.h5" and sum(sel["weights"].values()) == pytest.approx(1)
    doc = json.loads((out / "report.json").read_text())
    assert set(doc["selection"]["evaluated"]) == {"all", "selected"}
    assert doc["weights"] == pytest.approx(sel["weights"])
    again = tmp_path / "again"
    assert run_cli(tiny_csv, models, again, "--weights", str(out / "selection.json"), "--bootstrap", "0") == 0
    assert json.loads((again / "report.json").read_text())["weights"] == pytest.approx(sel["weights"])


def test_cli_report_html_worst_and_new_keys(tiny_csv, models, tmp_path):
    """Check report.html embeds every PNG, --worst 4 writes worst.png, and the new report.json/CSV fields."""
    out = tmp_path / "r"
    assert run_cli(tiny_csv, models, out, "--worst", "4", "--bootstrap", "1000") == 0
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == ["confusion_matrix.png", "disagreement.png", "per_class_f1.png", "reliability.png", "worst.png"]
    page = (out / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') == len(pngs) and "http" not in page.split("<body>")[1]
    assert "McNemar" in page and "Calibration" in page

    doc = json.loads((out / "report.json").read_text())
    e = doc["ensemble"]
    assert {"calibration", "ece", "brier", "ci95"} <= set(e)
    assert e["ci95"]["accuracy"][0] <= e["accuracy"] <= e["ci95"]["accuracy"][1]
    assert doc["bootstrap"]["resamples"] == 1000 and len(doc["diversity"]["disagreement"]) == 3
    member = doc["members"][0]
    assert {"calibration", "ci95", "mcnemar_vs_ensemble", "marginal", "ece", "brier"} <= set(member)
    assert set(member["mcnemar_vs_ensemble"]) == {"b", "c", "p_value"}

    with open(out / "predictions.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 25 and 0 <= float(rows[0]["entropy"]) <= np.log(7) + 1e-6
    assert {float(r["member_disagreement"]) for r in rows} <= {0.0, 1 / 3, 2 / 3, 1.0} | {
        float(f"{v:.6f}") for v in (1 / 3, 2 / 3)}


def _members_calibrated_alone(n=4000, members=5, seed=0):
    """``(probs (M, N, 7), y)``: members each calibrated by its own temperature, whose mean is
    under-confident as on FER2013. Noise every member shares (hard faces) plus each member's own:
    correlated but diverse members, about 44% alone, 49% together (ensemble ECE ~0.08)."""
    from fer_keras.ensemble.calibration import apply_temperatures, fit_temperatures

    rng = np.random.default_rng(seed)
    y = rng.integers(0, 7, n)
    shared = rng.normal(0, 1.5, (n, 7))
    logits = 2.0 * np.eye(7)[y][None] + shared[None] + rng.normal(0, 1.0, (members, n, 7))
    probs = np.exp(logits) / np.exp(logits).sum(axis=2, keepdims=True)
    return apply_temperatures(probs, fit_temperatures(probs, y)), y


def test_shared_scale_calibrates_the_mean_of_calibrated_members():
    """Check that members calibrated one by one average into an under-confident ensemble, and
    that the shared factor (s < 1: sharper) lowers the ensemble's NLL and ECE, its accuracy
    barely moved."""
    from fer_keras.ensemble.calibration import apply_temperatures, expected_calibration_error, fit_shared_scale

    members_calibrated, y = _members_calibrated_alone()
    members, n = members_calibrated.shape[:2]
    mean = members_calibrated.mean(axis=0)

    scale = fit_shared_scale(members_calibrated, y, lambda p: p.mean(axis=0))
    sharpened = apply_temperatures(members_calibrated, [scale] * members).mean(axis=0)

    def nll(p):
        return -np.mean(np.log(p[np.arange(n), y]))

    assert scale < 0.9
    assert nll(sharpened) < nll(mean) - 0.005
    assert expected_calibration_error(y, mean) > 0.06
    assert expected_calibration_error(y, sharpened) < 0.04
    assert mean.max(axis=1).mean() < (mean.argmax(axis=1) == y).mean()  # the under-confidence being fixed
    # Sharper members weigh their confident votes more: a few faces change class, accuracy barely.
    assert abs((sharpened.argmax(axis=1) == y).mean() - (mean.argmax(axis=1) == y).mean()) < 0.01


def test_held_out_ece_judges_temperatures_on_faces_they_were_not_fitted_on():
    """Check that held_out_ece fits on one seeded half and judges on the other, both ways (a by-hand
    replay), and that on members calibrated one by one, whose mean is under-confident as on FER2013,
    the fitted temperatures calibrate faces they never saw."""
    from fer_keras.ensemble.calibration import (apply_temperatures, expected_calibration_error,
                                                fit_ensemble_temperatures, held_out_ece)

    probs, y = _members_calibrated_alone()
    n = len(y)

    def mean(p):
        return p.mean(axis=0)

    got = held_out_ece(probs, y, mean, seed=3)
    assert got["held_out_before"] > 0.06 and got["held_out_after"] < 0.04

    a, b = np.array_split(np.random.default_rng(3).permutation(n), 2)
    after = []
    for fit, judge in ((a, b), (b, a)):
        temps, _ = fit_ensemble_temperatures(probs[:, fit], y[fit], mean)
        after.append(expected_calibration_error(y[judge], mean(apply_temperatures(probs[:, judge], temps))))
    assert got["held_out_after"] == pytest.approx(np.mean(after))
    in_sample, _ = fit_ensemble_temperatures(probs[:, a], y[a], mean)
    assert got["held_out_after"] != pytest.approx(
        expected_calibration_error(y[a], mean(apply_temperatures(probs[:, a], in_sample))))

def test_folder_calibration_applies_by_default_to_exactly_its_members(tiny_csv, models, tmp_path, capsys):
    """Check that a temperatures.json shipped beside the members is applied by default (report says
    which file), that --weights uniform turns it off, and that after a member is dropped in it is
    left out with a note saying how to refit, never applied to members it was not fitted for."""
    import shutil

    folder = tmp_path / "shipped"
    shutil.copytree(models, folder)
    fitted = tmp_path / "fit"
    assert run_cli(tiny_csv, folder, fitted, "--calibrate", "PublicTest", "--bootstrap", "0") == 0
    shutil.copy(fitted / "temperatures.json", folder / "temperatures.json")
    capsys.readouterr()

    assert run_cli(tiny_csv, folder, tmp_path / "auto", "--bootstrap", "0") == 0
    assert "calibrated by" in capsys.readouterr().out
    auto = json.loads((tmp_path / "auto" / "report.json").read_text())
    assert auto["temperature_scaling"]["file"] == str(folder / "temperatures.json")
    assert run_cli(tiny_csv, folder, tmp_path / "uniform", "--weights", "uniform", "--bootstrap", "0") == 0
    uniform = json.loads((tmp_path / "uniform" / "report.json").read_text())
    assert "temperature_scaling" not in uniform
    assert auto["ensemble"]["ece"] != pytest.approx(uniform["ensemble"]["ece"])
    calibrated = json.loads((fitted / "report.json").read_text())
    assert auto["ensemble"]["nll"] == pytest.approx(calibrated["ensemble"]["nll"])
    # The library applies it too (detect_emotions, FacePredictor and create_app take Ensemble.from_dir).
    written = json.loads((folder / "temperatures.json").read_text())["temperatures"]
    library = Ensemble.from_dir(folder)
    assert library.temperatures_.tolist() == pytest.approx([written[k] for k in member_keys(library.members)])
    assert not Ensemble.from_dir(folder, temperatures=None).is_calibrated
    # One member alone (the webcam's distilled member) gets the temperature fitted for it alone.
    scale = json.loads((folder / "temperatures.json").read_text())["shared_scale"]
    alone, note = ens.folder_temperatures(folder, library.members[:1])
    key = member_keys(library.members[:1])[0]
    assert alone == pytest.approx([written[key] / scale]) and f"{key}'s own temperature" in note
    # A new file under a member's name (a retrained member) does not inherit the old file's temperature.
    shutil.copy(folder / "soft.h5", tmp_path / "soft.h5")
    shutil.copy(folder / "oracle.h5", folder / "soft.h5")
    with pytest.warns(UserWarning, match=r"other files of the same name \(soft.h5: their contents changed"):
        assert not Ensemble.from_dir(folder).is_calibrated
    shutil.copy(tmp_path / "soft.h5", folder / "soft.h5")

    shutil.copy(folder / "rand.h5", folder / "rand2.h5")
    capsys.readouterr()
    assert run_cli(tiny_csv, folder, tmp_path / "dropped", "--bootstrap", "0") == 0
    printed = capsys.readouterr().out
    assert "fitted for other members (members it has no temperature for: rand2.h5)" in printed
    assert "--calibrate PublicTest" in printed
    assert "temperature_scaling" not in json.loads((tmp_path / "dropped" / "report.json").read_text())
    with pytest.warns(UserWarning, match="fitted for other members"):
        assert not Ensemble.from_dir(folder).is_calibrated


def test_cli_worst_shows_the_most_confidently_wrong_faces_first(models, tmp_path, monkeypatch):
    """Check that --worst 3 puts on the sheet exactly the 3 wrong faces the ensemble was surest of, surest
    first: with one soft band-reading member and a flat background, a brighter band is a surer prediction."""
    from fer_keras import plots as report

    # (label, band shown, band brightness): 7 right faces (the surest of all), then 4 wrong ones.
    rows = [(k, k, 250) for k in range(7)] + [(0, 2, 130), (4, 6, 250), (5, 3, 170), (1, 5, 210)]
    faces = []
    lines = ["emotion,pixels,Usage"] + [f"{k},{' '.join(['10'] * 48 * 48)},Training" for k in range(7)]
    for label, shown, brightness in rows:
        face = np.full((48, 48), 10)
        face[shown * 6: shown * 6 + 6] = brightness
        faces.append(face)
        lines.append(f"{label},{' '.join(map(str, face.ravel()))},PrivateTest")
    csv_path = tmp_path / "worst.csv"
    csv_path.write_text("\n".join(lines) + "\n")
    member = tmp_path / "member"
    member.mkdir()
    (member / "soft.h5").write_bytes((models / "soft.h5").read_bytes())

    sheets, original = [], report.faces_sheet_figure

    def spy(sheet_faces, captions, **kwargs):
        sheets.append((np.asarray(sheet_faces), list(captions)))
        return original(sheet_faces, captions, **kwargs)

    monkeypatch.setattr(report, "faces_sheet_figure", spy)
    assert run_cli(csv_path, member, tmp_path / "r", "--worst", "3", "--bootstrap", "0") == 0
    (sheet_faces, captions), = sheets
    assert [c.split()[0] for c in captions] == ["#8", "#10", "#9"]  # brightness 250, 210, 170; not 130
    assert [c.split("\n")[0] for c in captions] == ["#8 true sad", "#10 true disgust", "#9 true surprise"]
    assert [c.split("\n")[1].split()[:2] for c in captions] == [["pred", "neutral"], ["pred", "surprise"],
                                                                ["pred", "happy"]]
    confidences = [float(c.split()[-1]) for c in captions]
    assert confidences == sorted(confidences, reverse=True) and confidences[0] > confidences[-1]
    np.testing.assert_array_equal(sheet_faces.reshape(3, 48, 48), np.array(faces)[[8, 10, 9]])
    assert (tmp_path / "r" / "worst.png").is_file()


def test_a_set_aside_distilled_member_gets_its_own_temperature(tiny_csv, models, tmp_path, capsys):
    """Check that --calibrate also fits the folder's distilled member, which the ensemble sets aside
    but the webcam runs alone: temperatures.json keeps it under "alone" (the ensemble's temperatures
    unchanged), and that member alone is then calibrated by it, by the fit on its own probabilities."""
    import shutil

    import keras
    from keras import layers

    folder = tmp_path / "shipped"
    shutil.copytree(models, folder)
    kernel = np.zeros((48 * 48, 7), np.float32)
    for c in range(7):
        kernel[c * 6 * 48:(c * 6 + 6) * 48, c] = 0.01 * 0.0025  # the under-confident oracle: T < 1 sharpens it
    student = keras.Sequential([keras.Input((48, 48, 1)), layers.Flatten(), layers.Dense(7, activation="softmax")])
    student.layers[-1].set_weights([kernel, np.zeros(7, np.float32)])
    model_io.save_model(student, folder / "student.h5", {"teacher": {"members": ["oracle.h5", "soft.h5"]}})

    fitted = tmp_path / "fit"
    assert run_cli(tiny_csv, folder, fitted, "--calibrate", "PublicTest", "--bootstrap", "0") == 0
    assert "temperature of student.h5 alone" in capsys.readouterr().out
    written = json.loads((fitted / "temperatures.json").read_text())
    assert set(written["temperatures"]) == {"oracle.h5", "soft.h5", "rand.h5"}
    (member,), _ = ens.load_members([str(folder / "student.h5")])
    public = data.load_fer2013(tiny_csv)["PublicTest"]
    own = calibration.fit_temperature(member.predict_proba(public.x), public.y)
    assert written["alone"] == {"student.h5": pytest.approx(own)} and own < 1
    assert "student.h5" in written["sha256"]

    shutil.copy(fitted / "temperatures.json", folder / "temperatures.json")
    with pytest.warns(UserWarning, match="skipped student.h5: distilled"):
        assert Ensemble.from_dir(folder).is_calibrated  # the student is set aside; the file names the rest
    temps, note = ens.folder_temperatures(folder, [member])
    assert temps == pytest.approx([own]) and "student.h5's own temperature (fitted alone)" in note
