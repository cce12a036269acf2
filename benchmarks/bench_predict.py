"""The webcam path, timed: detect + crop + classify on a 640x480 frame.

For every member of --models-dir alone and for the whole ensemble, this runs
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

    from fer_keras.faces import read_image
    from fer_keras.predict import demo_image

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
    from fer_keras.faces import FaceDetector
    from fer_keras.precision import machine_description
    from fer_keras.predict import FacePredictor

    frame = frame_640x480()
    members, skipped = ensemble.load_members(args.models_dir)
    candidates = [(m.path.name, [m]) for m in members]
    if len(members) > 1:
        candidates.append((f"ensemble of {len(members)}", members))
    rows = []
    for side in args.detect_side:
        detector = FaceDetector(detect_side=side)
        label = f"detect at {side or 'full'} px"
        fps, ms = frames_per_second(lambda: detector.detect(frame), args.repeats)
        rows.append({"what": f"{label}: detection only", "detect_side": side, "fps": fps, "ms": ms,
                     "faces": len(detector.detect(frame))})
        for name, chosen in candidates:
            predictor = FacePredictor(ensemble.Ensemble(chosen), detector)
            fps, ms = frames_per_second(lambda: predictor.predict_image(frame), args.repeats)
            rows.append({"what": f"{label}: {name}", "detect_side": side, "fps": fps, "ms": ms,
                         "faces": len(predictor.predict_image(frame))})

    print(f"machine: {machine_description()}   date: {date.today()}   frame 640x480, median of {args.repeats}")
    print(f"{'path':<44}{'frames/s':>10}{'ms/frame':>10}{'faces':>7}")
    for r in rows:
        print(f"{r['what']:<44}{r['fps']:>10.1f}{r['ms']:>10.1f}{r['faces']:>7}")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine_description(), "date": str(date.today()),
                                               "results": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
