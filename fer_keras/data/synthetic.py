"""Generated FER2013-layout data, for demos, tests and benchmarks offline.

Each class gets a bright horizontal band at its own height over noise, so a
model can learn it in a few steps: enough to exercise every code path without
the real (licence-restricted) dataset.
"""

from __future__ import annotations

import numpy as np

from fer_keras.constants import IMAGE_SIZE, NUM_CLASSES


def synthetic_faces(n, *, seed=0, num_classes=NUM_CLASSES):
    """``(x uint8 (n, 48, 48, 1), y int64 (n,))`` with a learnable class signal."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % num_classes
    x = rng.integers(0, 60, (n, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    band = IMAGE_SIZE // num_classes
    for label in range(num_classes):
        x[y == label, label * band: (label + 1) * band] = 250
    return x[..., None], y.astype(np.int64)


def write_synthetic_csv(path, *, sizes=(("Training", 280), ("PublicTest", 70), ("PrivateTest", 70)), seed=0):
    """Write a FER2013-layout CSV with the given ``(usage, rows)`` splits."""
    lines = ["emotion,pixels,Usage"]
    for i, (usage, n) in enumerate(sizes):
        x, y = synthetic_faces(n, seed=seed + i)
        for label, face in zip(y, x.reshape(n, -1)):
            lines.append(f"{label},{' '.join(map(str, face.tolist()))},{usage}")
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    return path
