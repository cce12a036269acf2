"""How fast does FER2013 load? pandas baseline vs fer_keras (cold, cached) vs an image folder.

Times, as the median of --repeats runs each:
  (a) baseline  pandas.read_csv + per-row np.array(s.split(), dtype=np.uint8), stacked
  (b) cold      fer_keras.data.load_fer2013(path, cache=False)
  (e) first     the first load_fer2013(path, cache=False) in a fresh Python
                process, as right after an install: the import of fer_keras.data
                and anything done once per process are timed too (each run
                with an empty NUMBA_CACHE_DIR, so no JIT cache could help)
  (c) warm      load_fer2013 again with its .npz cache (in a temporary cache_dir)
  (d) folder    load_image_folder on a PNG tree of the first --folder-rows faces
and prints a table with speed-ups over the baseline (per face for the folder),
plus the machine, the date and the load average (other processes slow every
row alike; the CPU-seconds column is less sensitive to them). --breakdown adds
where the cold load's time goes.

    python benchmarks/bench_data.py
    python benchmarks/bench_data.py --rows 100000 --json /tmp/bench.json
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import hashlib
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fer_keras.cli.common import quiet_tensorflow  # noqa: E402

quiet_tensorflow()  # machine_description() imports TensorFlow to look for a GPU

from fer_keras import data  # noqa: E402
from fer_keras.constants import CLASS_NAMES, PIXELS_PER_IMAGE  # noqa: E402
from fer_keras.data import convert, fer2013  # noqa: E402

DEFAULT_CSV = REPO.parent / "shared" / "data" / "fer2013" / "fer2013_train_publictest.csv.gz"


def timed(fn, repeats):
    """Median/min wall seconds and median CPU seconds of ``repeats`` calls; last result."""
    walls, cpus, result = [], [], None
    for _ in range(repeats):
        result = None
        c0, w0 = time.process_time(), time.perf_counter()
        result = fn()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return {"median_s": statistics.median(walls), "min_s": min(walls), "cpu_s": statistics.median(cpus),
            "runs_s": walls}, result


def baseline(path):
    """The usual FER2013 loader found in tutorials."""
    import pandas as pd

    frame = pd.read_csv(path)
    x = np.stack([np.array(s.split(), dtype=np.uint8) for s in frame["pixels"]]).reshape(-1, 48, 48, 1)
    return x, frame["emotion"].to_numpy(), frame["Usage"].to_numpy() if "Usage" in frame else None


def synthesise(source, rows, folder):
    """A CSV of ``rows`` rows made by repeating ``source``'s rows (same compression)."""
    opener = gzip.open if source.suffix == ".gz" else open
    with opener(source, "rb") as fh:
        header = fh.readline()
        lines = fh.read().splitlines(keepends=True)
    if not lines[-1].endswith(b"\n"):
        lines[-1] += b"\n"
    out = folder / f"synthetic_{rows}{''.join(source.suffixes)}"
    body = b"".join(lines[i % len(lines)] for i in range(rows))
    if source.suffix == ".gz":
        out.write_bytes(gzip.compress(header + body, compresslevel=6, mtime=0))
    else:
        out.write_bytes(header + body)
    return out


FIRST_LOAD = """
import sys, time
wall, cpu = time.perf_counter(), time.process_time()
from fer_keras import data
data.load_fer2013(sys.argv[1], cache=False)
print(time.perf_counter() - wall, time.process_time() - cpu)
"""


def first_load(path, repeats):
    """Wall seconds of the first load in a fresh process (median of ``repeats``
    processes), from importing ``fer_keras.data`` to the parsed arrays."""
    walls, cpus = [], []
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", FIRST_LOAD, str(path)], env=env, cwd=REPO,
                             capture_output=True, text=True, check=True)
        wall, cpu = map(float, out.stdout.strip().splitlines()[-1].split())
        walls.append(wall)
        cpus.append(cpu)
    return {"median_s": statistics.median(walls), "min_s": min(walls), "cpu_s": statistics.median(cpus),
            "runs_s": walls}


