"""The one crop: eyes levelled, FER2013's measured framing, faces at the edge, boxes outside."""

import dataclasses
import math

import numpy as np
import pytest

from fer_keras.errors import InputError
from fer_keras.faces import Box, Detection, build_detector, crop_face, eye_angle
from fer_keras.faces.detectors.haar import HAAR_FRAMING
from fer_keras.faces.detectors.mtcnn import MTCNN_FRAMING
from tests.faces.conftest import turned


def dots(image):
    """Centres ``(x, y)`` of the two brightest blobs of a grey picture, left one first."""
    import cv2

    _, mask = cv2.threshold(image, 200, 255, cv2.THRESH_BINARY)
    count, _, _, centres = cv2.connectedComponentsWithStats(mask)
    assert count == 3, count  # background + two dots
    return sorted(map(tuple, centres[1:]))


def drawn_face(angle):
    """A grey picture with two 'eyes' (bright dots) on a line turned ``angle`` degrees, and its Detection."""
    import cv2

    image = np.full((400, 400), 60, np.uint8)
    cx, cy, half = 200, 180, 40
    t = math.radians(angle)
    left = (cx - half * math.cos(t), cy - half * math.sin(t))
    right = (cx + half * math.cos(t), cy + half * math.sin(t))
    mouth = (cx - 70 * math.sin(t), cy + 70 * math.cos(t))
    for x, y in (left, right):
        cv2.circle(image, (round(x), round(y)), 6, 255, -1)
    marks = (left, right, (cx, cy + 30), (mouth[0] - 20 * math.cos(t), mouth[1] - 20 * math.sin(t)),
             (mouth[0] + 20 * math.cos(t), mouth[1] + 20 * math.sin(t)))
    return image, Detection(110, 100, 180, 200, 0.99, marks)


@pytest.mark.parametrize("angle", [-25, 20])
def test_alignment_levels_the_eyes(angle):
    """Check that with landmarks the crop turns the picture so the eyes lie on one row, and without
    alignment they keep their slope."""
    image, face = drawn_face(angle)
    assert eye_angle(face.landmarks) == pytest.approx(angle)
    (lx, ly), (rx, ry) = dots(crop_face(image, face, framing=MTCNN_FRAMING, align=True, size=96))
    assert abs(ry - ly) < 1.0 and rx - lx > 20
    (lx, ly), (rx, ry) = dots(crop_face(image, face, framing=MTCNN_FRAMING, align=False, size=96))
    assert math.degrees(math.atan2(ry - ly, rx - lx)) == pytest.approx(angle, abs=3)


def test_faces_tilted_as_fer2013_faces_are_left_as_they_are():
    """Check that with level_above=6 a face tilted 5 degrees keeps its tilt and one tilted 20 is
    levelled fully; with level_above=0 the 5-degree face is levelled too."""
    for angle, level_above, left in ((5, 6, 5), (-5, 6, -5), (20, 6, 0), (5, 0, 0)):
        image, face = drawn_face(angle)
        crop = crop_face(image, face, framing=MTCNN_FRAMING, level_above=level_above, size=96)
        (lx, ly), (rx, ry) = dots(crop)
        assert math.degrees(math.atan2(ry - ly, rx - lx)) == pytest.approx(left, abs=1.5), (angle, level_above)


def test_landmark_framing_puts_the_eyes_where_fer2013_has_them():
    """Check that the eyes' midpoint lands at the measured place of the frame and the crop's side
    is the box's size over the measured box_side."""
    image, face = drawn_face(0)
    (lx, ly), (rx, ry) = dots(crop_face(image, face, framing=MTCNN_FRAMING, size=96))
    assert (lx + rx) / 2 / 96 == pytest.approx(MTCNN_FRAMING.eyes_x, abs=0.02)
    assert (ly + ry) / 2 / 96 == pytest.approx(MTCNN_FRAMING.eyes_y, abs=0.02)
    # eye distance 80 px in a 180x200 box: the crop is sqrt(180 * 200) / box_side pixels of the picture
    assert (rx - lx) / 96 == pytest.approx(80 / (math.sqrt(180 * 200) / MTCNN_FRAMING.box_side), abs=0.01)


