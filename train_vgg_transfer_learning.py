"""Fine-tune VGG-16 pretrained on ImageNet for FER2013, in two phases.

Phase 1 trains a new head on the frozen base (--head-lr 1e-3); phase 2
unfreezes the top conv block(s) at a tenth of it (--lr 1e-4), so the head's
first large gradients do not wreck the pretrained filters. The ImageNet
weights download on first use;
offline, pass a local copy with --weights PATH
(vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5).
"""

import sys

from fer_keras.cli.common import quiet_tensorflow

quiet_tensorflow()

from fer_keras.cli import train_cli  # noqa: E402

if __name__ == "__main__":
    sys.exit(train_cli.main(
        description=__doc__,
        defaults={"model": "vgg16_imagenet", "weights": "imagenet", "optimizer": "sgd", "lr": 1e-4,
                  "epochs": 20, "augment": "light", "warmup_steps": 0},
        two_phase=True,
    ))
