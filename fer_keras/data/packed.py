"""A small, lossless file of a parsed dataset, for machines that get a size-capped repo.

:func:`save_packed` writes it (``preprocess/pack_dataset.py``);
:func:`fer_keras.data.load_fer2013` reads it wherever a CSV is accepted.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from fer_keras.data.dataset import FERDataset, Split
from fer_keras.errors import DataError
from fer_keras.io_utils import atomic_path

PACKED_SUFFIX = ".npz.xz"


def save_packed(dataset, path):
    """Write ``dataset`` as a packed file that :func:`load_fer2013` reads.

    Why: a GPU machine that only receives a size-capped copy of the repo
    needs the data small and lossless. Each image row is stored as
    differences between neighbouring pixels, which LZMA squeezes far better
    than raw pixels: FER2013 Training + PublicTest, 85 MB as the gzipped CSV
    and 74 MB as raw pixels, packs into about 54 MB. The source CSV's checksum
    travels along, so models trained from the packed file record the same
    dataset identity.
    """
    import lzma

    arrays = {"checksum": np.array(dataset.checksum), "usages": np.array(list(dataset.splits))}
    for name, split in dataset.splits.items():
        arrays[f"dx_{name}"] = np.diff(split.x, axis=2, prepend=np.uint8(0))  # uint8 wraps around: lossless
        arrays[f"y_{name}"] = split.y
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    with atomic_path(Path(path)) as tmp:
        Path(tmp).write_bytes(lzma.compress(buffer.getvalue(), preset=9 | lzma.PRESET_EXTREME))


def load_packed(path):
    """Read a file written by :func:`save_packed` back into a :class:`FERDataset`."""
    import lzma

    try:
        with np.load(io.BytesIO(lzma.decompress(Path(path).read_bytes())), allow_pickle=False) as npz:
            splits = {str(n): Split(np.cumsum(npz[f"dx_{n}"], axis=2, dtype=np.uint8), npz[f"y_{n}"])
                      for n in npz["usages"]}
            checksum = str(npz["checksum"])
    except (lzma.LZMAError, OSError, KeyError, ValueError) as exc:
        raise DataError(f"{path}: not a packed fer_keras dataset ({exc})") from None
    return FERDataset(splits=splits, source=str(path), checksum=checksum)
