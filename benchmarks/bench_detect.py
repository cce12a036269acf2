"""Face detectors compared on synthetic group photos built from PublicTest faces.

Each 640x480 photo has a textured background (smooth noise, stripes, a
gradient with grain) and 3-8 PublicTest faces enlarged to 56-150 pixels,
pasted where they do not overlap. Three sets (seeded, so every detector sees
the same photos):

* ``upright``: the faces as they are;
* ``rotated``: each face turned by 15-25 degrees, left or right;
* ``empty``: backgrounds only (every detection is a false face).

Per detector: recall (a face counts as found when a detection's centre lies
within 0.35 of its side from the face's centre and the detection's size is
0.5-2x the face's), false faces per photo, and milliseconds per 640x480
photo (median). Then the ensemble of ``--models-dir`` classifies the faces
found, cut by the one crop (:mod:`fer_keras.faces.align`), against the same
faces' raw 48x48 PublicTest crops: the accuracy lost to detection + alignment +
crop (target: at most 2 points upright, 4 rotated), and for rotated faces how
often the label agrees with the upright raw crop's (target: 65%).

Webcam: a 120-frame clip of one photo drifting a few pixels per frame, run
through each live set-up (a detector every frame, or
:class:`~fer_keras.faces.Tracker`: the detector every k-th frame, template
tracking between); frames per second = 1000 / mean ms per frame (target 30),
by wall-clock time and by this process's CPU time (on a shared, busy machine
the wall clock counts the other jobs' time too).

``--framing`` instead measures where each detector's box and landmarks fall in
FER2013's 48x48 frame (Training faces enlarged 4x onto a grey canvas, so the
crop figures measured on PublicTest are not fitted to their own faces) and
prints the :class:`~fer_keras.faces.Framing` each detector module holds.

    nice -n 19 python benchmarks/bench_detect.py --quick
    nice -n 19 python benchmarks/bench_detect.py --framing
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CSV = REPO.parent / "shared" / "data" / "fer2013" / "fer2013_train_publictest.csv.gz"
FRAME = (480, 640)
SIZES = (56, 150)
ANGLES = (15, 25)


# === Synthetic photos ===

def background(rng, shape=FRAME):
    """A textured grey background: smooth noise, stripes or a grainy gradient."""
    import cv2

    h, w = shape
    kind = rng.integers(3)
    if kind == 0:
        small = rng.uniform(0, 255, (h // 16 + 1, w // 16 + 1)).astype(np.float32)
        base = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    elif kind == 1:
        period, angle = rng.uniform(8, 40), rng.uniform(0, np.pi)
        yy, xx = np.mgrid[0:h, 0:w]
        base = 128 + 60 * np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period)
    else:
        base = np.linspace(rng.uniform(30, 120), rng.uniform(130, 230), w)[None, :].repeat(h, 0)
    base = base + rng.normal(0, 12, (h, w))
    return np.clip(base, 0, 255).astype(np.uint8)


def paste_face(canvas, face, x, y, side, angle):
    """``face`` (48x48) enlarged to ``side`` and turned by ``angle`` degrees, pasted with its top-left at x, y."""
    import cv2

    big = cv2.resize(face, (side, side), interpolation=cv2.INTER_CUBIC)
    if angle:
        matrix = cv2.getRotationMatrix2D((side / 2 - 0.5, side / 2 - 0.5), angle, 1.0)
        big = cv2.warpAffine(big, matrix, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        mask = cv2.warpAffine(np.full((side, side), 255, np.uint8), matrix, (side, side)) > 127
    else:
        mask = np.ones((side, side), bool)
    region = canvas[y:y + side, x:x + side]
    region[mask] = big[mask]


def group_photo(rng, faces, n_faces, rotated):
    """``(grey photo, [(face index, centre x, centre y, side, angle), ...])``."""
    canvas = background(rng)
    placed, truth = [], []
    for _ in range(200):
        if len(truth) == n_faces:
            break
        side = int(rng.integers(*SIZES))
        x, y = int(rng.integers(0, FRAME[1] - side)), int(rng.integers(0, FRAME[0] - side))
        if any(x < px + ps + 8 and px < x + side + 8 and y < py + ps + 8 and py < y + side + 8
               for px, py, ps in placed):
            continue
        index = int(rng.integers(len(faces)))
        angle = float(rng.uniform(*ANGLES) * rng.choice([-1, 1])) if rotated else 0.0
        paste_face(canvas, faces[index, ..., 0], x, y, side, angle)
        placed.append((x, y, side))
        truth.append((index, x + side / 2, y + side / 2, side, angle))
    return canvas, truth


def build_sets(faces, n_photos, seed):
    rng = np.random.default_rng(seed)
    sets = {}
    for name, rotated, count in (("upright", False, (3, 9)), ("rotated", True, (3, 9)), ("empty", False, (0, 1))):
        sets[name] = [group_photo(rng, faces, int(rng.integers(*count)), rotated) for _ in range(n_photos)]
    return sets


def match(detections, truth):
    """``{truth index: detection}`` (greedy, nearest first) and the number of unmatched detections."""
    pairs = []
    for t, (_, cx, cy, side, _) in enumerate(truth):
        for d, det in enumerate(detections):
            dx, dy = det.x + det.w / 2 - cx, det.y + det.h / 2 - cy
            size = (det.w * det.h) ** 0.5
            if (dx * dx + dy * dy) ** 0.5 <= 0.35 * side and 0.5 * side <= size <= 2 * side:
                pairs.append((dx * dx + dy * dy, t, d))
    found, used = {}, set()
    for _, t, d in sorted(pairs):
        if t not in found and d not in used:
            found[t] = detections[d]
            used.add(d)
    return found, len(detections) - len(used)


# === Measurements ===

def run_detector(detector, sets):
    """Per set: recall, false faces per photo, median ms per photo, and the found faces' crops."""
    from fer_keras.faces import to_bgr

    out = {}
    for name, photos in sets.items():
        total = hits = false = 0
        times, cpu, crops = [], [], {"aligned": [], "unaligned": [], "truth": []}
        for grey, truth in photos:
            frame = to_bgr(grey)  # a colour frame, as a camera gives
            start, start_cpu = time.perf_counter(), time.process_time()
            found = detector.detect(frame)
            times.append((time.perf_counter() - start) * 1000)
            cpu.append((time.process_time() - start_cpu) * 1000)
            matched, extra = match(found, truth)
            total += len(truth)
            hits += len(matched)
            false += extra
            for t, det in matched.items():
                crops["truth"].append(truth[t])
                crops["aligned"].append(detector.crop(grey, [det])[0])
                if detector.has_landmarks:
                    from fer_keras.faces import crop_face

                    crops["unaligned"].append(crop_face(grey, det, framing=detector.framing, align=False)[..., None])
        out[name] = {"photos": len(photos), "faces": total, "recall": hits / total if total else None,
                     "recall_ci": wilson_interval(hits, total) if total else None,
                     "false_per_photo": false / len(photos), "ms": statistics.median(times),
                     "cpu_ms": statistics.median(cpu), "crops": crops}
    return out


