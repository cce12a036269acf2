"""Where a prediction run writes: annotated pictures and videos, timelines, ``predictions.csv`` / ``.json``.

Every file is written atomically, and an earlier run's files are replaced
only with ``overwrite``.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from fer_keras import plots
from fer_keras.constants import CLASS_NAMES
from fer_keras.errors import FerError, OutputExistsError
from fer_keras.inference.annotate import CLASS_COLOURS_RGB, draw_faces
from fer_keras.io_utils import atomic_path, give_usual_permissions, write_json_atomic, write_text_atomic

OUTPUT_MARKERS = ("predictions.json", "predictions.csv")
"""Files every run writes; their presence means the output folder holds an earlier run."""


class OutputFolder:
    """Where a prediction run writes its files; every file is written atomically.

    Refuses a folder that holds an earlier run's ``predictions.json`` /
    ``predictions.csv``, and any existing file it would replace, unless
    ``overwrite``. Call :meth:`close` to write ``predictions.csv`` and
    ``predictions.json`` (last: its presence marks a finished run).
    """

    def __init__(self, path, *, overwrite=False, class_names=CLASS_NAMES):
        self.path = Path(path)
        self.overwrite = overwrite
        self.class_names = tuple(class_names)
        self.check(self.path, overwrite=overwrite)
        self._created = not self.path.exists()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise FerError(f"cannot create output folder {self.path}: {exc.strerror}") from None
        self.rows, self.inputs, self.files = [], [], []
        self._claimed = set()

    @staticmethod
    def check(path, *, overwrite=False):
        """Raise :class:`OutputExistsError` when ``path`` holds an earlier run and not ``overwrite``."""
        if not overwrite:
            for marker in OUTPUT_MARKERS:
                if (Path(path) / marker).exists():
                    raise OutputExistsError(f"{path} already holds {marker} from an earlier run; "
                                            "pass overwrite=True or choose another output folder",
                                            parameter="overwrite")

    def claim(self, stem, suffix):
        """A fresh output path ``<stem><suffix>`` (``<stem>-2<suffix>`` when this run used it already)."""
        name, i = f"{stem}{suffix}", 2
        while name in self._claimed:
            name, i = f"{stem}-{i}{suffix}", i + 1
        self._claimed.add(name)
        path = self.path / name
        if path.exists() and not self.overwrite:
            raise OutputExistsError(f"{path} exists; pass overwrite=True or choose another output folder",
                                    parameter="overwrite")
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def _written(self, path):
        name = str(Path(path).relative_to(self.path))
        self.files.append(name)
        return name

    def write_image(self, stem, suffix, image):
        """Write a BGR picture as PNG; returns its name in the folder."""
        import cv2

        path = self.claim(stem, suffix)
        ok, data = cv2.imencode(".png", image)
        if not ok:
            raise FerError(f"cannot encode {path.name} as PNG")
        with atomic_path(path) as tmp:
            Path(tmp).write_bytes(data.tobytes())
        return self._written(path)

    def annotated(self, stem, image, faces, *, caption=None):
        """The annotated copy of a picture, ``<stem>.annotated.png``."""
        return self.write_image(stem, ".annotated.png", draw_faces(image, faces, self.class_names, caption=caption))

    def video(self, stem, fps):
        """A context manager writing ``<stem>.annotated.mp4`` (``mp4v``): ``with out.video(stem, fps) as w:
        w.write(frame)``. The file appears under its name when the block ends (Ctrl+C included: a
        partial video is kept) and at least one frame was written."""
        return _VideoFile(self.claim(stem, ".annotated.mp4"), fps, folder=self)

    def timeline(self, stem, frames, *, title="", class_names=CLASS_NAMES):
        """``<stem>.timeline.png``: each class's probability for the largest face of each frame."""
        path = self.claim(stem, ".timeline.png")
        times = [f.time_s if f.time_s is not None else f.frame for f in frames]
        probas = np.full((len(frames), len(class_names)), np.nan)
        for i, f in enumerate(frames):
            face = f.largest_face()
            if face is not None:
                probas[i] = face.probs
        fig = plots.timeline_figure(times, probas, class_names, colors=CLASS_COLOURS_RGB, title=title)
        plots.save_figure(fig, path)
        return self._written(path)

    def add(self, frame_result):
        """Record the rows of a :class:`FrameResult`."""
        self.rows.extend(frame_result.rows(self.class_names))

    def note(self, source, kind, status, **info):
        """Record what happened to one input (listed in ``predictions.json``)."""
        self.inputs.append({"source": str(source), "kind": kind, "status": status, **info})

    def csv_text(self):
        out = io.StringIO()
        fields = ["source", "frame", "time_s", "face", "x", "y", "w", "h",
                  *(f"p_{c}" for c in self.class_names), "label", "confidence"]
        writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        for row in self.rows:
            writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
        return out.getvalue()

    def close(self, **context):
        """Write ``predictions.csv`` and ``predictions.json`` (with ``context``: models, options, ...)."""
        write_text_atomic(self.path / "predictions.csv", self.csv_text())
        doc = {"classes": list(self.class_names), **context, "inputs": self.inputs, "faces": self.rows,
               "files": sorted(set(self.files))}
        write_json_atomic(self.path / "predictions.json", doc)
        return self.path


    def discard(self):
        """End a run that wrote nothing: remove the folder again if this run created it and it is empty."""
        if self._created:
            for folder in sorted((p for p in self.path.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
                with contextlib.suppress(OSError):
                    folder.rmdir()
            with contextlib.suppress(OSError):
                self.path.rmdir()


class _VideoFile:
    """cv2.VideoWriter into a temporary file, moved into place when the ``with`` block ends."""

    def __init__(self, path, fps, *, folder=None):
        self.path = Path(path)
        self.fps = float(fps)
        self.folder = folder
        self.tmp = None
        self.writer, self.size, self.frames, self.failed = None, None, 0, False
        self.files = []
        """The written file's name in the output folder, once written."""

    def __enter__(self):
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=f"-{self.path.name}", dir=self.path.parent)
        os.close(fd)
        self.tmp = Path(tmp)
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None or issubclass(exc_type, KeyboardInterrupt):
            self.finish()
        else:
            self.discard()
        return False

    def write(self, frame):
        import cv2

        if self.failed:
            return
        if self.writer is None:
            self.size = (frame.shape[1], frame.shape[0])
            self.writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, self.size)
            if not self.writer.isOpened():
                self.failed = True
                print(f"warning: cannot write {self.path.name} (no mp4v encoder in this OpenCV); "
                      "the rows are still written", file=sys.stderr)
                return
        if (frame.shape[1], frame.shape[0]) != self.size:
            frame = cv2.resize(frame, self.size, interpolation=cv2.INTER_AREA)
        self.writer.write(frame)
        self.frames += 1

    def finish(self):
        """Close; move into place when frames were written (True), else remove (False)."""
        if self.writer is not None:
            self.writer.release()
            self.writer = None
        if self.frames and not self.failed:
            give_usual_permissions(self.tmp)
            os.replace(self.tmp, self.path)
            self.files = [self.folder._written(self.path) if self.folder is not None else str(self.path)]
            return True
        self.discard()
        return False

    def discard(self):
        if self.writer is not None:
            self.writer.release()
            self.writer = None
        if self.tmp is not None:
            with contextlib.suppress(OSError):
                self.tmp.unlink()
