"""Model cards are generated from the files' metadata and the ensemble report."""

import json

from fer_keras import models
from fer_keras.cli import model_card
from fer_keras.models import model_io


def test_card_lists_each_member_with_its_command_and_scores(tmp_path):
    """Check that the card shows each file's architecture, reproducing command and stored scores."""
    model = models.build("vgg16", width=0.125)
    meta = {"recipe": {"model": "vgg16", "model_options": {"width": 0.125}, "csv": "fer.csv.gz",
                       "epochs": 60, "time_budget": 100.0, "lr": 0.03},
            "validation": {"split": "PublicTest", "accuracy": 0.6543, "macro_f1": 0.612},
            "epochs_run": 37, "best_epoch": 35, "train_seconds": 5940.0}
    model_io.save_model(model, tmp_path / "model_1.h5", meta)
    report = {"usage": "PublicTest", "n_samples": 3589, "csv": "fer.csv.gz", "method": "mean", "tta": False,
              "members": [{"file": "models/model_1.h5", "accuracy": 0.6543, "macro_f1": 0.612,
                           "weighted_f1": 0.65, "skipped": None}],
              "ensemble": {"accuracy": 0.6543, "macro_f1": 0.612, "weighted_f1": 0.65,
                           "per_class": {"angry": {"f1": 0.5}}}}
    (tmp_path / "report.json").write_text(json.dumps(report))
    assert model_card.main(["--models-dir", str(tmp_path), "--report", str(tmp_path / "report.json")]) == 0
    card = (tmp_path / "README.md").read_text()
    assert "`model_1.h5` — vgg16" in card
    assert "python train_vgg.py --csv fer.csv.gz --time-budget 100.0 -o width=0.125" in card
    assert "65.43%" in card and "0.612" in card and "37 (best: 35); the 100-min budget cut it from `--epochs 60`" in card
    assert "**ensemble** | **65.43%**" in card


def test_card_names_the_teacher_of_a_distilled_member(tmp_path):
    """Check that a distilled member's card names its teacher members, alpha and T, and the command has --teacher."""
    model = models.build("vgg16", width=0.125)
    meta = {"recipe": {"model": "vgg16", "model_options": {"width": 0.125}, "csv": "fer.csv.gz",
                       "teacher": "models", "distill_alpha": 0.7, "distill_temperature": 2.0},
            "teacher": {"members": ["model_1.h5", "model_2.h5"], "tta": True},
            "validation": {"split": "PublicTest", "accuracy": 0.6, "macro_f1": 0.5}}
    model_io.save_model(model, tmp_path / "model_3.h5", meta)
    for teacher in ("model_1.h5", "model_2.h5"):
        model_io.save_model(model, tmp_path / teacher, {})
    card = model_card.render(tmp_path)
    assert "| distilled from | model_1.h5, model_2.h5 (mean softmax, flip TTA; alpha 0.7, T 2.0) |" in card
    assert "--teacher models" in card

    (tmp_path / "model_2.h5").unlink()  # a teacher replaced after the student learnt from it
    card = model_card.render(tmp_path)
    assert f"| distilled from | model_1.h5, model_2.h5 (since removed from {tmp_path.name}/) (mean softmax" in card


def test_card_shows_what_a_fine_tuned_member_started_from(tmp_path):
    """Check that an --init member's card names its parent's file, command, epochs and score, and the total wall time."""
    model = models.build("vgg16", width=0.125)
    parent = {"file": "model_4.h5", "path": "models/model_4.h5", "sha256": "ab" * 32, "architecture": "resemotenet",
              "recipe": {"model": "resemotenet", "model_options": {"width": 0.25}, "augment": "light"},
              "epochs_run": 72, "train_seconds": 4500.0,
              "validation": {"split": "PublicTest", "accuracy": 0.6481, "macro_f1": 0.632}}
    meta = {"architecture": "resemotenet", "init_from": parent, "train_seconds": 1500.0,
            "precision_trained": "float32",
            "recipe": {"model": "resemotenet", "init": "models/model_4.h5", "augment": "medium", "lr": 0.0003},
            "validation": {"split": "PublicTest", "accuracy": 0.655, "macro_f1": 0.64}}
    model_io.save_model(model, tmp_path / "model_3.h5", meta)
    card = model_card.render(tmp_path)
    assert "--init models/model_4.h5" in card
    assert (f"| started from | `models/model_4.h5 (not in {tmp_path.name}/ now)`, sha256 `abababababab…`: "
            "`python train.py --model resemotenet --augment light -o width=0.25`, 72 epochs, 75 min, PublicTest 64.81%; "
            "then the recipe above |") in card
    assert "| wall time | 25 min, float32 (100 min with the stages it started from) |" in card

    model_io.save_model(model, tmp_path / "model_4.h5", {})
    assert "| started from | `model_4.h5`, sha256" in model_card.render(tmp_path)


