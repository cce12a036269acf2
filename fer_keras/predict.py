"""Emotions of the faces in pictures, folders, videos and webcams.

A :class:`FacePredictor` finds faces (:class:`~fer_keras.faces.FaceDetector`,
OpenCV's Haar cascade), cuts each one out as a 48x48 grey FER2013-style face
and runs the batch through an :class:`~fer_keras.ensemble.Ensemble` (one
member or many). An :class:`OutputFolder` writes what was found: annotated
pictures and videos, an emotion timeline per video, Grad-CAM pictures and
``predictions.csv`` / ``predictions.json`` with one row per face.

    from fer_keras.ensemble import Ensemble, load_members
    from fer_keras.predict import FacePredictor, OutputFolder

    members, skipped = load_members("models")
    predictor = FacePredictor(Ensemble(members))
    for face in predictor.predict_image(cv2.imread("photo.jpg")):
        print(face.box, face.label, f"{face.confidence:.0%}")

    out = OutputFolder("predictions")
    predictor.predict_video("clip.mp4", every=2, sink=out)
    out.close()
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from fer_keras.constants import CLASS_NAMES
from fer_keras.errors import ConfigError, FerError, InputError, OutputExistsError
from fer_keras.faces import (IMAGE_SUFFIXES, Box, FaceDetector, expand_box, read_image, to_bgr,
                             whole_image_face)
from fer_keras.io_utils import atomic_path, natural_key, write_json_atomic, write_text_atomic

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp")
"""File name endings read as videos."""

OUTPUT_MARKERS = ("predictions.json", "predictions.csv")
"""Files every run writes; their presence means ``--out`` holds an earlier run."""

DEFAULT_VIDEO_FPS = 25.0
"""Frame rate assumed for a video that does not state one."""


# --------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------


@dataclasses.dataclass
class FaceResult:
    """One face: where it is and what the models think of it."""

    box: Box
    """Face rectangle in the picture's pixels (as detected, before the crop margin)."""
    probs: np.ndarray
    """(7,) ensemble probabilities, FER2013 class order."""
    label: str
    """The most probable class."""
    confidence: float
    """Its probability."""
    face: np.ndarray | None = dataclasses.field(default=None, repr=False)
    """The uint8 (48, 48) face the models saw."""

    def top(self, k=2, class_names=CLASS_NAMES):
        """The ``k`` most probable ``(class name, probability)`` pairs."""
        order = np.argsort(self.probs)[::-1][:k]
        return [(class_names[i], float(self.probs[i])) for i in order]


@dataclasses.dataclass
class FrameResult:
    """The faces of one picture or one analysed video/webcam frame."""

    source: str
    faces: list
    frame: int = 0
    time_s: float | None = None

    def rows(self, class_names=CLASS_NAMES):
        """One dict per face, keys :data:`CSV_FIELDS`."""
        out = []
        for i, face in enumerate(self.faces):
            row = {"source": self.source, "frame": self.frame,
                   "time_s": None if self.time_s is None else round(float(self.time_s), 3), "face": i + 1,
                   "x": face.box.x, "y": face.box.y, "w": face.box.w, "h": face.box.h}
            row.update({f"p_{name}": round(float(p), 6) for name, p in zip(class_names, face.probs)})
            row.update(label=face.label, confidence=round(float(face.confidence), 6))
            out.append(row)
        return out

    def largest_face(self):
        return max(self.faces, key=lambda f: f.box.area) if self.faces else None


CSV_FIELDS = ("source", "frame", "time_s", "face", "x", "y", "w", "h", *(f"p_{c}" for c in CLASS_NAMES),
              "label", "confidence")
"""Columns of ``predictions.csv`` (and keys of each row in ``predictions.json``)."""


@dataclasses.dataclass(frozen=True)
class Problem:
    """An input that could not be used, and why (one line)."""

    source: str
    reason: str

    def __str__(self):
        return self.reason if self.reason.startswith(self.source) else f"{self.source}: {self.reason}"


@dataclasses.dataclass
class StreamResult:
    """What :meth:`FacePredictor.predict_video` / :meth:`FacePredictor.run_webcam` saw."""

    source: str
    frames: list
    """A :class:`FrameResult` per analysed frame (with or without faces)."""
    frames_read: int
    fps: float
    stopped_by: str = "end"
    """``end``, ``max-frames``, ``duration``, ``user`` (Enter, q, Esc) or ``interrupt`` (Ctrl+C)."""
    files: list = dataclasses.field(default_factory=list)


