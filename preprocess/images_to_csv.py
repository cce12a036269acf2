"""Write an image tree (<split>/<class>/ or <class>/) as one FER2013-layout CSV.

The inverse of csv_to_images.py. Examples: --help.
"""

import sys
from pathlib import Path

# Runs from a checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fer_keras.cli.preprocess_cli import images_to_csv_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(images_to_csv_main())