def wilson_interval(hits, total, z=1.96):
    """95% Wilson score interval of a proportion (recall over ``total`` faces)."""
    p = hits / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * np.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return [round(float(centre - half), 4), round(float(centre + half), 4)]


def accuracy_rows(ensemble, faces, labels, results, seen=None):
    """Accuracy on found faces vs on their raw 48x48 crops; rotated: agreement with the raw crops' labels.

    ``seen``: per PublicTest face, whether it is also in Training (see
    :func:`fer_keras.data.dataset.seen_in`). The members have memorised those, so their raw crops are
    right far more often (92% against 70%) and any resampling breaks the memory: each row also gives the
    points lost on the other faces, the ones the members never saw.
    """
    rows = []
    for detector, per_set in results.items():
        for name in ("upright", "rotated"):
            crops = per_set[name]["crops"]
            if not crops["truth"]:
                continue
            index = np.array([t[0] for t in crops["truth"]])
            raw = ensemble.predict(faces[index])
            truth = labels[index]
            unseen = np.ones(len(index), bool) if seen is None else ~seen[index]
            for how in ("aligned", "unaligned"):
                if not crops[how]:
                    continue
                got = ensemble.predict(np.stack(crops[how]))
                right_raw, right_got = raw == truth, got == truth
                rows.append({"detector": detector, "set": name, "crop": how if per_set["landmarks"] else "box",
                             "faces": len(index), "acc_raw": float(right_raw.mean()),
                             "acc_found": float(right_got.mean()),
                             "lost_ci": paired_interval(right_raw, right_got),
                             "agree_raw": float((got == raw).mean()),
                             "unseen_faces": int(unseen.sum()),
                             "unseen_lost": float((right_raw[unseen].mean() - right_got[unseen].mean()) * 100),
                             "unseen_lost_ci": paired_interval(right_raw[unseen], right_got[unseen])})
    return rows


