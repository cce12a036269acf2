"""Turn a folder of pictures into 48x48 grey FER2013-style faces.

Any size, colour or grey, jpg/png/...; flat, <class>/ or <split>/<class>/.
Writes an image tree (--format folder) or a FER2013-layout CSV (--format csv),
optionally cropped to the largest face (--detect-faces). Examples: --help.
"""

import sys
from pathlib import Path

# Runs from a checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fer_keras.cli.preprocess_cli import data_resize_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(data_resize_main())
