"""Train any registered model on FER2013: ``python train.py --model NAME --help``."""

import sys

from fer_keras.cli.common import quiet_tensorflow

quiet_tensorflow()

from fer_keras.cli import train_cli  # noqa: E402

if __name__ == "__main__":
    sys.exit(train_cli.main(
        description="Train a registered fer_keras model (vgg16, inception_v1, resemotenet, "
                    "patt_lite, residual_masking_net, ...) on a FER2013 CSV.",
        choose_model=True,
    ))
