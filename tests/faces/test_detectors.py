"""Each detector on a real face: the bundled photo, and (when the dataset is here) PublicTest faces enlarged."""

import numpy as np
import pytest

from fer_keras.faces import LANDMARKS, build_detector
from tests.faces.conftest import turned


def test_haar_finds_the_bundled_face_without_landmarks(grace):
    """Check that the cascade finds one face in the bundled photo, with a box around its middle and no landmarks."""
    found = build_detector("haar").detect(grace)
    assert len(found) == 1
    face = found[0]
    assert face.landmarks is None and 100 < face.w < 400
    assert face.x < 256 < face.x + face.w and face.y < 300 < face.y + face.h + 100


def test_mtcnn_finds_the_bundled_face_with_five_landmarks(grace, mtcnn):
    """Check that MTCNN finds one face with a score and five landmarks inside its box, eyes picture-left
    first and above the mouth."""
    found = mtcnn.detect(grace)
    assert len(found) == 1
    face = found[0]
    assert face.score > 0.9 and len(face.landmarks) == len(LANDMARKS) == 5
    for x, y in face.landmarks:
        assert face.x <= x <= face.x + face.w and face.y <= y <= face.y + face.h
    (lx, ly), (rx, ry), _, (mlx, mly), (mrx, mry) = face.landmarks
    assert lx < rx and max(ly, ry) < min(mly, mry) and mlx < mrx


def test_mtcnn_finds_a_face_haar_misses_when_turned(grace, mtcnn):
    """Check that a face turned by 30 degrees is found by MTCNN, which is why pictures default to it."""
    image = turned(grace, 30)
    assert len(mtcnn.detect(image)) == 1


def test_detect_side_gives_boxes_in_full_size_pixels(grace, mtcnn):
    """Check that searching a half-size copy gives a box and landmarks close to the full-size ones."""
    full = mtcnn.detect(grace)[0]
    small = build_detector("mtcnn", detect_side=300).detect(grace)[0]
    for a, b in zip(full.as_tuple(), small.as_tuple()):
        assert abs(a - b) <= 0.1 * full.w
    assert np.allclose(full.landmarks, small.landmarks, atol=0.06 * full.w)


def test_no_face_in_a_flat_picture():
    """Check that neither detector finds a face in a flat grey picture."""
    image = np.full((240, 320, 3), 128, np.uint8)
    for name in ("haar", "mtcnn"):
        assert build_detector(name).detect(image) == []


@pytest.mark.parametrize("name, at_least", [("haar", 3), ("mtcnn", 5)])
def test_detectors_find_publictest_faces_in_a_group_photo(name, at_least, fer_sample):
    """Check that each detector finds PublicTest faces enlarged 3x on a grey canvas (MTCNN nearly all
    6, the cascade half), and no more faces than there are."""
    import cv2

    canvas = np.full((360, 640), 120, np.uint8)
    for i in range(6):
        r, c = divmod(i, 3)
        canvas[20 + r * 170:20 + r * 170 + 144, 30 + c * 200:30 + c * 200 + 144] = cv2.resize(
            fer_sample[i, ..., 0], (144, 144), interpolation=cv2.INTER_CUBIC)
    found = build_detector(name).detect(canvas)
    assert at_least <= len(found) <= 6


def test_mtcnn_graphs_give_the_packages_eager_answer(grace, mtcnn):
    """Check that running MTCNN's networks as traced graphs (for speed) finds the same box, score and
    landmarks as the package's own eager networks."""
    from mtcnn import MTCNN

    kwargs = dict(min_face_size=20, threshold_pnet=0.5, threshold_rnet=0.6, threshold_onet=0.8)
    rgb = np.ascontiguousarray(grace[..., ::-1])
    graphs, eager = mtcnn.model.detect_faces(rgb, **kwargs), MTCNN().detect_faces(rgb, **kwargs)
    assert len(graphs) == len(eager) == 1
    assert np.allclose(graphs[0]["box"], eager[0]["box"], atol=1)
    assert abs(graphs[0]["confidence"] - eager[0]["confidence"]) < 1e-4
    for name, (x, y) in eager[0]["keypoints"].items():
        assert np.allclose(graphs[0]["keypoints"][name], (x, y), atol=1)