def paired_interval(right_a, right_b, resamples=2000, seed=0):
    """95% interval, in points, of accuracy ``a`` minus accuracy ``b`` on the same faces (a paired bootstrap).

    ``right_a``/``right_b``: per face, whether each was right; e.g. raw crops
    against found ones: the points lost to detection + crop.
    """
    rng = np.random.default_rng(seed)
    diff = right_a.astype(float) - right_b.astype(float)
    means = diff[rng.integers(0, len(diff), (resamples, len(diff)))].mean(axis=1) * 100
    return [round(float(v), 2) for v in np.percentile(means, [2.5, 97.5])]


def clip(photo, frames=90, seed=1):
    """A webcam-like clip: the photo drifting a few pixels per frame (BGR frames)."""
    import cv2

    rng = np.random.default_rng(seed)
    grey = photo[0]
    out, dx, dy = [], 0.0, 0.0
    for _ in range(frames):
        dx, dy = np.clip(dx + rng.normal(0, 1.5), -30, 30), np.clip(dy + rng.normal(0, 1.5), -30, 30)
        moved = cv2.warpAffine(grey, np.float32([[1, 0, dx], [0, 1, dy]]), grey.shape[::-1],
                               borderMode=cv2.BORDER_REFLECT)
        out.append(cv2.cvtColor(moved, cv2.COLOR_GRAY2BGR))
    return out


def live_speed(make, frames, truth):
    """Mean and worst ms per frame of a fresh live detector over ``frames``, and its mean recall."""
    detector = make()
    detector.detect(frames[0])  # warm-up: model built, graphs traced
    if hasattr(detector, "reset"):
        detector.reset()
    times, cpu, recall = [], [], []
    for frame in frames:
        start, start_cpu = time.perf_counter(), time.process_time()
        found = detector.detect(frame)
        times.append((time.perf_counter() - start) * 1000)
        cpu.append((time.process_time() - start_cpu) * 1000)
        recall.append(len(found) / max(len(truth), 1))
    return {"ms_mean": statistics.mean(times), "ms_worst": max(times), "fps": 1000 / statistics.mean(times),
            "cpu_ms_mean": statistics.mean(cpu), "cpu_fps": 1000 / max(statistics.mean(cpu), 1e-6),
            "faces_per_truth": statistics.mean(recall)}


def measure_framing(faces, count, seed):
    """Median place of each detector's box and landmarks inside the FER2013 48x48 frame."""
    import cv2

    from fer_keras.faces import build_detector

    rng = np.random.default_rng(seed)
    scale, pad = 4, 96
    side = faces.shape[1] * scale
    report = {}
    for name in ("haar", "mtcnn"):
        detector = build_detector(name)
        values = {k: [] for k in ("box_side", "box_dx", "box_dy", "eyes_x", "eyes_y", "tilt")}
        found = 0
        for i in rng.choice(len(faces), count, replace=False):
            canvas = np.full((side + 2 * pad, side + 2 * pad), 128, np.uint8)
            canvas[pad:pad + side, pad:pad + side] = cv2.resize(faces[i, ..., 0], (side, side),
                                                                interpolation=cv2.INTER_CUBIC)
            dets = detector.detect(canvas)
            if not dets:
                continue
            det = max(dets, key=lambda d: d.area)
            found += 1
            values["box_side"].append((det.w * det.h) ** 0.5 / side)
            values["box_dx"].append((det.x + det.w / 2 - pad) / side - 0.5)
            values["box_dy"].append((det.y + det.h / 2 - pad) / side - 0.5)
            if det.landmarks:
                (lx, ly), (rx, ry) = det.landmarks[0], det.landmarks[1]
                ex, ey = (lx + rx) / 2, (ly + ry) / 2
                values["eyes_x"].append((ex + 0.5 - pad) / side)
                values["eyes_y"].append((ey + 0.5 - pad) / side)
                values["tilt"].append(abs(float(np.degrees(np.arctan2(ry - ly, rx - lx)))))
        report[name] = {"faces": count, "found": found,
                        **{k: round(float(np.median(v)), 3) for k, v in values.items() if v},
                        **{f"{k}_iqr": round(float(np.subtract(*np.percentile(v, [75, 25]))), 3)
                           for k, v in values.items() if v}}
        if values["tilt"]:  # how far FER2013's own faces tilt: they were never levelled
            report[name]["tilt_p75_p90_p95"] = [round(float(np.percentile(values["tilt"], q)), 1) for q in (75, 90, 95)]
    return report


