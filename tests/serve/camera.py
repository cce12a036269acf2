"""Pictures a fake camera shows: FER2013 faces (when the dataset is on this machine) or the bundled photo,
on 640x480 frames, and the YUV4MPEG2 (.y4m) file Chromium's ``--use-file-for-fake-video-capture`` plays.

Used by the browser tests and by ``benchmarks/bench_serve.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

FRAME_W, FRAME_H = 640, 480

FER2013_CSV = Path(os.environ.get("FER2013_DIR", Path(__file__).resolve().parents[3] / "shared" / "data" / "fer2013")
                   ) / "fer2013_train_publictest.csv.gz"
"""The real faces (``$FER2013_DIR``, else ``../shared/data/fer2013`` beside the repository); never copied."""


def photo_frame():
    """The bundled grace_hopper.jpg, letterboxed onto a 640x480 BGR frame (one face)."""
    import cv2

    from fer_keras.inference import demo_image, read_image

    image = read_image(demo_image())
    scale = min(FRAME_W / image.shape[1], FRAME_H / image.shape[0])
    resized = cv2.resize(image, (int(image.shape[1] * scale), int(image.shape[0] * scale)),
                         interpolation=cv2.INTER_AREA)
    frame = np.full((FRAME_H, FRAME_W, 3), 96, np.uint8)
    top, left = (FRAME_H - resized.shape[0]) // 2, (FRAME_W - resized.shape[1]) // 2
    frame[top: top + resized.shape[0], left: left + resized.shape[1]] = resized
    return frame


def fer2013_frames(count=4, side=240):
    """Up to ``count`` 640x480 BGR frames, each one PublicTest face enlarged to ``side`` px on a grey
    background, chosen among those the Haar detector finds (as the live view will search them);
    [] without the dataset."""
    import cv2

    from fer_keras.inference import FaceDetector

    if not FER2013_CSV.is_file():
        return []
    from fer_keras.data import load_fer2013

    faces = load_fer2013(FER2013_CSV)["PublicTest"].x[..., 0]
    detector = FaceDetector(detect_side=320)
    frames = []
    for face in faces[:400]:
        frame = np.full((FRAME_H, FRAME_W), 128, np.uint8)
        top, left = (FRAME_H - side) // 2, (FRAME_W - side) // 2
        frame[top: top + side, left: left + side] = cv2.resize(face, (side, side), interpolation=cv2.INTER_CUBIC)
        frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
        if len(detector.detect(frame)) == 1:
            frames.append(frame)
            if len(frames) == count:
                break
    return frames


def camera_frames():
    """The fake camera's pictures: FER2013 faces when available, else the bundled photo."""
    return fer2013_frames() or [photo_frame()]


def write_y4m(path, pictures, *, fps=30, seconds_each=1.0):
    """A YUV4MPEG2 video of ``pictures`` (640x480 BGR), each held ``seconds_each``: what Chromium's fake
    camera plays (in a loop). 4:2:0 planes, the C420jpeg layout OpenCV's I420 conversion writes."""
    import cv2

    path = Path(path)
    with path.open("wb") as fh:
        fh.write(f"YUV4MPEG2 W{FRAME_W} H{FRAME_H} F{fps}:1 Ip A1:1 C420jpeg\n".encode("ascii"))
        for picture in pictures:
            planes = cv2.cvtColor(picture, cv2.COLOR_BGR2YUV_I420).tobytes()
            for _ in range(max(1, int(fps * seconds_each))):
                fh.write(b"FRAME\n")
                fh.write(planes)
    return path
