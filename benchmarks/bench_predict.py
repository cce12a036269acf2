"""Inference timed: classification alone, and the webcam path (detect + crop + classify).

Classification: for every member of --models-dir and the whole ensemble,
faces per second at batch 256 and single-face latency (batch 1, p50/p95)
through ``Ensemble.predict_proba`` (each member's input adapter included),
and each as a multiple of the ensemble's faces per second. The ensemble is
the tester's: a distilled member (trained with ``--teacher``) whose teachers
are all in the folder is timed alone only, as the tester sets it aside; one
whose teachers have left votes, and is timed inside the ensemble too.

Webcam path: for every member alone and for the whole ensemble, this runs
``FacePredictor.predict_image`` on a 640x480 frame made from the bundled
grace_hopper.jpg (one face) and reports frames per second (median of
--repeats timed calls after a warm-up), next to the detector alone, so the
share of each stage is visible. The webcam target is 30 frames/s.

    python benchmarks/bench_predict.py --models-dir models --json predict.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def frame_640x480():
    """The bundled demo photo, letterboxed onto a 640x480 BGR frame."""
    import cv2
    import numpy as np

    from fer_keras.inference import demo_image, read_image

    image = read_image(demo_image())
    scale = min(640 / image.shape[1], 480 / image.shape[0])
    resized = cv2.resize(image, (int(image.shape[1] * scale), int(image.shape[0] * scale)))
    frame = np.zeros((480, 640, 3), np.uint8)
    top, left = (480 - resized.shape[0]) // 2, (640 - resized.shape[1]) // 2
    frame[top: top + resized.shape[0], left: left + resized.shape[1]] = resized
    return frame


def frames_per_second(fn, repeats, warmup=3):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1 / statistics.median(times), statistics.median(times) * 1000


def uncached(ensemble_of, fn):
    """``fn`` with the ensemble's prediction cache emptied first: the same faces again must be predicted again."""

    def call():
        ensemble_of.clear_cache()
        return fn()

    return call


def classification_speed(ensemble_of, faces, repeats):
    """Faces/s at batch 256 (median) and batch-1 latency p50/p95 in ms."""
    batch = faces[:256]
    rate, _ = frames_per_second(uncached(ensemble_of, lambda: ensemble_of.predict_proba(batch)), max(3, repeats // 5))
    latencies = []
    for i in range(5 + repeats):
        one_face = uncached(ensemble_of, lambda i=i: ensemble_of.predict_proba(faces[i % len(faces)][None]))
        start = time.perf_counter()
        one_face()
        if i >= 5:
            latencies.append((time.perf_counter() - start) * 1000)
    latencies.sort()
    return {"faces_per_s_batch256": rate * len(batch), "latency_ms_p50": statistics.median(latencies),
            "latency_ms_p95": latencies[max(0, int(round(0.95 * len(latencies))) - 1)]}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-dir", default=str(REPO / "models"))
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--detect-side", type=int, nargs="*", default=[0, 320],
                        help="FaceDetector detect_side values to compare (0: full frame; 320: the webcam default)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)

    from fer_keras.cli.common import quiet_tensorflow

    quiet_tensorflow()
    from fer_keras import ensemble
    from fer_keras.inference import FaceDetector, FacePredictor
    from fer_keras.machine import machine_description

    frame = frame_640x480()
    voters, skipped = ensemble.load_members(args.models_dir)  # the tester's members
    set_aside = [str(s.path) for s in skipped if s.reason == ensemble.DISTILLED_REASON]
    students = ensemble.load_members(set_aside)[0] if set_aside else []  # named alone, each loads
    candidates = [(m.path.name, [m]) for m in voters + students]
    if len(voters) > 1:
        candidates.append((f"ensemble of {len(voters)}", voters))
    from fer_keras.data import synthetic_faces

    faces, _ = synthetic_faces(256)
    speed_rows = []
    for name, chosen in candidates:
        speed_rows.append({"what": name, **classification_speed(ensemble.Ensemble(chosen), faces, args.repeats)})

    rows = []
    for side in args.detect_side:
        detector = FaceDetector(detect_side=side)
        label = f"detect at {side or 'full'} px"
        fps, ms = frames_per_second(lambda: detector.detect(frame), args.repeats)
        rows.append({"what": f"{label}: detection only", "detect_side": side, "fps": fps, "ms": ms,
                     "faces": len(detector.detect(frame))})
        for name, chosen in candidates:
            combined = ensemble.Ensemble(chosen)
            predictor = FacePredictor(combined, detector)
            fps, ms = frames_per_second(uncached(combined, lambda: predictor.predict_image(frame)), args.repeats)
            rows.append({"what": f"{label}: {name}", "detect_side": side, "fps": fps, "ms": ms,
                         "faces": len(predictor.predict_image(frame))})

    print(f"machine: {machine_description()}   date: {date.today()}")
    ensemble_rate = speed_rows[-1]["faces_per_s_batch256"] if len(voters) > 1 else None
    for r in speed_rows:
        r["x_ensemble"] = r["faces_per_s_batch256"] / ensemble_rate if ensemble_rate else None
    print(f"{'classification only':<44}{'faces/s @256':>14}{'x ensemble':>11}{'p50 ms @1':>11}{'p95 ms @1':>11}")
    for r in speed_rows:
        ratio = f"{r['x_ensemble']:.1f}" if r["x_ensemble"] else "-"
        print(f"{r['what']:<44}{r['faces_per_s_batch256']:>14.0f}{ratio:>11}{r['latency_ms_p50']:>11.1f}"
              f"{r['latency_ms_p95']:>11.1f}")
    print(f"\nwebcam path: frame 640x480, median of {args.repeats}")
    print(f"{'path':<44}{'frames/s':>10}{'ms/frame':>10}{'faces':>7}")
    for r in rows:
        print(f"{r['what']:<44}{r['fps']:>10.1f}{r['ms']:>10.1f}{r['faces']:>7}")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine_description(), "date": str(date.today()),
                                               "classification": speed_rows, "results": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
