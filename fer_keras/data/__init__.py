"""The data stage: every dataset read into one structure, and the files made from pictures.

Every reader returns a :class:`FERDataset` whose ``splits`` are keyed by
FER2013 Usage (``Training``, ``PublicTest``, ``PrivateTest``), each a
:class:`Split` with ``x`` uint8 ``(N, 48, 48, 1)`` and ``y`` int64 in FER2013
label order, so a model trained on one dataset reads the others unchanged:

- :func:`load_fer2013`: the Kaggle CSV (``.csv``, ``.csv.gz`` or a packed
  ``.npz.xz``), validated row by row and cached;
- :func:`load_image_folder`: ``<split>/<class>/*.jpg`` trees;
- :func:`load_ferplus`, :func:`load_rafdb`, :func:`load_affectnet`,
  :func:`load_ckplus`: the other datasets in their official layouts, with
  their labels mapped onto FER2013's (:mod:`fer_keras.data.labels`);
- :func:`load_dataset`: any of them by name.

The readers of other datasets return a :class:`DatasetInfo`, which adds
``dropped`` (``{reason: count}`` of what was left out on purpose: removed
images, ties, contempt with 7 classes, AffectNet's None/Uncertain/No-Face ...)
and ``files`` (per split, where each face came from). ``num_classes=8`` keeps
contempt as index 7; FER+ in probability mode gives :class:`SoftSplit` s.
Splits: FER+ keeps FER2013's Usage; RAF-DB ``train_*`` → Training, ``test_*``
→ PublicTest; AffectNet ``train`` → Training, ``val`` → PublicTest, ``test``
→ PrivateTest; CK+ holds out one of its subject-independent folds as
PublicTest. Data without any split is split 80/10/10 per class, seeded.

Reading pictures: :func:`read_grey` is the one reader of pictures (EXIF
orientation, 16-bit, transparency), :func:`read_face` makes one a face.
Making data: :func:`resize_folder` turns pictures into 48x48 grey faces,
:func:`csv_to_images` and :func:`images_to_csv` convert between the two
layouts losslessly, :func:`pack_dataset` packs a CSV small, and
:func:`synthetic_faces` generates a learnable stand-in for offline runs.

This stage imports only the shared modules at the top of ``fer_keras``
(constants, errors, io_utils); it knows nothing of models or training.
"""

from fer_keras.constants import CLASS_NAMES_8
from fer_keras.data.affectnet import load_affectnet
from fer_keras.data.ckplus import load_ckplus
from fer_keras.data.convert import csv_lines, csv_to_images, images_to_csv, pack_dataset, write_csv
from fer_keras.data.dataset import (DatasetInfo, FERDataset, SoftSplit, Split, balanced, seen_in, soft_targets,
                                    stratified_split)
from fer_keras.data.dispatch import DATASETS, load_dataset
from fer_keras.data.fer2013 import load_fer2013, require_file
from fer_keras.data.ferplus import load_ferplus
from fer_keras.data.folders import (FOLDER_SPLITS, IMAGE_EXTENSIONS, class_index, find_pictures, folder_layout,
                                    image_subfolders, load_image_folder)
from fer_keras.data.images import read_face, read_grey
from fer_keras.data.labels import (AFFECTNET_LABEL_MAP, CKPLUS_LABEL_MAP, CONTEMPT, FERPLUS_LABEL_MAP, NAME_LABEL_MAP,
                                   RAFDB_LABEL_MAP, label_map_table)
from fer_keras.data.packed import PACKED_SUFFIX, load_packed, save_packed
from fer_keras.data.pictures import FaceFinder, prepare_face, resize_folder
from fer_keras.data.rafdb import load_rafdb
from fer_keras.data.synthetic import synthetic_faces, write_synthetic_csv

__all__ = [
    # === Structures ===
    "DatasetInfo", "FERDataset", "SoftSplit", "Split", "balanced", "seen_in", "soft_targets", "stratified_split",
    # === Readers ===
    "DATASETS", "load_dataset", "load_fer2013", "load_image_folder", "load_ferplus", "load_rafdb", "load_affectnet",
    "load_ckplus", "load_packed", "require_file",
    # === Image folders and labels ===
    "FOLDER_SPLITS", "IMAGE_EXTENSIONS", "class_index", "find_pictures", "folder_layout", "image_subfolders",
    "read_face", "read_grey", "AFFECTNET_LABEL_MAP", "CKPLUS_LABEL_MAP", "CLASS_NAMES_8", "CONTEMPT",
    "FERPLUS_LABEL_MAP", "NAME_LABEL_MAP", "RAFDB_LABEL_MAP", "label_map_table",
    # === Making data ===
    "FaceFinder", "PACKED_SUFFIX", "csv_lines", "csv_to_images", "images_to_csv", "pack_dataset", "prepare_face",
    "resize_folder", "save_packed", "synthetic_faces", "write_csv", "write_synthetic_csv",
]
