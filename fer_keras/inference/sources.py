"""What an input names: a picture, a folder of pictures, a video file or a webcam.
"""

from __future__ import annotations

import re
from pathlib import Path

from fer_keras.errors import FerError, InputError
from fer_keras.inference.faces import IMAGE_SUFFIXES
from fer_keras.io_utils import natural_key, not_a_folder

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp")
"""File name endings read as videos."""


def demo_image():
    """Path of the bundled demo picture: matplotlib's sample photo of Grace Hopper (no download)."""
    from matplotlib import cbook

    try:
        path = Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    except (OSError, ValueError):
        path = None
    if path is None or not path.is_file():
        raise FerError("matplotlib's sample picture grace_hopper.jpg is not installed here; name a picture of "
                       "your own as the input", parameter="input")
    return path


def parse_webcam(spec):
    """``"webcam"`` → 0, ``"webcam:1"`` → 1; None when ``spec`` names no webcam."""
    match = re.fullmatch(r"webcam(?::(\d+))?", str(spec).strip().lower())
    if not match:
        return None
    return int(match.group(1) or 0)


def input_kind(spec):
    """``webcam``, ``folder``, ``video`` or ``image`` for an input (a path or ``webcam[:N]``)."""
    if parse_webcam(spec) is not None and not Path(spec).exists():
        return "webcam"
    path = Path(spec)
    if path.is_dir():
        return "folder"
    if path.suffix.lower() in VIDEO_SUFFIXES:
        return "video"
    return "image"


def list_folder(folder, *, recursive=False):
    """``(images, others)``: image files and other files in ``folder`` (natural order; hidden files ignored)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(not_a_folder(folder))
    found = folder.rglob("*") if recursive else folder.iterdir()
    files = []
    for p in found:
        rel = p.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts) or not p.is_file():
            continue
        files.append(p)
    files.sort(key=lambda p: [natural_key(part) for part in p.relative_to(folder).parts])
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    others = [p for p in files if p.suffix.lower() not in IMAGE_SUFFIXES]
    return images, others
