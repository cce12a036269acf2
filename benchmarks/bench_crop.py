"""Where the accuracy lost to detection + crop comes from: crop policies on many single faces.

``bench_detect.py`` measures the points lost on group photos, about 800
faces a set, which leaves the loss known to +-2.5 points: too coarse to
choose between crop policies. Here each PublicTest face (a seeded sample) is
pasted alone, enlarged to 56-150 px, on a textured background (upright, or
turned 15-25 degrees), MTCNN finds it once, and every policy crops the same
detection:

* ``default``: the one crop (eyes levelled when they tilt more than
  :data:`~fer_keras.faces.align.LEVEL_ABOVE` degrees, placed by the measured framing);
* ``no-align``: the same placement, not turned;
* ``level above K``: turned level only when the eyes tilt more than K
  degrees (the default is :data:`~fer_keras.faces.align.LEVEL_ABOVE`);
* ``exact``: the pasted square itself, turned back by the known angle: the
  floor that enlarging, turning and shrinking alone cost.

Per policy: the ensemble's accuracy on the crops against the raw 48x48 faces
(points lost) and the paired difference from ``default`` with a 95%
bootstrap interval (the faces resampled). Then per member, the points the
default crop costs it: members differ in how much a detector's framing
(FER2013's own crops vary in scale by about 9%) moves their answers, so
this is one of the things a member adds to, or takes from, the ensemble.

    nice -n 19 python benchmarks/bench_crop.py --faces 1800
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_detect  # noqa: E402  (backgrounds, pasting, the matching rule)

POLICIES = ("default", "no-align", "level above 0", "level above 4", "level above 12", "exact")


def single_faces(faces, count, rotated, rng):
    """``[(face index, canvas, side, angle), ...]``: one face per canvas, a margin of half its side round it."""
    out = []
    for index in rng.choice(len(faces), count, replace=False):
        side = int(rng.integers(*bench_detect.SIZES))
        pad = side // 2 + 8
        canvas = bench_detect.background(rng, (side + 2 * pad, side + 2 * pad))
        angle = float(rng.uniform(*bench_detect.ANGLES) * rng.choice([-1, 1])) if rotated else 0.0
        bench_detect.paste_face(canvas, faces[index, ..., 0], pad, pad, side, angle)
        out.append((int(index), canvas, side, angle))
    return out


def exact_crop(canvas, side, angle):
    """The pasted square, turned back by ``angle``, shrunk to 48x48: the crop a perfect detector would give."""
    import cv2

    pad = side // 2 + 8
    if angle:
        centre = (pad + side / 2 - 0.5, pad + side / 2 - 0.5)
        canvas = cv2.warpAffine(canvas, cv2.getRotationMatrix2D(centre, -angle, 1.0), canvas.shape[::-1],
                                flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return cv2.resize(canvas[pad:pad + side, pad:pad + side], (48, 48), interpolation=cv2.INTER_AREA)


def policy_crop(policy, canvas, detection, side, angle, framing):
    from fer_keras.faces import crop_face

    if policy == "exact":
        return exact_crop(canvas, side, angle)
    if policy == "no-align":
        return crop_face(canvas, detection, framing=framing, align=False)
    if policy.startswith("level above"):
        return crop_face(canvas, detection, framing=framing, level_above=float(policy.split()[-1]))
    return crop_face(canvas, detection, framing=framing)


def member_losses(ensemble, raw_faces, crops, truth):
    """``{member: {"acc_raw", "acc_crop", "lost", "lost_ci"}}``: each member alone on the raw faces and on their crops."""
    raw = ensemble.member_probas(raw_faces).argmax(axis=-1) == truth
    cut = ensemble.member_probas(crops).argmax(axis=-1) == truth
    print(f"{'member (default crop)':<28}{'raw':>8}{'crop':>8}{'lost [95% interval]':>24}")
    out = {}
    for member, right_raw, right_cut in zip(ensemble.members, raw, cut):
        lost = 100 * (right_raw.mean() - right_cut.mean())
        interval = bench_detect.paired_interval(right_raw, right_cut)
        out[member.name] = {"acc_raw": float(right_raw.mean()), "acc_crop": float(right_cut.mean()),
                            "lost": float(lost), "lost_ci": interval}
        print(f"{member.name:<28}{right_raw.mean():>8.1%}{right_cut.mean():>8.1%}"
              f"{lost:>9.2f}p [{interval[0]:.2f}, {interval[1]:.2f}]", flush=True)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--csv", default=str(bench_detect.CSV), help="FER2013 CSV with PublicTest rows")
    parser.add_argument("--models-dir", default=str(bench_detect.REPO / "models"), help="the ensemble that classifies")
    parser.add_argument("--faces", type=int, default=1800,
                        help="faces per set (default: %(default)s: the points lost known to about +-1)")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)

    from fer_keras.cli.common import quiet_tensorflow

    quiet_tensorflow()
    from fer_keras.data import load_fer2013
    from fer_keras.ensemble import Ensemble
    from fer_keras.faces import build_detector, to_bgr
    from fer_keras.machine import machine_description

    test = load_fer2013(args.csv)["PublicTest"]
    count = min(args.faces, len(test.x))
    detector = build_detector("mtcnn")
    ensemble = Ensemble.from_dir(args.models_dir)
    rng = np.random.default_rng(args.seed)
    print(f"machine: {machine_description()}   date: {date.today()}   seed {args.seed}, {count} faces per set, "
          f"ensemble of {len(ensemble.members)}")
    results = {}
    for name in ("upright", "rotated"):
        rows = []
        for index, canvas, side, angle in single_faces(test.x, count, name == "rotated", rng):
            centre = side // 2 + 8 + side / 2
            found, _ = bench_detect.match(detector.detect(to_bgr(canvas)), [(index, centre, centre, side, angle)])
            if 0 in found:
                rows.append((index, canvas, found[0], side, angle))
        index = np.array([r[0] for r in rows])
        truth, raw = test.y[index], ensemble.predict(test.x[index])
        print(f"\n{name}: MTCNN found {len(rows)} of {count}; the ensemble on their raw crops {np.mean(raw == truth):.1%}")
        print(f"{'crop':<14}{'accuracy':>10}{'lost':>8}{'agree':>8}   vs default [95% interval]")
        base, results[name] = None, {"found": len(rows), "faces": count, "acc_raw": float(np.mean(raw == truth))}
        for policy in POLICIES:
            crops = np.stack([policy_crop(policy, c, d, s, a, detector.framing) for _, c, d, s, a in rows])
            default_crops = crops if policy == "default" else default_crops
            got = ensemble.predict(crops[..., None])
            right = got == truth
            base = right if base is None else base
            lost = 100 * (np.mean(raw == truth) - right.mean())
            delta = 100 * (right.mean() - base.mean())
            interval = bench_detect.paired_interval(right, base)  # paired bootstrap of right - base
            results[name][policy] = {"acc": float(right.mean()), "lost": float(lost), "agree": float(np.mean(got == raw)),
                                     "vs_default": float(delta), "vs_default_ci": interval}
            print(f"{policy:<14}{right.mean():>10.1%}{lost:>7.2f}p{np.mean(got == raw):>8.1%}   "
                  f"{delta:+.2f} [{interval[0]:+.2f}, {interval[1]:+.2f}]", flush=True)
        results[name]["members"] = member_losses(ensemble, test.x[index], default_crops[..., None], truth)
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine_description(), "date": str(date.today()),
                                               "seed": args.seed, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