@pytest.mark.parametrize("min_face, found", [(20, 1), (40, 1), (100, 1), (600, 0)])
def test_mtcnn_min_face_above_the_packages_limit(grace, min_face, found):
    """Check that a min_face above 20 px still finds the 170-px bundled face (the package alone finds
    nothing there: its pyramid's last levels fall under 12 px), and none with min_face far above its size."""
    faces = build_detector("mtcnn", min_face=min_face).detect(grace)
    assert len(faces) == found
    if found:
        assert 150 < faces[0].w < 200 and faces[0].x < 256 < faces[0].x + faces[0].w


def _alone_on_canvas(face, side=144, canvas=240):
    import cv2

    picture = np.full((canvas, canvas), 120, np.uint8)
    start = (canvas - side) // 2
    picture[start:start + side, start:start + side] = cv2.resize(face, (side, side), interpolation=cv2.INTER_CUBIC)
    return picture


def test_hog_proposals_find_a_face_mtcnn_alone_misses(fer_sample):
    """Check that PublicTest face 24, enlarged 3x on a grey canvas, is missed by MTCNN alone and found,
    with five landmarks, when dlib's HOG boxes are judged by MTCNN's last stage (the default)."""
    picture = _alone_on_canvas(fer_sample[24, ..., 0])
    assert build_detector("mtcnn", hog_proposals=False).detect(picture) == []
    found = build_detector("mtcnn").detect(picture)
    assert len(found) == 1 and len(found[0].landmarks) == 5 and found[0].score >= 0.5
    assert 48 <= found[0].centre[0] <= 192 and 48 <= found[0].centre[1] <= 192


def test_onet_refines_a_hog_box_into_mtcnn_s_face(grace, mtcnn):
    """Check that a HOG box over the bundled face, judged by ONet, gives MTCNN's own box and landmarks
    (so its crop is framed like every other), and that a box over a flat wall is rejected."""
    import numpy as np

    from fer_keras.faces import Box

    rgb = np.ascontiguousarray(grace[..., ::-1])
    face = mtcnn.detect(grace)[0]
    tight = Box(face.x + face.w // 10, face.y + face.h // 5, face.w * 4 // 5, face.h * 3 // 4)
    judged = mtcnn._judged_by_onet(rgb, [tight, Box(0, 0, 60, 60)], [], 32)
    assert len(judged) == 1
    assert judged[0].iou(face) > 0.6
    assert np.allclose(judged[0].landmarks, face.landmarks, atol=0.08 * face.w)
    assert mtcnn._judged_by_onet(rgb, [tight], [face], 32) == []  # MTCNN found it: not added twice


def test_hog_proposals_off_and_without_dlib(monkeypatch):
    """Check that hog_proposals=False needs no dlib and says so in its config, and that the default
    without dlib fails at once with a one-line message naming the package and the way round it."""
    import functools
    import sys

    from fer_keras.errors import MissingPackageError
    from fer_keras.faces.detectors import mtcnn as mtcnn_module

    monkeypatch.setitem(sys.modules, "dlib", None)
    monkeypatch.setattr(mtcnn_module, "_hog_pool", functools.lru_cache()(mtcnn_module._HogPool))  # none built yet
    detector = build_detector("mtcnn", hog_proposals=False)
    assert detector.get_config()["hog_proposals"] is False
    with pytest.raises(MissingPackageError, match="dlib.*hog_proposals=False"):
        build_detector("mtcnn")


def test_hog_searches_in_several_threads_at_once(grace):
    """Check that MTCNN detectors searching in four threads at once (serve.py's request threads) each
    find the bundled face, HOG proposals and all."""
    import concurrent.futures

    detectors = [build_detector("mtcnn") for _ in range(4)]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        found = list(pool.map(lambda d: d.detect(grace), detectors * 2))
    assert all(len(faces) == 1 for faces in found)
