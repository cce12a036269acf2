"""Headless Chromium for the browser tests and the benchmark: found on this machine, launched with a fake
camera, and a server run in a thread (uvicorn) on 127.0.0.1."""

from __future__ import annotations

import contextlib
import shutil
import socket
import threading
import time

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
"""Without the background-networking flags Chromium's own connections hang on a closed network."""


def chromium_path():
    """The system Chromium (Playwright's own browsers cannot be downloaded here), or None."""
    return next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)


def camera_flags(y4m=None):
    """Chromium flags for a fake camera playing ``y4m``; None: no camera flags (a real browser, no camera)."""
    if y4m is None:
        return []
    return ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-video-capture={y4m}"]


def launch(playwright, flags=()):
    return playwright.chromium.launch(executable_path=chromium_path(), headless=True,
                                      args=CHROMIUM_FLAGS + list(flags))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(app, port=None):
    """Run ``app`` with uvicorn in a thread on 127.0.0.1; yields its base URL; stops it after."""
    import uvicorn

    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
