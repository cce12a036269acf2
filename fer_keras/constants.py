"""The FER2013 contract, in one place.

Every other module imports these names instead of writing 48, 255 or the label
order again: a saved model, the CSV reader and the ensemble all agree because
they read the same constants.
"""

IMAGE_SIZE = 48
"""FER2013 faces are 48x48 pixels."""

CHANNELS = 1
"""FER2013 faces are grey."""

INPUT_SHAPE = (IMAGE_SIZE, IMAGE_SIZE, CHANNELS)
"""What every fer_keras model takes: raw grey faces, values 0..255."""

PIXELS_PER_IMAGE = IMAGE_SIZE * IMAGE_SIZE

PIXEL_MAX = 255

CLASS_NAMES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
"""FER2013 label order: the CSV's ``emotion`` column indexes this tuple."""

NUM_CLASSES = len(CLASS_NAMES)

CLASS_NAMES_8 = CLASS_NAMES + ("contempt",)
"""The 8-class order of FER+, AffectNet-8 and CK+: FER2013's 7, then contempt as index 7."""

USAGES = ("Training", "PublicTest", "PrivateTest")
"""FER2013 split names, in the order the Kaggle file lists them."""

TRAIN_SPLIT, VALIDATION_SPLIT, TEST_SPLIT = USAGES
"""Training trains, PublicTest selects, PrivateTest judges."""

TTA_MODES = ("none", "flip", "tencrop")
"""Test-time augmentation: none, the face and its mirror image, or the crop recipe's ten crops."""

INPUT_SCALES = ("0-255", "0-1", "-1-1")
"""How a model file may expect its pixels (for files not written by fer_keras)."""

# Common spellings of each class name in image-folder datasets (RAF-DB,
# AffectNet, the image release of FER2013), mapped onto FER2013 indices.
CLASS_ALIASES = {
    "angry": 0, "anger": 0,
    "disgust": 1, "disgusted": 1,
    "fear": 2, "fearful": 2, "scared": 2,
    "happy": 3, "happiness": 3, "joy": 3,
    "sad": 4, "sadness": 4,
    "surprise": 5, "surprised": 5,
    "neutral": 6, "calm": 6,
}
