"""Model zoo. ``build(name, **options)``, ``available()``; one module per family."""

from fer_keras.models._registry import available, build, builder, check_options, options_of, register
from fer_keras.models.preprocessing import input_crop
from fer_keras.models import vgg  # noqa: F401  (registers vgg16, vgg16_imagenet)
from fer_keras.models import inception  # noqa: F401  (registers inception_v1)
from fer_keras.models import resemotenet  # noqa: F401  (registers resemotenet)
from fer_keras.models import patt_lite  # noqa: F401  (registers patt_lite)
from fer_keras.models import residual_masking  # noqa: F401  (registers residual_masking_net)
from fer_keras.models import mini_xception  # noqa: F401  (registers mini_xception)

__all__ = ["available", "build", "builder", "check_options", "input_crop", "options_of", "register"]
