"""The shipped models/ folder: every file loads, the README's `python predict.py` works, and the
ensemble's figures in models/ensemble_report.json are what the files give today.

Nothing here hard-codes a member list or a figure: the tests read models/ and the report, so a new
member, retrained file or changed recipe (TTA, weights, calibration) is checked against whatever the
report says it was made with. The re-score needs the shared FER2013 CSV and is skipped without it.
"""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fer_keras.constants import CLASS_NAMES
from fer_keras.ensemble import Member, find_model_files

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "models"
REPORT = MODELS / "ensemble_report.json"
SHIPPED = find_model_files(MODELS) if MODELS.is_dir() else []

# Options of test_ensemble_model.py that cannot change a prediction: not replayed from the report.
NOT_REPLAYED = {"out", "overwrite", "quiet", "bootstrap", "seed", "worst", "batch_size"}


def read_report():
    return json.loads(REPORT.read_text())


def test_models_folder_ships_models_and_a_report():
    assert SHIPPED, "models/ holds no *.h5 / *.keras file"
    assert REPORT.is_file()


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_every_shipped_file_is_a_7_way_softmax_on_raw_faces(path):
    """Check that each shipped file loads in safe mode and gives 7 probabilities per raw 48x48x1 face
    (uint8 0-255, what the data loader yields), with no adapter guess or applied softmax."""
    member = Member.from_file(path, safe_mode=True)
    assert member.num_classes == 7
    assert member.notes == [], member.notes  # no assumed input scale, no logits turned into probabilities
    faces = np.random.default_rng(0).integers(0, 256, (5, 48, 48, 1), dtype=np.uint8)
    raw = np.asarray(member.model.predict_on_batch(member.adapter(faces)), dtype=np.float64).reshape(5, -1)
    assert raw.shape == (5, 7)
    assert (raw >= 0).all() and np.allclose(raw.sum(axis=1), 1, atol=1e-4)
    probs = member.predict_proba(faces)
    assert probs.shape == (5, 7) and np.allclose(probs.sum(axis=1), 1, atol=1e-4)


def test_readme_predict_runs_on_the_bundled_photo(tmp_path):
    """Check that the README's first command, `python predict.py` (shipped models, bundled photo), exits 0,
    prints its table and writes at least one face row; --out keeps the repository clean."""
    out_dir = tmp_path / "predictions"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "-1"}
    result = subprocess.run([sys.executable, "predict.py", "--out", str(out_dir), "--quiet"], cwd=REPO,
                            capture_output=True, text=True, timeout=900, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(out_dir / "predictions.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) >= 1
    assert all(row["label"] in CLASS_NAMES for row in rows), rows
    for row in rows:
        assert sum(float(row[f"p_{c}"]) for c in CLASS_NAMES) == pytest.approx(1, abs=1e-3)
    assert "grace_hopper" in result.stdout and rows[0]["label"] in result.stdout
    assert "face row(s)" in result.stdout


def replay_argv(options, parser):
    """The command line that gives ``options`` (a report's ``options``) back, default options left out."""
    argv = []
    for action in parser._actions:
        dest = action.dest
        if dest in NOT_REPLAYED or dest not in options or not action.option_strings:
            continue
        value = options[dest]
        if value == action.default or (value in (None, []) and action.default in (None, [])):
            continue
        flag = action.option_strings[-1] if action.option_strings[-1].startswith("--") else action.option_strings[0]
        if action.nargs == 0:  # store_true
            if value:
                argv.append(flag)
        elif isinstance(value, list):
            for item in value:
                argv += [flag, str(item)]
        else:
            argv += [flag, str(value)]
    return argv


def test_ensemble_report_matches_a_rescore(tmp_path, monkeypatch):
    """Check that re-running test_ensemble_model.py as models/ensemble_report.json records it (its CSV, split
    and options: members, TTA, method, weights, calibration) gives the report's members, accuracy and macro-F1."""
    from fer_keras.cli import ensemble_cli

    report = read_report()
    csv_path = (REPO / report["csv"]).resolve()
    if not csv_path.is_file():
        pytest.skip(f"{csv_path} absent (the shared FER2013 data)")
    options = dict(report.get("options", {}))
    options.update(csv=report["csv"], usage=report["usage"])
    argv = replay_argv(options, ensemble_cli.build_parser())
    assert "--csv" in argv and "--usage" in argv
    if report.get("tta"):
        assert "--tta" in argv

    monkeypatch.chdir(REPO)  # the report's paths (CSV, models/) are relative to the repository
    out = tmp_path / "rescore"
    code = ensemble_cli.main(argv + ["--out", str(out), "--quiet"], prog="test_ensemble_model.py")
    assert code == 0, argv
    fresh = json.loads((out / "report.json").read_text())

    assert fresh["n_samples"] == report["n_samples"]
    assert fresh["tta"] == report["tta"] and fresh["method"] == report["method"]
    assert [m["file"] for m in fresh["members"]] == [m["file"] for m in report["members"]]
    assert fresh["weights"] == pytest.approx(report["weights"], abs=1e-6)
    for key in ("accuracy", "macro_f1"):
        assert fresh["ensemble"][key] == pytest.approx(report["ensemble"][key], abs=1e-4), key
    for old, new in zip(report["members"], fresh["members"]):
        assert new["accuracy"] == pytest.approx(old["accuracy"], abs=1e-4), old["file"]