def test_an_open_mouth_does_not_change_the_crop():
    """Check that moving the mouth's landmarks (a smile, a scream) leaves the crop as it was: its
    size comes from the box, not from the eyes-to-mouth distance."""
    image, face = drawn_face(0)
    mouth_open = dataclasses.replace(face, landmarks=face.landmarks[:3] + tuple((x, y + 25) for x, y in face.landmarks[3:]))
    closed = crop_face(image, face, framing=MTCNN_FRAMING, size=96)
    assert np.array_equal(crop_face(image, mouth_open, framing=MTCNN_FRAMING, size=96), closed)


def test_a_turned_real_face_comes_out_level(grace, mtcnn):
    """Check on the bundled photo turned 20 degrees: MTCNN sees the slope, and in the aligned crop
    (enlarged) it sees level eyes, in the unaligned one the slope still."""
    import cv2

    face = mtcnn.detect(turned(grace, 20))[0]
    assert eye_angle(face.landmarks) == pytest.approx(-20, abs=6)  # counter-clockwise: the right eye rises
    image = turned(grace, 20)
    for align, expected in ((True, 0), (False, -20)):
        crop = crop_face(image, face, framing=MTCNN_FRAMING, align=align)
        big = cv2.copyMakeBorder(cv2.resize(crop, (192, 192), interpolation=cv2.INTER_CUBIC), 64, 64, 64, 64,
                                 cv2.BORDER_CONSTANT, value=128)
        again = mtcnn.detect(big)
        assert len(again) == 1
        assert eye_angle(again[0].landmarks) == pytest.approx(expected, abs=6)


def correlation(a, b):
    return float(np.corrcoef(a.ravel().astype(np.float64), b.ravel().astype(np.float64))[0, 1])


@pytest.mark.parametrize("name", ["haar", "mtcnn"])
def test_measured_framing_reproduces_fer2013_crops_better_than_the_old_margins(name, fer_sample):
    """Check that PublicTest faces enlarged 4x onto a grey canvas, found and cropped with the measured
    framing, match the original 48x48 faces better than the old margins (0.1 predict, 0.15 data_resize)."""
    import cv2

    detector = build_detector(name, align=False)
    scores = {"measured": [], 0.1: [], 0.15: []}
    for face in fer_sample[:48, ..., 0]:
        canvas = np.full((384, 384), 128, np.uint8)
        canvas[96:288, 96:288] = cv2.resize(face, (192, 192), interpolation=cv2.INTER_CUBIC)
        found = detector.detect(canvas)
        if not found:
            continue
        framing = detector.framing
        scores["measured"].append(correlation(crop_face(canvas, found[0], framing=framing, align=False), face))
        for margin in (0.1, 0.15):
            scores[margin].append(correlation(crop_face(canvas, found[0], framing=framing, margin=margin), face))
    assert len(scores["measured"]) >= 15
    measured = np.median(scores["measured"])
    assert measured > 0.5 and measured > np.median(scores[0.1]) + 0.1 and measured > np.median(scores[0.15]) + 0.1


def test_haar_framing_is_the_box_grown_to_the_measured_size():
    """Check that a box crop covers box_side of the frame: a white box on black fills that share."""
    image = np.zeros((300, 300), np.uint8)
    image[100:200, 100:200] = 255
    crop = crop_face(image, Box(100, 100, 100, 100), framing=HAAR_FRAMING, size=100)
    white = (crop > 127).mean(axis=0)
    assert white.max() > 0.9
    assert (crop[50] > 127).mean() == pytest.approx(HAAR_FRAMING.box_side, abs=0.03)


def test_faces_at_the_edge_are_cropped_and_boxes_outside_are_refused():
    """Check that a face cut by the picture's edge still gives a 48x48 crop and a box outside is an InputError."""
    image = np.full((120, 160, 3), 90, np.uint8)
    assert crop_face(image, Box(0, 0, 50, 50)).shape == (48, 48)
    assert crop_face(image, Box(130, 90, 60, 60)).shape == (48, 48)
    with pytest.raises(InputError, match="lies outside the 160x120 image"):
        crop_face(image, Box(200, 10, 20, 20))


def test_big_faces_are_averaged_not_aliased():
    """Check that a fine stripe pattern shrunk 10x comes out as its mean grey, not as moire."""
    image = np.zeros((600, 600), np.uint8)
    image[:, ::2] = 255
    crop = crop_face(image, Box(60, 60, 480, 480))
    assert abs(float(crop.mean()) - 127.5) < 6 and crop.std() < 12