# --------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------


def demo_image():
    """Path of the bundled demo picture: matplotlib's sample photo of Grace Hopper (no download)."""
    from matplotlib import cbook

    try:
        path = Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    except (OSError, ValueError):
        path = None
    if path is None or not path.is_file():
        raise FerError("matplotlib's sample picture grace_hopper.jpg is not installed here; pass --input FILE")
    return path


def parse_webcam(spec):
    """``"webcam"`` → 0, ``"webcam:1"`` → 1; None when ``spec`` names no webcam."""
    match = re.fullmatch(r"webcam(?::(\d+))?", str(spec).strip().lower())
    if not match:
        return None
    return int(match.group(1) or 0)


def input_kind(spec):
    """``webcam``, ``folder``, ``video`` or ``image`` for an ``--input`` value."""
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
        raise InputError(f"{folder}: no such folder")
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


def display_available():
    """Whether a window can be opened: OpenCV built with a GUI, and (on Linux) a display to show it on."""
    import cv2

    match = re.search(r"GUI:\s*(\S+)", cv2.getBuildInformation())
    if match and match.group(1).upper() == "NONE":
        return False  # opencv-python-headless
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    return True


def enter_pressed_watcher():
    """A function that says whether Enter was pressed in the terminal since the last call
    (always False when the input is not a terminal)."""
    stdin = sys.stdin
    try:
        interactive = stdin is not None and stdin.isatty()
    except (AttributeError, ValueError):
        interactive = False
    if not interactive:
        return lambda: False
    if os.name == "nt":
        import msvcrt

        def pressed_windows():
            while msvcrt.kbhit():
                if msvcrt.getwch() in "\r\n":
                    return True
            return False

        return pressed_windows
    import select

    def pressed():
        ready, _, _ = select.select([stdin], [], [], 0)
        if ready:
            stdin.readline()
            return True
        return False

    return pressed


# --------------------------------------------------------------------------
# Predictor
# --------------------------------------------------------------------------


