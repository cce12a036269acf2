"""Train VGG-16 (with batch norm) from scratch on FER2013.

Recipe: SGD + Nesterov, warm-up then cosine, label smoothing 0.1, strong
augmentation (the ingredients of the best from-scratch FER2013 results).
"""

import sys

from fer_keras.cli.common import quiet_tensorflow

quiet_tensorflow()

from fer_keras.cli import train_cli  # noqa: E402

if __name__ == "__main__":
    sys.exit(train_cli.main(
        description=__doc__,
        defaults={"model": "vgg16"},
    ))