# === Main ===

def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--csv", default=str(CSV), help="FER2013 CSV with Training and PublicTest rows")
    parser.add_argument("--models-dir", default=str(REPO / "models"), help="the ensemble that classifies")
    parser.add_argument("--photos", type=int, default=150,
                        help="photos per set (default: %(default)s, about 800 faces: recall is known to about "
                             "+-1.6 points and the points lost to about +-2.5 (95%% intervals, printed); "
                             "40 photos leave about +-3 and +-5)")
    parser.add_argument("--quick", action="store_true", help="12 photos per set, a 45-frame clip")
    parser.add_argument("--detectors", nargs="*", default=["haar", "mtcnn:hog_proposals=False", "mtcnn"],
                        metavar="NAME[:OPTION=VALUE,...]",
                        help="detectors to compare, each a name with options of its class (default: %(default)s)")
    parser.add_argument("--framing", type=int, nargs="?", const=200, default=None, metavar="N",
                        help="measure the framing of each detector on N Training faces instead")
    parser.add_argument("--only", choices=("photos", "webcam"), help="run one part only")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)

    from fer_keras.cli.common import quiet_tensorflow

    quiet_tensorflow()
    from fer_keras.data import load_fer2013
    from fer_keras.data.dataset import seen_in
    from fer_keras.machine import machine_description

    splits = load_fer2013(args.csv)
    test = splits["PublicTest"]
    print(f"machine: {machine_description()}   date: {date.today()}")
    if args.framing:
        report = measure_framing(splits["Training"].x, args.framing, args.seed)
        print(json.dumps(report, indent=1))
        if args.json:
            Path(args.json).write_text(json.dumps({"framing": report}, indent=1))
        return 0

    photos = 12 if args.quick else args.photos
    sets = build_sets(test.x, photos, args.seed)
    results, acc, live = {}, [], {}
    if args.only != "webcam":
        acc = photo_part(args, sets, test, results, photos, seen_in(test.x, splits["Training"].x))
    if args.only != "photos":
        live = webcam_part(args, sets)
    if args.json:
        for res in results.values():
            for name in sets:
                res[name].pop("crops", None)
        Path(args.json).write_text(json.dumps({"machine": machine_description(), "date": str(date.today()),
                                               "photos": photos, "detection": results, "accuracy": acc,
                                               "webcam": live}, indent=1))
    return 0


