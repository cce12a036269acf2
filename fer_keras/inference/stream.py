"""Videos and cameras: one loop that reads frames, analyses the due ones and writes the annotated video.

A video file and a webcam differ only in where frames come from, which of
them are analysed (every k-th frame, or one every few seconds) and what stops
the stream; :func:`analyse_frames` is the loop they share
(:meth:`FacePredictor.predict_video <fer_keras.inference.predict.FacePredictor.predict_video>`,
:meth:`~fer_keras.inference.predict.FacePredictor.run_webcam`), and the
camera's helpers (opening it, the window, Enter in the terminal) live here.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from pathlib import Path

import numpy as np

from fer_keras.errors import InputError
from fer_keras.inference.annotate import draw_faces
from fer_keras.inference.results import FrameResult, StreamResult

DEFAULT_VIDEO_FPS = 25.0
"""Frame rate assumed for a video that does not state one."""


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


def annotate_frame(frame, faces):
    """An annotated video frame (same size for every frame of a video)."""
    return draw_faces(frame, faces, extend=False)


def capture_fps(capture):
    """The frame rate a camera reports, or None when it reports none that makes sense."""
    import cv2

    try:
        fps = float(capture.get(cv2.CAP_PROP_FPS))
    except Exception:  # a fake or exotic capture without get()
        return None
    return fps if np.isfinite(fps) and 0 < fps < 1000 else None


def show_frame(window, image):
    """Show ``image``; True to go on, ``"stop"`` on q/Esc, False when no window can be shown."""
    import cv2

    try:
        cv2.imshow(window, image)
        key = cv2.waitKey(1) & 0xFF
    except cv2.error:
        print("note: this OpenCV cannot open windows; running headless", file=sys.stderr)
        return False
    return "stop" if key in (ord("q"), 27) else True


def analyse_frames(predictor, read, *, source, fps, due, time_of, sink=None, stem="", write_every_frame=False,
                   after_frame=None, on_frame=None, no_picture=""):
    """The loop a video file and a camera share; returns ``(StreamResult, written video file names)``.

    ``read()`` gives ``(ok, frame)``; frame ``index`` (its time ``time_of(index)``
    seconds) is analysed when ``due(index, seconds)``. With a ``sink`` the
    annotated video is written at ``fps``: every frame, carrying the latest
    analysed boxes (``write_every_frame``: a video file's), or the analysed
    frames only (a camera's), each held until the next one's time so that
    the video keeps the stream's clock (a camera read at 30 frames/s whose
    frames are analysed 10 times a second otherwise played 3x too fast).
    ``on_frame`` gets each analysed :class:`FrameResult`;
    ``after_frame(frame, result, seconds)`` returns why to stop (``"user"``,
    ``"max-frames"`` ...) or None. The stream ends when ``read`` gives nothing
    (:class:`InputError` ``no_picture`` if it never gave a frame), or on
    Ctrl+C, keeping what was done (``stopped_by="interrupt"``).
    """
    result = StreamResult(source=source, frames=[], frames_read=0, fps=fps)
    video = sink.video(stem, fps) if sink is not None else contextlib.nullcontext()
    latest, held, written = [], None, 0
    try:
        with video as writer:
            while True:
                ok, frame = read()
                if not ok or frame is None:
                    if result.frames_read == 0:
                        raise InputError(no_picture)
                    break
                index = result.frames_read
                result.frames_read += 1
                seconds = time_of(index)
                analysed = due(index, seconds)
                if analysed:
                    frame_result = FrameResult(source, predictor.predict_image(frame), frame=index, time_s=seconds)
                    result.frames.append(frame_result)
                    latest = frame_result.faces
                if writer is not None and write_every_frame:
                    writer.write(annotate_frame(frame, latest))
                elif writer is not None and analysed:
                    picture = annotate_frame(frame, latest)
                    for _ in range(written, round(seconds * fps)):  # the last picture until this one's time
                        writer.write(picture if held is None else held)
                    written = max(written, round(seconds * fps)) + 1
                    writer.write(picture)
                    held = picture
                if analysed and on_frame:
                    on_frame(frame_result)
                stop = after_frame(frame, result, seconds) if after_frame else None
                if stop:
                    result.stopped_by = stop
                    break
    except KeyboardInterrupt:
        result.stopped_by = "interrupt"
    return result, getattr(video, "files", [])


def finish_stream(sink, result, stem, kind, writer_files, class_names):
    """Record a stream's rows in ``sink``, draw its emotion timeline, and note what was written."""
    for frame_result in result.frames:
        sink.add(frame_result)
    files = list(writer_files)
    if result.frames:
        files.append(sink.timeline(stem, result.frames, title=f"{Path(result.source).name}: "
                                   "emotions of the largest face per analysed frame",
                                   class_names=class_names))
    result.files = files
    sink.note(result.source, kind, "ok", frames_read=result.frames_read, frames_analysed=len(result.frames),
              frames_with_faces=sum(1 for f in result.frames if f.faces),
              faces=sum(len(f.faces) for f in result.frames), fps=round(result.fps, 3),
              stopped_by=result.stopped_by, files=files)
