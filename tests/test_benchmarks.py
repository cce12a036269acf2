"""Smoke tests: every benchmark script still runs, on tiny sizes (no timing asserted)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fer_keras.data import synthetic

REPO = Path(__file__).resolve().parents[1]


def run(args, tmp_path):
    out = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_bench_data_runs_and_writes_json(tmp_path):
    """Check that the data benchmark prints its table and writes JSON on a tiny CSV."""
    csv = synthetic.write_synthetic_csv(tmp_path / "tiny.csv", sizes=(("Training", 40), ("PublicTest", 10)))
    stdout = run(["benchmarks/bench_data.py", str(csv), "--folder-rows", "10", "--repeats", "1",
                  "--json", str(tmp_path / "data.json")], tmp_path)
    assert "baseline" in stdout and "(e) first load, new process" in stdout
    written = json.loads((tmp_path / "data.json").read_text())
    assert set(written["results"]) == {"baseline", "cold", "first", "warm", "folder"}
    assert written["results"]["first"]["median_s"] > 0 and "cpu_model" in written


@pytest.mark.slow
def test_bench_train_runs_and_writes_json(tmp_path):
    """Check that the training/inference benchmark runs one tiny model and writes JSON."""
    stdout = run(["benchmarks/bench_train.py", "--models", "vgg16", "--options", "vgg16:width=0.125",
                  "--policies", "float32", "--batch", "8", "--steps", "1", "--repeats", "1", "--distribute",
                  "--json", str(tmp_path / "train.json")], tmp_path)
    assert "vgg16" in stdout and "MirroredStrategy" in stdout
    written = json.loads((tmp_path / "train.json").read_text())
    assert written["results"][0]["train_model_only"] > 0 and written["results"][0]["latency_ms_p50"] > 0
    assert [r["mirrored"] for r in written["fit"]] == [False, True]
    assert all(r["fit_img_per_s"] > 0 for r in written["fit"])


def test_bench_scale_runs_on_two_tiny_sizes(tmp_path):
    """Check that the scale benchmark measures each size in a child process and prints per-1k figures."""
    stdout = run(["benchmarks/bench_scale.py", "--rows", "200", "400", "--source", "none",
                  "--models-dir", str(tmp_path / "none"), "--json", str(tmp_path / "scale.json")], tmp_path)
    assert "per 1k" in stdout
    rows = [r["rows"] for r in json.loads((tmp_path / "scale.json").read_text())["results"]]
    assert rows == [200, 400]


def test_bench_ensemble_science_runs_small(tmp_path):
    """Check that the ensemble-science benchmark runs on a small synthetic problem."""
    run(["benchmarks/bench_ensemble_science.py", "--faces", "300", "--members", "3", "--resamples", "100",
         "--repeats", "1", "--loop-resamples", "5", "--json", str(tmp_path / "science.json")], tmp_path)
    assert json.loads((tmp_path / "science.json").read_text())


def test_bench_predict_times_members_the_ensemble_and_a_student_alone(tmp_path):
    """Check that the inference benchmark times classification and detection for each member, the
    ensemble without the distilled member, and each member's speed as a multiple of the ensemble's."""
    from fer_keras import models
    from fer_keras.models import model_io

    for i in (1, 2):
        model_io.save_model(models.build("vgg16", width=0.125), tmp_path / f"model_{i}.h5")
    model_io.save_model(models.build("vgg16", width=0.125), tmp_path / "model_3.h5",
                        metadata={"teacher": {"members": ["model_1.h5", "model_2.h5"]}})
    stdout = run(["benchmarks/bench_predict.py", "--models-dir", str(tmp_path), "--repeats", "2",
                  "--json", str(tmp_path / "predict.json")], tmp_path)
    assert "detection only" in stdout and "model_3.h5" in stdout and "classification only" in stdout
    speed = {r["what"]: r for r in json.loads((tmp_path / "predict.json").read_text())["classification"]}
    assert list(speed) == ["model_1.h5", "model_2.h5", "model_3.h5", "ensemble of 2"]
    for row in speed.values():
        assert row["latency_ms_p95"] >= row["latency_ms_p50"] > 0
        assert row["x_ensemble"] == pytest.approx(row["faces_per_s_batch256"]
                                                  / speed["ensemble of 2"]["faces_per_s_batch256"])


def test_bench_detect_builds_its_photos_and_matches_faces():
    """Check that bench_detect's synthetic photos hold the faces it says where it says (the empty set
    none, the rotated set turned 15-25 degrees), and that a detection counts once, near a face."""
    import importlib.util

    import numpy as np

    from fer_keras.faces import Detection

    spec = importlib.util.spec_from_file_location("bench_detect", REPO / "benchmarks" / "bench_detect.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    faces = np.full((5, 48, 48, 1), 255, np.uint8)  # white squares: easy to find again
    sets = bench.build_sets(faces, 3, seed=0)
    assert [len(p) for p in sets.values()] == [3, 3, 3]
    assert all(truth == [] for _, truth in sets["empty"])
    for grey, truth in sets["upright"]:
        assert 3 <= len(truth) <= 8 and grey.shape == bench.FRAME
        for _, cx, cy, side, angle in truth:
            assert angle == 0 and grey[int(cy), int(cx)] == 255 and bench.SIZES[0] <= side < bench.SIZES[1]
    assert all(15 <= abs(t[4]) <= 25 for _, truth in sets["rotated"] for t in truth)
    truth = [(0, 100, 100, 80, 0.0)]
    near, far = Detection(62, 58, 80, 84), Detection(300, 300, 80, 80)
    found, false = bench.match([near, far, near], truth)
    assert found == {0: near} and false == 2


def test_bench_detect_intervals_bracket_the_figures_and_narrow_with_more_faces():
    """Check the intervals bench_detect prints beside recall and the points lost: a known Wilson interval,
    a paired bootstrap that holds its own point estimate, and narrower bounds from 4x the faces."""
    import importlib.util

    import numpy as np

    spec = importlib.util.spec_from_file_location("bench_detect", REPO / "benchmarks" / "bench_detect.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.wilson_interval(93, 100) == pytest.approx([0.8625, 0.9656], abs=2e-4)
    rng = np.random.default_rng(1)
    raw = rng.random(200) < 0.7
    found = raw & (rng.random(200) < 0.95)  # found faces lose about 3.5 points
    lost = 100 * (raw.mean() - found.mean())
    low, high = bench.paired_interval(raw, found)
    assert low < lost < high and low > 0
    low4, high4 = bench.paired_interval(np.tile(raw, 4), np.tile(found, 4))
    assert high4 - low4 < 0.7 * (high - low)


def test_bench_detect_separates_the_faces_the_members_have_seen():
    """Check that the crop loss bench_detect gives for never-seen faces leaves out the PublicTest faces
    that are also in Training: here only those are lost, so the never-seen faces lose nothing."""
    import importlib.util

    import numpy as np

    spec = importlib.util.spec_from_file_location("bench_detect", REPO / "benchmarks" / "bench_detect.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)

    class FirstPixel:  # "predicts" the class written in a face's first pixel
        def predict(self, faces):
            return np.asarray(faces)[:, 0, 0, 0].astype(int)

    labels = np.array([0, 1, 2, 3, 4, 5])
    faces = np.broadcast_to(labels[:, None, None, None], (6, 48, 48, 1)).astype(np.uint8)
    seen = np.array([True, True, False, False, False, False])
    crops = [faces[i] if not seen[i] else faces[i] + 1 for i in range(6)]  # the seen faces' crops go wrong
    results = {"d": {"landmarks": False, "upright": {"crops": {"truth": [(i,) for i in range(6)], "aligned": crops,
                                                               "unaligned": []}},
                     "rotated": {"crops": {"truth": [], "aligned": [], "unaligned": []}}}}
    (row,) = bench.accuracy_rows(FirstPixel(), faces, labels, results, seen)
    assert row["acc_raw"] - row["acc_found"] == pytest.approx(2 / 6)
    assert row["unseen_faces"] == 4 and row["unseen_lost"] == 0.0


def test_bench_crop_exact_crop_gives_back_the_pasted_face():
    """Check that bench_crop's floor (the known square, turned back) returns the face it pasted, upright and
    turned, so the points it loses are those of resampling alone."""
    import importlib.util

    import numpy as np

    spec = importlib.util.spec_from_file_location("bench_crop", REPO / "benchmarks" / "bench_crop.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    yy, xx = np.mgrid[0:48, 0:48]
    face = (128 + 60 * np.sin(xx / 5.0) * np.cos(yy / 7.0) + xx).clip(0, 255).astype(np.uint8)[None, ..., None]
    rng = np.random.default_rng(3)
    for rotated in (False, True):
        (index, canvas, side, angle), = bench.single_faces(face, 1, rotated, rng)
        back = bench.exact_crop(canvas, side, angle).astype(float)
        inner = (slice(8, 40), slice(8, 40))  # turned faces lose their corners to the background
        assert np.corrcoef(back[inner].ravel(), face[0, ..., 0][inner].ravel().astype(float))[0, 1] > 0.97
        assert (angle != 0) == rotated



def test_bench_crop_charges_each_member_its_own_loss():
    """Check that the per-member table charges a member the points it loses on the crops, and only it: one
    member right on every raw face but wrong on every crop, one unmoved by the crop."""
    import importlib.util
    from types import SimpleNamespace

    import numpy as np

    spec = importlib.util.spec_from_file_location("bench_crop", REPO / "benchmarks" / "bench_crop.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    truth = np.arange(40) % 7
    right, wrong = np.eye(7)[truth], np.eye(7)[(truth + 1) % 7]
    raw_faces, crops = np.zeros((40, 48, 48, 1)), np.ones((40, 48, 48, 1))

    def member_probas(faces):
        return np.stack([right if faces.max() == 0 else wrong, right])

    ensemble = SimpleNamespace(members=[SimpleNamespace(name="fragile.h5"), SimpleNamespace(name="steady.h5")],
                               member_probas=member_probas)
    out = bench.member_losses(ensemble, raw_faces, crops, truth)
    assert out["fragile.h5"]["lost"] == pytest.approx(100) and out["fragile.h5"]["acc_crop"] == 0
    assert out["steady.h5"]["lost"] == 0 and out["steady.h5"]["lost_ci"] == [0, 0]

@pytest.mark.slow
def test_bench_serve_loads_both_servers_and_reports_no_server_error(tmp_path):
    """Check that the serving benchmark starts serve.py with and without micro-batching, sends its bounded
    load to each and reports requests/s, latency percentiles and zero 5xx (no browser: that is the slow part)."""
    import keras
    from keras import layers

    from fer_keras.models import model_io

    model = keras.Sequential([keras.Input((48, 48, 1)), layers.Rescaling(1 / 255), layers.Flatten(),
                              layers.Dense(7, activation="softmax")])
    model_io.save_model(model, tmp_path / "model_1.h5")
    stdout = run(["benchmarks/bench_serve.py", "--models-dir", str(tmp_path), "--requests", "8",
                  "--single-requests", "2", "--rounds", "2", "--clients", "4", "--skip-browser",
                  "--json", str(tmp_path / "serve.json")], tmp_path)
    assert "req/s" in stdout
    runs = json.loads((tmp_path / "serve.json").read_text())["runs"]
    assert [(r["batching"], r["clients"], r["requests"]) for r in runs] == [
        (True, 1, 2), (False, 1, 2), (True, 4, 8), (False, 4, 8)]
    assert all(r["server_errors"] == 0 and r["statuses"] == {"200": r["requests"]} for r in runs)
    assert all(r["p95_ms"] >= r["p50_ms"] > 0 for r in runs)
