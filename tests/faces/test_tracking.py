"""The webcam's tracker: the detector every k-th frame, faces followed between, re-detection when lost."""

import numpy as np
import pytest

from fer_keras.errors import ConfigError
from fer_keras.faces import Detection, Detector, Tracker, register
from fer_keras.faces.detectors import _registry


def textured(seed=0):
    """A 240x320 grey frame of smooth noise with a bright-and-dark 'face' patch at (100, 80)."""
    import cv2

    rng = np.random.default_rng(seed)
    frame = cv2.resize(rng.uniform(60, 120, (30, 40)).astype(np.float32), (320, 240)).astype(np.uint8)
    patch = rng.integers(0, 256, (12, 12)).astype(np.uint8)
    frame[80:140, 100:160] = cv2.resize(patch, (60, 60), interpolation=cv2.INTER_NEAREST)
    return frame


@pytest.fixture
def counting(monkeypatch):
    """A registered detector that reports the patch of :func:`textured` where it really is, counting its calls."""
    monkeypatch.setattr(_registry, "_DETECTORS", dict(_registry._DETECTORS))

    @register
    class Counting(Detector):
        name = "counting"
        calls = []
        offset = [0, 0]

        def _find(self, image, factor):
            Counting.calls.append(1)
            dx, dy = Counting.offset
            return [Detection(100 + dx, 80 + dy, 60, 60, 1.0, ((120 + dx, 100 + dy), (140 + dx, 100 + dy),
                                                                (130 + dx, 110 + dy), (120 + dx, 125 + dy),
                                                                (140 + dx, 125 + dy)))]

    return Counting


def shifted(frame, dx, dy):
    return np.roll(np.roll(frame, dy, axis=0), dx, axis=1)


def test_detector_runs_every_kth_frame_and_faces_are_followed(counting):
    """Check that with every=5 the detector runs on frames 0 and 5 of 10 and the box follows a patch
    moving 3 pixels a frame, landmarks with it."""
    tracker = Tracker("counting", every=5)
    frame = textured()
    for i in range(10):
        counting.offset = [3 * i, 2 * i]
        found = tracker.detect(shifted(frame, 3 * i, 2 * i))
        assert len(found) == 1
        assert abs(found[0].x - (100 + 3 * i)) <= 2 and abs(found[0].y - (80 + 2 * i)) <= 2
        assert abs(found[0].landmarks[0][0] - found[0].x - 20) <= 0.01
    assert len(counting.calls) == 2


def test_a_lost_face_is_dropped_until_the_next_detection_frame(counting):
    """Check that when the followed patch disappears the face is dropped, and found again only on the
    next scheduled detection frame (the cost per frame stays bounded)."""
    tracker = Tracker("counting", every=3)
    assert len(tracker.detect(textured())) == 1
    assert len(tracker.detect(textured())) == 1
    assert tracker.detect(np.full((240, 320), 90, np.uint8)) == []  # the face is gone
    assert len(counting.calls) == 1
    assert len(tracker.detect(textured())) == 1 and len(counting.calls) == 2  # frame 3: detection


def test_reset_starts_a_new_stream(counting):
    """Check that reset() makes the next frame a detection frame."""
    tracker = Tracker("counting", every=100)
    tracker.detect(textured())
    tracker.reset()
    tracker.detect(textured())
    assert len(counting.calls) == 2


def test_tracker_has_the_detector_interface(counting):
    """Check that a tracker crops like its detector and says how it runs."""
    tracker = Tracker("counting", every=3)
    frame = textured()
    found = tracker.detect(frame)
    assert np.array_equal(tracker.crop(frame, found), tracker.detector.crop(frame, found))
    assert "every 3 frame" in tracker.get_config()["tracking"] and tracker.name == "counting+tracking"
    with pytest.raises(ConfigError, match="at least 1"):
        Tracker("counting", every=0)
