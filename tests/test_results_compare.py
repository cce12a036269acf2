"""results/compare.py: report.json files → one Markdown table and one bar chart."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from fer_keras.errors import FerError

SCRIPT = Path(__file__).resolve().parents[1] / "results" / "compare.py"


def load_compare():
    spec = importlib.util.spec_from_file_location("results_compare", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


compare = load_compare()


def member(file, accuracy, macro_f1=0.5, skipped=None):
    if skipped:
        return {"file": file, "accuracy": None, "macro_f1": None, "weighted_f1": None, "skipped": skipped}
    return {"file": file, "accuracy": accuracy, "macro_f1": macro_f1, "weighted_f1": accuracy, "skipped": None}


def write_report(folder, *, csv=None, images=None, usage="PrivateTest", members=(), ensemble=0.7, method="mean",
                 tta=False):
    folder.mkdir(parents=True)
    doc = {"csv": csv, "usage": usage, "n_samples": 100, "classes": ["angry"], "method": method, "tta": tta,
           "ensemble": {"accuracy": ensemble, "macro_f1": ensemble - 0.1, "weighted_f1": ensemble},
           "members": list(members)}
    if images:
        doc["images"] = images
    path = folder / "report.json"
    path.write_text(json.dumps(doc))
    return path


@pytest.fixture
def two_reports(tmp_path):
    fer = write_report(tmp_path / "reports" / "fer", csv="data/fer2013.csv.gz",
                       members=[member("models/model_1.h5", 0.65), member("models/model_2.keras", 0.62)],
                       ensemble=0.68)
    raf = write_report(tmp_path / "reports" / "raf", csv=None, images="data/rafdb_test/", usage="PublicTest",
                       members=[member("models/model_1.h5", 0.55),
                                member("models/model_2.keras", None, skipped="expects 3 channels")],
                       ensemble=0.57, tta=True)
    return fer, raf


def test_collect_arranges_models_by_dataset(two_reports):
    """Check that members become rows (ensembles last) and each report a column named after its data."""
    results = compare.collect([str(p) for p in two_reports])
    assert results.datasets == ["fer2013 PrivateTest", "rafdb_test PublicTest"]
    assert results.models == ["model_1.h5", "model_2.keras", "ensemble (mean)", "ensemble (mean, TTA)"]
    assert results.value("model_1.h5", "rafdb_test PublicTest") == 0.55
    assert results.has("model_2.keras", "rafdb_test PublicTest")
    assert results.value("model_2.keras", "rafdb_test PublicTest") is None  # skipped
    assert not results.has("ensemble (mean)", "rafdb_test PublicTest")
    assert results.sources[1]["skipped"] == ["model_2.keras: expects 3 channels"]


def test_main_writes_table_and_chart(two_reports, tmp_path, capsys):
    """Check that the script writes results.md (bold best, blank, skipped) and a PNG chart."""
    out = tmp_path / "out"
    fer, raf = two_reports
    code = compare.main([f"{fer}=FER2013", str(raf), "--name", f"{raf}=RAF-DB", "--out", str(out)])
    assert code == 0
    md = (out / "results.md").read_text()
    assert "| model | FER2013 | RAF-DB |" in md
    assert "| model_1.h5 | 0.6500 | 0.5500 |" in md
    assert "| model_2.keras | 0.6200 | skipped |" in md
    assert "| ensemble (mean) | **0.6800** |  |" in md
    assert "| ensemble (mean, TTA) |  | **0.5700** |" in md
    assert "- RAF-DB: model_2.keras: expects 3 channels" in md
    assert (out / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.glob(".tmp-*"))
    assert "model_1.h5" in capsys.readouterr().out


def test_macro_f1_metric_and_duplicate_columns(two_reports):
    """Check that --metric picks the figure and two reports on one dataset get distinct columns."""
    fer, _ = two_reports
    results = compare.collect([fer, fer], metric="macro_f1")
    assert results.datasets == ["fer2013 PrivateTest", "fer2013 PrivateTest #2"]
    assert results.value("ensemble (mean)", "fer2013 PrivateTest #2") == pytest.approx(0.58)


def test_same_file_name_in_two_folders(tmp_path):
    """Check that two different member files with one name get rows named by their folder."""
    a = write_report(tmp_path / "a", csv="fer2013.csv", members=[member("runs/a/model_1.h5", 0.6)])
    b = write_report(tmp_path / "b", csv="ferplus.csv", members=[member("runs/b/model_1.h5", 0.7)])
    results = compare.collect([a, b])
    assert results.models[:2] == ["a/model_1.h5", "b/model_1.h5"]


def test_bad_reports(tmp_path, capsys):
    """Check that a missing file or a JSON that is not a report is a one-line error, exit code 2."""
    with pytest.raises(FerError, match="cannot read"):
        compare.collect([tmp_path / "nope.json"])
    other = tmp_path / "other.json"
    other.write_text('{"weights": {}}')
    with pytest.raises(FerError, match="not an ensemble report.json"):
        compare.collect([other])
    assert compare.main([str(other), "--out", str(tmp_path / "out")]) == 2
    assert "error:" in capsys.readouterr().err
