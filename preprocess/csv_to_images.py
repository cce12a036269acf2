"""Write a FER2013-layout CSV as grey PNGs: <Usage>/<class_name>/<Usage>_<i>.png.

Lossless: images_to_csv.py turns the tree back into the same arrays. Examples: --help.
"""

import sys
from pathlib import Path

# Runs from a checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fer_keras.cli.preprocess_cli import csv_to_images_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(csv_to_images_main())