class FacePredictor:
    """Faces and their emotions.

    Args:
      ensemble: an :class:`~fer_keras.ensemble.Ensemble` (one member is fine; members may be
        :class:`~fer_keras.export.RuntimeModel` files, .tflite/.onnx, run in their own runtime).
      detector: a :class:`~fer_keras.faces.FaceDetector` (default: its defaults).
      detect: False treats every picture (or frame) as one already-cropped
        face, as FER2013's are.
      tta: a test-time augmentation mode of :mod:`fer_keras.ensemble.tta` (``True`` = ``flip``).
      explain_member: index of the member Grad-CAM explains.
    """

    def __init__(self, ensemble, detector=None, *, detect=True, tta=False, explain_member=0,
                 class_names=CLASS_NAMES):
        self.ensemble = ensemble
        self.detector = detector if detector is not None else (FaceDetector() if detect else None)
        self.detect = detect
        self.tta = tta
        self.class_names = tuple(class_names)
        members = getattr(ensemble, "members", [])
        if members and not 0 <= explain_member < len(members):
            raise ConfigError(f"--explain-member {explain_member}: the ensemble has {len(members)} member(s) "
                              f"(0..{len(members) - 1})")
        self.explain_member = explain_member
        self._explainers = {}

    @property
    def margin(self):
        """Margin of the crops fed to the models (0 with ``detect=False``)."""
        return self.detector.margin if self.detect else 0.0

    # === Pictures ===

    def predict_image(self, image):
        """Faces in ``image`` (grey, BGR or BGRA array) → list of :class:`FaceResult`, left to right."""
        if self.detect:
            boxes = self.detector.detect(image)
            faces = self.detector.crop(image, boxes)
        else:
            box, faces = whole_image_face(image)
            boxes = [box]
        if not boxes:
            return []
        probs = np.asarray(self.ensemble.predict_proba(faces, tta=self.tta), dtype=np.float64)
        top = probs.argmax(axis=1)
        return [FaceResult(box=b, probs=p, label=self.class_names[k], confidence=float(p[k]), face=f[..., 0])
                for b, p, k, f in zip(boxes, probs, top, faces)]

    def predict_file(self, path, *, sink=None, name=None, explain=False):
        """The faces in one picture file → :class:`FrameResult`; raises
        :class:`~fer_keras.faces.InputError` when the file cannot be read.

        With a ``sink`` (:class:`OutputFolder`): writes the annotated picture
        (and with ``explain``, a Grad-CAM picture per face) and records the rows.
        """
        path = Path(path)
        image = read_image(path)
        result = FrameResult(source=str(path), faces=self.predict_image(image))
        if sink is not None:
            stem = name or path.stem
            caption = None if result.faces else "no face found"
            files = [sink.annotated(stem, image, result.faces, caption=caption)]
            if explain:
                files += self.write_explanations(sink, stem, image, result.faces)
            sink.add(result)
            sink.note(str(path), "image", "ok", faces=len(result.faces), files=files)
        return result

    def predict_folder(self, folder, *, recursive=False, sink=None, explain=False, on_result=None,
                       on_problem=None):
        """Every picture in ``folder`` → ``(list of FrameResult, list of Problem)``.

        Files that are not pictures (by name or by content) are skipped with a
        :class:`Problem` each; the others are still processed. ``on_result`` /
        ``on_problem`` are called as each file is done (for progress messages).
        """
        folder = Path(folder)
        images, others = list_folder(folder, recursive=recursive)
        results, problems = [], []

        def problem(source, reason):
            item = Problem(str(source), reason)
            problems.append(item)
            if sink is not None:
                sink.note(str(source), "image", "skipped", message=str(item))
            if on_problem:
                on_problem(item)

        for other in others:
            problem(other, f"{other}: not a picture file ({other.suffix or 'no suffix'}); skipped")
        for path in images:
            stem = str(path.relative_to(folder).with_suffix(""))
            try:
                result = self.predict_file(path, sink=sink, name=stem, explain=explain)
            except InputError as exc:
                problem(path, f"{exc}; skipped")
                continue
            results.append(result)
            if on_result:
                on_result(result)
        return results, problems

    # === Grad-CAM ===

    def explainer(self, member_index=None):
        """The :class:`~fer_keras.gradcam.GradCAM` of a member (default: ``explain_member``), built once."""
        from fer_keras.gradcam import GradCAM

        index = self.explain_member if member_index is None else member_index
        if index not in self._explainers:
            member = self.ensemble.members[index]
            if getattr(member, "model", None) is None:  # a .tflite/.onnx member (fer_keras.export.RuntimeModel)
                raise ConfigError(f"Grad-CAM needs a Keras member; {member.name} runs in its own runtime")
            self._explainers[index] = GradCAM(member.model)
        return self._explainers[index]

    def explain(self, face, member_index=None):
        """Grad-CAM map (48, 48) in [0, 1] of a :class:`FaceResult`, for the class the ensemble reported."""
        from fer_keras.gradcam import face_gradcam

        index = self.explain_member if member_index is None else member_index
        member = self.ensemble.members[index]
        cam, _ = face_gradcam(member, face.face, self.class_names.index(face.label),
                              explainer=self.explainer(index))
        return cam

    def write_explanations(self, sink, stem, image, faces):
        """One Grad-CAM picture per face (crop | overlay, with a caption); returns the file names."""
        from fer_keras.annotate import explain_panel
        from fer_keras.gradcam import overlay_heatmap

        files = []
        colour = to_bgr(image)
        for i, face in enumerate(faces):
            cam = self.explain(face)
            region = expand_box(face.box, self.margin, colour.shape)
            crop = colour[region.y:region.y + region.h, region.x:region.x + region.w]
            member = self.ensemble.members[self.explain_member]
            caption = (f"face {i + 1}: {face.label} {face.confidence:.0%} - Grad-CAM of {member.name}, "
                       f"layer {self.explainer().layer_name}")
            files.append(sink.write_image(stem, f".face{i + 1}.gradcam.png", explain_panel(crop, overlay_heatmap(
                crop, cam), caption)))
        return files

    # === Videos and webcams ===

    def predict_video(self, path, *, every=1, sink=None, name=None, progress=False):
        """Faces in every ``every``-th frame of a video file → :class:`StreamResult`.

        With a ``sink``: writes the annotated video (every frame, carrying the
        latest analysed frame's boxes), an emotion timeline plot and the rows.
        Ctrl+C stops early, keeping what was done (``stopped_by="interrupt"``).
        """
        import cv2

        if every < 1:
            raise ConfigError("--every must be at least 1")
        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: no such file")
        capture = cv2.VideoCapture(str(path))
        try:
            if not capture.isOpened():
                raise InputError(f"{path}: cannot be opened as a video (empty, damaged or an unknown format)")
            fps = capture.get(cv2.CAP_PROP_FPS)
            fps = float(fps) if fps and np.isfinite(fps) and 0 < fps < 1000 else DEFAULT_VIDEO_FPS
            total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
            ok, frame = capture.read()
            if not ok or frame is None:
                raise InputError(f"{path}: no frame could be read (empty or damaged video)")
            stem = name or path.stem
            result = StreamResult(source=str(path), frames=[], frames_read=0, fps=fps)
            from tqdm.auto import tqdm

            bar = tqdm(total=total or None, desc=path.name[:24], unit="frame", disable=not progress,
                       file=sys.stderr, dynamic_ncols=True, leave=False)
            video = sink.video(stem, fps) if sink is not None else contextlib.nullcontext()
            try:
                with video as writer:
                    latest = []
                    while ok and frame is not None:
                        index = result.frames_read
                        if index % every == 0:
                            frame_result = FrameResult(str(path), self.predict_image(frame), frame=index,
                                                       time_s=index / fps)
                            result.frames.append(frame_result)
                            latest = frame_result.faces
                        if writer is not None:
                            writer.write(_annotate(frame, latest))
                        result.frames_read += 1
                        bar.update(1)
                        ok, frame = capture.read()
            except KeyboardInterrupt:
                result.stopped_by = "interrupt"
            finally:
                bar.close()
        finally:
            capture.release()
        if sink is not None:
            self._finish_stream(sink, result, stem, "video", writer_files=getattr(video, "files", []))
        return result

    def run_webcam(self, source=0, *, open_capture=None, interval=2.0, max_frames=None, duration=None, show=None,
                   sink=None, should_stop=None, on_start=None, on_frame=None):
        """Analyse a camera: a frame every ``interval`` seconds (0: every frame) → :class:`StreamResult`.

        Stops on Enter (in a terminal), q/Esc (in the window), Ctrl+C, after
        ``max_frames`` analysed frames or ``duration`` seconds, or when the
        camera stops giving pictures. ``open_capture(source)`` opens the
        camera (default :func:`open_camera`, i.e. ``cv2.VideoCapture``): anything with ``read()``,
        ``isOpened()`` and ``release()`` will do. ``show``: open a window
        (default: when a display and a GUI-enabled OpenCV are available);
        without one, runs headless and only writes results. ``on_start(show)``
        is called once the camera is open; ``on_frame`` with each analysed
        :class:`FrameResult`.
        """
        import cv2

        if interval < 0:
            raise ConfigError("--interval must be 0 (every frame) or more seconds")
        label = f"webcam:{source}"
        capture = (open_capture or open_camera)(source)
        if capture is None or not capture.isOpened():
            if capture is not None:
                capture.release()
            raise InputError(f"{label}: cannot open the camera (none connected at index {source}, "
                             "in use by another program, or no permission)")
        show = display_available() if show is None else show
        stop_requested = should_stop or enter_pressed_watcher()
        if on_start:
            on_start(show)
        camera_fps = _capture_fps(capture)
        fps = min(1.0 / interval, 30.0) if interval > 0 else (camera_fps or 10.0)
        result = StreamResult(source=label, frames=[], frames_read=0, fps=fps)
        window = "fer_keras - press q, Esc or Enter to stop"
        stem = f"webcam{source}"
        video = sink.video(stem, fps) if sink is not None else contextlib.nullcontext()
        start, last, latest = time.monotonic(), None, []
        try:
            with video as writer:
                while True:
                    ok, frame = capture.read()
                    if not ok or frame is None:
                        if result.frames_read == 0:
                            raise InputError(f"{label}: the camera opened but gave no picture")
                        break
                    result.frames_read += 1
                    now = time.monotonic() - start
                    if last is None or now - last >= interval:
                        last = now
                        frame_result = FrameResult(label, self.predict_image(frame), frame=result.frames_read - 1,
                                                   time_s=now)
                        result.frames.append(frame_result)
                        latest = frame_result.faces
                        if writer is not None:
                            writer.write(_annotate(frame, latest))
                        if on_frame:
                            on_frame(frame_result)
                    if show:
                        show = _show(window, _annotate(frame, latest))
                        if show == "stop":
                            result.stopped_by = "user"
                            break
                    if max_frames and len(result.frames) >= max_frames:
                        result.stopped_by = "max-frames"
                        break
                    if duration and now >= duration:
                        result.stopped_by = "duration"
                        break
                    if stop_requested():
                        result.stopped_by = "user"
                        break
        except KeyboardInterrupt:
            result.stopped_by = "interrupt"
        finally:
            capture.release()
            if show:
                with contextlib.suppress(Exception):
                    cv2.destroyWindow(window)
        if sink is not None:
            self._finish_stream(sink, result, stem, "webcam", writer_files=getattr(video, "files", []))
        return result

    def _finish_stream(self, sink, result, stem, kind, writer_files):
        for frame_result in result.frames:
            sink.add(frame_result)
        files = list(writer_files)
        if result.frames:
            files.append(sink.timeline(stem, result.frames, title=f"{Path(result.source).name}: "
                                       "emotions of the largest face per analysed frame",
                                       class_names=self.class_names))
        result.files = files
        sink.note(result.source, kind, "ok", frames_read=result.frames_read, frames_analysed=len(result.frames),
                  frames_with_faces=sum(1 for f in result.frames if f.faces),
                  faces=sum(len(f.faces) for f in result.frames), fps=round(result.fps, 3),
                  stopped_by=result.stopped_by, files=files)


