"""serve.py measured: REST requests/s and latency under a bounded load, and the live view's annotated
frames/s in headless Chromium with a fake camera.

Load test: two ``serve.py`` processes on 127.0.0.1 (the shipped models, or
--models-dir), one with micro-batching and one without (``--no-batching``);
POSTs of a one-face 640x480 JPEG (the bundled photo) go to ``/api/predict``
from 1 client, then from --clients clients at once (threads, one HTTP
connection each), in --rounds rounds that alternate between the two servers
so a change in the machine's load falls on both. Everything stops by itself
after its requests. Reported: requests/s, p50/p95 latency, the count of 5xx
answers (the target is zero).

Live view: the page at ``/`` in headless Chromium, its camera a .y4m of
FER2013 faces (the bundled photo without the dataset), the distilled member
behind ``/api/live``; annotated frames/s counted by the page over --seconds.

    python benchmarks/bench_serve.py --requests 300 --clients 8 --seconds 10 --json serve.json
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def start_server(models_dir, port, *extra):
    """``python serve.py`` in a child process; returns it once /api/health answers."""
    import httpx

    process = subprocess.Popen([sys.executable, "serve.py", "--models-dir", str(models_dir), "--port", str(port),
                                *extra], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"serve.py exited: {process.stderr.read()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    process.kill()
    raise RuntimeError("serve.py did not answer within 180 s")


def stop_server(process):
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


def load(url, picture, *, requests, clients):
    """``requests`` POSTs of ``picture`` from ``clients`` threads → requests/s, latency percentiles, status counts."""
    import httpx

    latencies, statuses, lock = [], {}, threading.Lock()
    remaining = iter(range(requests))

    def client():
        with httpx.Client(timeout=60) as http:
            while True:
                with lock:
                    if next(remaining, None) is None:
                        return
                start = time.perf_counter()
                try:
                    status = http.post(url, files={"image": ("frame.jpg", picture, "image/jpeg")}).status_code
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                elapsed = time.perf_counter() - start
                with lock:
                    latencies.append(elapsed)
                    statuses[status] = statuses.get(status, 0) + 1

    # two warm-up requests first: the first of each thread opens its connection
    with httpx.Client(timeout=60) as http:
        for _ in range(2):
            http.post(url, files={"image": ("frame.jpg", picture, "image/jpeg")})
    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    ms = sorted(x * 1000 for x in latencies)
    return {"clients": clients, "requests": len(ms), "seconds": round(wall, 2),
            "requests_per_s": round(len(ms) / wall, 2), "latencies_ms": ms,
            "server_errors": sum(n for s, n in statuses.items() if isinstance(s, int) and s >= 500),
            "statuses": {str(k): v for k, v in statuses.items()}}


def browser_fps(base_url, seconds, workdir):
    """Annotated frames/s of the live view in headless Chromium with a fake camera of FER2013 faces."""
    from playwright.sync_api import sync_playwright

    from tests.serve.browser import camera_flags, chromium_path, launch
    from tests.serve.camera import FER2013_CSV, camera_frames, write_y4m

    if chromium_path() is None:
        return {"skipped": "no chromium"}
    y4m = write_y4m(Path(workdir) / "faces.y4m", camera_frames())
    with sync_playwright() as p:
        browser = launch(p, camera_flags(y4m))
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto(base_url + "/")
        page.click("#camera-button")
        page.wait_for_function("window.ferStats.frames >= 5", timeout=60000)
        counts = "[window.ferStats.frames, window.ferStats.framesWithFaces, performance.now()]"
        before = page.evaluate(counts)
        page.wait_for_timeout(seconds * 1000)
        after = page.evaluate(counts)
        browser.close()
    frames, with_face = after[0] - before[0], after[1] - before[1]
    return {"frames": frames, "seconds": round((after[2] - before[2]) / 1000, 2),
            "annotated_fps": round(frames / ((after[2] - before[2]) / 1000), 1),
            "frames_with_a_face": f"{with_face / max(frames, 1):.0%}",
            "camera": "FER2013 PublicTest faces" if FER2013_CSV.is_file() else "bundled photo"}


def merge(runs):
    """One row from the rounds of one configuration: latencies pooled, requests/s over the summed wall time."""
    ms = sorted(x for r in runs for x in r.pop("latencies_ms"))
    wall = sum(r["seconds"] for r in runs)
    statuses = {}
    for r in runs:
        for k, v in r["statuses"].items():
            statuses[k] = statuses.get(k, 0) + v
    return {"clients": runs[0]["clients"], "requests": len(ms), "seconds": round(wall, 2),
            "requests_per_s": round(len(ms) / wall, 2), "p50_ms": round(statistics.median(ms), 1),
            "p95_ms": round(ms[min(len(ms) - 1, int(0.95 * len(ms)))], 1),
            "server_errors": sum(r["server_errors"] for r in runs), "statuses": statuses,
            "rounds_requests_per_s": [r["requests_per_s"] for r in runs]}


def main(argv=None):
    import os
    import tempfile

    import cv2

    from fer_keras.machine import cpu_model
    from tests.serve.browser import free_port
    from tests.serve.camera import photo_frame

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models-dir", default=str(REPO / "models"))
    p.add_argument("--requests", type=int, default=300, help="requests per configuration at --clients "
                   "(default: %(default)s)")
    p.add_argument("--single-requests", type=int, default=100,
                   help="requests per configuration from one client (default: %(default)s)")
    p.add_argument("--clients", type=int, default=8, help="concurrent clients (default: %(default)s)")
    p.add_argument("--rounds", type=int, default=3, help="the requests are split into this many rounds, "
                   "batching on and off taking turns, so a change in the machine's load hits both (default: "
                   "%(default)s)")
    p.add_argument("--seconds", type=float, default=10, help="live view measured for (default: %(default)s)")
    p.add_argument("--skip-browser", action="store_true", help="no live-view measurement")
    p.add_argument("--skip-load", action="store_true", help="only the live view")
    p.add_argument("--detector", help="serve.py --detector for the uploaded pictures (default: serve.py's)")
    p.add_argument("--live-detector", help="serve.py --live-detector for the webcam frames (default: serve.py's)")
    p.add_argument("--serve-args", default="", metavar="FLAGS",
                   help="more serve.py flags for both servers, one string after an equals sign "
                   "(e.g. --serve-args=--no-hog-proposals)")
    p.add_argument("--json", help="also write the figures here")
    args = p.parse_args(argv)
    server_flags = ["--detector", args.detector] if args.detector else []
    server_flags += ["--live-detector", args.live_detector] if args.live_detector else []
    server_flags += shlex.split(args.serve_args)

    picture = cv2.imencode(".jpg", photo_frame(), [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
    report = {"date": datetime.now(timezone.utc).isoformat(timespec="minutes"), "cpu": cpu_model(),
              "detector": args.detector or "serve.py's default",
              "live_detector": args.live_detector or "serve.py's default", "serve_args": args.serve_args,
              "cores": os.cpu_count(), "load_average_before": os.getloadavg(), "picture_bytes": len(picture),
              "runs": []}
    print(f"{report['cpu']}, {report['cores']} cores, load average {report['load_average_before'][0]:.2f}, "
          f"detector: {report['detector']}, live detector: {report['live_detector']}"
          + (f", serve.py {args.serve_args}" if args.serve_args else ""))
    # Both servers run at once (an idle one costs nothing); the rounds alternate between them.
    ports = {True: free_port(), False: free_port()}
    servers = {batching: start_server(args.models_dir, port, *server_flags, *([] if batching else ["--no-batching"]))
               for batching, port in ports.items()}
    try:
        if not args.skip_load:
            print(f"{'batching':<9} {'clients':>7} {'requests':>8} {'req/s':>7} {'p50 ms':>7} {'p95 ms':>7} "
                  f"{'5xx':>4}  req/s per round")
            for clients, requests in ((1, args.single_requests), (args.clients, args.requests)):
                rounds = {True: [], False: []}
                for _ in range(args.rounds):
                    for batching, port in ports.items():
                        run = load(f"http://127.0.0.1:{port}/api/predict", picture,
                                   requests=max(1, requests // args.rounds), clients=clients)
                        rounds[batching].append(run)
                for batching, runs in rounds.items():
                    row = merge(runs) | {"batching": batching}
                    report["runs"].append(row)
                    print(f"{'on' if batching else 'off':<9} {clients:>7} {row['requests']:>8} "
                          f"{row['requests_per_s']:>7} {row['p50_ms']:>7} {row['p95_ms']:>7} "
                          f"{row['server_errors']:>4}  {row['rounds_requests_per_s']}", flush=True)
        if not args.skip_browser:
            with tempfile.TemporaryDirectory() as work:
                report["live"] = browser_fps(f"http://127.0.0.1:{ports[True]}", args.seconds, work)
            print(f"live view: {report['live']}", flush=True)
    finally:
        for server in servers.values():
            stop_server(server)
    report["load_average_after"] = os.getloadavg()
    print(f"load average after: {report['load_average_after'][0]:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