def test_card_notes_the_budget_only_when_it_cut_the_planned_epochs():
    """Check that a run that finished its --epochs inside the budget gets no budget note."""
    recipe = {"epochs": 60, "time_budget": 100.0}
    assert model_card._budget_note({"recipe": recipe, "epochs_run": 60}) == ""
    assert model_card._budget_note({"recipe": {"epochs": 60}, "epochs_run": 20}) == ""
    assert "cut it from `--epochs 60`" in model_card._budget_note({"recipe": recipe, "epochs_run": 59})


def test_card_gives_intervals_and_mcnemar_when_the_report_has_them(tmp_path):
    """Check that bootstrap intervals and the member-vs-ensemble McNemar test reach the card."""
    model_io.save_model(models.build("vgg16", width=0.125), tmp_path / "model_1.h5", {})
    member = {"file": "models/model_1.h5", "accuracy": 0.6534, "macro_f1": 0.6141, "weighted_f1": 0.6513,
              "skipped": None, "ci95": {"accuracy": [0.6381, 0.6687], "macro_f1": [0.5875, 0.6355]},
              "mcnemar_vs_ensemble": {"b": 117, "c": 146, "p_value": 0.0841}}
    report = {"usage": "PublicTest", "n_samples": 3589, "members": [member], "bootstrap": {"resamples": 1000},
              "ensemble": {"accuracy": 0.6615, "macro_f1": 0.6109, "weighted_f1": 0.6572, "per_class": {},
                           "ci95": {"accuracy": [0.6467, 0.6776], "macro_f1": [0.5852, 0.6333]}}}
    card = model_card.render(tmp_path, [report])
    assert "| model_1.h5 | 65.34% [63.81, 66.87] | 0.614 [0.588, 0.635] | 0.651 | p = 0.0841 (117 vs 146 faces) |" in card
    assert "**66.15% [64.67, 67.76]**" in card and "1000 seeded bootstrap resamples" in card


def test_card_gives_the_score_without_the_faces_training_also_holds(tmp_path):
    """Check that the card says how many scored faces are also in Training and the ensemble's score on the rest."""
    model_io.save_model(models.build("vgg16", width=0.125), tmp_path / "model_1.h5", {})
    scores = {"accuracy": 0.7113, "macro_f1": 0.679, "weighted_f1": 0.709, "per_class": {}}
    report = {"usage": "PublicTest", "n_samples": 3589, "ensemble": scores,
              "members": [{"file": "model_1.h5", "skipped": None, **scores}],
              "overlap": {"reference": "Training", "faces": 280, "rest": 3309, "members": {},
                          "ensemble": {"accuracy_seen": 0.9107, "accuracy_rest": 0.6945, "macro_f1_rest": 0.661,
                                       "ci95_rest": {"accuracy": [0.6787, 0.7102], "macro_f1": [0.64, 0.68]}}}}
    card = model_card.render(tmp_path, [report])
    assert ("280 of the 3589 PublicTest faces (7.8%) are also, pixel for pixel, in Training; the ensemble gets "
            "91.1% of them right. On the other 3309: **69.45% [67.87, 71.02]**, macro-F1 0.661 [0.640, 0.680].") in card
    report["overlap"]["faces"] = 0
    assert "pixel for pixel" not in model_card.render(tmp_path, [report])


def test_card_has_one_ensemble_section_per_report(tmp_path):
    """Check that a plain and a flip-TTA report each get their own section, in the order given."""
    model_io.save_model(models.build("vgg16", width=0.125), tmp_path / "model_1.h5", {})

    def report(accuracy, tta):
        scores = {"accuracy": accuracy, "macro_f1": 0.6, "weighted_f1": 0.6, "per_class": {}}
        return {"usage": "PublicTest", "n_samples": 3589, "tta": tta, "ensemble": scores,
                "members": [{"file": "model_1.h5", "skipped": None, **scores}]}

    for name, (accuracy, tta) in {"plain.json": (0.6815, False), "tta.json": (0.6907, True)}.items():
        (tmp_path / name).write_text(json.dumps(report(accuracy, tta)))
    assert model_card.main(["--models-dir", str(tmp_path), "--report", str(tmp_path / "plain.json"),
                            "--report", str(tmp_path / "tta.json")]) == 0
    card = (tmp_path / "README.md").read_text()
    plain, tta = card.index("## The ensemble\n"), card.index("## The ensemble with flip TTA\n")
    assert plain < tta
    assert card.index("**68.15%**") < tta < card.index("**69.07%**")