def open_camera(index):
    """``cv2.VideoCapture(index)``, without OpenCV's own warnings when no camera is there
    (the caller reports that in one line)."""
    import cv2

    logging = getattr(getattr(cv2, "utils", None), "logging", None)
    previous = logging.getLogLevel() if logging else None
    if logging:
        logging.setLogLevel(logging.LOG_LEVEL_ERROR)
    try:
        return cv2.VideoCapture(index)
    finally:
        if logging:
            logging.setLogLevel(previous)


def _annotate(frame, faces):
    """An annotated video frame (same size for every frame of a video)."""
    from fer_keras.annotate import draw_faces

    return draw_faces(frame, faces, extend=False)


def _capture_fps(capture):
    import cv2

    try:
        fps = float(capture.get(cv2.CAP_PROP_FPS))
    except Exception:  # a fake or exotic capture without get()
        return None
    return fps if np.isfinite(fps) and 0 < fps < 1000 else None


def _show(window, image):
    """Show ``image``; True to go on, ``"stop"`` on q/Esc, False when no window can be shown."""
    import cv2

    try:
        cv2.imshow(window, image)
        key = cv2.waitKey(1) & 0xFF
    except cv2.error:
        print("note: this OpenCV cannot open windows; running headless", file=sys.stderr)
        return False
    return "stop" if key in (ord("q"), 27) else True


