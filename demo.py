"""A two-minute end-to-end run that needs no download and no dataset.

Writes a small generated FER2013-layout CSV, trains a slim VGG-16 on it for two
epochs (the full engine: tf.data, augmentation, validation, checkpointing) and
reads back the saved model's metadata.
"""

import sys
import tempfile
from pathlib import Path

from fer_keras.cli.common import quiet_tensorflow

quiet_tensorflow()

from fer_keras.cli import train_cli  # noqa: E402
from fer_keras.data import synthetic  # noqa: E402
from fer_keras.models import model_io  # noqa: E402

if __name__ == "__main__":
    work = Path(tempfile.mkdtemp(prefix="fer_keras_demo_"))
    csv = synthetic.write_synthetic_csv(work / "generated.csv")
    code = train_cli.main(["--csv", str(csv), "--epochs", "2", "--batch-size", "32", "-o", "width=0.25",
                           "--augment", "light", "--lr", "0.01", "--warmup-steps", "5",
                           "--models-dir", str(work / "models"), "--run-dir", str(work / "run"), "--quiet"],
                          prog="demo.py", defaults={"model": "vgg16"})
    if code == 0:
        meta = model_io.read_metadata(work / "models" / "model_1.h5")
        print(f"saved {work / 'models' / 'model_1.h5'}: {meta['architecture']} {meta['options']}, "
              f"validation accuracy {meta['validation']['accuracy']:.1%}; run folder {work / 'run'}")
    sys.exit(code)
