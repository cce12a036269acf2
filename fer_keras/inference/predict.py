"""The predictor: faces found, cut out and classified, in pictures, folders, videos and webcams.

A :class:`FacePredictor` finds faces (a detector of :mod:`fer_keras.faces`,
by name: ``"mtcnn"``, ``"haar"``), cuts each one out as a 48x48 grey FER2013-style face
and runs the batch through an :class:`~fer_keras.ensemble.Ensemble` (one
member or many). An :class:`OutputFolder` writes what was found: annotated
pictures and videos, an emotion timeline per video, Grad-CAM pictures and
``predictions.csv`` / ``predictions.json`` with one row per face.

    from fer_keras.ensemble import Ensemble
    from fer_keras.inference import FacePredictor, OutputFolder

    predictor = FacePredictor(Ensemble.from_dir("models"))
    for face in predictor.predict_image(cv2.imread("photo.jpg")):
        print(face.box, face.label, f"{face.confidence:.0%}")

    out = OutputFolder("predictions")
    predictor.predict_video("clip.mp4", every=2, sink=out)
    out.close()
"""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path

import numpy as np

from fer_keras.constants import CLASS_NAMES
from fer_keras.errors import ConfigError, InputError
from fer_keras.inference.annotate import explain_panel
from fer_keras.inference.faces import DEFAULT_DETECTOR, as_box, build_detector, read_image, to_bgr, whole_image_face
from fer_keras.inference.gradcam import GradCAM, face_gradcam, overlay_heatmap
from fer_keras.inference.results import FaceResult, FrameResult, Problem
from fer_keras.inference.sources import list_folder
from fer_keras.inference.stream import (DEFAULT_VIDEO_FPS, analyse_frames, annotate_frame, capture_fps,
                                        display_available, enter_pressed_watcher, finish_stream, open_camera,
                                        show_frame)


EXPLAIN_SIDE = 192
"""Side (pixels) of the face in a Grad-CAM picture."""