def photo_part(args, sets, test, results, photos, seen):
    from fer_keras.faces import build_detector

    print(f"\n{photos} photos per set, 640x480; recall / false faces per photo / median ms per photo "
          "(wall / CPU time of this process)")
    width = max(10, *(len(name) + 1 for name in args.detectors))
    print(f"{'detector':<{width}}{'upright':>28}{'rotated':>28}{'empty':>20}")
    for name in args.detectors:
        detector = detector_from_spec(name)
        detector.detect(sets["empty"][0][0])  # warm-up
        res = run_detector(detector, sets)
        res["landmarks"] = detector.has_landmarks
        results[name] = res
        cells = [f"{res[s]['recall']:.1%} {res[s]['false_per_photo']:.2f} {res[s]['ms']:.0f}/{res[s]['cpu_ms']:.0f}ms"
                 for s in ("upright", "rotated")]
        print(f"{name:<{width}}{cells[0]:>28}{cells[1]:>28}{res['empty']['false_per_photo']:>8.2f} "
              f"{res['empty']['ms']:.0f}/{res['empty']['cpu_ms']:.0f}ms")
    for name, res in results.items():
        print(f"{name}: recall 95% intervals, upright [{res['upright']['recall_ci'][0]:.1%}, "
              f"{res['upright']['recall_ci'][1]:.1%}] of {res['upright']['faces']} faces, rotated "
              f"[{res['rotated']['recall_ci'][0]:.1%}, {res['rotated']['recall_ci'][1]:.1%}] of "
              f"{res['rotated']['faces']}")

    from fer_keras.ensemble import Ensemble

    ensemble = Ensemble.from_dir(args.models_dir)
    acc = accuracy_rows(ensemble, test.x, test.y, results, seen)
    print(f"\nensemble of {len(ensemble.members)}: accuracy on the found faces vs their raw 48x48 crops")
    print(f"{'detector':<{width}}{'set':<9}{'crop':<11}{'faces':>6}{'raw':>8}{'found':>8}{'lost [95% interval]':>22}"
          f"{'agree':>8}{'never-seen faces: lost':>32}")
    for r in acc:
        lost = f"{(r['acc_raw'] - r['acc_found']) * 100:.1f}p [{r['lost_ci'][0]:.1f}, {r['lost_ci'][1]:.1f}]"
        unseen = (f"{r['unseen_faces']}: {r['unseen_lost']:.1f}p [{r['unseen_lost_ci'][0]:.1f}, "
                  f"{r['unseen_lost_ci'][1]:.1f}]")
        print(f"{r['detector']:<{width}}{r['set']:<9}{r['crop']:<11}{r['faces']:>6}{r['acc_raw']:>8.1%}"
              f"{r['acc_found']:>8.1%}{lost:>22}{r['agree_raw']:>8.1%}{unseen:>32}")
    return acc


def detector_from_spec(spec):
    """``"mtcnn:hog_proposals=False,min_score=0.6"`` → ``build_detector("mtcnn", hog_proposals=False, min_score=0.6)``."""
    import ast

    from fer_keras.faces import build_detector

    name, _, options = spec.partition(":")
    pairs = (item.split("=", 1) for item in options.split(",") if item)
    return build_detector(name, **{key: ast.literal_eval(value) for key, value in pairs})


def webcam_part(args, sets):
    from fer_keras.faces import Tracker, build_detector

    frames = clip(sets["upright"][0], 45 if args.quick else 120)
    truth = sets["upright"][0][1]
    live = {}
    setups = {"haar every frame": lambda: build_detector("haar"),
              "haar at 320 px": lambda: build_detector("haar", detect_side=320),
              "mtcnn every frame": lambda: build_detector("mtcnn"),
              "mtcnn every 10th + tracking": lambda: Tracker("mtcnn", every=10),
              "mtcnn every 20th + tracking": lambda: Tracker("mtcnn", every=20),
              "mtcnn at 320 px every frame": lambda: build_detector("mtcnn", detect_side=320),
              "mtcnn at 320 px every 10th + tr.": lambda: Tracker("mtcnn", every=10, detect_side=320),
              "  the same, no HOG proposals": lambda: Tracker("mtcnn", every=10, detect_side=320,
                                                              hog_proposals=False),
              "haar at 320 px every 5th + tr.": lambda: Tracker("haar", every=5, detect_side=320)}
    print(f"\nwebcam: {len(frames)} drifting 640x480 frames with {len(truth)} faces; detection alone")
    print(f"{'set-up':<30}{'frames/s':>10}{'mean ms':>9}{'worst ms':>10}{'CPU ms':>8}{'fps by CPU':>11}"
          f"{'faces/truth':>13}")
    for name, make in setups.items():
        live[name] = live_speed(make, frames, truth)
        r = live[name]
        print(f"{name:<30}{r['fps']:>10.1f}{r['ms_mean']:>9.1f}{r['ms_worst']:>10.0f}{r['cpu_ms_mean']:>8.1f}"
              f"{r['cpu_fps']:>11.1f}{r['faces_per_truth']:>13.2f}")
    return live


if __name__ == "__main__":
    sys.exit(main())
