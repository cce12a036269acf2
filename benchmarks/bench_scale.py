"""How load time, memory and evaluation time grow with the number of faces.

CSVs of 3.5k, 35k and 350k rows are synthesised by repeating the rows of the
shared FER2013 file (or generated faces when it is absent); each size is
measured in a fresh subprocess so peak memory (max RSS) belongs to that size
alone. Evaluation runs the members of --models-dir (or, when it has none, a
VGG-16 at width 0.25 built on the spot) over every face, batched at 256.

    python benchmarks/bench_scale.py                         # 3589 35890 358900 rows
    python benchmarks/bench_scale.py --rows 3589 35890 --json scale.json

Near-linear growth shows as a flat "per 1k rows" column.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED_CSV = REPO.parent / "shared" / "data" / "fer2013" / "fer2013_train_publictest.csv.gz"


def write_csv(path, rows, source):
    """A CSV of ``rows`` rows, cycling through the rows of ``source`` (or generated faces)."""
    import numpy as np

    from fer_keras import data
    from fer_keras.data import synthetic

    if source and Path(source).exists():
        ds = data.load_fer2013(source, cache_dir=Path(path).parent / "cache")
        x = np.concatenate([s.x for s in ds.splits.values()])
        y = np.concatenate([s.y for s in ds.splits.values()])
    else:
        x, y = synthetic.synthetic_faces(3589)
    flat = x.reshape(len(x), -1)
    lines = [f"{y[i]},{' '.join(map(str, flat[i].tolist()))},PrivateTest\n" for i in range(min(rows, len(x)))]
    with open(path, "w") as fh:
        fh.write("emotion,pixels,Usage\n")
        written = 0
        while written < rows:
            chunk = lines[: rows - written]
            fh.writelines(chunk)
            written += len(chunk)


def measure(csv, models_dir):
    """Cold load, warm load and evaluation of one CSV (runs in a child process)."""
    from fer_keras.cli.common import quiet_tensorflow

    quiet_tensorflow()
    from fer_keras import data, ensemble, models

    cache = Path(csv).parent / "cache_measure"
    start = time.perf_counter()
    ds = data.load_fer2013(csv, cache=False)
    cold = time.perf_counter() - start
    data.load_fer2013(csv, cache_dir=cache)  # writes the cache
    start = time.perf_counter()
    ds = data.load_fer2013(csv, cache_dir=cache)
    warm = time.perf_counter() - start
    split = ds["PrivateTest"]
    files = ensemble.find_model_files(models_dir) if Path(models_dir).is_dir() else []
    if files:
        members, _ = ensemble.load_members(files)
        model = ensemble.Ensemble(members)
        predict = lambda x: model.predict_proba(x)  # noqa: E731
        evaluated = f"{len(members)} member(s) of {models_dir}"
    else:
        net = models.build("vgg16", width=0.25)
        predict = lambda x: net.predict(x, batch_size=256, verbose=0)  # noqa: E731
        evaluated = "vgg16 width 0.25 (no models found)"
    predict(split.x[:256])  # trace once
    start = time.perf_counter()
    predict(split.x)
    evaluate = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"rows": len(split), "cold_s": cold, "warm_s": warm, "eval_s": evaluate,
            "peak_rss_mb": peak_mb, "evaluated": evaluated}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="*", default=[3589, 35890, 358900])
    parser.add_argument("--source", default=str(SHARED_CSV), help="CSV whose rows are repeated")
    parser.add_argument("--models-dir", default=str(REPO / "models"))
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--_child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._child:
        print(json.dumps(measure(*args._child)))
        return 0

    from fer_keras.machine import machine_description

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for rows in args.rows:
            csv = Path(tmp) / f"rows_{rows}.csv"
            write_csv(csv, rows, args.source)
            out = subprocess.run([sys.executable, __file__, "--_child", str(csv), args.models_dir],
                                 capture_output=True, text=True, cwd=REPO, env=dict(os.environ))
            if out.returncode != 0:
                print(out.stderr[-2000:], file=sys.stderr)
                return 1
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
            csv.unlink()
            r = results[-1]
            print(f"{r['rows']:>8} rows: cold {r['cold_s']:.2f} s, warm {r['warm_s']:.3f} s, "
                  f"eval {r['eval_s']:.1f} s, peak {r['peak_rss_mb']:.0f} MB", flush=True)
    print(f"\nmachine: {machine_description()}   date: {date.today()}   evaluated: {results[0]['evaluated']}")
    print(f"{'rows':>8}{'cold s':>9}{'per 1k':>8}{'warm s':>9}{'per 1k':>8}{'eval s':>9}{'per 1k':>8}{'peak MB':>9}")
    for r in results:
        k = r["rows"] / 1000
        print(f"{r['rows']:>8}{r['cold_s']:>9.2f}{r['cold_s'] / k:>8.3f}{r['warm_s']:>9.3f}{r['warm_s'] / k:>8.4f}"
              f"{r['eval_s']:>9.1f}{r['eval_s'] / k:>8.3f}{r['peak_rss_mb']:>9.0f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine_description(), "date": str(date.today()),
                                               "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
