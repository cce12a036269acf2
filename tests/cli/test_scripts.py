"""Every top-level script explains itself with --help and exits 0."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = ["train.py", "train_vgg.py", "train_inception.py", "train_vgg_transfer_learning.py",
           "test_ensemble_model.py", "predict.py", "serve.py", "preprocess/data_resize.py",
           "preprocess/csv_to_images.py", "preprocess/images_to_csv.py"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_help(script):
    """Check that the script prints its options with --help (no traceback, exit 0)."""
    out = subprocess.run([sys.executable, str(REPO / script), "--help"], capture_output=True, text=True,
                         cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "usage:" in out.stdout and "--" in out.stdout


@pytest.mark.parametrize("script", ["train.py", "train_vgg.py", "train_inception.py", "train_vgg_transfer_learning.py"])
def test_training_scripts_document_the_recipe_flags(script):
    """Check that every training script offers the common recipe flags."""
    out = subprocess.run([sys.executable, str(REPO / script), "--help"], capture_output=True, text=True,
                         cwd=REPO, timeout=120).stdout
    for flag in ("--csv", "--epochs", "--lr", "--optimizer", "--schedule", "--augment", "--precision",
                 "--time-budget", "--init", "--weights", "--models-dir", "--run-dir", "--distribute"):
        assert flag in out, flag
