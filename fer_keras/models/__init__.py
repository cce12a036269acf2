"""The models stage: the zoo, and model files that describe themselves.

``build(name, **options)`` builds a registered family (one module per family,
each registered by name; ``available()`` lists them). Every model takes raw
48x48x1 grey faces (0..255) and carries its own preprocessing
(:mod:`~fer_keras.models.preprocessing`); :mod:`~fer_keras.models.model_io`
saves it atomically as float32 with its metadata inside, and loads it safely.

This stage imports only the shared modules at the top of ``fer_keras``: it
knows no dataset, training, ensemble or inference code.
"""

from fer_keras.models._registry import available, build, builder, check_options, options_of, register
from fer_keras.models.preprocessing import crop_margin, input_crop
from fer_keras.models import vgg  # noqa: F401  (registers vgg16, vgg16_imagenet)
from fer_keras.models import inception  # noqa: F401  (registers inception_v1)
from fer_keras.models import resemotenet  # noqa: F401  (registers resemotenet)
from fer_keras.models import patt_lite  # noqa: F401  (registers patt_lite)
from fer_keras.models import residual_masking  # noqa: F401  (registers residual_masking_net)
from fer_keras.models import mini_xception  # noqa: F401  (registers mini_xception)

__all__ = ["available", "build", "builder", "check_options", "crop_margin", "input_crop", "options_of", "register"]