def cpu_model():
    """The CPU model as ``lscpu`` names it (None where lscpu is missing)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), None)


def warm_up(folder):
    """Parse a tiny CSV once so one-time work (imports, tables) is not timed in (b)."""
    tiny = folder / "warmup.csv"
    pixels = " ".join(["0"] * PIXELS_PER_IMAGE)
    tiny.write_text(f"emotion,pixels,Usage\n0,{pixels},Training\n")
    start = time.perf_counter()
    data.load_fer2013(tiny, cache=False)
    convert.csv_lines(np.zeros((1, PIXELS_PER_IMAGE), np.uint8), [0]).__next__()
    return time.perf_counter() - start


def breakdown(path, repeats):
    """Where a cold load's time goes: decompression, hashing, the kernel, the rest."""
    from fer_keras.data import _csv_kernel as kernel

    parts = {}
    raw = path.read_bytes()
    parts["sha256 of the file"] = timed(lambda: hashlib.sha256(raw).hexdigest(), repeats)[0]
    if raw[:2] == b"\x1f\x8b":
        import zlib

        parts["gunzip, zlib (stdlib gzip)"] = timed(lambda: zlib.decompress(raw, 31), repeats)[0]
        if fer2013._igzip is not None:
            from isal import isal_zlib

            parts["gunzip, isal (used when installed)"] = timed(lambda: isal_zlib.decompress(raw, 31), repeats)[0]
            text = isal_zlib.decompress(raw, 31)
        else:
            text = zlib.decompress(raw, 31)
    else:
        text = raw
    body = text[text.index(b"\n") + 1:]
    buf = np.frombuffer(body, np.uint8)

    def scan():
        return kernel.scan_rows(buf, 2, 3, 0, 1, 2, kernel.pixel_buffer(len(body)))

    parts["parse kernel (numpy), whole text"] = timed(scan, repeats)[0]
    n, _, _, meta = scan()
    spans = meta[:, 4:6].tolist()

    def usages():
        known = {}
        for start, end in spans:
            t = body[start:end]
            if t not in known:
                known[t] = fer2013._usage_code(t)
        return len(known)

    parts["Usage decoding"] = timed(usages, repeats)[0]
    for prefetch in (False, True):
        fer2013.PREFETCH = prefetch
        parts[f"cold load, reader thread {'on' if prefetch else 'off'}"] = timed(
            lambda: data.load_fer2013(path, cache=False), repeats)[0]
    fer2013.PREFETCH = True
    return parts


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("csv", nargs="?", default=str(DEFAULT_CSV), help="FER2013-layout CSV (default: %(default)s)")
    p.add_argument("--rows", type=int, help="synthesise a CSV of this many rows by repeating the CSV's rows")
    p.add_argument("--folder-rows", type=int, default=3589, help="faces in the PNG tree for (d) (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=3,
                   help="runs per method; the median is reported (default: %(default)s)")
    p.add_argument("--breakdown", action="store_true", help="also time the parts of a cold load")
    p.add_argument("--json", metavar="PATH", help="write the results here")
    args = p.parse_args(argv)

    source = Path(args.csv)
    if not source.is_file():
        p.error(f"{source}: no such file (pass a FER2013 CSV)")
    from fer_keras.machine import machine_description

    info = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "machine": machine_description(), "cpu_model": cpu_model(), "python": platform.python_version(),
            "numpy": np.__version__, "isal": fer2013._igzip is not None, "reader_thread": fer2013.PREFETCH,
            "load_average_start": os.getloadavg()}
    print(f"date     {info['date']}")
    print(f"machine  {info['machine']}")
    print(f"cpu      {info['cpu_model']} (lscpu Model name)")
    print(f"load avg {' '.join(f'{v:.2f}' for v in info['load_average_start'])} (other processes share the CPU)")
    with tempfile.TemporaryDirectory(prefix="bench_data-") as tmp:
        tmp = Path(tmp)
        info["warmup_s"] = warm_up(tmp)
        print(f"warm-up  {info['warmup_s']:.2f} s: one parse of a 1-row CSV first, so one-time work "
              "is not timed in (b); (e) times it")
        path = synthesise(source, args.rows, tmp) if args.rows else source
        info["csv"], info["csv_bytes"] = str(path), path.stat().st_size
        results = {}

        print("timing   (a) baseline ...", flush=True)
        results["baseline"], (bx, by, busage) = timed(lambda: baseline(path), args.repeats)
        rows = len(by)
        print("timing   (b) cold ...", flush=True)
        results["cold"], ds = timed(lambda: data.load_fer2013(path, cache=False), args.repeats)
        for usage in ds.splits if busage is not None else ():  # same faces as the baseline
            mask = busage == usage
            assert np.array_equal(ds[usage].x, bx[mask]) and np.array_equal(ds[usage].y, by[mask]), usage
        del bx
        print("timing   (e) first load in a fresh process ...", flush=True)
        results["first"] = first_load(path, args.repeats)
        print("timing   (c) warm (cache hit) ...", flush=True)
        data.load_fer2013(path, cache_dir=tmp / "cache")
        results["warm"], _ = timed(lambda: data.load_fer2013(path, cache_dir=tmp / "cache"), args.repeats)
        folder_rows = min(args.folder_rows, rows)
        print(f"timing   (d) image folder ({folder_rows} PNGs) ...", flush=True)
        tree = tmp / "tree"
        written = 0
        for usage, split in ds.splits.items():
            for i in range(min(len(split), folder_rows - written)):
                target = tree / usage / CLASS_NAMES[int(split.y[i])] / f"{usage}_{i}.png"
                target.parent.mkdir(parents=True, exist_ok=True)
                convert.save_png(split.x[i], target)
                written += 1
        results["folder"], _ = timed(lambda: data.load_image_folder(tree), args.repeats)
        parts = breakdown(path, args.repeats) if args.breakdown else None
    info["load_average_end"] = os.getloadavg()

    sizes = {"baseline": rows, "cold": rows, "first": rows, "warm": rows, "folder": folder_rows}
    per_face = results["baseline"]["median_s"] / rows
    labels = {"baseline": "(a) pandas + str.split", "cold": "(b) load_fer2013, cold",
              "first": "(e) first load, new process",
              "warm": "(c) load_fer2013, cached", "folder": "(d) load_image_folder, PNG"}
    print(f"\n{rows:,} faces from {path.name} ({info['csv_bytes'] / 1e6:.1f} MB); median of {args.repeats}")
    print(f"{'method':<28} {'faces':>7} {'median s':>9} {'min s':>7} {'CPU s':>7} {'faces/s':>10} {'speed-up':>9}")
    for key, r in results.items():
        r["faces"] = sizes[key]
        r["faces_per_s"] = sizes[key] / r["median_s"]
        r["speedup_vs_baseline"] = per_face * sizes[key] / r["median_s"]
        print(f"{labels[key]:<28} {sizes[key]:>7,} {r['median_s']:>9.3f} {r['min_s']:>7.3f} {r['cpu_s']:>7.2f} "
              f"{r['faces_per_s']:>10,.0f} {r['speedup_vs_baseline']:>8.1f}x")
    print("speed-up: baseline time per face / method time per face")
    if parts:
        print("\nwhere a cold load's time goes (median s):")
        for name, r in parts.items():
            print(f"  {name:<40} {r['median_s']:7.3f}  (CPU {r['cpu_s']:.2f})")
    print(f"load avg at the end {' '.join(f'{v:.2f}' for v in info['load_average_end'])}")
    if args.json:
        from fer_keras.io_utils import write_json_atomic

        write_json_atomic(args.json, {**info, "rows": rows, "repeats": args.repeats, "results": results,
                                      "breakdown": parts})
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
