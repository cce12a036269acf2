"""What does the ensemble science cost? Calibration, bootstrap, McNemar, diversity, selection, figures.

On synthetic probability matrices the size of a FER2013 test split (3,589
faces, 10 members, 7 classes; no model is run), times as the median of
--repeats runs each:

  calibration    ECE, NLL, Brier and reliability bins, every member + ensemble
  bootstrap      95% intervals of accuracy and macro-F1, --resamples resamples, 11 models
  mcnemar        exact test of every member against the ensemble
  diversity      disagreement matrix and marginal accuracy of every member
  uncertainty    per-face entropy and member disagreement
  analyse_probas all of the above as evaluate() runs them
  figures        reliability.png, disagreement.png, worst.png (24 faces) and report.html
  temperatures   --calibrate: one temperature per member (fitted on another 3,589 faces)
  greedy         --select greedy on another 3,589 faces

The target: everything an evaluation adds (analyse_probas + figures) under 5 s.
A reference row times the obvious Python loop (sklearn per resample) for the
bootstrap, extrapolated from --loop-resamples resamples.

    python benchmarks/bench_ensemble_science.py
    python benchmarks/bench_ensemble_science.py --json /tmp/science.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fer_keras.cli.common import quiet_tensorflow  # noqa: E402

quiet_tensorflow()  # machine_description() imports TensorFlow to look for a GPU

from fer_keras import plots  # noqa: E402
from fer_keras.constants import CLASS_NAMES, NUM_CLASSES  # noqa: E402
from fer_keras.ensemble import analyse_probas, calibration, combine_probas, selection, stats  # noqa: E402
from fer_keras.ensemble.html import write_html  # noqa: E402
from fer_keras.machine import machine_description  # noqa: E402

TARGET_S = 5.0
FER_TEST_PRIOR = np.array([491, 55, 528, 879, 594, 416, 626]) / 3589  # PrivateTest class shares


def synthetic(n, m, *, seed):
    """Labels (n,) and member probabilities (m, n, 7): members share part of their errors, accuracies 0.55-0.7."""
    rng = np.random.default_rng(seed)
    y = rng.choice(NUM_CLASSES, size=n, p=FER_TEST_PRIOR)
    shared = rng.normal(0, 1.0, (n, NUM_CLASSES))
    stack = []
    for k in range(m):
        logits = 1.2 * shared + rng.normal(0, 1.0, (n, NUM_CLASSES))
        logits[np.arange(n), y] += 1.6 + 0.08 * k
        t = 0.6 + 0.1 * k  # members from over- to under-confident
        z = logits / t
        p = np.exp(z - z.max(axis=1, keepdims=True))
        stack.append(p / p.sum(axis=1, keepdims=True))
    return y, np.stack(stack).astype(np.float32)


def timed(fn, repeats):
    walls, cpus, result = [], [], None
    for _ in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        result = fn()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return {"median_s": statistics.median(walls), "min_s": min(walls), "cpu_s": statistics.median(cpus)}, result


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--faces", type=int, default=3589)
    p.add_argument("--members", type=int, default=10)
    p.add_argument("--resamples", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--loop-resamples", type=int, default=50, help="resamples timed for the Python-loop reference")
    p.add_argument("--json", help="also write the figures here")
    p.add_argument("--keep", help="write the figures into this folder (default: a temporary one)")
    args = p.parse_args(argv)

    n, m = args.faces, args.members
    y, stack = synthetic(n, m, seed=0)
    y_val, stack_val = synthetic(n, m, seed=1)
    names = [f"model_{i + 1}.h5" for i in range(m)]
    w = np.ones(m)
    probas = combine_probas(stack, w, "mean")
    preds = {"ensemble": probas.argmax(1), **{nm: s.argmax(1) for nm, s in zip(names, stack)}}
    rows = {}

    rows["calibration"], _ = timed(lambda: [calibration.calibration_metrics(y, q) for q in [*stack, probas]],
                                   args.repeats)
    rows["bootstrap"], _ = timed(lambda: stats.bootstrap_intervals(y, preds, n_classes=NUM_CLASSES,
                                                                   n_resamples=args.resamples, seed=0), args.repeats)
    ens_ok = preds["ensemble"] == y
    rows["mcnemar"], _ = timed(lambda: [stats.mcnemar_exact(s.argmax(1) == y, ens_ok) for s in stack], args.repeats)
    rows["diversity"], _ = timed(lambda: (selection.disagreement_matrix(stack),
                                          selection.marginal_accuracy(stack, y, w)), args.repeats)
    rows["uncertainty"], _ = timed(lambda: (calibration.entropy(probas), selection.face_disagreement(stack, probas)),
                                   args.repeats)
    rows["analyse_probas"], science = timed(
        lambda: analyse_probas(stack, y, names=names, weights=w, probas=probas, n_resamples=args.resamples, seed=0),
        args.repeats)

    faces = np.random.default_rng(2).integers(0, 256, (n, 48, 48, 1), dtype=np.uint8)
    out_dir = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-science-"))
    out_dir.mkdir(parents=True, exist_ok=True)

    def figures():
        cal = science["calibration"]
        bins = {nm: cal["members"][nm]["bins"] for nm in names}
        bins["ensemble"] = cal["ensemble"]["bins"]
        plots.save_figure(plots.reliability_figure(bins, title="reliability (synthetic)"),
                           out_dir / "reliability.png")
        plots.save_figure(plots.disagreement_figure(science["diversity"]["disagreement"], names),
                           out_dir / "disagreement.png")
        wrong = np.flatnonzero(probas.argmax(1) != y)
        worst = wrong[np.argsort(-probas.max(1)[wrong])[:24]]
        captions = [f"true {CLASS_NAMES[y[i]]}\npred {CLASS_NAMES[probas[i].argmax()]} {probas[i].max():.2f}"
                    for i in worst]
        plots.save_figure(plots.faces_sheet_figure(faces[worst], captions, title="most confidently wrong"),
                           out_dir / "worst.png")
        pngs = [(name, out_dir / f"{name}.png") for name in ("reliability", "disagreement", "worst")]
        rows_ = [[nm, science["calibration"]["members"][nm]["ece"]] for nm in names]
        write_html(out_dir / "report.html", "benchmark", ["synthetic"],
                   [("Calibration", [{"headers": ["model", "ECE"], "rows": rows_}])], pngs)

    rows["figures"], _ = timed(figures, args.repeats)
    rows["temperatures"], temps = timed(lambda: calibration.fit_temperatures(stack_val, y_val), args.repeats)
    rows["greedy"], sel = timed(lambda: selection.greedy_selection(stack_val, y_val), args.repeats)

    # Reference: the obvious loop, one sklearn call per resample, extrapolated.
    from sklearn.metrics import f1_score

    idx = stats.bootstrap_indices(n, args.loop_resamples, seed=0)

    def loop():
        for pred in preds.values():
            for b in idx:
                f1_score(y[b], pred[b], average="macro", labels=np.arange(NUM_CLASSES), zero_division=0)

    ref, _ = timed(loop, 1)
    scale = args.resamples / args.loop_resamples
    rows["bootstrap (sklearn loop, extrapolated)"] = {k: v * scale for k, v in ref.items()}

    added = rows["analyse_probas"]["median_s"] + rows["figures"]["median_s"]
    print(f"ensemble science on synthetic probabilities: {n} faces, {m} members, {NUM_CLASSES} classes, "
          f"{args.resamples} bootstrap resamples, median of {args.repeats}")
    print(f"machine: {machine_description()}")
    print(f"date: {datetime.datetime.now().isoformat(timespec='seconds')}; load average "
          f"{', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print()
    width = max(len(k) for k in rows)
    print(f"{'part':<{width}}  {'median s':>9}  {'min s':>8}  {'CPU s':>8}")
    for key, r in rows.items():
        print(f"{key:<{width}}  {r['median_s']:>9.3f}  {r['min_s']:>8.3f}  {r['cpu_s']:>8.3f}")
    print()
    speedup = rows["bootstrap (sklearn loop, extrapolated)"]["median_s"] / rows["bootstrap"]["median_s"]
    print(f"vectorised bootstrap vs the sklearn loop: {speedup:.0f}x faster")
    verdict = "meets" if added < TARGET_S else "MISSES"
    print(f"added to an evaluation (analyse_probas + figures): {added:.2f} s — {verdict} the {TARGET_S:.0f} s target")
    print(f"(check: ensemble ECE {science['calibration']['ensemble']['ece']:.4f}, temperatures "
          f"{temps.min():.2f}-{temps.max():.2f}, greedy picked {int(np.count_nonzero(sel.counts))} members; "
          f"figures in {out_dir})")

    if args.json:
        doc = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "machine": machine_description(),
               "load_average": os.getloadavg(), "faces": n, "members": m, "resamples": args.resamples,
               "repeats": args.repeats, "seconds": rows, "added_s": added, "target_s": TARGET_S,
               "meets_target": added < TARGET_S, "bootstrap_speedup_vs_loop": speedup}
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