def _member_report(accuracy, macro_f1, *, usage="PublicTest", tta=False):
    scores = {"accuracy": accuracy, "macro_f1": macro_f1, "weighted_f1": 0.6, "per_class": {}}
    return {"usage": usage, "n_samples": 3589, "tta": tta, "dataset": "fer2013", "ensemble": scores,
            "members": [{"file": "models/model_1.h5", "skipped": None, **scores}]}


def test_card_refuses_two_figures_for_one_file(tmp_path, capsys):
    """Check that a file whose metadata and ensemble table give different scores for the same split and
    scoring gets no card (exit 2, both figures named), while TTA and other-split tables are not compared."""
    meta = {"dataset": {"name": "fer2013"}, "validation": {"split": "PublicTest", "accuracy": 0.65422,
                                                           "macro_f1": 0.5953}}
    model_io.save_model(models.build("vgg16", width=0.125), tmp_path / "model_1.h5", meta)
    agreeing = _member_report(0.654201, 0.59531)  # equal as printed: 65.42%, 0.595
    others = [_member_report(0.6643, 0.605, tta=True), _member_report(0.61, 0.58, usage="PrivateTest")]
    assert "| PublicTest accuracy | 65.42% |" in model_card.render(tmp_path, [agreeing, *others])

    (tmp_path / "stale.json").write_text(json.dumps(_member_report(0.65339, 0.5978)))
    code = model_card.main(["--models-dir", str(tmp_path), "--report", str(tmp_path / "stale.json")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and not (tmp_path / "README.md").exists()
    assert ("error: two figures for one file (model_1.h5: PublicTest 65.42%, macro-F1 0.595 in its metadata but "
            "65.34%, 0.598 in the ensemble report)") in err


def test_rewritten_metadata_leaves_the_weights_and_reaches_the_card(tmp_path):
    """Check that write_metadata replaces an .h5's and a .keras's metadata (one entry, no temporary file left)
    with the weights untouched, so a rescored figure reaches the card."""
    import zipfile

    import numpy as np

    model = models.build("vgg16", width=0.125)
    for name in ("model_1.h5", "model_2.keras"):
        path = tmp_path / name
        model_io.save_model(model, path, {"validation": {"split": "PublicTest", "accuracy": 0.6542, "macro_f1": 0.6}})
        before = model_io.load_model(path).get_weights()
        meta = model_io.read_metadata(path)
        meta["validation"]["accuracy"] = 0.6534
        model_io.write_metadata(path, meta)
        assert model_io.read_metadata(path) == meta
        after = model_io.load_model(path).get_weights()
        assert all(np.array_equal(a, b) for a, b in zip(before, after)) and len(before) == len(after)
    with zipfile.ZipFile(tmp_path / "model_2.keras") as zf:
        assert zf.namelist().count(model_io.KERAS_ZIP_ENTRY) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model_1.h5", "model_2.keras"]
    assert model_card.render(tmp_path).count("| PublicTest accuracy | 65.34% |") == 2


def test_shipped_card_is_what_the_generator_writes():
    """Check that models/README.md is the generator's output for the shipped files and reports (no hand edits),
    which it only writes when no file has two figures."""
    from pathlib import Path

    shipped = Path(__file__).resolve().parents[2] / "models"
    reports = [json.loads((shipped / name).read_text()) for name in ("ensemble_report.json", "ensemble_report_tta.json")]
    assert model_card.render(shipped, reports) == (shipped / "README.md").read_text()


def test_card_says_where_the_default_calibration_was_fitted(tmp_path):
    """Check that a temperatures.json beside the members gets a Calibration section naming the split it was
    fitted on, the shared factor, every temperature and the ECE before/after; none without the file."""
    from pathlib import Path

    assert model_card.calibration_section(tmp_path) == []
    (tmp_path / "temperatures.json").write_text(json.dumps({
        "temperatures": {"model_1.h5": 0.81, "model_2.h5": 0.77}, "shared_scale": 0.8,
        "fitted_on": {"usage": "PublicTest", "n_samples": 3589, "tta": "none"},
        "ece": {"before": 0.072, "after": 0.012, "held_out_before": 0.073, "held_out_after": 0.031}}))
    text = "\n".join(model_card.calibration_section(Path(tmp_path)))
    assert "fitted on **PublicTest** (3589 faces" in text and "(0.800)" in text
    assert "model_1.h5 0.810, model_2.h5 0.770" in text
    assert "0.072 before, 0.012 after" in text and "0.073 → 0.031" in text
    assert "sets aside" not in text
    doc = json.loads((tmp_path / "temperatures.json").read_text())
    (tmp_path / "temperatures.json").write_text(json.dumps({**doc, "alone": {"model_3.h5": 0.41}}))
    assert "the ensemble sets aside (the webcam runs one alone), fitted alone on the same faces: model_3.h5 0.410" \
        in "\n".join(model_card.calibration_section(Path(tmp_path)))
