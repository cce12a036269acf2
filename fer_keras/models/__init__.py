"""Model zoo. ``build(name, **options)``, ``available()``; one module per family."""

from fer_keras.models._registry import available, build, builder, options_of, register
from fer_keras.models import vgg  # noqa: F401  (registers vgg16, vgg16_imagenet)

__all__ = ["available", "build", "builder", "options_of", "register"]