class FacePredictor:
    """Faces and their emotions.

    Args:
      ensemble: an :class:`~fer_keras.ensemble.Ensemble` (one member is fine; members may be
        :class:`~fer_keras.export.RuntimeModel` files, .tflite/.onnx, run in their own runtime).
      detector: a detector of :mod:`fer_keras.faces` (``build_detector(name)``, a
        :class:`~fer_keras.faces.Tracker` ...) or a detector's name (default:
        :data:`~fer_keras.inference.faces.DEFAULT_DETECTOR`).
      detect: False treats every picture (or frame) as one already-cropped
        face, as FER2013's are.
      tta: a test-time augmentation mode of :mod:`fer_keras.ensemble.tta` (``True`` = ``flip``).
      explain_member: index of the member Grad-CAM explains.
    """

    def __init__(self, ensemble, detector=None, *, detect=True, tta=False, explain_member=0,
                 class_names=CLASS_NAMES):
        self.ensemble = ensemble
        if detect and (detector is None or isinstance(detector, str)):
            detector = build_detector(detector or DEFAULT_DETECTOR)
        self.detector = detector
        self.detect = detect
        self.tta = tta
        self.class_names = tuple(class_names)
        members = getattr(ensemble, "members", [])
        if members and not 0 <= explain_member < len(members):
            raise ConfigError(f"explain_member must be 0..{len(members) - 1}: the ensemble has {len(members)} "
                              f"member(s). Received: explain_member={explain_member}", parameter="explain_member")
        self.explain_member = explain_member
        self._explainers = {}

    # === Pictures ===

    def predict_image(self, image):
        """Faces in ``image`` (grey, BGR or BGRA array) → list of :class:`FaceResult`, left to right."""
        if self.detect:
            found = self.detector.detect(image)
            faces = self.detector.crop(image, found)
            boxes = [as_box(face) for face in found]
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
        :class:`~fer_keras.errors.InputError` when the file cannot be read.

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
        """The :class:`~fer_keras.inference.gradcam.GradCAM` of a member (default: ``explain_member``), built once."""
        index = self.explain_member if member_index is None else member_index
        if index not in self._explainers:
            member = self.ensemble.members[index]
            if getattr(member, "model", None) is None:  # a .tflite/.onnx member (fer_keras.export.RuntimeModel)
                raise ConfigError(f"Grad-CAM needs a Keras member; {member.name} runs in its own runtime")
            self._explainers[index] = GradCAM(member.model)
        return self._explainers[index]

    def explain(self, face, member_index=None):
        """Grad-CAM map (48, 48) in [0, 1] of a :class:`FaceResult`, for the class the ensemble reported."""
        index = self.explain_member if member_index is None else member_index
        member = self.ensemble.members[index]
        cam, _ = face_gradcam(member, face.face, self.class_names.index(face.label),
                              explainer=self.explainer(index))
        return cam

    def write_explanations(self, sink, stem, image, faces):
        """One Grad-CAM picture per face (crop | overlay, with a caption); returns the file names."""
        import cv2

        files = []
        for i, face in enumerate(faces):
            cam = self.explain(face)
            # the face exactly as the models saw it (framed, aligned), enlarged to be seen
            crop = cv2.resize(to_bgr(face.face), (EXPLAIN_SIDE, EXPLAIN_SIDE), interpolation=cv2.INTER_CUBIC)
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
        from tqdm.auto import tqdm

        if every < 1:
            raise ConfigError(f"every must be at least 1. Received: every={every}", parameter="every")
        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: no such file")
        stem = name or path.stem
        _reset(self.detector)  # a tracker forgets the faces of the last stream
        capture = cv2.VideoCapture(str(path))
        try:
            if not capture.isOpened():
                raise InputError(f"{path}: cannot be opened as a video (empty, damaged or an unknown format)")
            fps = capture.get(cv2.CAP_PROP_FPS)
            fps = float(fps) if fps and np.isfinite(fps) and 0 < fps < 1000 else DEFAULT_VIDEO_FPS
            total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
            first = capture.read()
            if not first[0] or first[1] is None:
                raise InputError(f"{path}: no frame could be read (empty or damaged video)")
            unread = [first]
            bar = tqdm(total=total or None, desc=path.name[:24], unit="frame", disable=not progress,
                       file=sys.stderr, dynamic_ncols=True, leave=False)

            def tick(frame, result, seconds):
                bar.update(1)

            try:
                result, files = analyse_frames(
                    self, lambda: unread.pop() if unread else capture.read(), source=str(path), fps=fps,
                    due=lambda index, seconds: index % every == 0, time_of=lambda index: index / fps,
                    sink=sink, stem=stem, write_every_frame=True, after_frame=tick)
            finally:
                bar.close()
        finally:
            capture.release()
        if sink is not None:
            finish_stream(sink, result, stem, "video", files, self.class_names)
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
            raise ConfigError(f"interval must be 0 (every frame) or more seconds. Received: interval={interval}",
                              parameter="interval")
        label = f"webcam:{source}"
        _reset(self.detector)
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
        camera_fps = capture_fps(capture)
        fps = min(1.0 / interval, 30.0) if interval > 0 else (camera_fps or 10.0)
        window = "fer_keras - press q, Esc or Enter to stop"
        stem = f"webcam{source}"
        start, last = time.monotonic(), None

        def due(index, seconds):  # a frame every `interval` seconds
            nonlocal last
            if last is None or seconds - last >= interval:
                last = seconds
                return True
            return False

        def after_frame(frame, result, seconds):  # the window, and the limits the user set
            nonlocal show
            if show:
                show = show_frame(window, annotate_frame(frame, result.frames[-1].faces if result.frames else []))
                if show == "stop":
                    return "user"
            if max_frames and len(result.frames) >= max_frames:
                return "max-frames"
            if duration and seconds >= duration:
                return "duration"
            if stop_requested():
                return "user"
            return None

        try:
            result, files = analyse_frames(
                self, capture.read, source=label, fps=fps, due=due, time_of=lambda index: time.monotonic() - start,
                sink=sink, stem=stem, write_every_frame=False, after_frame=after_frame, on_frame=on_frame,
                no_picture=f"{label}: the camera opened but gave no picture")
        finally:
            capture.release()
            if show:
                with contextlib.suppress(Exception):
                    cv2.destroyWindow(window)
        if sink is not None:
            finish_stream(sink, result, stem, "webcam", files, self.class_names)
        return result


def _reset(detector):
    """Start a new stream: a :class:`~fer_keras.faces.Tracker` forgets the faces it followed."""
    reset = getattr(detector, "reset", None)
    if callable(reset):
        reset()
