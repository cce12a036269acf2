"""Pack a FER2013-layout CSV into a small lossless ``.npz.xz`` file that every ``--csv`` reads.

    python preprocess/pack_dataset.py ../shared/data/fer2013/fer2013_train_publictest.csv.gz .gpu/fer2013.npz.xz
"""

import sys
from pathlib import Path

# Runs from a checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fer_keras.cli.preprocess_cli import pack_dataset_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(pack_dataset_main())
