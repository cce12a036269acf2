"""Train Inception-v1 (GoogLeNet-style modules sized for 48x48) from scratch on FER2013."""

import sys

from fer_keras.cli.common import quiet_tensorflow

quiet_tensorflow()

from fer_keras.cli import train_cli  # noqa: E402

if __name__ == "__main__":
    sys.exit(train_cli.main(
        description=__doc__,
        defaults={"model": "inception_v1"},
    ))