# --------------------------------------------------------------------------
# Output folder
# --------------------------------------------------------------------------


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
                                            "pass --overwrite or choose another --out")

    def claim(self, stem, suffix):
        """A fresh output path ``<stem><suffix>`` (``<stem>-2<suffix>`` when this run used it already)."""
        name, i = f"{stem}{suffix}", 2
        while name in self._claimed:
            name, i = f"{stem}-{i}{suffix}", i + 1
        self._claimed.add(name)
        path = self.path / name
        if path.exists() and not self.overwrite:
            raise OutputExistsError(f"{path} exists; pass --overwrite or choose another --out")
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
        from fer_keras.annotate import draw_faces

        return self.write_image(stem, ".annotated.png", draw_faces(image, faces, self.class_names, caption=caption))

    def video(self, stem, fps):
        """A context manager writing ``<stem>.annotated.mp4`` (``mp4v``): ``with out.video(stem, fps) as w:
        w.write(frame)``. The file appears under its name when the block ends (Ctrl+C included: a
        partial video is kept) and at least one frame was written."""
        return _VideoFile(self.claim(stem, ".annotated.mp4"), fps, folder=self)

    def timeline(self, stem, frames, *, title="", class_names=CLASS_NAMES):
        """``<stem>.timeline.png``: each class's probability for the largest face of each frame."""
        from fer_keras import plots
        from fer_keras.annotate import CLASS_COLOURS_RGB

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


__all__ = ["CSV_FIELDS", "FacePredictor", "FaceResult", "FrameResult", "OutputExistsError", "OutputFolder",
           "Problem", "StreamResult", "demo_image", "display_available", "input_kind", "list_folder",
           "open_camera", "parse_webcam"]
