"""Shared test settings and fixtures.

Hypothesis: every run draws its examples from one seed, printed in pytest's
header, so a CI failure replays exactly: ``HYPOTHESIS_SEED=<seed> python -m
pytest ...`` (or ``--hypothesis-seed <seed>``). ``HYPOTHESIS_SEED=random``
draws a new seed, still printed, to explore beyond the fixed one.

Band faces, which every suite draws: a bright band at rows ``6 * label`` to
``6 * label + 5`` over a noisy background, so a tiny model learns it in a few
steps and an "oracle" that reads the band is exactly right: figures can be
asserted. ``tiny_csv`` and ``learnable_csv`` are CSVs of them.
"""

import os
import random

import numpy as np
import pytest

DEFAULT_HYPOTHESIS_SEED = 0


def _hypothesis_seed(config):
    given = config.getoption("--hypothesis-seed", default=None)
    if given is not None:
        return given
    wanted = os.environ.get("HYPOTHESIS_SEED", str(DEFAULT_HYPOTHESIS_SEED))
    return random.SystemRandom().randrange(2**32) if wanted == "random" else int(wanted)


def pytest_configure(config):
    from hypothesis import core

    config.hypothesis_seed = _hypothesis_seed(config)
    core.global_force_seed = config.hypothesis_seed  # what --hypothesis-seed sets


def pytest_report_header(config):
    return (f"hypothesis seed {config.hypothesis_seed} "
            "(replay: HYPOTHESIS_SEED=<seed>; explore: HYPOTHESIS_SEED=random)")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    # Also at the end: `pytest -q` (CI) shows no header.
    terminalreporter.write_line(pytest_report_header(config))


def band_face(label, rng, *, noise=30):
    """A 48x48 uint8 face: the band of class ``label`` (8 bands fit) over noise in ``0..noise``."""
    img = rng.integers(0, noise, (48, 48)).astype(np.uint8)
    img[label * 6: label * 6 + 6] = 250
    return img


def write_band_csv(path, rows, *, noise=30, seed=0):
    """A FER2013-layout CSV of band faces; ``rows``: ``(label, class the band shows, Usage)``."""
    rng = np.random.default_rng(seed)
    lines = ["emotion,pixels,Usage"]
    for label, shown, usage in rows:
        lines.append(f"{label},{' '.join(map(str, band_face(shown, rng, noise=noise).ravel()))},{usage}")
    path.write_text("\n".join(lines) + "\n")
    return path


CONFUSIONS = [(0, 2), (0, 2), (4, 6), (5, 3)]
"""PrivateTest faces of :func:`tiny_csv` whose band shows another class (true → shown)."""


@pytest.fixture(scope="session")
def tiny_csv(tmp_path_factory):
    """PublicTest: 35 clean faces; PrivateTest: 21 clean faces and the 4 :data:`CONFUSIONS`, so the
    oracle's confusion matrix is known exactly."""
    rows = [(k, k, "Training") for k in range(7)]
    rows += [(i % 7, i % 7, "PublicTest") for i in range(35)]
    rows += [(k, k, "PrivateTest") for k in range(7) for _ in range(3)]
    rows += [(t, shown, "PrivateTest") for t, shown in CONFUSIONS]
    return write_band_csv(tmp_path_factory.mktemp("csv") / "tiny.csv", rows)


@pytest.fixture(scope="session")
def learnable_csv(tmp_path_factory):
    """A 7-class CSV a tiny model learns in a few epochs: 140 Training and 35 PublicTest band faces."""
    rows = [(i % 7, i % 7, usage) for usage, n in (("Training", 140), ("PublicTest", 35)) for i in range(n)]
    return write_band_csv(tmp_path_factory.mktemp("csv") / "tiny.csv", rows, noise=60)


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory):
    """A models folder holding one tiny seeded Flatten → Dense(7, softmax) member (loads in well under a
    second): for tests of the commands around the models, not of the models. Read it, never write to it."""
    import keras
    from keras import layers

    from fer_keras.models import model_io

    root = tmp_path_factory.mktemp("tiny_models")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((48, 48, 1)), layers.Rescaling(1 / 255), layers.Flatten(),
                              layers.Dense(7, activation="softmax")])
    model_io.save_model(model, root / "model_1.h5")
    return root
